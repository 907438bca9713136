"""Core shaper properties: bucket sizes only, payloads intact and in order, cover dropped."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.core.shaping import (
    DORMANT,
    DORMANT_AFTER,
    MODE_SCHEDULES,
    SCHEDULES,
    KeyedStream,
    Reassembler,
    ShapedChannel,
    ShapedSender,
    ShapingError,
    bucket_sizes,
    encode_fragment,
)
from app.core.wire import Frame, FrameDecoder, FrameType


def drive(
    sender: ShapedSender, messages: list[bytes], picks: list[int], now: float = 0.0
) -> tuple[list[bytes], float]:
    """Enqueue `messages`, then run slots (choosing `picks` each window) until all left."""
    for m in messages:
        sender.enqueue(m, now)
    wire: list[bytes] = []
    window_end = now + 1.0
    i = 0
    for _ in range(200_000):
        if sender.backlog == 0 and not sender.pending_tokens() and len(wire) > 3:
            break
        if now >= window_end:
            sender.features(now)
            sender.choose(picks[i % len(picks)] if picks else 0, now)
            sender.close_window(now)
            i += 1
            window_end = now + 1.0
        at = sender.next_slot_at()
        now = max(now, at) if at is not None else window_end
        if at is not None and at <= now:
            result = sender.slot(now)
            if result.frame is not None:
                wire.append(result.frame.encode())
    return wire, now


@settings(max_examples=60, deadline=None)
@given(
    mode=st.sampled_from(["balanced", "strict"]),
    messages=st.lists(st.binary(max_size=40_000), min_size=1, max_size=8),
    picks=st.lists(st.integers(min_value=-2, max_value=6), max_size=6),
    seed=st.binary(min_size=32, max_size=32),
)
def test_wire_sizes_are_buckets_and_payloads_arrive_in_order(
    mode: str, messages: list[bytes], picks: list[int], seed: bytes
) -> None:
    sender = ShapedSender(mode, seed, 0.0)
    wire, _ = drive(sender, messages, picks)
    assert {len(w) for w in wire} <= set(bucket_sizes(mode))
    decoder, reassembler = FrameDecoder(), Reassembler()
    delivered = []
    for w in wire:
        (frame,) = decoder.feed(w)
        assert frame.type in (FrameType.PADDED, FrameType.COVER)
        out = reassembler.receive(frame)
        assert not isinstance(out, Frame)  # shaped frames give lists (or None)
        for item in out or []:
            assert item.type == FrameType.DATA
            delivered.append(item.payload)
    assert delivered == messages
    assert sender.schedule.id in MODE_SCHEDULES[mode]


def test_idle_connection_sends_only_cover_at_the_base_rate() -> None:
    sender = ShapedSender("balanced", bytes(32), 0.0)
    frames = []
    now = 0.0
    while now < 60.0:
        at = sender.next_slot_at()
        assert at is not None
        now = at
        result = sender.slot(now)
        assert result.frame is not None and result.cover
        frames.append(result.frame)
    assert all(Reassembler().receive(f) is None for f in frames)  # cover is dropped
    rate = len(frames) / 60.0
    assert 0.8 / SCHEDULES[0].interval < rate < 1.2 / SCHEDULES[0].interval


def test_model_pick_outside_the_mode_is_ignored() -> None:
    strict = ShapedSender("strict", bytes(32), 0.0)
    assert strict.choose(2, 5.0).id == 3  # strict never leaves its constant schedule
    balanced = ShapedSender("balanced", hashlib.sha256(b"x").digest(), 0.0, jitter=0.1)
    balanced.decoy_probability = 0.0
    assert balanced.choose(3, 5.0).id == 0  # the strict schedule is not balanced's
    assert balanced.choose(99, 10.0).id == 0
    assert balanced.choose(2, 15.0).id == 2
    assert balanced.choose(0, 15.5).id == 2  # no step down during the dwell
    assert balanced.choose(0, 18.0).id == 0


def test_a_floor_keeps_the_sender_at_least_at_that_schedule_until_cleared() -> None:
    balanced = ShapedSender("balanced", hashlib.sha256(b"x").digest(), 0.0, jitter=0.1)
    balanced.decoy_probability = 0.0
    base_gap = balanced.next_slot_at()
    balanced.set_floor(1, 0.0)  # burst: applies at once, the next slot comes sooner
    assert balanced.schedule.id == 1
    next_slot = balanced.next_slot_at()
    assert base_gap is not None and next_slot is not None and next_slot <= base_gap
    assert balanced.choose(0, 5.0).id == 1  # the model's base pick can't go below it
    assert balanced.choose(2, 10.0).id == 2  # faster picks still win
    balanced.set_floor(None, 12.0)
    assert balanced.choose(0, 15.0).id == 0
    strict = ShapedSender("strict", bytes(32), 0.0)
    strict.set_floor(1, 0.0)  # not vetted for strict: its one constant rate stays
    assert strict.floor is None and strict.choose(1, 5.0).id == 3


def test_connections_draw_different_patterns() -> None:
    a, b = KeyedStream(bytes(32)), KeyedStream(b"\x01" + bytes(31))
    assert [a.uniform() for _ in range(4)] != [b.uniform() for _ in range(4)]
    values = [a.uniform() for _ in range(1000)]
    assert all(0.0 <= v < 1.0 for v in values) and 0.4 < sum(values) / 1000 < 0.6


def test_malformed_fragments_are_remote_errors() -> None:
    r = Reassembler(max_message=100)
    with pytest.raises(ShapingError):
        r.receive(Frame(FrameType.PADDED, b"\x01"))
    with pytest.raises(ShapingError):
        r.receive(Frame(FrameType.PADDED, b"\x04" + (3).to_bytes(4, "big") + b"abc"))
    with pytest.raises(ShapingError):
        r.receive(Frame(FrameType.PADDED, b"\x01" + (50).to_bytes(4, "big") + b"abc"))
    with pytest.raises(ShapingError):
        r.receive(encode_fragment(bytes(101), True, 1024))
    assert r.receive(Frame(FrameType.DATA, b"plain")) == Frame(FrameType.DATA, b"plain")


def test_small_messages_share_a_frame() -> None:
    sender = ShapedSender("balanced", bytes(32), 0.0)
    for m in (b"typing", b"", b"a message" * 20, b"read"):
        sender.enqueue(m, 0.0)
    result = sender.slot(1.0)
    assert result.completed == (0, 1, 2, 3) and result.frame is not None
    assert len(result.frame.encode()) == SCHEDULES[0].frame_size
    out = Reassembler().receive(result.frame)
    assert isinstance(out, list)
    assert [f.payload for f in out] == [b"typing", b"", b"a message" * 20, b"read"]


def test_balanced_goes_dormant_after_silence_and_wakes_on_a_message() -> None:
    channel = ShapedChannel("balanced", bytes(32), 0.0)
    channel.sender.decoy_probability = 0.0
    sent: list[float] = []
    now = 0.0
    while now < DORMANT_AFTER + 60.0:
        now = channel.next_wakeup()
        result = channel.step(now, lambda features: 0)
        if result is not None and result.frame is not None:
            sent.append(now)
    assert channel.sender.schedule.id == DORMANT
    late = [t for t in sent if t > DORMANT_AFTER + 5.0]
    assert len(late) < 60.0 / SCHEDULES[DORMANT].interval * 1.5
    queued_at = now
    channel.enqueue(b"wake up", now)
    assert channel.sender.schedule.id == MODE_SCHEDULES["balanced"][0]
    result = None
    while result is None or result.frame is None:
        now = channel.next_wakeup()
        result = channel.step(now, lambda features: 0)
    assert result.completed and now - queued_at <= SCHEDULES[0].interval * 1.4
