"""Traffic shaping: size buckets, vetted send schedules, cover frames (sans-I/O).

Rules of this module (everything that decides what an observer sees lives here):

* Every frame the shaper emits has exactly the encoded size of its schedule's bucket
  (`Schedule.frame_size`, header included). Application messages are cut into fragments
  carried by `PADDED` frames (records ``flags u8 | length u32be | data``, back to back,
  then zero padding; several small messages may share a frame); empty
  slots carry `COVER` frames of the same size, zero-filled. Both are encrypted by the
  transport (DTLS or Noise), so only their size and timing are visible.
* Frames leave only in slots: a schedule is a slot interval (jittered per connection),
  a bucket, whether empty slots carry cover, and a minimum dwell. In mode balanced a
  connection without application messages for `DORMANT_AFTER` seconds drops to the slow
  `dormant` schedule (a rule, not the model) and leaves it with the next message. The
  set of schedules is fixed here (`SCHEDULES`); a model may only *pick one of them* by
  id, never a size or a time of its own, and `ShapedSender.choose` ignores ids outside
  the mode's set.
* Time (`now`, seconds, monotonic) and randomness (a per-connection secret seed) are
  passed in. Jitter and decoys come from a keyed BLAKE2b stream over that seed, so two
  connections never share a pattern and an observer cannot predict the next slot.
"""

from __future__ import annotations

import hashlib
import math
import struct
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from app.core.errors import LocalProtocolError, RemoteProtocolError
from app.core.wire import HEADER_SIZE, MAX_PAYLOAD, Frame, FrameType

FRAGMENT_HEADER = struct.Struct(">BI")
"""PADDED payload prefix: flags (bit 0 = last fragment of the message) and data length."""
FLAG_LAST = 0x01
SEED_SIZE = 32

SHAPING_MODES = ("off", "balanced", "strict")


def check_mode(mode: str) -> str:
    """`mode` if it is a shaping mode, else a clear error."""
    if mode not in SHAPING_MODES:
        raise ValueError(f"traffic shaping is one of {', '.join(SHAPING_MODES)}, not {mode!r}")
    return mode


class ShapingError(RemoteProtocolError):
    """A peer sent a malformed PADDED frame (bad length, flags or oversized message)."""


@dataclass(frozen=True)
class Schedule:
    """One vetted way of sending: a frame every `interval` s (±jitter), all `frame_size` B."""

    id: int
    name: str
    interval: float
    """Seconds between slots before the per-connection jitter."""
    frame_size: int
    """Encoded size of every frame (6-byte header included): the size bucket."""
    cover: bool
    """Whether an empty slot sends a COVER frame (otherwise it sends nothing)."""
    min_dwell: float
    """Seconds the schedule stays in force once chosen (no flapping on every window)."""

    @property
    def capacity(self) -> int:
        """Application bytes one frame of this schedule carries."""
        return self.frame_size - HEADER_SIZE - FRAGMENT_HEADER.size

    @property
    def bytes_per_second(self) -> float:
        """Wire bytes per second when every slot is used."""
        return self.frame_size / self.interval


SCHEDULES: tuple[Schedule, ...] = (
    Schedule(0, "base", 0.120, 1024, cover=True, min_dwell=2.0),
    Schedule(1, "burst", 0.040, 4096, cover=True, min_dwell=2.0),
    Schedule(2, "bulk", 0.0005, 65536, cover=False, min_dwell=2.0),
    Schedule(3, "strict", 0.100, 2048, cover=True, min_dwell=0.0),
    Schedule(4, "dormant", 2.000, 1024, cover=True, min_dwell=0.0),
)
"""The vetted schedules. Ids are what the model outputs (`MODE_SCHEDULES` filters them)."""

MODE_SCHEDULES: dict[str, tuple[int, ...]] = {
    "off": (),
    "balanced": (0, 1, 2),
    "strict": (3,),
}
"""Which schedules the model may pick in each mode; the first is the mode's default."""

DORMANT = 4
"""Not pickable: balanced falls to it when no message was sent for `DORMANT_AFTER` s."""
DORMANT_AFTER = 300.0


def bucket_sizes(mode: str) -> tuple[int, ...]:
    """Every frame size a shaped connection in `mode` can put on the wire."""
    ids = MODE_SCHEDULES[mode] + ((DORMANT,) if mode == "balanced" else ())
    return tuple(sorted({SCHEDULES[i].frame_size for i in ids}))


class KeyedStream:
    """Deterministic, unpredictable floats in [0, 1) from a secret per-connection seed."""

    def __init__(self, seed: bytes) -> None:
        if len(seed) != SEED_SIZE:
            raise LocalProtocolError(f"a shaping seed is {SEED_SIZE} bytes")
        self._seed = seed
        self._counter = 0
        self._pool: list[float] = []

    def uniform(self) -> float:
        """The next float in [0, 1)."""
        if not self._pool:
            block = hashlib.blake2b(
                self._counter.to_bytes(8, "big"), key=self._seed, digest_size=64
            ).digest()
            self._counter += 1
            self._pool = [n / 2.0**64 for n in struct.unpack(">8Q", block)][::-1]
        return self._pool.pop()


def encode_fragments(records: list[tuple[bytes, bool]], frame_size: int) -> Frame:
    """A PADDED frame carrying `records` (data, last) back to back, padded to `frame_size`.

    The receiver reads records until the payload ends or a record header is all zero
    (flags 0, length 0: the padding). The sender never writes an empty non-last record.
    """
    body = b"".join(
        FRAGMENT_HEADER.pack(FLAG_LAST if last else 0, len(data)) + data for data, last in records
    )
    padding = frame_size - HEADER_SIZE - len(body)
    if padding < 0:
        raise LocalProtocolError("fragments larger than their bucket")
    return Frame(FrameType.PADDED, body + bytes(padding))


def encode_fragment(data: bytes, last: bool, frame_size: int) -> Frame:
    """A PADDED frame carrying one fragment `data`, padded to `frame_size` bytes."""
    return encode_fragments([(data, last)], frame_size)


def cover_frame(frame_size: int) -> Frame:
    """A COVER frame whose encoding is exactly `frame_size` bytes."""
    return Frame(FrameType.COVER, bytes(frame_size - HEADER_SIZE))


@dataclass
class _Message:
    token: int
    data: bytes
    enqueued_at: float
    offset: int = 0


@dataclass(frozen=True)
class SlotResult:
    """What one slot sends: at most one frame, and the messages it finished sending."""

    frame: Frame | None
    completed: tuple[int, ...] = ()
    cover: bool = False


@dataclass
class WindowStats:
    """Application traffic seen during the current decision window."""

    started_at: float
    messages: int = 0
    bytes: int = 0
    largest: int = 0
    sizes: list[int] = field(default_factory=list)


FEATURE_NAMES = (
    "backlog_bytes_log2",
    "window_messages",
    "window_bytes_log2",
    "window_largest_log2",
    "window_mean_log2",
    "prev_window_bytes_log2",
    "seconds_since_last_message",
    "current_schedule",
)
"""Inputs of the schedule-picking model, in order (see resources/models/shaper.md)."""


def _log2p(x: float) -> float:
    return math.log2(x + 1.0)


class ShapedSender:
    """Outbound half of one shaped connection (one per connection, never shared).

    Feed it application messages with `enqueue`; ask `next_slot_at` when to call
    `slot(now)`; every `slot` returns at most one bucket-sized frame. `choose(id, now)` is
    how the model's pick arrives; `features(now)` is what the model sees. In mode
    ``strict`` the only schedule has a constant rate, so the pick cannot change anything
    an observer sees.
    """

    def __init__(self, mode: str, seed: bytes, now: float, *, jitter: float | None = None) -> None:
        if mode not in ("balanced", "strict"):
            raise LocalProtocolError(f"no shaped sender for mode {mode!r}")
        self.mode = mode
        self.allowed = MODE_SCHEDULES[mode]
        self._random = KeyedStream(seed)
        # per-connection randomness: jitter width and decoy probability
        self.jitter = jitter if jitter is not None else 0.1 + 0.3 * self._random.uniform()
        self.decoy_probability = 0.005 + 0.01 * self._random.uniform()
        self.schedule = SCHEDULES[self.allowed[0]]
        self._dwell_until = now + self.schedule.min_dwell
        self._queue: deque[_Message] = deque()
        self._backlog = 0
        self._next_token = 0
        self._next_slot = now + self._gap()
        self._window = WindowStats(now)
        self._prev_window_bytes = 0
        self._last_message_at: float | None = None
        self._active_at = now  # a new connection counts as activity (not dormant yet)
        self.floor: int | None = None
        """A schedule this sender never runs below (`set_floor`), or None."""

    # ---------------------------------------------------------------- application side

    def enqueue(self, data: bytes, now: float) -> int:
        """Queue one application message; returns a token reported when it has left."""
        if len(data) > MAX_PAYLOAD:
            raise LocalProtocolError(f"message exceeds {MAX_PAYLOAD} bytes")
        token = self._next_token
        self._next_token += 1
        self._queue.append(_Message(token, data, now))
        self._backlog += len(data)
        w = self._window
        w.messages += 1
        w.bytes += len(data)
        w.largest = max(w.largest, len(data))
        self._last_message_at = now
        self._active_at = now
        if self.schedule.id == DORMANT:  # wake up at once: the base rate carries it
            self.schedule = SCHEDULES[self.allowed[0]]
            self._dwell_until = now + self.schedule.min_dwell
            self._next_slot = min(self._next_slot, now + self._gap())
        if self.schedule.cover is False and self._next_slot > now + self.schedule.interval:
            self._next_slot = now  # bulk without cover sleeps when empty: wake it
        return token

    @property
    def backlog(self) -> int:
        """Application bytes queued and not yet sent."""
        return self._backlog

    # ---------------------------------------------------------------- schedule choice

    def set_floor(self, schedule_id: int | None, now: float) -> None:
        """Never run slower than `schedule_id` until it is cleared (None).

        For demand the node knows and the model can't see: the small requests of a file
        fetch, whose answers come the other way in bulk, would otherwise wait for the
        base schedule's slots and cap the transfer. A schedule not vetted for this mode is
        ignored (strict mode keeps its one constant rate)."""
        self.floor = schedule_id if schedule_id in self.allowed else None
        if self.floor is None:
            return
        floor = SCHEDULES[self.floor]
        if floor.bytes_per_second > self.schedule.bytes_per_second:
            self.schedule = floor
            self._dwell_until = now + floor.min_dwell
            self._next_slot = min(self._next_slot, now + self._gap())

    def features(self, now: float) -> tuple[float, ...]:
        """The model's inputs for the window ending at `now` (`FEATURE_NAMES`)."""
        w = self._window
        since = 3600.0 if self._last_message_at is None else now - self._last_message_at
        mean = w.bytes / w.messages if w.messages else 0.0
        return (
            _log2p(self._backlog),
            float(w.messages),
            _log2p(w.bytes),
            _log2p(w.largest),
            _log2p(mean),
            _log2p(self._prev_window_bytes),
            min(since, 3600.0),
            float(self.schedule.id),
        )

    def close_window(self, now: float) -> None:
        """Start a new decision window (call after `features` and `choose`)."""
        self._prev_window_bytes = self._window.bytes
        self._window = WindowStats(now)

    def choose(self, schedule_id: int, now: float) -> Schedule:
        """Apply the model's pick (ignored if not vetted for this mode or during dwell).

        With the connection's decoy probability, a higher-rate schedule than the pick is
        used instead, so a burst on the wire does not always mean application data.
        """
        if schedule_id not in self.allowed:
            schedule_id = self.allowed[0]
        rate = SCHEDULES[schedule_id].bytes_per_second
        quiet = now - self._active_at >= DORMANT_AFTER
        if len(self.allowed) > 1 and not quiet and self._random.uniform() < self.decoy_probability:
            higher = [
                i
                for i in self.allowed
                if SCHEDULES[i].bytes_per_second > rate and SCHEDULES[i].cover
            ]
            if higher:
                schedule_id = higher[int(self._random.uniform() * len(higher))]
        elif (
            schedule_id == self.allowed[0] and self.mode == "balanced" and quiet and not self._queue
        ):
            schedule_id = DORMANT
        if (
            self.floor is not None
            and SCHEDULES[self.floor].bytes_per_second > SCHEDULES[schedule_id].bytes_per_second
        ):
            schedule_id = self.floor
        if schedule_id == self.schedule.id:
            self._dwell_until = max(self._dwell_until, now + self.schedule.min_dwell)
            return self.schedule
        stepping_down = SCHEDULES[schedule_id].bytes_per_second < self.schedule.bytes_per_second
        if now < self._dwell_until and stepping_down:
            return self.schedule  # never step down before the dwell is over
        self.schedule = SCHEDULES[schedule_id]
        self._dwell_until = now + self.schedule.min_dwell
        self._next_slot = min(self._next_slot, now + self._gap())
        return self.schedule

    # ---------------------------------------------------------------- slots

    def _gap(self) -> float:
        spread = self.jitter * (2.0 * self._random.uniform() - 1.0)
        return self.schedule.interval * (1.0 + spread)

    def next_slot_at(self) -> float | None:
        """When `slot` must next be called; None while nothing can be sent (bulk, empty)."""
        if not self._queue and not self.schedule.cover:
            return None
        return self._next_slot

    def slot(self, now: float) -> SlotResult:
        """Send what the slot due at or before `now` carries (one frame or nothing)."""
        self._next_slot = max(self._next_slot, now - self.schedule.interval) + self._gap()
        size = self.schedule.frame_size
        if not self._queue:
            if self.schedule.cover:
                return SlotResult(cover_frame(size), cover=True)
            return SlotResult(None)
        room = self.schedule.capacity  # bytes left after one record header
        records: list[tuple[bytes, bool]] = []
        completed: list[int] = []
        while self._queue and room >= 0:
            head = self._queue[0]
            chunk = head.data[head.offset : head.offset + room]
            if not chunk and head.offset < len(head.data):
                break  # no room for even one byte of this message
            head.offset += len(chunk)
            self._backlog -= len(chunk)
            last = head.offset >= len(head.data)
            records.append((chunk, last))
            room -= len(chunk) + FRAGMENT_HEADER.size
            if not last:
                break
            self._queue.popleft()
            completed.append(head.token)
        return SlotResult(encode_fragments(records, size), tuple(completed))

    def pending_tokens(self) -> list[int]:
        """Tokens of messages not yet completely sent (to fail them on close)."""
        return [m.token for m in self._queue]


class ShapedChannel:
    """A `ShapedSender` plus its decision clock: what the node's shaper task runs.

    The node (and the trace replay in tools/shaping) call `step(now, pick)` at
    `next_wakeup()` or when a message was queued; `pick(features)` is the model. A
    decision happens at every window end, and early (at most every `demand_gap` s) when
    the backlog exceeds two frames of the current schedule. Keeping this here makes the
    replay and the daemon put the same frames on the wire for the same inputs.
    """

    def __init__(
        self,
        mode: str,
        seed: bytes,
        now: float,
        *,
        window: float = 1.0,
        demand_gap: float = 0.25,
    ) -> None:
        self.sender = ShapedSender(mode, seed, now)
        self.window = window
        self.demand_gap = demand_gap
        self.window_end = now + window
        self._last_demand = now
        self.decisions = 0
        self._top = MODE_SCHEDULES[mode][-1]
        self._choices = len(MODE_SCHEDULES[mode])

    def enqueue(self, data: bytes, now: float) -> int:
        """Queue an application message (see `ShapedSender.enqueue`)."""
        return self.sender.enqueue(data, now)

    def next_wakeup(self) -> float:
        """The latest time `step` must be called next (earlier is harmless)."""
        slot = self.sender.next_slot_at()
        return self.window_end if slot is None else min(slot, self.window_end)

    def _decide(self, now: float, pick: Callable[[tuple[float, ...]], int]) -> None:
        features = self.sender.features(now)
        if self._choices > 1:
            self.sender.choose(pick(features), now)
        self.sender.close_window(now)
        self.decisions += 1

    def step(self, now: float, pick: Callable[[tuple[float, ...]], int]) -> SlotResult | None:
        """Decide if a decision is due, then send the slot due by `now` (if any)."""
        sender = self.sender
        if now >= self.window_end:
            self._decide(now, pick)
            self.window_end = now + self.window
        elif (
            sender.backlog > 2 * sender.schedule.capacity
            and now - self._last_demand >= self.demand_gap
            and sender.schedule.id != self._top
        ):
            self._last_demand = now
            self._decide(now, pick)
        slot = sender.next_slot_at()
        if slot is not None and slot <= now:
            return sender.slot(now)
        return None


class Reassembler:
    """Inbound half: turns PADDED fragments back into DATA payloads, drops COVER."""

    def __init__(self, max_message: int = MAX_PAYLOAD) -> None:
        self._parts: list[bytes] = []
        self._size = 0
        self._max = max_message

    def receive(self, frame: Frame) -> list[Frame] | Frame | None:
        """What to deliver for `frame`: the DATA frames of the messages it completes (a
        list), the frame itself if it is not shaped, or None (cover, or nothing complete)."""
        if frame.type == FrameType.COVER:
            return None
        if frame.type != FrameType.PADDED:
            return frame
        payload = frame.payload
        if len(payload) < FRAGMENT_HEADER.size:
            raise ShapingError("PADDED frame shorter than its header")
        done: list[Frame] = []
        offset = 0
        while len(payload) - offset >= FRAGMENT_HEADER.size:
            flags, length = FRAGMENT_HEADER.unpack_from(payload, offset)
            if flags == 0 and length == 0:
                break  # padding
            if flags & ~FLAG_LAST:
                raise ShapingError(f"unknown PADDED flags {flags:#x}")
            start = offset + FRAGMENT_HEADER.size
            if start + length > len(payload):
                raise ShapingError("PADDED length exceeds the frame")
            if self._size + length > self._max:
                raise ShapingError("shaped message exceeds the frame size limit")
            self._parts.append(payload[start : start + length])
            self._size += length
            offset = start + length
            if flags & FLAG_LAST:
                done.append(Frame(FrameType.DATA, b"".join(self._parts)))
                self._parts = []
                self._size = 0
        return done or None
