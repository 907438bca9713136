"""Replay captured application sends through `app.core.shaping` (the daemon's own code).

A capture (tools/shaping/capture.py) holds, per session, the application messages each
side handed to its shaper (``app`` events, out = Alice -> Bob, in = Bob -> Alice). The
replay feeds them, at their captured times, into one `ShapedChannel` per direction with
a fresh per-session seed, calling `step` exactly when the daemon's task would (at
`next_wakeup()` and right after a message is queued), and records what would cross the
wire: ``(time, direction, size)`` plus each message's added latency.

Mode ``off`` gives the unshaped trace: each message is one frame of ``len + 6`` bytes.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from app.core.shaping import ShapedChannel
from app.core.wire import HEADER_SIZE

Pick = Callable[[tuple[float, ...]], int]
WARMUP = 3.0
"""Seconds a replayed channel runs before the session starts (as a live connection)."""


@dataclass(frozen=True)
class Capture:
    """One captured session: its activity and the application sends of both sides."""

    activity: str
    session: int
    mode: str
    duration: float
    app: tuple[tuple[float, str, int], ...]
    wire: tuple[tuple[float, str, int], ...]
    """What the daemon really put on / received from the wire (shaped captures)."""
    latencies_us: tuple[int, ...]
    name: str


def load_capture(path: Path) -> Capture:
    """Read one capture file."""
    record = json.loads(path.read_text())
    events = record["events"]
    app = tuple((float(t), d, int(n)) for t, d, kind, n in events if kind == "app")
    wire = tuple(
        (float(t), d, int(n)) for t, d, kind, n in events if kind in ("wire", "cover", "in")
    )
    latencies = tuple(int(n) for _, _, kind, n in events if kind == "delivered")
    return Capture(
        record["activity"],
        int(record["session"]),
        record["mode"],
        float(record["duration"]),
        app,
        wire,
        latencies,
        path.stem,
    )


def load_captures(folder: Path, mode: str = "off") -> list[Capture]:
    """Every capture of `mode` in `folder`, sorted by name."""
    return [load_capture(p) for p in sorted(folder.glob(f"{mode}-*.json"))]


@dataclass
class ShapedTrace:
    """A replayed session as an observer of the connection sees it."""

    activity: str
    source: str
    packets: list[tuple[float, int, int]] = field(default_factory=list)
    """(time, direction +1 out / -1 in, size) sorted by time."""
    latencies: list[tuple[float, int]] = field(default_factory=list)
    """(added latency in s, message size) of every message fully sent in the session."""
    app_bytes: int = 0
    decisions: list[tuple[float, str, tuple[float, ...], int]] = field(default_factory=list)
    """(time, direction, features, choice) of every model decision, if recorded."""

    @property
    def wire_bytes(self) -> int:
        """Bytes of every frame in both directions."""
        return sum(p[2] for p in self.packets)


def _seed(session_seed: bytes, direction: str) -> bytes:
    return hashlib.blake2b(direction.encode(), key=session_seed, digest_size=32).digest()


def shape_session(
    activity: str,
    source: str,
    app: Sequence[tuple[float, str, int]],
    mode: str,
    start: float,
    duration: float,
    seed: bytes,
    pick: Pick,
    *,
    record_decisions: bool = False,
) -> ShapedTrace:
    """Replay the sends in ``[start, start + duration)`` in `mode`; times become relative."""
    trace = ShapedTrace(activity, source)
    window = [(t - start, d, n) for t, d, n in app if start <= t < start + duration]
    trace.app_bytes = sum(n for _, _, n in window)
    if mode == "off":
        trace.packets = [(t, 1 if d == "out" else -1, n + HEADER_SIZE) for t, d, n in window]
        trace.latencies = [(0.0, n) for _, _, n in window]
        return trace
    for direction, sign in (("out", 1), ("in", -1)):
        sends = [(t, n) for t, d, n in window if d == direction]
        channel = ShapedChannel(mode, _seed(seed, direction), -WARMUP)

        clock = [-WARMUP]

        def decide(
            features: tuple[float, ...], direction: str = direction, clock: list[float] = clock
        ) -> int:
            choice = pick(features)
            if record_decisions:
                trace.decisions.append((clock[0], direction, features, choice))
            return choice

        queued: dict[int, tuple[float, int]] = {}
        i = 0
        now = -WARMUP
        while True:
            next_send = sends[i][0] if i < len(sends) else math.inf
            wake = channel.next_wakeup()
            now = max(now, min(next_send, wake))
            if now >= duration:
                break
            while i < len(sends) and sends[i][0] <= now:
                token = channel.enqueue(bytes(sends[i][1]), now)
                queued[token] = (now, sends[i][1])
                i += 1
            clock[0] = now
            result = channel.step(now, decide)
            if result is None or result.frame is None:
                continue
            if now >= 0.0:
                trace.packets.append((now, sign, len(result.frame.payload) + HEADER_SIZE))
            for token in result.completed:
                queued_at, size = queued.pop(token)
                trace.latencies.append((now - queued_at, size))
    trace.packets.sort()
    return trace
