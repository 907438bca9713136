"""Per-peer sliding-window features: window sums, eviction, bounds, the row layout."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from app.core.peer_features import (
    FEATURE_NAMES,
    LONG_WINDOW,
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


def test_a_long_silence_resets_and_idle_peers_expire() -> None:
    f = PeerFeatures()
    f.observe("p", Signal.DHT_STORE, 10, 50)
    f.observe("p", Signal.DHT_STORE, 10 + 5 * LONG_WINDOW)
    assert round(count(f, "p", 10 + 5 * LONG_WINDOW, f"dht_store_{LONG_WINDOW}s")) == 1
    assert list(f.active(10 + 5 * LONG_WINDOW)) == ["p"]
    assert f.expire(10 + 10 * LONG_WINDOW) == 1 and len(f) == 0


def test_peer_count_is_bounded_oldest_forgotten_first() -> None:
    f = PeerFeatures(max_peers=3)
    for i in range(5):
        f.observe(f"p{i}", Signal.CONNECT, 1.0 + i)
    assert len(f) == 3 and "p0" not in f and "p4" in f


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
