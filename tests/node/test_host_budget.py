"""The per-host token bucket that bounds the work strangers can ask of a node."""

from __future__ import annotations

from app.node.host_budget import HostBudget


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_host_gets_its_burst_then_what_refills_and_others_their_own() -> None:
    clock = Clock()
    budget = HostBudget(60, max_hosts=8, clock=clock)
    assert budget.take("10.0.0.1", 100) == 60
    assert budget.take("10.0.0.1", 5) == 0
    assert budget.take("10.0.0.2", 5) == 5
    clock.now += 10  # one a second
    assert budget.take("10.0.0.1", 100) == 10
    clock.now += 3600  # never more than the burst
    assert budget.take("10.0.0.1", 100) == 60


def test_made_up_hosts_are_forgotten_idle_first_and_never_exceed_the_cap() -> None:
    clock = Clock()
    budget = HostBudget(60, max_hosts=8, clock=clock)
    budget.take("busy", 60)
    for i in range(7):
        budget.take(f"idle{i}", 1)
        clock.now += 0.1
    clock.now += 61  # the idle ones refilled; "busy" took its last 60 s before them
    budget.take("busy", 1)
    budget.take("new", 1)
    assert len(budget) == 2  # the full (idle) buckets went
    for i in range(100):
        budget.take(f"made-up{i}", 1)
        assert len(budget) <= 8
