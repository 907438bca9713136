"""Judging our own clock from our contacts' (app.core.clock_check)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from app.core.clock_check import (
    MAX_CONTACTS,
    WARN_MS,
    WINDOW_S,
    ClockCheck,
    ClockVerdict,
    describe_offset,
)

HOUR = 3_600_000
NOW = 1_800_000_000_000  # our wall clock (ms)


def heard(
    check: ClockCheck, contact: str, ahead_ms: int, delay_ms: int = 0, at: float = 100.0
) -> None:
    """`contact`'s message, sealed when our clock read `ahead_ms` more than its clock,
    arrives `delay_ms` later at monotonic time `at`."""
    wall = NOW + int(at * 1000)
    check.sample(contact, wall - delay_ms - ahead_ms, wall, at)


def verdict(check: ClockCheck, at: float = 100.0) -> ClockVerdict | None:
    return check.verdict(NOW + int(at * 1000), at)


def test_one_contact_alone_cannot_say_whose_clock_is_wrong() -> None:
    check = ClockCheck()
    heard(check, "bob", 3 * HOUR)
    assert verdict(check) is None


def test_two_contacts_agreeing_say_our_clock_is_off() -> None:
    check = ClockCheck()
    heard(check, "bob", 3 * HOUR, delay_ms=40)
    heard(check, "carol", 3 * HOUR, delay_ms=10)
    found = verdict(check)
    assert found is not None
    assert abs(found.offset_ms - 3 * HOUR) <= 40
    assert (found.agreeing, found.heard) == (2, 2)


def test_a_clock_behind_is_told_too() -> None:
    check = ClockCheck()
    heard(check, "bob", -26 * HOUR)
    heard(check, "carol", -26 * HOUR)
    found = verdict(check)
    assert found is not None and found.offset_ms < 0
    assert describe_offset(found.offset_ms) == "about 26 hours behind"


def test_one_contact_with_a_wild_clock_does_not_make_ours_wrong() -> None:
    check = ClockCheck()
    heard(check, "bob", 0)
    heard(check, "carol", 0)
    heard(check, "mallory", -365 * 24 * HOUR)  # Mallory's clock is a year ahead
    assert verdict(check) is None


def test_half_of_the_contacts_is_not_enough() -> None:
    check = ClockCheck()
    for name, off in (("a", 5 * HOUR), ("b", 5 * HOUR), ("c", 0), ("d", 0)):
        heard(check, name, off)
    assert verdict(check) is None
    heard(check, "e", 5 * HOUR)
    assert verdict(check) is not None


def test_minutes_of_drift_are_not_worth_a_warning() -> None:
    check = ClockCheck()
    heard(check, "bob", WARN_MS - 60_000)
    heard(check, "carol", WARN_MS - 60_000)
    assert verdict(check) is None


@given(
    offset=st.integers(-400 * HOUR, 400 * HOUR),
    delays=st.lists(st.integers(0, 48 * HOUR), min_size=1, max_size=20),
)
def test_delay_never_makes_the_estimate_smaller_and_the_least_delayed_sample_sets_it(
    offset: int, delays: list[int]
) -> None:
    """A message delivered late (queued behind a file, say) adds its delay to `d`;
    the estimate is the true offset plus the smallest delay among recent samples."""
    check = ClockCheck()
    for i, delay in enumerate(delays):
        heard(check, "bob", offset, delay_ms=delay, at=100.0 + i)
    assert check.estimates(NOW + 100_000, 100.0)["bob"] == offset + min(delays)


def test_a_late_sample_does_not_hide_a_recent_one_but_old_ones_age_out() -> None:
    check = ClockCheck()
    heard(check, "bob", 5 * HOUR, at=100.0)  # before the user set the clock right...
    heard(check, "bob", 0, delay_ms=20, at=100.0 + WINDOW_S + 1)  # ... a fresh one
    assert check.estimates(NOW + int((101 + WINDOW_S) * 1000), 101 + WINDOW_S)["bob"] == 20


def test_samples_taken_before_our_clock_stepped_are_dropped() -> None:
    """The user sets the clock right (3 h back): what was measured before says nothing
    of the clock now, and the warning clears at once."""
    check = ClockCheck()
    heard(check, "bob", 3 * HOUR)
    heard(check, "carol", 3 * HOUR)
    assert verdict(check) is not None
    # same monotonic time, the wall clock 3 h earlier
    assert check.verdict(NOW + 100_000 - 3 * HOUR, 100.0) is None
    assert check.estimates(NOW + 100_000 - 3 * HOUR, 100.0) == {}


def test_a_warning_clears_only_well_under_the_line() -> None:
    check = ClockCheck()
    heard(check, "bob", WARN_MS + 60_000)
    heard(check, "carol", WARN_MS + 60_000)
    assert verdict(check) is not None
    # the estimates fall just under the line, then far under it
    heard(check, "bob", WARN_MS - 60_000, at=200.0 + WINDOW_S)
    heard(check, "carol", WARN_MS - 60_000, at=200.0 + WINDOW_S)
    assert verdict(check, 200.0 + WINDOW_S) is not None
    heard(check, "bob", 0, at=300.0 + 2 * WINDOW_S)
    heard(check, "carol", 0, at=300.0 + 2 * WINDOW_S)
    assert verdict(check, 300.0 + 2 * WINDOW_S) is None


def test_a_removed_contact_counts_no_more() -> None:
    check = ClockCheck()
    heard(check, "bob", 3 * HOUR)
    heard(check, "carol", 3 * HOUR)
    check.forget("carol")
    assert verdict(check) is None


def test_memory_stays_bounded_whatever_the_number_of_contacts() -> None:
    check = ClockCheck()
    for i in range(MAX_CONTACTS + 50):
        for _ in range(3):
            heard(check, f"c{i}", 0)
    assert len(check.estimates(NOW + 100_000, 100.0)) == MAX_CONTACTS


def test_offsets_read_as_a_person_would_say_them() -> None:
    assert describe_offset(3 * HOUR + 60_000) == "about 3 hours ahead"
    assert describe_offset(-75 * 60_000) == "about 75 minutes behind"
    assert describe_offset(3 * 24 * HOUR) == "about 3 days ahead"
