"""Link liveness: keepalive cadence when idle, a quick probe when an answer meets silence,
no false verdict on a slow link that still talks (fake time throughout)."""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.core.errors import LocalProtocolError
from app.core.liveness import (
    AnswerAwaited,
    Heard,
    LinkDead,
    LinkLiveness,
    LivenessSettings,
    PingKind,
    PingSent,
    PongReceived,
    SendPing,
    Suspected,
    Wait,
)

NODE = LivenessSettings(keepalive_interval=5.0, keepalive_timeout=5.0)
"""What the node runs with (app/node/network.py)."""


@dataclass
class Link:
    """A simulated peer behind a link: answers PINGs after `rtt` while the link is up
    (`cut_at`: from then on nothing crosses, either way); `frames`: times at which the
    peer's other frames arrive; `awaits`: times at which we send something awaiting an
    answer."""

    rtt: float = 0.05
    cut_at: float = float("inf")
    frames: list[float] = field(default_factory=list)
    awaits: list[float] = field(default_factory=list)
    suspects: list[float] = field(default_factory=list)
    pings: list[tuple[float, PingKind]] = field(default_factory=list)
    dead_at: float | None = None
    reason: str = ""

    def run(self, liveness: LinkLiveness, until: float, start: float = 0.0) -> Link:
        """Drive `liveness` from `start` to `until` (or until it declares the link dead)."""
        inputs: list[tuple[float, int, object]] = []
        serial = 0

        def push(at: float, event: object) -> None:
            nonlocal serial
            serial += 1
            heapq.heappush(inputs, (at, serial, event))

        for at in self.frames:
            if at < self.cut_at - self.rtt / 2:  # sent by the peer before the cut
                push(at, Heard(at))
        for at in self.awaits:
            push(at, AnswerAwaited(at))
        for at in self.suspects:
            push(at, Suspected(at))
        now = start
        while now <= until:
            while inputs and inputs[0][0] <= now:
                _, _, event = heapq.heappop(inputs)
                liveness.handle(event)  # type: ignore[arg-type]
            verdict = liveness.poll(now)
            if isinstance(verdict, LinkDead):
                self.dead_at, self.reason = now, verdict.reason
                return self
            if isinstance(verdict, SendPing):
                self.pings.append((now, verdict.kind))
                liveness.handle(PingSent(now))
                if now + self.rtt / 2 < self.cut_at:
                    push(now + self.rtt, PongReceived(now + self.rtt, now))
                continue
            assert isinstance(verdict, Wait) and verdict.until > now
            now = min(verdict.until, inputs[0][0] if inputs else verdict.until)
        return self


def test_an_idle_link_keeps_the_keepalive_cadence_and_nothing_more() -> None:
    """Before this module: PING, PONG, sleep `keepalive_interval`, PING... The same
    number of PINGs per day, and no probe."""
    day = 86_400.0
    link = Link(rtt=0.002).run(LinkLiveness(NODE, 0.0), day)
    assert link.dead_at is None
    assert {kind for _, kind in link.pings} == {PingKind.KEEPALIVE}
    old_loop = int(day // (NODE.keepalive_interval + 0.002)) + 1
    assert len(link.pings) == old_loop
    gaps = {round(b - a, 6) for (a, _), (b, _) in zip(link.pings, link.pings[1:], strict=False)}
    assert gaps == {NODE.keepalive_interval + 0.002}


def test_an_idle_dead_link_is_noticed_by_the_keepalive_as_before() -> None:
    link = Link(rtt=0.002, cut_at=100.0).run(LinkLiveness(NODE, 0.0), 200.0)
    assert link.reason == "keepalive timeout"
    assert link.dead_at is not None and 100.0 < link.dead_at <= 100.0 + 10.0 + 0.01


def test_a_silent_link_with_an_answer_awaited_is_probed_and_dropped_in_about_four_seconds() -> None:
    # cut just after a keepalive PONG (the keepalive's worst case: ~10 s)
    cut = 20.02
    awaited = Link(rtt=0.002, cut_at=cut, awaits=[cut + 0.1])
    awaited.run(LinkLiveness(NODE, 0.0), 100.0)
    idle = Link(rtt=0.002, cut_at=cut).run(LinkLiveness(NODE, 0.0), 100.0)
    assert awaited.dead_at is not None and idle.dead_at is not None
    assert awaited.reason == "no answer: the link went silent"
    assert awaited.dead_at == pytest.approx(cut + 0.1 + 2.0 + 2.0)
    assert idle.dead_at - cut > 9.0
    assert [kind for at, kind in awaited.pings if at > cut] == [PingKind.PROBE]


def test_any_frame_counts_as_life() -> None:
    """The peer's frames (data, cover) come every 1.5 s: no probe at all. Every 3 s: a
    probe now and then, never a verdict."""
    frames = [i * 1.5 for i in range(1, 200)]
    link = Link(rtt=0.05, frames=frames, awaits=[10.0, 50.0, 120.0])
    link.run(LinkLiveness(NODE, 0.0), 290.0)
    assert link.dead_at is None
    assert all(kind is PingKind.KEEPALIVE for _, kind in link.pings)

    # PONGs lost (the peer never answers PINGs) but its frames keep coming every 3 s
    sparse = Link(rtt=0.05, cut_at=0.0, awaits=[10.0, 50.0, 120.0])
    sparse.frames = [i * 3.0 for i in range(1, 100)]
    sparse.cut_at = float("inf")
    liveness = LinkLiveness(NODE, 0.0)
    sparse.run(liveness, 290.0)
    assert sparse.dead_at is None


def test_a_pong_after_the_awaited_frame_ends_the_wait() -> None:
    """The peer is alive but never answers the message (or answers late): one probe,
    then the usual keepalive, not a probe every two seconds."""
    link = Link(rtt=0.05, awaits=[7.0]).run(LinkLiveness(NODE, 0.0), 60.0)
    probes = [at for at, kind in link.pings if kind is PingKind.PROBE]
    assert probes == [pytest.approx(9.0)]
    assert link.dead_at is None


def test_a_keepalive_pong_in_time_makes_the_probe_unneeded() -> None:
    liveness = LinkLiveness(NODE, 0.0)
    liveness.handle(PingSent(0.0))
    liveness.handle(PongReceived(0.01, 0.0))
    liveness.handle(AnswerAwaited(4.0))
    liveness.handle(PingSent(5.01))  # the keepalive leaves after the awaited frame
    liveness.handle(PongReceived(5.02, 5.01))
    assert not liveness.awaiting
    assert liveness.poll(6.5) == Wait(10.02)


def test_a_pong_to_an_older_ping_proves_life_but_not_delivery() -> None:
    liveness = LinkLiveness(NODE, 0.0)
    liveness.handle(PingSent(0.4))
    liveness.handle(AnswerAwaited(0.5))
    liveness.handle(PongReceived(0.6, 0.4))
    assert liveness.awaiting
    assert liveness.poll(1.0) == Wait(0.6 + 2.0)
    assert liveness.poll(2.6) == SendPing(PingKind.PROBE)


def test_the_timeouts_grow_with_the_measured_round_trip() -> None:
    """A slow link (1.5 s round trips, e.g. a queue behind a file transfer): a probe
    only after three RTOs of silence, and three more before a verdict."""
    liveness = LinkLiveness(NODE, 0.0)
    for i in range(5):
        liveness.handle(PingSent(i * 10.0))
        liveness.handle(PongReceived(i * 10.0 + 1.5, i * 10.0))
    rto = liveness.rto
    assert rto is not None and 1.5 < rto < 3.0
    assert liveness.silence == liveness.probe_timeout == pytest.approx(3 * rto)
    link = Link(rtt=1.5, cut_at=45.0, awaits=[45.0]).run(liveness, 100.0, start=41.5)
    assert link.dead_at is not None
    assert 45.0 + 3 * rto < link.dead_at <= 45.0 + 2 * 3 * rto + 0.01


def test_a_slow_link_is_not_cut() -> None:
    """600 ms round trips, 2.5 s between the peer's frames (a 1 mbit link busy with a
    file: one block every few seconds), messages awaiting answers all along."""
    frames = [i * 2.5 for i in range(1, 400)]
    awaits = [i * 0.7 for i in range(1, 1400)]
    link = Link(rtt=0.6, frames=frames, awaits=awaits).run(LinkLiveness(NODE, 0.0), 990.0)
    assert link.dead_at is None


@settings(max_examples=200, deadline=None)
@given(
    rtt=st.floats(0.001, 4.0),
    gap=st.floats(0.05, 3.9),
    awaits=st.lists(st.floats(0.0, 300.0), max_size=30),
)
def test_a_live_link_is_never_declared_dead(rtt: float, gap: float, awaits: list[float]) -> None:
    """Alive = PINGs answered after `rtt` (<= the keepalive timeout) and, when the
    peer says anything, gaps shorter than silence + probe timeout."""
    frames = [gap * i for i in range(1, int(300 / gap))]
    link = Link(rtt=rtt, frames=frames, awaits=sorted(awaits)).run(LinkLiveness(NODE, 0.0), 300.0)
    assert link.dead_at is None


@settings(max_examples=200, deadline=None)
@given(cut=st.floats(1.0, 200.0), awaited=st.floats(0.0, 3.0), rtt=st.floats(0.001, 0.3))
def test_a_dead_link_with_an_answer_awaited_is_dropped_within_five_seconds(
    cut: float, awaited: float, rtt: float
) -> None:
    link = Link(rtt=rtt, cut_at=cut, awaits=[cut + awaited]).run(LinkLiveness(NODE, 0.0), 400.0)
    assert link.dead_at is not None
    assert link.dead_at - (cut + awaited) <= 4.0 + 3 * 3 * rtt + 0.01


def test_settings_are_checked() -> None:
    with pytest.raises(LocalProtocolError):
        LivenessSettings(probe_after=0)
    with pytest.raises(LocalProtocolError):
        LivenessSettings(rtt_factor=-1)


# ---------------------------------------------------------------------- network changes


def test_a_link_that_died_in_a_sleep_is_dropped_a_probe_timeout_after_the_wake() -> None:
    """The machine slept through the keepalive (cut just after a PONG, the keepalive's
    worst case) and says so at 20.5: probed at once, dead 2 s later instead of ~10 s."""
    cut, woke = 20.02, 20.5
    suspected = Link(rtt=0.002, cut_at=cut, suspects=[woke]).run(LinkLiveness(NODE, 0.0), 100.0)
    unaware = Link(rtt=0.002, cut_at=cut).run(LinkLiveness(NODE, 0.0), 100.0)
    assert suspected.reason == "no answer after the network changed"
    assert suspected.dead_at == pytest.approx(woke + NODE.probe_timeout_min)
    assert unaware.dead_at is not None and unaware.dead_at - woke > 9.0
    assert [kind for at, kind in suspected.pings if at >= woke] == [PingKind.PROBE]


def test_a_live_link_survives_a_network_change_with_one_ping() -> None:
    link = Link(rtt=0.05, suspects=[7.0, 33.3]).run(LinkLiveness(NODE, 0.0), 120.0)
    assert link.dead_at is None
    probes = [at for at, kind in link.pings if kind is PingKind.PROBE]
    assert probes == [7.0, 33.3]
    # the keepalive cadence resumes from the probe's PONG
    after = [at for at, _ in link.pings if at > 7.0]
    assert after[0] == pytest.approx(7.0 + 0.05 + NODE.keepalive_interval)


def test_a_change_while_a_keepalive_ping_is_out_sends_a_fresh_one() -> None:
    """The PING out may have been lost in the change: a new one goes at once, and the
    link counts as dead a probe timeout after it, not after the old PING's allowance."""
    liveness = LinkLiveness(NODE, 0.0)
    assert liveness.poll(0.0) == SendPing(PingKind.KEEPALIVE)
    liveness.handle(PingSent(0.0))
    liveness.handle(Suspected(0.5))
    assert liveness.suspected
    assert liveness.poll(0.5) == SendPing(PingKind.PROBE)
    liveness.handle(PingSent(0.5))
    assert liveness.poll(0.6) == Wait(0.5 + NODE.probe_timeout_min)
    assert liveness.poll(2.5) == LinkDead("no answer after the network changed")


def test_a_frame_heard_after_the_change_clears_the_suspicion() -> None:
    liveness = LinkLiveness(NODE, 0.0)
    liveness.handle(Suspected(10.0))
    assert liveness.poll(10.0) == SendPing(PingKind.PROBE)
    liveness.handle(PingSent(10.0))
    liveness.handle(Heard(9.9))  # from before the change: proves nothing
    assert liveness.suspected
    liveness.handle(Heard(10.2))  # a data frame after it: the link survived
    assert not liveness.suspected
    assert not isinstance(liveness.poll(12.5), LinkDead)


def test_a_slow_link_gets_a_probe_timeout_scaled_to_its_round_trip() -> None:
    link = Link(rtt=1.5, suspects=[40.0]).run(LinkLiveness(NODE, 0.0), 120.0)
    assert link.dead_at is None
