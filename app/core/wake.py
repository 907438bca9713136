"""Did the machine just sleep, or change networks? One state machine (sans-I/O).

The node reads its clocks and its interface addresses every tick and hands them in; this
module says when the readings mean the machine was suspended, or its addresses changed.
Either way connections may have died silently and peers may have come and gone: the
node then probes its links and dials its contacts at once (docs/protocol.md, section 5,
"Waking up").

**Suspend.** ``monotonic`` (CLOCK_MONOTONIC on Linux, mach_absolute_time on macOS) stops
while the machine sleeps; ``since_boot`` (Linux CLOCK_BOOTTIME) does not, nor does the
wall clock. Between two ticks both advance alike however late the tick is (a busy event
loop, a slow scheduler, a stopped process: all time the machine was awake), so the
*difference* of their advances is the time spent suspended. Without ``since_boot`` the
wall clock stands in; it can also be stepped (NTP, the user), which reads as a suspend
when forward: a false wake costs one PING per connection and a round of dials, so it is
accepted. A backward step is ignored.

**Threshold** (`WakeSettings.min_sleep`, 5 s). A suspend of 31 s outlasts the peers'
keepalive (PING every 5 s, dead after 5 s more of silence: the peer has closed our
connection after 10 s) and typical NAT mappings (~30 s): our side of every connection is
dead, and without this machine we would learn it only from our own keepalive, up to 10 s
later, and dial contacts only when their backoff says (up to 2 minutes). 5 s catches
every suspend long enough to have cost a connection while staying clear of clock noise:
CLOCK_BOOTTIME and CLOCK_MONOTONIC advance together within microseconds when awake, and
a wall clock slewed by NTP (at most 500 ppm) drifts 0.5 ms per second of tick gap; a
suspend shorter than 5 s leaves the peers' keepalive satisfied and costs nothing.

**Addresses.** The set of the machine's own addresses (non-loopback IPv4, the ones the
node publishes) compared with the previous tick: a new Wi-Fi network, a cable plugged
in, a VPN up or down. The first reading is the baseline.
"""

from __future__ import annotations

from dataclasses import dataclass

from app.core.errors import LocalProtocolError


@dataclass(frozen=True)
class WakeSettings:
    """Thresholds of `WakeDetector` (seconds)."""

    min_sleep: float = 5.0
    """Least time suspended between two ticks that counts as a sleep (see the module
    docstring for the choice)."""

    def __post_init__(self) -> None:
        if self.min_sleep <= 0:
            raise LocalProtocolError("min_sleep must be positive")


@dataclass(frozen=True)
class ClockReading:
    """The clocks read at one tick (seconds)."""

    monotonic: float
    """Stops while the machine is suspended (the event loop's clock)."""
    since_boot: float | None
    """Runs on while suspended (Linux CLOCK_BOOTTIME); None where there is none."""
    wall: float
    """The wall clock (time.time()): the stand-in when `since_boot` is None."""


@dataclass(frozen=True)
class Resumed:
    """The machine woke up at `at` (monotonic) after about `slept` seconds suspended."""

    at: float
    slept: float


@dataclass(frozen=True)
class AddressesChanged:
    """The machine's addresses changed at `at` (monotonic)."""

    at: float
    added: frozenset[str]
    removed: frozenset[str]


WakeEvent = Resumed | AddressesChanged


class WakeDetector:
    """Turns successive clock readings and address sets into `WakeEvent`s."""

    def __init__(
        self,
        first: ClockReading,
        addresses: frozenset[str] | None = None,
        settings: WakeSettings | None = None,
    ) -> None:
        self.settings = settings or WakeSettings()
        self._last = first
        self._addresses = addresses

    def suspended_between(self, before: ClockReading, after: ClockReading) -> float:
        """Seconds the machine spent suspended between two readings (0 if none seen)."""
        awake = after.monotonic - before.monotonic
        if before.since_boot is not None and after.since_boot is not None:
            elapsed = after.since_boot - before.since_boot
        else:
            elapsed = after.wall - before.wall
        return max(0.0, elapsed - awake)

    def tick(
        self, reading: ClockReading, addresses: frozenset[str] | None = None
    ) -> list[WakeEvent]:
        """Take the readings of one tick; the events they reveal (usually none).

        `addresses` None means "not read this tick" (the last set stays the baseline)."""
        events: list[WakeEvent] = []
        slept = self.suspended_between(self._last, reading)
        if reading.monotonic >= self._last.monotonic:
            self._last = reading
        if slept >= self.settings.min_sleep:
            events.append(Resumed(reading.monotonic, slept))
        if addresses is not None:
            before, self._addresses = self._addresses, addresses
            if before is not None and addresses != before:
                events.append(
                    AddressesChanged(reading.monotonic, addresses - before, before - addresses)
                )
        return events
