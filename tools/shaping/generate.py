"""Generate many shaped sessions from a few captures, and check the replay against reality.

`generate(captures, mode, ...)` cuts each captured session into windows of `duration`
seconds at random offsets and replays each window's application sends through
`app.core.shaping` (replay.py) with its own seed: a new, disjoint shaped session each
time. The unshaped twin of every window (mode off) is returned alongside, for overheads.

`validate(folder)` replays the application sends of the *real shaped* captures (taken
with ``capture.py --mode balanced|strict``, the daemon's shaper on real connections) and
compares what the replay puts on the wire with what the daemon did: wire bytes per
second, frame sizes, share of cover frames, message latency.

Usage:
  python -m tools.shaping.generate --mode balanced --out traces/balanced.jsonl
  python -m tools.shaping.generate --validate
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from app.core.shaping import SCHEDULES
from tools.shaping.replay import Capture, Pick, ShapedTrace, load_captures, shape_session

DATA = Path(__file__).with_name("data")


def generate(
    captures: Sequence[Capture],
    mode: str,
    pick: Pick,
    *,
    per_capture: int = 30,
    duration: float = 30.0,
    seed: int = 0,
) -> list[tuple[ShapedTrace, ShapedTrace, int]]:
    """(shaped, unshaped twin, capture session index) for `per_capture` windows each."""
    rng = random.Random(seed)
    out = []
    for capture in captures:
        for k in range(per_capture):
            start = rng.uniform(0.0, max(0.0, capture.duration - duration))
            session_seed = hashlib.sha256(f"{mode}/{capture.name}/{seed}/{k}".encode()).digest()
            shaped = shape_session(
                capture.activity,
                capture.name,
                capture.app,
                mode,
                start,
                duration,
                session_seed,
                pick,
            )
            plain = shape_session(
                capture.activity,
                capture.name,
                capture.app,
                "off",
                start,
                duration,
                session_seed,
                pick,
            )
            out.append((shaped, plain, capture.session))
    return out


def _summary(packets: Sequence[tuple[float, int, int]], duration: float) -> dict[str, Any]:
    sizes = [n for _, _, n in packets]
    return {
        "wire_bytes_per_s": round(sum(sizes) / duration, 1),
        "frames_per_s": round(len(sizes) / duration, 2),
        "frame_sizes": sorted(set(sizes)),
    }


def validate(folder: Path, pick: Pick) -> list[dict[str, Any]]:
    """Compare real shaped captures with replays of their own application sends."""
    rows = []
    for mode in ("balanced", "strict"):
        for capture in load_captures(folder, mode):
            real = [(t, 1 if d == "out" else -1, n) for t, d, n in capture.wire]
            seed = hashlib.sha256(capture.name.encode()).digest()
            replay = shape_session(
                capture.activity, capture.name, capture.app, mode, 0.0, capture.duration, seed, pick
            )
            # the capture times only Alice's messages ("out"): replay those alone for latency
            outbound = [a for a in capture.app if a[1] == "out"]
            out_only = shape_session(
                capture.activity, capture.name, outbound, mode, 0.0, capture.duration, seed, pick
            )
            covers = {s.frame_size for s in SCHEDULES}
            row = {
                "capture": capture.name,
                "real": _summary(real, capture.duration),
                "replay": _summary(replay.packets, capture.duration),
                "app_messages": len(capture.app),
                "real_latency_ms_p50": _pct([x / 1000 for x in capture.latencies_us], 50),
                "replay_latency_ms_p50": _pct([x * 1000 for x, _ in out_only.latencies], 50),
                "real_latency_ms_p95": _pct([x / 1000 for x in capture.latencies_us], 95),
                "replay_latency_ms_p95": _pct([x * 1000 for x, _ in out_only.latencies], 95),
                "real_sizes_are_buckets": all(n in covers for _, _, n in real),
            }
            rows.append(row)
    return rows


def _pct(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    if len(values) == 1:
        return round(values[0], 2)
    return round(statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1], 2)


def main() -> None:
    from app.node.shaper import ScheduleModel

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--mode", choices=("off", "balanced", "strict"), default="balanced")
    parser.add_argument("--per-capture", type=int, default=30)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--validate", action="store_true")
    args = parser.parse_args()
    model = ScheduleModel.load()
    if args.validate:
        print(json.dumps(validate(args.data, model.pick), indent=1))
        return
    sessions = generate(
        load_captures(args.data, "off"), args.mode, model.pick, per_capture=args.per_capture
    )
    out = args.out or Path(f"traces/{args.mode}.jsonl")
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w") as f:
        for shaped, _plain, session in sessions:
            f.write(
                json.dumps(
                    {
                        "activity": shaped.activity,
                        "source": shaped.source,
                        "session": session,
                        "packets": shaped.packets,
                    }
                )
                + "\n"
            )
    print(f"{len(sessions)} sessions -> {out}")


if __name__ == "__main__":
    main()
