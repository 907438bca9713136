"""A token bucket for the DHT lookups a node makes in the background.

In a small network every lookup asks every node, so the other nodes see each of ours.
Reading mailboxes (a lookup per contact and day) and looking again for contacts that
published no presence (offline) made a node on a three-person LAN send each of the
others 25-90 requests a minute after a start or after adding a few contacts: more than
any honest peer the anomaly detectors were trained on, so every node rate-limited the
others. Those background lookups now wait for a token: `BURST` at once, then
`PER_MINUTE` per `NODES_PER_SHARE` DHT neighbours (a lookup in a larger network asks
only some of them, so each sees a share). Looking for a contact again (`urgent`) goes
before reading mailboxes. The first look for a contact takes a token if one is there
and otherwise does not look (`try_take`): its endpoints from the invite or the last
presence record are dialled meanwhile, and it looks at the next retry. Adding 30
contacts within 16 s made 30 lookups at once, and a neighbour quarantined the node for
a minute. A bundle the user waits for to send is not paced.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

BURST = 12
"""Background lookups that may go at once after a quiet while."""
PER_MINUTE = 6.0
"""Background lookups a minute once the burst is spent, in a network of up to
`NODES_PER_SHARE` nodes."""
NODES_PER_SHARE = 3
_MIN_SLEEP = 0.05


class LookupPacer:
    """Tokens for background lookups (see the module docstring)."""

    def __init__(
        self,
        burst: int = BURST,
        per_minute: float = PER_MINUTE,
        *,
        nodes: Callable[[], int] = lambda: 0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._burst = float(burst)
        self._per_second = per_minute / 60.0
        self._nodes = nodes
        self._clock = clock
        self._tokens = float(burst)
        self._updated = clock()
        self._urgent_waiting = 0

    def _rate(self) -> float:
        """Tokens a second: more in a larger network (see the module docstring)."""
        return self._per_second * max(1.0, self._nodes() / NODES_PER_SHARE)

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self._burst, self._tokens + (now - self._updated) * self._rate())
        self._updated = now

    def try_take(self) -> bool:
        """Take a token if one is there now (a first look for a contact: it does not
        wait, its caller dials the endpoints it knows instead)."""
        self._refill()
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False

    async def wait(self, *, urgent: bool = False) -> None:
        """Return once a lookup may go (taking its token); `urgent` ones go first."""
        if urgent:
            self._urgent_waiting += 1
        try:
            while True:
                self._refill()
                if self._tokens >= 1.0 and (urgent or not self._urgent_waiting):
                    self._tokens -= 1.0
                    return
                await asyncio.sleep(max((1.0 - self._tokens) / self._rate(), _MIN_SLEEP))
        finally:
            if urgent:
                self._urgent_waiting -= 1


__all__ = ["BURST", "NODES_PER_SHARE", "PER_MINUTE", "LookupPacer"]
