"""Honest DHT records under a record flood: the store shared by source vs "refuse when full".

One run, on loopback only, for each store policy in turn (same shape, same seed):

1. a victim node (127.0.0.1) and `--honest` nodes, each on a host of its own
   (127.0.0.10, .11, ...) so the victim can tell them apart, bootstrap together;
2. the honest nodes publish `--before` records (mailbox slots) between them;
3. a hostile node floods the victim with `--flood` valid records under made-up
   identities, from `--hostile-hosts` hosts (127.0.0.2, .3, ...) and many ports each
   (`tools/fuzz/record_flood.py`);
4. the honest nodes publish `--after` more (e.g. offline messages written during the
   flood), and one more honest node joins (the victim hands it what it should hold).

Then it counts what the victim holds: honest records from before that survived, honest
records from after that it kept, the hostile ones, and whether the joining node got its
records. `refuse` is the store before this change: cull expired records, then refuse any
new key when full; `share` is `app.node.record_store` (max-min share by source host).

Prints one JSON object. Not a test: nothing here asserts.

    .venv/bin/python bench/bench_dht_flood.py [--flood 5000] [--hostile-hosts 1] ...
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import random
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.core.record_errors import InvalidRecord
from app.core.records import RecordKind, SignedRecord
from app.node.dht import DhtNode
from app.node.record_store import RecordStore
from tools.fuzz.record_flood import flood, made_up_record

VICTIM = "127.0.0.1"


class RefuseWhenFull(RecordStore):
    """The old policy: when full (after culling), every new key is refused."""

    def _make_room(self, source: str) -> None:
        raise InvalidRecord("this node holds as many records as it will")


async def publish(nodes: list[DhtNode], count: int, rng: random.Random) -> list[SignedRecord]:
    records = [made_up_record(RecordKind.MAILBOX, 6 * 24 * 3600.0, 200) for _ in range(count)]
    for start in range(0, count, 16):
        batch = records[start : start + 16]
        await asyncio.gather(*(rng.choice(nodes).put_record(r) for r in batch))
    return records


async def settled(node: DhtNode, quiet: float = 2.0, limit: float = 60.0) -> None:
    """Wait until `node`'s store has not grown for `quiet` seconds (at most `limit`)."""
    deadline = time.monotonic() + limit
    size, since = -1, time.monotonic()
    while time.monotonic() < deadline and time.monotonic() - since < quiet:
        if len(node._server.storage) != size:
            size, since = len(node._server.storage), time.monotonic()
        await asyncio.sleep(0.2)


def held(node: DhtNode, records: list[SignedRecord]) -> int:
    return sum(1 for r in records if node._server.storage.get(r.key) is not None)


async def scenario(policy: str, args: argparse.Namespace) -> dict[str, Any]:
    rng = random.Random(args.seed)
    victim = DhtNode(max_records=args.max_records)
    if policy == "refuse":
        victim._server.storage = RefuseWhenFull(time.time, args.max_records)
    nodes: list[DhtNode] = []
    try:
        await victim.start(VICTIM, 0)
        for i in range(args.honest):
            node = DhtNode(max_records=args.max_records)
            await node.start(f"127.0.0.{10 + i}", 0)
            nodes.append(node)
            await node.bootstrap([(VICTIM, victim.port)])
        before = await publish(nodes, args.before, rng)
        started = time.monotonic()
        per_host = args.flood // args.hostile_hosts
        tallies = await asyncio.gather(
            *(
                flood(VICTIM, victim.port, per_host, source=f"127.0.0.{2 + h}")
                for h in range(args.hostile_hosts)
            )
        )
        flood_seconds = time.monotonic() - started
        after = await publish(nodes, args.after, rng)
        joiner = DhtNode(max_records=args.max_records)
        await joiner.start(f"127.0.0.{10 + args.honest}", 0)
        nodes.append(joiner)
        joined = await joiner.bootstrap([(VICTIM, victim.port)])
        await settled(joiner)  # replication to the joiner runs in the background
        hostile_kept = sum(t["kept"] for t in tallies)
        honest = before + after
        return {
            "store_size": len(victim._server.storage),
            "honest_before_held": held(victim, before),
            "honest_after_held": held(victim, after),
            "honest_published": {"before": len(before), "after": len(after)},
            "hostile_accepted": hostile_kept,
            "hostile_held": len(victim._server.storage) - held(victim, honest),
            "flood_seconds": round(flood_seconds, 1),
            "joiner_reached": joined,
            "joiner_holds": len(joiner._server.storage),
            "joiner_holds_honest": held(joiner, honest),
        }
    finally:
        for node in [victim, *nodes]:
            node.stop()


async def main(args: argparse.Namespace) -> dict[str, Any]:
    results: dict[str, Any] = {"params": vars(args)}
    for policy in ("refuse", "share"):
        results[policy] = await scenario(policy, args)
    return results


if __name__ == "__main__":
    logging.disable(logging.WARNING)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--honest", type=int, default=6, help="honest nodes (own hosts)")
    parser.add_argument("--before", type=int, default=300, help="honest records before")
    parser.add_argument("--after", type=int, default=300, help="honest records after")
    parser.add_argument("--flood", type=int, default=5000, help="hostile records")
    parser.add_argument("--hostile-hosts", type=int, default=1)
    parser.add_argument("--max-records", type=int, default=4096)
    parser.add_argument("--seed", type=int, default=1)
    print(json.dumps(asyncio.run(main(parser.parse_args())), indent=1))
