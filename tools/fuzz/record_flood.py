"""A hostile DHT node that fills a node's record store with valid records.

Every record is well formed and correctly signed, under a made-up identity (identities
cost nothing), so the target's validation accepts it: the flood is only a matter of
numbers. It comes from one host (`source`, by default 127.0.0.2, so the target can tell
it from honest nodes on 127.0.0.1) but from many UDP ports, `per_port` stores each, so
no single sender address stands out to the anomaly detector.

    python -m tools.fuzz.hostile_peer records --endpoint 127.0.0.1:PORT --target ADDRESS
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import Counter

from app.core.identity import IdentityKeys
from app.core.records import RecordKind, SignedRecord, sign_record
from app.node.dht import DhtNode

SOURCE = "127.0.0.2"
PER_PORT = 32
PARALLEL = 32


def made_up_record(kind: RecordKind, lifetime: float, payload_bytes: int) -> SignedRecord:
    """A valid record of `kind` signed by a fresh identity."""
    keys = IdentityKeys.from_seeds(os.urandom(32), os.urandom(32))
    slot = b"\x00\x01" if kind is RecordKind.MAILBOX else b""
    return sign_record(
        keys.sign,
        keys.public.signing_key,
        kind,
        seq=1,
        expires_at=int(time.time() + lifetime),
        payload=os.urandom(payload_bytes),
        slot=slot,
    )


async def flood(
    host: str,
    port: int,
    cases: int,
    *,
    source: str = SOURCE,
    per_port: int = PER_PORT,
    lifetime: float = 6 * 24 * 3600.0,
    payload_bytes: int = 64,
) -> Counter[str]:
    """Store `cases` made-up mailbox records at `host`:`port`; kept / refused / unanswered."""
    tally: Counter[str] = Counter()
    remaining = cases
    while remaining > 0:
        batch = min(per_port, remaining)
        remaining -= batch
        sender = DhtNode()
        await sender.start(source, 0)
        try:
            records = [
                made_up_record(RecordKind.MAILBOX, lifetime, payload_bytes) for _ in range(batch)
            ]
            for start in range(0, batch, PARALLEL):
                answers = await asyncio.gather(
                    *(_store(sender, host, port, r) for r in records[start : start + PARALLEL])
                )
                tally.update(answers)
        finally:
            sender.stop()
    return tally


async def _store(sender: DhtNode, host: str, port: int, record: SignedRecord) -> str:
    proto = sender._server.proto
    ok, kept = await proto.call(
        (host, port), "store", sender.node_id, record.key, record.encode(), timeout=2.0
    )
    if not ok:
        return "unanswered"
    return "kept" if kept is True else "refused"
