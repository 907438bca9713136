"""Progress of one transfer: bytes done, recent speed, and when to tell the front end
(at most `PROGRESS_HZ` events a second) or the database (every `PERSIST_SECONDS`)."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

from app.node.api import Transfer, TransferState
from app.node.storage.transfers import TransferRecord

PROGRESS_HZ = 4.0
"""At most this many `TransferChanged` progress events per transfer and second."""
PERSIST_SECONDS = 1.0
"""How often the progress of a running transfer is written to the database."""
SPEED_WINDOW = 3.0
"""The speed shown is the average over at least this many seconds..."""
SPEED_HISTORY = 30.0
"""...or since the last progress before the newest, up to this long: a slow transfer
(a 256 KiB chunk every few seconds) shows its rate, not 0 between chunks. No progress
in this long reads 0 ("waiting for the peer")."""
_SAMPLE_EVERY = 0.25
MIN_SPEED_SPAN = 0.5
"""A speed over less time than this reads 0 (the first block served a moment after
the count began made 13 GB/s)."""


class Progress:
    """Counts bytes of one running transfer and decides when to tell the front end."""

    def __init__(self, done: int, size: int, clock: Callable[[], float]) -> None:
        self.done = done
        self.size = size
        self._clock = clock
        self._samples: deque[tuple[float, int]] = deque([(clock(), done)])
        self._last_event = 0.0
        self._last_persist = clock()
        self._stalled_at: int | None = None

    def add(self, nbytes: int) -> None:
        self.done = min(self.size, self.done + nbytes)

    def stall(self) -> None:
        """No source has the missing blocks now: the speed reads 0 until bytes move
        again (not a rate decaying over `SPEED_HISTORY` while nothing comes)."""
        self._stalled_at = self.done

    def speed(self) -> float:
        """Bytes a second: from the newest sample at least `SPEED_WINDOW` old that had
        less done than now (the oldest kept if none), to now."""
        now = self._clock()
        if self._stalled_at is not None:
            if self.done == self._stalled_at:
                return 0.0
            self._stalled_at = None
            self._samples = deque([(now, self.done)])  # the rate starts again from here
            return 0.0
        samples = self._samples
        if samples[-1][1] != self.done or now - samples[-1][0] >= _SAMPLE_EVERY:
            samples.append((now, self.done))
        while len(samples) > 2 and now - samples[0][0] > SPEED_HISTORY:
            samples.popleft()
        start_time, start_done = samples[0]
        for when, done in reversed(samples):
            if now - when >= SPEED_WINDOW and done < self.done:
                start_time, start_done = when, done
                break
        span = now - start_time
        return (self.done - start_done) / span if span >= MIN_SPEED_SPAN else 0.0

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


def public(record: TransferRecord, speed: float = 0.0) -> Transfer:
    """The API view of a transfer row."""
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
    )
