"""The traffic shaper: the `FrameHook` of every transport connection.

`Shaper` is handed to the `ConnectionManager` once; when a connection opens it binds a
`ShapedLink` to it (`ConnectionBoundHook.bind`). A link owns that connection's
`app.core.shaping.ShapedSender` (its own secret seed, hence its own jitter and decoy
rate) and one asyncio task that sends a bucket-sized frame in every slot: a fragment of
queued application data, or cover. `send()` on the connection returns once the last
fragment of its message has been written.

Every `window` seconds (and early, at most every `DEMAND_GAP` s, when the backlog exceeds
what the current schedule can carry soon) the task computes the window's features and
asks the schedule model (`resources/models/shaper.onnx`, through `app.node.ml`) which
vetted schedule to use. That is one inference per window per connection, in the
scheduler task, never per frame.

Mode ``off`` sends DATA frames unchanged but still decodes a shaping peer's PADDED and
COVER frames, so modes may differ between the two ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from app.core.errors import LocalProtocolError
from app.core.shaping import (
    FEATURE_NAMES,
    SCHEDULES,
    SEED_SIZE,
    Reassembler,
    ShapedChannel,
    SlotResult,
    check_mode,
)
from app.core.wire import HEADER_SIZE, Frame, FrameType
from app.node.ml import ModelError, OnnxModel, RowRunner, load_model
from app.node.transport.base import AuthenticatedConnection, ConnectionClosed, FrameHook

log = logging.getLogger(__name__)

MODEL_FILE = "shaper.onnx"
WINDOW_SECONDS = 1.0
DEMAND_GAP = 0.25
"""Least time between two early (demand-triggered) decisions on one connection."""

TraceKind = Literal["app", "wire", "cover", "delivered", "in"]
SCHEDULE_IDS = {schedule.name: schedule.id for schedule in SCHEDULES}


@dataclass(frozen=True)
class TraceEvent:
    """One observation at the shaper boundary (for trace capture and benchmarks)."""

    time: float
    peer: str
    kind: TraceKind
    """app: a message handed to the shaper; wire: a frame written (cover: a cover frame);
    delivered: a message fully written (size = its latency in µs); in: a frame received."""
    size: int


TraceSink = Callable[[TraceEvent], None]


class ScheduleModel:
    """The schedule-picking model: window features in, a vetted schedule id out."""

    def __init__(self, model: OnnxModel | None = None) -> None:
        self._model = model
        self._runner: RowRunner | None = None
        if model is not None:
            if model.n_features != len(FEATURE_NAMES) or "label" not in model.output_names:
                raise ModelError(f"{model.path.name} does not take the shaper's features")
            self._runner = RowRunner(model, "label", (1,), np.int64)

    @classmethod
    def load(cls) -> ScheduleModel:
        """The shipped model, or the rule below when it can't be loaded (logged)."""
        try:
            return cls(load_model(MODEL_FILE))
        except ModelError as exc:
            log.warning("traffic shaping falls back to its fixed rule: %s", exc)
            return cls(None)

    @property
    def loaded(self) -> bool:
        """Whether the ONNX model (rather than the fallback rule) decides."""
        return self._runner is not None

    def pick(self, features: Sequence[float]) -> int:
        """A schedule id for these features (`FEATURE_NAMES` order)."""
        if len(features) != len(FEATURE_NAMES):
            raise LocalProtocolError("wrong number of shaping features")
        if self._runner is None:
            return fallback_pick(features)
        return int(self._runner(features)[0])


def fallback_pick(features: Sequence[float]) -> int:
    """The rule used when no model is shipped: backlog and recent volume thresholds."""
    backlog_log2, _, window_log2 = features[0], features[1], features[2]
    if backlog_log2 > 16 or window_log2 > 17:
        return 2
    if backlog_log2 > 11 or window_log2 > 13:
        return 1
    return 0


class Shaper:
    """The node's `FrameHook`: binds a shaped link to every connection that opens."""

    def __init__(
        self,
        mode: str = "balanced",
        *,
        model: ScheduleModel | None = None,
        trace: TraceSink | None = None,
        window: float = WINDOW_SECONDS,
        random_bytes: Callable[[int], bytes] = os.urandom,
    ) -> None:
        self.mode = check_mode(mode)
        self._model = model
        self.trace = trace
        self.window = window
        self._random_bytes = random_bytes
        self.links: list[ShapedLink] = []
        self._floors: dict[str, int] = {}
        """Peers whose links must not run below a schedule (`set_floor`)."""

    @property
    def model(self) -> ScheduleModel:
        """The schedule model (loaded on first use, so mode ``off`` never loads it)."""
        if self._model is None:
            self._model = ScheduleModel.load()
        return self._model

    def set_mode(self, mode: str) -> None:
        """Use `mode` for connections opened from now on."""
        self.mode = check_mode(mode)

    def set_floor(self, peer: str, schedule: str | None) -> None:
        """Run our side of the connection to `peer` at least at `schedule` (by name,
        e.g. "burst"), now and on connections opened later, until cleared with None."""
        if schedule is None:
            self._floors.pop(peer, None)
        else:
            self._floors[peer] = SCHEDULE_IDS[schedule]
        for link in self.links:
            if link.peer == peer:
                link.set_floor(self._floors.get(peer))

    def bind(self, connection: AuthenticatedConnection) -> FrameHook:
        """A shaped link for `connection` (mode fixed for the connection's lifetime)."""
        link = ShapedLink(self, connection, self.mode)
        if link.peer in self._floors:
            link.set_floor(self._floors[link.peer])
        self.links.append(link)
        connection.on_close(lambda _conn: self._unbind(link))
        return link

    def _unbind(self, link: ShapedLink) -> None:
        link.stop()
        with contextlib.suppress(ValueError):
            self.links.remove(link)

    async def outbound(self, peer: str, frame: Frame) -> Sequence[Frame]:
        """Before a connection opens nothing is sent through the hook: pass through."""
        return (frame,)

    def inbound(self, peer: str, frame: Frame) -> Frame | None:
        """Before a connection opens nothing arrives through the hook: pass through."""
        return frame

    def emit(self, event: TraceEvent) -> None:
        """Hand `event` to the trace sink, if any."""
        if self.trace is not None:
            self.trace(event)


class ShapedLink:
    """The shaper of one connection: its sender state machine, reassembler and task."""

    def __init__(self, shaper: Shaper, connection: AuthenticatedConnection, mode: str) -> None:
        self._shaper = shaper
        self._conn = connection
        self.mode = mode
        self.peer = connection.peer_address
        self._loop = asyncio.get_running_loop()
        self._reassembler = Reassembler()
        self._waiting: dict[int, tuple[asyncio.Future[None], float]] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.channel: ShapedChannel | None = None
        self.decision_seconds = 0.0
        if mode != "off":
            now = self._loop.time()
            self.channel = ShapedChannel(
                mode,
                shaper._random_bytes(SEED_SIZE),
                now,
                window=shaper.window,
                demand_gap=DEMAND_GAP,
            )
            self._task = self._loop.create_task(self._run())

    # ---------------------------------------------------------------- FrameHook

    async def outbound(self, peer: str, frame: Frame) -> Sequence[Frame]:
        """Queue a DATA payload for the slots; return once all of it is on the wire."""
        now = self._loop.time()
        self._shaper.emit(TraceEvent(time.time(), self.peer, "app", len(frame.payload)))
        if self.channel is None or frame.type != FrameType.DATA:
            self._shaper.emit(TraceEvent(time.time(), self.peer, "wire", _wire_size(frame)))
            return (frame,)
        if self._task is None or self._task.done():
            raise ConnectionClosed("the shaper of this connection stopped")
        token = self.channel.enqueue(frame.payload, now)
        future: asyncio.Future[None] = self._loop.create_future()
        self._waiting[token] = (future, now)
        self._wake.set()
        await future
        return ()

    def inbound(self, peer: str, frame: Frame) -> Frame | Sequence[Frame] | None:
        """Reassemble PADDED fragments, drop COVER (raises on a malformed fragment)."""
        self._shaper.emit(TraceEvent(time.time(), self.peer, "in", _wire_size(frame)))
        return self._reassembler.receive(frame)

    def set_floor(self, schedule_id: int | None) -> None:
        """See `Shaper.set_floor` (no effect in mode ``off``)."""
        if self.channel is not None:
            self.channel.sender.set_floor(schedule_id, self._loop.time())
            self._wake.set()

    # ---------------------------------------------------------------- scheduling

    def _pick(self, features: tuple[float, ...]) -> int:
        started = time.perf_counter()
        choice = self._shaper.model.pick(features)
        self.decision_seconds += time.perf_counter() - started
        return choice

    async def _run(self) -> None:
        channel = self.channel
        assert channel is not None
        try:
            while self._conn.is_open:
                now = self._loop.time()
                result = channel.step(now, self._pick)
                if result is not None:
                    await self._send_slot(result)
                    continue
                self._wake.clear()
                delay = max(0.0, channel.next_wakeup() - now)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), delay)
        except ConnectionClosed:
            pass
        except Exception:  # a shaper bug must not leave senders waiting forever
            log.exception("the shaper of a connection failed")
        finally:
            self._fail_waiting()

    async def _send_slot(self, result: SlotResult) -> None:
        if result.frame is None:
            return
        self._conn.write_frame(result.frame)
        self._shaper.emit(
            TraceEvent(
                time.time(),
                self.peer,
                "cover" if result.cover else "wire",
                _wire_size(result.frame),
            )
        )
        for token in result.completed:
            future, queued_at = self._waiting.pop(token)
            latency_us = int((self._loop.time() - queued_at) * 1e6)
            self._shaper.emit(TraceEvent(time.time(), self.peer, "delivered", latency_us))
            if not future.done():
                future.set_result(None)
        if self.channel is not None and self.channel.sender.schedule.interval < 0.01:
            await self._conn.drain()  # bulk: let the path's buffer set the pace

    def _fail_waiting(self) -> None:
        reason = self._conn.close_reason or "connection closed"
        waiting, self._waiting = self._waiting, {}
        for future, _ in waiting.values():
            if not future.done():
                future.set_exception(ConnectionClosed(reason))

    def stop(self) -> None:
        """Stop the scheduler (the connection closed); pending sends fail."""
        if self._task is not None and not self._task.done():
            self._task.cancel()
        self._fail_waiting()


def _wire_size(frame: Frame) -> int:
    return HEADER_SIZE + len(frame.payload)
