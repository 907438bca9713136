"""Prompt evaluations: which evidence schedules one, when it is due, and what bounds them."""

from __future__ import annotations

import numpy as np
import pytest

from app.core.errors import LocalProtocolError
from app.core.peer_features import N_SIGNALS, Signal
from app.core.prompt_scoring import PROMPT_DELAY, PROMPT_GAP, PROMPT_SIGNALS, PromptScoring


def test_evidence_of_an_attack_schedules_its_peer_and_ordinary_traffic_does_not() -> None:
    prompt = PromptScoring()
    for signal in Signal:
        prompt.note(f"p{signal.value}", signal, 100.0)
    assert prompt.get_timer() == pytest.approx(100.0 + PROMPT_DELAY)
    assert prompt.due(100.0) == []  # batched: not before the delay
    ready = prompt.due(100.0 + PROMPT_DELAY)
    assert sorted(ready) == sorted(f"p{s.value}" for s in PROMPT_SIGNALS)
    assert Signal.FRAME not in PROMPT_SIGNALS and Signal.DHT_STORE not in PROMPT_SIGNALS
    assert prompt.get_timer() is None and len(prompt) == 0


def test_a_flood_from_one_peer_costs_one_evaluation_per_gap() -> None:
    prompt = PromptScoring()
    evaluations = 0
    now = 0.0
    while now < 10.0:  # 1,000 garbled payloads a second for 10 s
        prompt.note("flooder", Signal.MALFORMED, now)
        timer = prompt.get_timer()
        if timer is not None and timer <= now:
            evaluations += len(prompt.due(now))
        now += 0.001
    assert 9 <= evaluations <= 10 / PROMPT_GAP + 1


def test_evidence_within_the_gap_is_scored_when_the_gap_ends_not_forgotten() -> None:
    prompt = PromptScoring()
    prompt.note("p", Signal.REPLAY, 10.0)
    assert prompt.due(10.0 + PROMPT_DELAY) == ["p"]
    prompt.note("p", Signal.REPLAY, 10.2)  # a second replay, inside the gap
    assert prompt.get_timer() == pytest.approx(10.0 + PROMPT_DELAY + PROMPT_GAP)
    assert prompt.due(10.9) == []
    assert prompt.due(10.0 + PROMPT_DELAY + PROMPT_GAP) == ["p"]


def test_waiting_peers_are_bounded_and_the_overflow_counted() -> None:
    prompt = PromptScoring(max_pending=8)
    for i in range(20):
        prompt.note(f"sybil{i}", Signal.HANDSHAKE_FAILED, 5.0)
    assert len(prompt) == 8 and prompt.overflow == 12
    assert len(prompt.due(6.0)) == 8
    assert prompt.note("sybil19", Signal.HANDSHAKE_FAILED, 6.0)  # room again


def test_what_is_remembered_of_peers_scored_promptly_stays_bounded() -> None:
    prompt = PromptScoring(max_pending=4)
    for i in range(1000):
        prompt.note(f"p{i}", Signal.DECRYPT_FAILED, float(i))
        prompt.due(float(i) + 1.0)
    assert len(prompt._last) <= 2 * 4 + 1


def test_settings_are_checked() -> None:
    with pytest.raises(LocalProtocolError):
        PromptScoring(gap=0)
    with pytest.raises(LocalProtocolError):
        PromptScoring(max_pending=0)


def test_the_simulator_scores_promptly_through_the_same_scheduler() -> None:
    """The benchmark's simulation (`tools.anomaly.simulator.replay`) adds a row when the
    node's scheduler says a prompt evaluation is due, and leaves the periodic rows as
    they were."""
    from tools.anomaly.simulator import PeerTrace, replay

    counts = np.zeros((20, N_SIGNALS))
    counts[:, Signal.FRAME] = 1
    counts[7, Signal.REPLAY] = 1  # one replay in second 7, and a burst in 12-14
    counts[12:15, Signal.DECRYPT_FAILED] = 5
    trace = PeerTrace("p", "transport", "replay", 100, 5, counts, 7)
    periodic = list(replay(trace, 2))
    both = list(replay(trace, 2, prompt=True))
    prompt_rows = [r for r in both if r not in periodic]
    assert [r.at for r in both if r in periodic] == [r.at for r in periodic]
    arrival = 0.5  # the simulator's events land mid-second
    assert [r.at for r in prompt_rows] == pytest.approx(
        [100 + s + arrival + PROMPT_DELAY for s in (7, 12, 13, 14)]
    )
