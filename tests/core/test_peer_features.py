"""Per-peer sliding-window features: window sums, eviction, bounds, the row layout."""

from __future__ import annotations

import math
import tracemalloc

from hypothesis import given, settings
from hypothesis import strategies as st

from app.core.peer_features import (
    ACTIVITY_SIGNALS,
    DECAY_HALF_LIFE,
    EXPIRE_IDLE,
    FEATURE_NAMES,
    LONG_WINDOW,
    MAX_AGE,
    MAX_PEERS,
    N_FEATURES,
    SHORT_WINDOW,
    PeerFeatures,
    Signal,
)


def value(features: PeerFeatures, peer: str, now: float, name: str) -> float:
    row = features.row(peer, now)
    assert row is not None
    return row.values[FEATURE_NAMES.index(name)]


def count(features: PeerFeatures, peer: str, now: float, name: str) -> float:
    return math.expm1(value(features, peer, now, name))


def test_counts_enter_both_windows_and_leave_them_in_time() -> None:
    f = PeerFeatures()
    f.observe("p", Signal.FRAME, 100.2, 3)
    f.observe("p", Signal.FRAME, 104.9)
    assert round(count(f, "p", 105.0, "frame_10s")) == 4
    assert round(count(f, "p", 105.0, "frame_60s")) == 4
    # the first three leave the short window 10 s after their second
    assert round(count(f, "p", 110.0, "frame_10s")) == 1
    assert round(count(f, "p", 114.5, "frame_10s")) == 0
    assert round(count(f, "p", 159.0, "frame_60s")) == 4
    assert round(count(f, "p", 160.0, "frame_60s")) == 1
    assert round(count(f, "p", 165.0, "frame_60s")) == 0


def test_row_layout_ratios_and_age() -> None:
    f = PeerFeatures()
    for second in range(20):
        f.observe("p", Signal.FRAME, 1000 + second, 2)
        f.observe("p", Signal.DECRYPT_FAILED, 1000 + second)
    row = f.row("p", 1019.5)
    assert row is not None and len(row.values) == N_FEATURES == len(FEATURE_NAMES)
    ratio = value(f, "p", 1019.5, f"failure_ratio_{SHORT_WINDOW}s")
    assert 0.4 < ratio < 0.5  # 10 failures over 20 frames (+1)
    assert math.isclose(value(f, "p", 1019.5, "age"), math.log1p(19.5))
    assert f.row("nobody", 1019.5) is None


def test_decayed_counts_halve_every_half_life_and_outlive_the_windows() -> None:
    f = PeerFeatures()
    f.observe("p", Signal.REPLAY, 100.0, 8)
    name = f"replay_decayed_{DECAY_HALF_LIFE}s"
    assert math.isclose(count(f, "p", 100.5, name), 8)
    assert math.isclose(count(f, "p", 100 + DECAY_HALF_LIFE, name), 4)
    # long after both windows forgot it, the decayed count still remembers
    later = 100 + 2 * DECAY_HALF_LIFE
    assert round(count(f, "p", later, f"replay_{LONG_WINDOW}s")) == 0
    assert math.isclose(count(f, "p", later, name), 2)
    # a late event (an earlier second than the last one seen) is decayed by its lateness
    f.observe("p", Signal.REPLAY, later - DECAY_HALF_LIFE, 4)
    assert math.isclose(count(f, "p", later, name), 4)


def test_failures_since_first_seen_their_span_and_the_latest() -> None:
    f = PeerFeatures()
    f.observe("p", Signal.FRAME, 10.0)
    assert count(f, "p", 10.0, "failures_total") == 0
    assert value(f, "p", 10.0, "failure_span") == 0
    assert math.isclose(value(f, "p", 10.0, "since_last_failure"), math.log1p(MAX_AGE))
    for at, signal in (
        (20.2, Signal.DECRYPT_FAILED),
        (70.9, Signal.REPLAY),
        (95.0, Signal.MALFORMED),
    ):
        f.observe("p", signal, at)
    f.observe("p", Signal.RECORD_REJECTED, 99.0)  # not a failure of the peer's own traffic
    assert round(count(f, "p", 100.0, "failures_total")) == 3
    assert math.isclose(value(f, "p", 100.0, "failure_span"), math.log1p(95 - 20))
    assert math.isclose(value(f, "p", 100.0, "since_last_failure"), math.log1p(5))


def test_active_seconds_tell_a_sustained_trickle_from_one_burst() -> None:
    burst, trickle = PeerFeatures(), PeerFeatures()
    burst.observe("p", Signal.DHT_REQUEST, 55.5, 10)
    for second in range(50, 60):
        trickle.observe("p", Signal.DHT_REQUEST, second + 0.5)
    for f, seconds in ((burst, 1), (trickle, 10)):
        assert round(count(f, "p", 59.9, f"dht_request_{SHORT_WINDOW}s")) == 10
        assert value(f, "p", 59.9, f"dht_request_seconds_{SHORT_WINDOW}s") == seconds
        assert value(f, "p", 59.9, f"dht_request_seconds_{LONG_WINDOW}s") == seconds
    assert value(trickle, "p", 64.0, f"dht_request_seconds_{SHORT_WINDOW}s") == 5
    assert value(trickle, "p", 115.0, f"dht_request_seconds_{LONG_WINDOW}s") == 4


def test_a_long_silence_resets_and_idle_peers_expire() -> None:
    f = PeerFeatures()
    f.observe("p", Signal.DHT_STORE, 10, 50)
    f.observe("p", Signal.DHT_STORE, 10 + 5 * LONG_WINDOW)
    assert round(count(f, "p", 10 + 5 * LONG_WINDOW, f"dht_store_{LONG_WINDOW}s")) == 1
    assert list(f.active(10 + 5 * LONG_WINDOW)) == ["p"]
    last = 10 + 5 * LONG_WINDOW
    assert f.expire(last + EXPIRE_IDLE) == 0
    assert f.expire(last + EXPIRE_IDLE + 1) == 1 and len(f) == 0


def test_reading_rows_does_not_keep_an_idle_peer_active() -> None:
    """The node reads every active peer's row every 2 s: that must not count as
    activity, or every peer ever seen would be scored (and kept) forever."""
    f = PeerFeatures()
    f.observe("p", Signal.FRAME, 0.5)
    f.observe("q", Signal.FRAME, 0.5)
    for now in range(2, EXPIRE_IDLE + 4, 2):
        f.observe("q", Signal.FRAME, now)  # q keeps talking
        rows = {r.peer for r in f.rows(float(now))}
        assert ("p" in rows) == (now < LONG_WINDOW)
        assert f.is_active("p", now) == (now < LONG_WINDOW) and f.is_active("q", now)
        f.expire(float(now))
    assert "p" not in f and "q" in f


def test_peer_count_is_bounded_oldest_forgotten_first() -> None:
    f = PeerFeatures(max_peers=3)
    for i in range(5):
        f.observe(f"p{i}", Signal.CONNECT, 1.0 + i)
    assert len(f) == 3 and "p0" not in f and "p4" in f


def test_a_peer_that_sent_once_costs_one_second_of_counts() -> None:
    """Each peer held `LONG_WINDOW` per-second lists from its first event: 11.5 KB for
    a DHT sender that sent one datagram, and a sender is named by its source port, so
    `MAX_PEERS` made-up ones held 230 MB (found under the live fuzzer's DHT campaign).
    A second without events holds no list now."""
    f = PeerFeatures()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for port in range(2000):
            f.observe(f"dht:192.0.2.7:{port}", Signal.DHT_REQUEST, 1000.0)
            f.observe(f"dht:192.0.2.7:{port}", Signal.MALFORMED, 1000.0)
        per_peer = (tracemalloc.get_traced_memory()[0] - before) / 2000
    finally:
        tracemalloc.stop()
    assert f.buckets_held == 2000
    assert per_peer < 4000  # 11,500 bytes before
    assert MAX_PEERS * per_peer < 80e6


def test_per_second_counts_over_all_peers_are_bounded_idlest_forgotten_first() -> None:
    f = PeerFeatures(max_buckets=10 * LONG_WINDOW)
    for peer in range(30):  # each busy for a whole window: LONG_WINDOW lists each
        for second in range(LONG_WINDOW):
            f.observe(f"p{peer}", Signal.FRAME, 1000.0 + peer * LONG_WINDOW + second)
            assert f.buckets_held <= 10 * LONG_WINDOW
    assert len(f) == 10 and "p29" in f and "p19" not in f


def test_an_idle_peer_lets_go_of_its_window_and_keeps_the_same_row() -> None:
    """After `LONG_WINDOW` idle seconds a peer's windows are empty: `expire` drops its
    per-second lists, and its row (the sequential evidence) is what it was."""
    kept, emptied = PeerFeatures(), PeerFeatures()
    for f in (kept, emptied):
        for second in range(20):
            f.observe("p", Signal.DHT_REQUEST, 1000.0 + second, 3)
            f.observe("p", Signal.MALFORMED, 1000.5 + second)
    assert emptied.buckets_held == 20
    assert emptied.expire(1000.0 + 19 + LONG_WINDOW) == 0
    assert emptied.buckets_held == 0 and "p" in emptied
    assert kept.row("p", 1200.0) == emptied.row("p", 1200.0)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.floats(min_value=0, max_value=300, allow_nan=False),
            st.sampled_from(list(Signal)),
            st.integers(min_value=1, max_value=50),
        ),
        max_size=60,
    ),
    st.floats(min_value=0, max_value=400, allow_nan=False),
)
def test_window_sums_equal_a_recount(events: list[tuple[float, Signal, int]], probe: float) -> None:
    """Whatever the order of arrival, the running sums match a direct recount of the
    events inside each window (events later than the probe are excluded)."""
    f = PeerFeatures()
    events = sorted(events, key=lambda e: e[0])
    seen = [e for e in events if math.floor(e[0]) <= math.floor(probe)]
    if not seen:
        return
    for at, signal, n in seen:
        f.observe("p", signal, at, n)
    now = max(probe, seen[-1][0])
    second = math.floor(now)
    for signal in Signal:
        for window in (SHORT_WINDOW, LONG_WINDOW):
            expected = sum(
                n for at, s, n in seen if s is signal and second - math.floor(at) < window
            )
            got = count(f, "p", now, f"{signal.name.lower()}_{window}s")
            assert math.isclose(got, expected, abs_tol=1e-6 * max(1, expected)), (signal, window)
            if signal in ACTIVITY_SIGNALS:
                active = {
                    math.floor(at)
                    for at, s, _ in seen
                    if s is signal and second - math.floor(at) < window
                }
                got = value(f, "p", now, f"{signal.name.lower()}_seconds_{window}s")
                assert got == len(active), (signal, window)
