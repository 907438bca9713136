"""A token bucket per sending host, for work a remote host can ask of us for free."""

from __future__ import annotations

import time
from collections.abc import Callable


class HostBudget:
    """`per_minute` units per host, refilled continuously, a burst of as many.

    At most `max_hosts` hosts are tracked: when full, hosts whose bucket is full again
    (idle for a minute) are forgotten, and if none is, the oldest tracked half."""

    def __init__(
        self, per_minute: float, max_hosts: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._rate = per_minute / 60.0
        self._burst = per_minute
        self._max_hosts = max_hosts
        self._clock = clock
        self._hosts: dict[str, tuple[float, float]] = {}
        """Host -> (tokens, when they were counted)."""

    def take(self, host: str, wanted: int) -> int:
        """Take up to `wanted` units for `host`; how many it got."""
        now = self._clock()
        held = self._hosts.get(host)
        if held is None:
            self._make_room(now)
            tokens = self._burst
        else:
            tokens = min(self._burst, held[0] + (now - held[1]) * self._rate)
        granted = max(0, min(wanted, int(tokens)))
        self._hosts[host] = (tokens - granted, now)
        return granted

    def __len__(self) -> int:
        return len(self._hosts)

    def _make_room(self, now: float) -> None:
        if len(self._hosts) < self._max_hosts:
            return
        refill = self._burst / self._rate if self._rate else float("inf")
        self._hosts = {h: v for h, v in self._hosts.items() if now - v[1] < refill}
        if len(self._hosts) >= self._max_hosts:
            for host in list(self._hosts)[: self._max_hosts // 2]:
                del self._hosts[host]
