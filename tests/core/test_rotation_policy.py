"""When keys rotate: time, volume and compromise triggers, with their rate limit."""

from __future__ import annotations

import pytest

from app.core.errors import LocalProtocolError
from app.core.rotation_policy import (
    KeyKind,
    RotationPolicy,
    RotationReason,
    RotationSettings,
)

CFG = RotationSettings(
    session_max_age=3600, max_messages=10, max_bytes=10_000, failure_burst=3, min_interval=60
)


def test_time_rotates_sessions_and_the_48h_signed_prekey() -> None:
    policy = RotationPolicy(CFG)
    policy.track("bob", 0)
    policy.prekeys_created(0)
    assert policy.tick(3599) == []
    [due] = policy.tick(3600)
    assert due.contact == "bob" and due.reason is RotationReason.TIME
    assert due.keys == {KeyKind.SESSION, KeyKind.MAILBOX}
    assert policy.tick(3700) == []  # pending until the node says it rotated
    policy.rotated("bob", 3700)
    dues = policy.tick(48 * 3600)
    [prekeys] = [d for d in dues if d.contact is None]
    assert prekeys.keys == {KeyKind.PREKEYS} and prekeys.reason is RotationReason.TIME
    assert [d.contact for d in dues if d.contact] == ["bob"]  # its daily step again


def test_volume_messages_or_bytes() -> None:
    policy = RotationPolicy(CFG)
    policy.track("bob", 0)
    assert all(policy.message("bob", 10, 100 + i) == [] for i in range(9))
    [due] = policy.message("bob", 10, 110)
    assert due.reason is RotationReason.VOLUME
    policy.rotated("bob", 120)
    assert policy.message("bob", 20_000, 130) == []  # within min_interval: waits
    [due] = policy.message("bob", 1, 200)
    assert due.reason is RotationReason.VOLUME


@pytest.mark.parametrize("signal", ["alert", "replay", "failures"])
def test_compromise_signals_rotate_everything_at_once(signal: str) -> None:
    policy = RotationPolicy(CFG)
    policy.track("bob", 0)
    policy.rotated("bob", 0)
    if signal == "alert":
        dues = policy.alert("bob", 5)
    elif signal == "replay":
        dues = policy.replay("bob", 5)
    else:
        assert policy.failure("bob", 3) == [] and policy.failure("bob", 4) == []
        dues = policy.failure("bob", 5)
    [due] = dues
    assert due.keys == set(KeyKind)  # even inside min_interval
    assert policy.pending("bob") == due


def test_prekey_rotation_is_rate_limited_across_contacts() -> None:
    policy = RotationPolicy(CFG)
    [first] = policy.alert("bob", 0)
    [second] = policy.alert("carol", 10)
    assert KeyKind.PREKEYS in first.keys and KeyKind.PREKEYS not in second.keys


def test_failures_outside_the_window_do_not_add_up() -> None:
    policy = RotationPolicy(CFG)
    assert policy.failure("bob", 0) == [] and policy.failure("bob", 100) == []
    assert policy.failure("bob", 200) == []


def test_prekeys_never_live_longer_than_48h() -> None:
    with pytest.raises(LocalProtocolError):
        RotationSettings(prekey_max_age=49 * 3600)


def test_a_clock_stepped_back_from_a_wrong_date_holds_no_rotation_back() -> None:
    """Keys last rotated while the clock ran a year ahead: once the clock is corrected,
    those times lie a year in the future, and no time trigger fired for a year (the
    signed prekey, dated a year ahead, was refused by every peer all that time)."""
    year = 365 * 24 * 3600
    policy = RotationPolicy(CFG)
    policy.track("bob", year)
    policy.prekeys_created(year)
    dues = policy.tick(1000)
    assert {d.contact for d in dues} == {"bob", None}
    [prekeys] = [d for d in dues if d.contact is None]
    assert prekeys.keys == {KeyKind.PREKEYS}
    policy.rotated("bob", 1000)
    policy.prekeys_created(1000)
    assert policy.tick(1001) == []  # counted from the corrected clock again
    # a clock a few hours behind the one that rotated is no reason to rotate again
    policy.rotated("bob", 1000 + 3 * 3600)
    assert policy.tick(1002) == []
