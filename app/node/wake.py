"""Ticks the wake detector: reads the clocks and the machine's addresses every second
and tells the node's parts when the machine woke up or changed networks.

The decisions are `app.core.wake.WakeDetector`'s; this module only reads (the clocks
and the address set are injectable, so tests report a suspend without one) and calls
the subscribed handlers. A tick costs two clock reads and one `getifaddrs` (~0.2 ms).
The asyncio loop's clock is the monotonic one, which stops while the machine sleeps: a
tick due during a suspend comes at most `TICK_SECONDS` after the wake.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import time
from collections.abc import Callable

from app.core.wake import AddressesChanged, ClockReading, Resumed, WakeDetector, WakeEvent
from app.node.dht import interface_addresses
from app.node.futures import cancel_and_wait

log = logging.getLogger(__name__)

TICK_SECONDS = 1.0
"""How often the clocks and addresses are read (the delay before a wake is noticed)."""

WakeHandler = Callable[[WakeEvent], None]


def read_clocks() -> ClockReading:
    """The monotonic clock, CLOCK_BOOTTIME where the OS has it (Linux), the wall clock."""
    boottime = getattr(time, "CLOCK_BOOTTIME", None)
    since_boot = time.clock_gettime(boottime) if boottime is not None else None
    return ClockReading(time.monotonic(), since_boot, time.time())


def own_addresses() -> frozenset[str]:
    """The machine's non-loopback IPv4 addresses (those the node may publish; IPv6
    temporary addresses rotate on their own and would read as network changes)."""
    return frozenset(a for a in interface_addresses() if not ipaddress.ip_address(a).is_loopback)


class WakeWatcher:
    """Reports `Resumed` and `AddressesChanged` to its subscribers (see the module doc)."""

    def __init__(
        self,
        *,
        interval: float = TICK_SECONDS,
        clocks: Callable[[], ClockReading] = read_clocks,
        addresses: Callable[[], frozenset[str]] = own_addresses,
        detector: WakeDetector | None = None,
    ) -> None:
        self._interval = interval
        self._clocks = clocks
        self._addresses = addresses
        self._detector = detector
        self._handlers: list[WakeHandler] = []
        self._task: asyncio.Task[None] | None = None

    def subscribe(self, handler: WakeHandler) -> None:
        """Call `handler(event)` on every wake or address change (handlers start their
        own tasks for slow work)."""
        self._handlers.append(handler)

    def start(self) -> None:
        """Take the first readings (the baseline) and tick in the background."""
        if self._detector is None:
            self._detector = WakeDetector(self._clocks(), self._read_addresses())
        self._task = asyncio.ensure_future(self._run())

    async def stop(self) -> None:
        """Stop ticking."""
        task, self._task = self._task, None
        await cancel_and_wait(task)

    def _read_addresses(self) -> frozenset[str] | None:
        try:
            return self._addresses()
        except OSError as exc:  # no address this tick: compare again at the next
            log.debug("reading the interface addresses failed: %s", exc)
            return None

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            self.tick()

    def tick(self) -> list[WakeEvent]:
        """Read once and report what the readings reveal (the events, for tests)."""
        if self._detector is None:
            self._detector = WakeDetector(self._clocks(), self._read_addresses())
            return []
        events = self._detector.tick(self._clocks(), self._read_addresses())
        for event in events:
            if isinstance(event, Resumed):
                log.info("the machine woke up after %.0f s asleep; reconnecting", event.slept)
            elif isinstance(event, AddressesChanged):
                log.info(
                    "the machine's addresses changed (%d new, %d gone); reconnecting",
                    len(event.added),
                    len(event.removed),
                )
            for handler in list(self._handlers):
                try:
                    handler(event)
                except Exception:  # one broken part must not keep the others asleep
                    log.exception("a wake handler failed")
        return events
