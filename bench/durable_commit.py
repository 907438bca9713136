"""A baseline for benchmarks of what the node stores: how long one durable commit takes
on this machine's disk, measured like the profile database does it (SQLite, WAL,
``synchronous=FULL``: the commit returns once the write-ahead log is fsynced).

Every message is stored by its sender before it leaves and by its recipient before it
is acknowledged (docs/decisions/0010), so a message's one-way latency includes at least
one such commit. ``bench_messaging.py`` prints this figure beside its own.

    python bench/durable_commit.py [--dir DIR] [--count 200] [--interval 0.002]
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any


def commit_latency(
    folder: Path, count: int = 200, size: int = 400, interval: float = 0.002
) -> dict[str, Any]:
    """p50/p90 (ms) of `count` commits of one `size`-byte row each into a fresh database
    in `folder` (removed afterwards), one every `interval` seconds: spaced like the
    messages of a latency loop, a commit costs more than back to back (the disk's
    cache has settled between them: 1.2 ms against 0.3 ms on one machine here)."""
    with tempfile.TemporaryDirectory(dir=folder, prefix="commit-probe-") as tmp:
        conn = sqlite3.connect(Path(tmp) / "probe.db", isolation_level=None)
        try:
            conn.execute("PRAGMA journal_mode=WAL").fetchone()
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("CREATE TABLE t (x BLOB)")
            times = []
            for _ in range(count):
                time.sleep(interval)
                row = os.urandom(size)
                started = time.perf_counter()
                conn.execute("BEGIN")
                conn.execute("INSERT INTO t VALUES (?)", (row,))
                conn.execute("COMMIT")
                times.append((time.perf_counter() - started) * 1000)
        finally:
            conn.close()
    times.sort()
    return {
        "folder": str(folder),
        "commits": count,
        "interval_ms": round(interval * 1000, 3),
        "p50_ms": round(statistics.median(times), 3),
        "p90_ms": round(times[int(0.9 * (count - 1))], 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()))
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--interval", type=float, default=0.002, help="seconds between")
    args = parser.parse_args()
    found = commit_latency(args.dir, args.count, interval=args.interval)
    print(json.dumps({"benchmark": "durable_commit", **found}))


if __name__ == "__main__":
    main()
