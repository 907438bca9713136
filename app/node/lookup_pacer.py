"""A token bucket for the DHT lookups a node makes in the background.

In a small network every lookup asks every node, so the other nodes see each of ours.
Reading mailboxes (a lookup per contact and day) and looking again for contacts that
published no presence (offline) made a node on a three-person LAN send each of the
others 25-90 requests a minute after a start or after adding a few contacts: more than
any honest peer the anomaly detectors were trained on, so every node rate-limited the
others. Those background lookups now wait for a token: `BURST` at once, then
`PER_MINUTE`. Lookups a user waits for (the first look for a contact, a bundle to send
to) are not paced.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

BURST = 12
"""Background lookups that may go at once after a quiet while."""
PER_MINUTE = 6.0
"""Background lookups a minute once the burst is spent."""


class LookupPacer:
    """Tokens for background lookups (see the module docstring); FIFO waiters."""

    def __init__(
        self,
        burst: int = BURST,
        per_minute: float = PER_MINUTE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._burst = float(burst)
        self._rate = per_minute / 60.0
        self._clock = clock
        self._tokens = float(burst)
        self._updated = clock()
        self._lock = asyncio.Lock()

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self._burst, self._tokens + (now - self._updated) * self._rate)
        self._updated = now

    async def wait(self) -> None:
        """Return once a lookup may go (taking its token)."""
        async with self._lock:  # one waiter at a time: first come, first served
            self._refill()
            while self._tokens < 1.0:
                await asyncio.sleep((1.0 - self._tokens) / self._rate)
                self._refill()
            self._tokens -= 1.0


__all__ = ["BURST", "PER_MINUTE", "LookupPacer"]
