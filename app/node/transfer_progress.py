"""Progress of one transfer: bytes done, recent speed, and when to tell the front end
(at most `PROGRESS_HZ` events a second) or the database (every `PERSIST_SECONDS`)."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

from app.node.api import Transfer, TransferState
from app.node.storage.transfers import TransferRecord
from app.node.transfer_status import ended_by

PROGRESS_HZ = 4.0
"""At most this many `TransferChanged` progress events per transfer and second."""
PERSIST_SECONDS = 1.0
"""How often the progress of a running transfer is written to the database."""
SPEED_WINDOW = 3.0
"""The speed shown is the rate over at least this many seconds, ending at the latest
progress (not now: between two chunks of a slow link it does not sag, so the ETA does
not jump by a factor of two from one second to the next)."""
STALL_AFTER = 5.0
"""No progress for this long (or three of the recent intervals between chunks, on a
slow link) reads 0, "waiting for the peer": the last rate is not kept fading for half
a minute while the link is dead..."""
SPEED_HISTORY = 30.0
"""...and never longer than this; older progress points are dropped."""
_STALL_INTERVALS = 3.0
_POINT_EVERY = 0.1
_CADENCE_POINTS = 5
MIN_SPEED_SPAN = 0.5
"""A speed over less time than this reads 0 (the first block served a moment after
the count began made 13 GB/s)."""


class Progress:
    """Counts bytes of one running transfer and decides when to tell the front end."""

    def __init__(self, done: int, size: int, clock: Callable[[], float]) -> None:
        self.size = size
        self._clock = clock
        self._done = done
        self._changed_at = clock()
        self._points: deque[tuple[float, int]] = deque([(self._changed_at, done)])
        """(when, bytes done) as they change, at most every `_POINT_EVERY` seconds plus
        the latest `speed` saw, oldest first (pruned to `SPEED_HISTORY` by `speed`)."""
        self._last_event = 0.0
        self._last_persist = clock()
        self._stalled_at: int | None = None

    @property
    def done(self) -> int:
        return self._done

    @done.setter
    def done(self, value: int) -> None:
        if value != self._done:
            self._done = value
            self._changed_at = now = self._clock()
            if now - self._points[-1][0] >= _POINT_EVERY:  # the cadence, at 10 Hz at most
                self._points.append((now, value))

    def add(self, nbytes: int) -> None:
        self.done = min(self.size, self._done + nbytes)

    def stall(self) -> None:
        """No source has the missing blocks now: the speed reads 0 until bytes move
        again."""
        self._stalled_at = self._done

    @property
    def stalled(self) -> bool:
        """It reads 0 since `stall` (no byte moved since)."""
        return self._stalled_at == self._done

    def speed(self) -> float:
        """Bytes a second over at least `SPEED_WINDOW` up to the latest progress; 0 when
        nothing moved for `STALL_AFTER` (or longer on a link that slow) or after
        `stall` until bytes move again."""
        now = self._clock()
        points = self._points
        if self._stalled_at is not None:
            if self._done == self._stalled_at:
                return 0.0
            self._stalled_at = None
            points.clear()  # the rate starts again from here
            points.append((self._changed_at, self._done))
            return 0.0
        if points[-1][1] != self._done:
            points.append((self._changed_at, self._done))
        while len(points) > 2 and now - points[1][0] > SPEED_HISTORY:
            points.popleft()
        last_time, last_done = points[-1]
        if len(points) < 2:
            return 0.0
        back = min(_CADENCE_POINTS, len(points))
        cadence = (last_time - points[-back][0]) / (back - 1)
        if now - last_time > min(SPEED_HISTORY, max(STALL_AFTER, _STALL_INTERVALS * cadence)):
            return 0.0
        start_time, start_done = points[0]
        for when, done in reversed(points):
            if last_time - when >= SPEED_WINDOW:
                start_time, start_done = when, done
                break
        span = last_time - start_time
        return (last_done - start_done) / span if span >= MIN_SPEED_SPAN else 0.0

    def event_due(self) -> bool:
        now = self._clock()
        if now - self._last_event >= 1.0 / PROGRESS_HZ:
            self._last_event = now
            return True
        return False

    def persist_due(self) -> bool:
        now = self._clock()
        if now - self._last_persist >= PERSIST_SECONDS:
            self._last_persist = now
            return True
        return False


def public(record: TransferRecord, speed: float = 0.0, waiting: str = "") -> Transfer:
    """The API view of a transfer row (`waiting`: see `Transfer.waiting`)."""
    who, declined = ended_by(record)
    return Transfer(
        id=record.id,
        contact=record.contact,
        outgoing=record.outgoing,
        name=record.name,
        size=record.size,
        done_bytes=record.done_bytes,
        state=record.state,
        path=record.path,
        mime=record.mime,
        time=record.time,
        speed_bps=speed
        if record.state is TransferState.RUNNING and record.done_bytes < record.size
        else 0.0,
        error=record.error,
        ended_by=who,
        declined=declined,
        waiting=waiting if record.state is TransferState.RUNNING else "",
    )
