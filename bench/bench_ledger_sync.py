"""Benchmark: answering an acknowledgement in a long conversation. Prints ONE JSON object.

A peer acknowledges with its heads; the node answers with what the peer lacks
(`Ledger.cids_since`). Figure: the time of that answer when the peer lacks a few recent
events, in conversations of growing length. Baseline in the same run: the full-history
definition (walk every ancestor of the peer's heads, then filter the whole order), which
is what the node did before.

Usage: ``.venv/bin/python bench/bench_ledger_sync.py [--events 1000 10000 50000]``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.core.cid import Cid
from app.core.identity import IdentityKeys
from app.core.ledger import Ledger
from app.core.ledger_event import EventBody

ALICE = IdentityKeys.from_seeds(b"\x01" * 32, b"\x11" * 32)
BOB = IdentityKeys.from_seeds(b"\x02" * 32, b"\x12" * 32)
LACKING = 5
ROUNDS = 20


def full_walk(ledger: Ledger, heads: list[Cid]) -> list[Cid]:
    stack = [c for c in heads if c in ledger]
    covered: set[Cid] = set()
    while stack:
        cid = stack.pop()
        if cid not in covered:
            covered.add(cid)
            event = ledger.get(cid)
            assert event is not None
            stack.extend(event.parents)
    return [e.cid for e in ledger.ordered() if e.cid not in covered]


def timed(fn: object, *args: object) -> tuple[float, object]:
    start = time.perf_counter()
    for _ in range(ROUNDS):
        result = fn(*args)  # type: ignore[operator]
    return (time.perf_counter() - start) / ROUNDS * 1000, result


def main(sizes: list[int]) -> dict[str, object]:
    alice, bob = ALICE.public.signing_key, BOB.public.signing_key
    ledger = Ledger(alice, bob)
    rows = []
    for size in sorted(sizes):
        while len(ledger) < size:  # both write, as in a conversation
            keys = ALICE if len(ledger) % 3 else BOB
            ledger.append(keys, EventBody.of("text", text=f"message {len(ledger)}"), len(ledger))
        order = [e.cid for e in ledger.ordered()]
        heads = [order[-LACKING - 1]]
        bounded_ms, bounded = timed(ledger.cids_since, heads)
        full_ms, full = timed(full_walk, ledger, heads)
        assert bounded == full and len(full) == LACKING
        rows.append(
            {
                "events": size,
                "answer_ms": round(bounded_ms, 4),
                "baseline_full_walk_ms": round(full_ms, 3),
            }
        )
    return {"benchmark": "bench_ledger_sync", "peer_lacks": LACKING, "results": rows}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, nargs="+", default=[1000, 10000, 50000])
    print(json.dumps(main(parser.parse_args().events)))
