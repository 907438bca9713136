"""The response state machine: rate limit, quarantine with expiry, release; never drop."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.core.errors import LocalProtocolError
from app.core.peer_policy import Admission, PeerPolicy, PolicySettings, Standing, peer_kind

CFG = PolicySettings(
    limit_score=0.5,
    quarantine_score=0.9,
    quarantine_seconds=60,
    max_quarantine_seconds=600,
    probation_seconds=30,
    forgive_seconds=3600,
    rate=2.0,
    burst=4.0,
)


def test_calm_peers_are_not_even_remembered() -> None:
    policy = PeerPolicy(CFG)
    assert policy.assess("p", 0.1, 0) == []
    assert policy.standing("p") is Standing.NORMAL and policy.flagged() == {}
    assert policy.admit("p", 0) is Admission.DELIVER


def test_rate_limit_then_calm_returns_to_normal() -> None:
    policy = PeerPolicy(CFG)
    [change] = policy.assess("p", 0.6, 100)
    assert (change.old, change.new) == (Standing.NORMAL, Standing.RATE_LIMITED)
    admitted = [policy.admit("p", 100.0) for _ in range(10)]
    assert admitted.count(Admission.DELIVER) == 4  # the burst, then queue
    assert policy.next_admission("p", 100.0) == 0.5
    assert policy.admit("p", 100.5) is Admission.DELIVER
    assert policy.assess("p", 0.1, 110) == []  # not calm long enough
    [back] = policy.assess("p", 0.1, 131)
    assert back.new is Standing.NORMAL


def test_quarantine_expires_into_probation_and_doubles_on_repeat() -> None:
    policy = PeerPolicy(CFG)
    [q] = policy.assess("p", 0.95, 0)
    assert q.new is Standing.QUARANTINED and q.until == 60
    assert policy.admit("p", 10) is Admission.QUEUE
    assert policy.get_timer() == 60
    assert policy.handle_timer(59) == []
    [released] = policy.handle_timer(60)
    assert (released.old, released.new) == (Standing.QUARANTINED, Standing.RATE_LIMITED)
    [again] = policy.assess("p", 0.99, 70)
    assert again.until == 70 + 120  # second offence: twice as long
    policy.handle_timer(190)
    assert policy.standing("p") is Standing.RATE_LIMITED
    [normal] = policy.handle_timer(190 + 30)
    assert normal.new is Standing.NORMAL


def test_quarantine_is_capped_and_the_user_can_release() -> None:
    policy = PeerPolicy(CFG)
    now = 0.0
    for _ in range(8):
        [q] = policy.assess("p", 1.0, now)
        assert q.until is not None and q.until - now <= CFG.max_quarantine_seconds
        now = q.until
        policy.handle_timer(now)
    [released] = policy.release("p", now)
    assert released.new is Standing.NORMAL and policy.standing("p") is Standing.NORMAL


@settings(max_examples=80, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 1), st.floats(0, 30)), max_size=40))
def test_every_change_is_reported_once_and_standing_follows(
    steps: list[tuple[float, float]],
) -> None:
    """Invariants: each reported change starts where the previous one ended; quarantine
    never admits; a quarantine always ends (a timer exists) and never outlasts the cap."""
    policy = PeerPolicy(CFG)
    now = 0.0
    standing = Standing.NORMAL
    for score, dt in steps:
        now += dt
        for change in [*policy.handle_timer(now), *policy.assess("p", score, now)]:
            assert change.old is standing
            standing = change.new
            if change.new is Standing.QUARANTINED:
                assert change.until is not None
                assert 0 < change.until - now <= CFG.max_quarantine_seconds
        assert policy.standing("p") is standing
        if standing is Standing.QUARANTINED:
            assert policy.admit("p", now) is Admission.QUEUE
            assert policy.get_timer() is not None


def test_tracked_peers_are_bounded_calm_ones_forgotten_first() -> None:
    """A flagged peer was remembered for an hour after it calmed down (its strikes),
    and DHT senders (one per source port) and strangers cost nothing to make up: the
    table grew with every made-up peer that got itself flagged. At most `max_tracked`
    are remembered; calm ones go first, then the longest tracked."""
    policy = PeerPolicy(CFG, max_tracked=64)
    policy.assess("calm", CFG.limit_score, 0.0)
    policy.assess("calm", 0.0, CFG.probation_seconds)  # rate-limited, then calm: kept
    assert len(policy) == 1 and policy.standing("calm") is Standing.NORMAL
    policy.assess("early", CFG.quarantine_score, 100.0)
    for n in range(62):
        policy.assess(f"dht:192.0.2.7:{n}", CFG.quarantine_score, 100.0)
    assert len(policy) == 64
    policy.assess("newest", CFG.quarantine_score, 101.0)
    assert len(policy) == 64 and policy.standing("early") is Standing.QUARANTINED
    for n in range(62, 1000):
        policy.assess(f"dht:192.0.2.7:{n}", CFG.quarantine_score, 102.0)
        assert len(policy) <= 64
    assert policy.standing("dht:192.0.2.7:999") is Standing.QUARANTINED
    assert policy.standing("early") is Standing.NORMAL  # forgotten, the longest tracked


KINDS = PolicySettings(
    limit_score=0.5,
    quarantine_score=0.9,
    probation_seconds=30,
    limit_by_kind=(("dht", 0.7), ("transport", 0.3)),
)


def test_each_peer_kind_is_rate_limited_at_its_own_threshold() -> None:
    assert peer_kind("dht:10.0.0.1:4000") == "dht" and peer_kind("eggme:abc") == "transport"
    policy = PeerPolicy(KINDS)
    assert policy.assess("dht:10.0.0.1:4000", 0.6, 0) == []  # under the DHT senders' 0.7
    [change] = policy.assess("contact", 0.35, 0)  # over the transport peers' 0.3
    assert change.new is Standing.RATE_LIMITED
    [change] = policy.assess("dht:10.0.0.1:4000", 0.7, 2)
    assert change.new is Standing.RATE_LIMITED
    # probation judges each peer against its own limit too: 0.6 keeps a DHT sender
    # calm, 0.35 keeps a transport peer restricted
    policy.assess("dht:10.0.0.1:4000", 0.6, 5)
    policy.assess("contact", 0.35, 5)
    changes = policy.handle_timer(40)
    assert [(c.peer, c.new) for c in changes] == [("dht:10.0.0.1:4000", Standing.NORMAL)]
    assert policy.standing("contact") is Standing.RATE_LIMITED
    [quarantined] = policy.assess("dht:10.0.0.1:4000", 0.95, 50)  # one quarantine for all
    assert quarantined.new is Standing.QUARANTINED


def test_without_per_kind_thresholds_one_limit_applies_to_every_peer() -> None:
    assert CFG.limit_for("dht:10.0.0.1:4000") == CFG.limit_for("contact") == 0.5
    assert KINDS.limit_for("dht:1.2.3.4:5") == 0.7 and KINDS.limit_for("x") == 0.3


@pytest.mark.parametrize(
    "limits",
    [(("dht", 0.95),), (("dht", 0.0),), (("dht", 0.5), ("dht", 0.6)), (("relay", 0.5),)],
)
def test_per_kind_thresholds_are_checked(limits: tuple[tuple[str, float], ...]) -> None:
    with pytest.raises(LocalProtocolError):
        PolicySettings(limit_score=0.5, quarantine_score=0.9, limit_by_kind=limits)
