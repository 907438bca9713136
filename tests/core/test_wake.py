"""Wake detection: a suspend shows as CLOCK_BOOTTIME (or the wall clock) running ahead of
the monotonic clock; late ticks, a busy loop and clock noise do not (fake clocks)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.core.errors import LocalProtocolError
from app.core.wake import (
    AddressesChanged,
    ClockReading,
    Resumed,
    WakeDetector,
    WakeSettings,
)


class FakeMachine:
    """Clocks of a machine that is awake (all advance) or suspended (monotonic stops)."""

    def __init__(self, *, boottime: bool = True) -> None:
        self.monotonic = 1000.0
        self.since_boot = 1000.0
        self.wall = 1_800_000_000.0
        self.boottime = boottime

    def awake(self, seconds: float) -> None:
        self.monotonic += seconds
        self.since_boot += seconds
        self.wall += seconds

    def suspend(self, seconds: float) -> None:
        self.since_boot += seconds
        self.wall += seconds

    def read(self) -> ClockReading:
        return ClockReading(self.monotonic, self.since_boot if self.boottime else None, self.wall)


@pytest.mark.parametrize("boottime", [True, False])
def test_a_31_s_suspend_is_one_wake_with_its_length(boottime: bool) -> None:
    machine = FakeMachine(boottime=boottime)
    detector = WakeDetector(machine.read())
    machine.awake(1.0)
    assert detector.tick(machine.read()) == []
    machine.awake(0.4)
    machine.suspend(31.0)
    machine.awake(0.6)
    events = detector.tick(machine.read())
    assert events == [Resumed(machine.monotonic, pytest.approx(31.0))]
    machine.awake(1.0)
    assert detector.tick(machine.read()) == []  # reported once


@pytest.mark.parametrize("boottime", [True, False])
def test_suspends_under_the_threshold_are_not_wakes(boottime: bool) -> None:
    """5 s is the threshold (app/core/wake.py says why): 4.9 s passes unnoticed, 5 s not."""
    machine = FakeMachine(boottime=boottime)
    detector = WakeDetector(machine.read())
    machine.suspend(4.9)
    machine.awake(1.0)
    assert detector.tick(machine.read()) == []
    machine.suspend(5.0)
    machine.awake(1.0)
    assert [type(e) for e in detector.tick(machine.read())] == [Resumed]


@pytest.mark.parametrize("boottime", [True, False])
def test_a_late_tick_or_a_busy_loop_is_not_a_wake(boottime: bool) -> None:
    """The event loop blocked for a minute, or ticks that come late: the machine was
    awake all along, so every clock advanced alike."""
    machine = FakeMachine(boottime=boottime)
    detector = WakeDetector(machine.read())
    for gap in (60.0, 3600.0, 0.001, 7.5):
        machine.awake(gap)
        assert detector.tick(machine.read()) == []


@given(
    gaps=st.lists(st.floats(min_value=0.0, max_value=600.0), min_size=1, max_size=30),
    drift=st.floats(min_value=-500e-6, max_value=500e-6),
)
def test_awake_ticks_with_ntp_slew_never_read_as_a_wake(gaps: list[float], drift: float) -> None:
    """Any tick spacing, and a wall clock slewed by NTP at its limit (500 ppm)."""
    machine = FakeMachine(boottime=False)
    detector = WakeDetector(machine.read())
    for gap in gaps:
        machine.awake(gap)
        machine.wall += gap * drift
        assert detector.tick(machine.read()) == []


def test_a_wall_clock_stepped_back_is_ignored_and_the_next_suspend_still_seen() -> None:
    machine = FakeMachine(boottime=False)
    detector = WakeDetector(machine.read())
    machine.wall -= 3600.0  # the user set the clock back an hour
    machine.awake(1.0)
    assert detector.tick(machine.read()) == []
    machine.suspend(60.0)
    machine.awake(1.0)
    assert detector.tick(machine.read()) == [Resumed(machine.monotonic, pytest.approx(60.0))]


def test_boottime_is_preferred_to_a_stepped_wall_clock() -> None:
    """With CLOCK_BOOTTIME, an NTP step of the wall clock is no wake (nor does it hide one)."""
    machine = FakeMachine()
    detector = WakeDetector(machine.read())
    machine.wall += 120.0
    machine.awake(1.0)
    assert detector.tick(machine.read()) == []
    machine.suspend(40.0)
    machine.wall -= 30.0
    machine.awake(1.0)
    assert detector.tick(machine.read()) == [Resumed(machine.monotonic, pytest.approx(40.0))]


def test_address_changes_after_the_baseline() -> None:
    machine = FakeMachine()
    home = frozenset({"192.0.2.10"})
    detector = WakeDetector(machine.read(), home)
    machine.awake(1.0)
    assert detector.tick(machine.read(), home) == []
    machine.awake(1.0)
    assert detector.tick(machine.read(), None) == []  # not read this tick
    machine.awake(1.0)
    office = frozenset({"198.51.100.7", "10.8.0.2"})
    assert detector.tick(machine.read(), office) == [
        AddressesChanged(machine.monotonic, office, home)
    ]
    machine.awake(1.0)
    assert detector.tick(machine.read(), frozenset()) == [
        AddressesChanged(machine.monotonic, frozenset(), office)
    ]


def test_the_first_address_set_is_the_baseline() -> None:
    machine = FakeMachine()
    detector = WakeDetector(machine.read())
    assert detector.tick(machine.read(), frozenset({"192.0.2.10"})) == []


def test_a_suspend_that_changed_networks_is_both_events() -> None:
    machine = FakeMachine()
    detector = WakeDetector(machine.read(), frozenset({"192.0.2.10"}))
    machine.suspend(3600.0)
    machine.awake(1.0)
    events = detector.tick(machine.read(), frozenset({"198.51.100.7"}))
    assert [type(e) for e in events] == [Resumed, AddressesChanged]


def test_settings_are_checked() -> None:
    with pytest.raises(LocalProtocolError):
        WakeSettings(min_sleep=0)
    machine = FakeMachine()
    detector = WakeDetector(machine.read(), settings=WakeSettings(min_sleep=30.0))
    machine.suspend(29.0)
    machine.awake(1.0)
    assert detector.tick(machine.read()) == []
