"""Where traced memory grew between two probes of `tools/memprobe/sitecustomize.py`.

    python -m tools.memprobe.diff DIR/probe-1.trace DIR/probe-2.trace [--top 25] [--by lineno]

Prints JSON: the total traced growth and the largest differences, grouped by source line
(or by `traceback` for the whole stack, or `filename`).
"""

from __future__ import annotations

import argparse
import json
import tracemalloc


def _short(filename: str) -> str:
    return filename.rsplit("site-packages/", 1)[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("before")
    parser.add_argument("after")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--by", default="lineno", choices=["lineno", "traceback", "filename"])
    args = parser.parse_args()
    old = tracemalloc.Snapshot.load(args.before)
    new = tracemalloc.Snapshot.load(args.after)
    stats = new.compare_to(old, args.by)
    total = sum(s.size_diff for s in stats)
    rows = [
        {
            "kib": round(s.size_diff / 1024, 1),
            "count": s.count_diff,
            "where": [f"{_short(f.filename)}:{f.lineno}" for f in s.traceback],
        }
        for s in stats[: args.top]
    ]
    print(json.dumps({"traced_growth_kib": round(total / 1024, 1), "top": rows}, indent=1))


if __name__ == "__main__":
    main()
