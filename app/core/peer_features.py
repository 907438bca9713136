"""Per-peer behaviour features over sliding windows (sans-I/O; time is passed in).

Rules of this module: everything the anomaly detector sees is computed here, by the
node (`app.node.anomaly`) and by the simulator that trains and benchmarks the detector
(`tools/anomaly/`), so both feed the model the very same rows.

The node reports what a peer did as `Signal` counts (`observe(peer, signal, now, n)`);
each peer keeps one-second buckets for the last `LONG_WINDOW` seconds and running sums
over the last `SHORT_WINDOW` and `LONG_WINDOW` seconds, so observing and reading a row
cost O(number of signals), not O(window). A peer is whatever the node can name: a contact
or stranger's address on the transport, ``dht:<ip>:<port>`` for a DHT sender.

A row (`row(peer, now)`) is `FEATURE_NAMES` in order: log1p of each signal's count in
both windows, failure ratios, bytes per frame, and the peer's age (how long we have seen
it, capped); then sequential evidence that windows of fixed length miss: each signal's
exponentially decayed count (half-life `DECAY_HALF_LIFE`, so slow attacks accumulate
over minutes), the failures since the peer was first seen, how far apart its first and
latest failures are and how long ago the latest was, and in how many distinct seconds
of each window it sent requests (sustained activity versus one burst). Log scaling keeps
heavy-tailed honest rates in a range the model handles.
"""

from __future__ import annotations

import enum
import math
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass

from app.core.errors import LocalProtocolError

SHORT_WINDOW = 10
"""Seconds of the short window (what a detection within 10 s can use)."""
LONG_WINDOW = 60
"""Seconds of the long window (low-and-slow behaviour)."""
MAX_AGE = 3600.0
"""A peer's age feature saturates after an hour."""
DECAY_HALF_LIFE = 300
"""Seconds after which a decayed count has lost half of an event."""
MAX_PEERS = 20_000
"""Peers tracked at once; the one idle longest is forgotten first."""
MAX_BUCKETS = 100_000
"""Per-second counts (one list per peer and second with an event) held at once, over
all peers; past it the peers idle longest are forgotten first. A made-up peer costs
~2 KB with one, ~13 KB with all `LONG_WINDOW` of them: this holds the worst case of
`MAX_PEERS` busy peers to tens of megabytes (DHT senders are named by source port)."""
EXPIRE_IDLE = 600
"""Seconds without any event after which a peer is forgotten (`PeerFeatures.expire`):
two decay half-lives, so sequential evidence outlives short pauses."""


class Signal(enum.IntEnum):
    """What a peer did, as counted by the node."""

    FRAME = 0
    """An application payload (DATA frame) arrived on a connection."""
    BYTES = 1
    """Bytes of those payloads."""
    MESSAGE_OK = 2
    """A payload that decrypted and was accepted."""
    DECRYPT_FAILED = 3
    """A payload that failed to authenticate (AEAD/MAC failure, forged header)."""
    MALFORMED = 4
    """A payload or datagram that does not even parse."""
    INVALID_SIGNATURE = 5
    """A signed object (history event, DHT record) whose signature does not verify."""
    REPLAY = 6
    """A ciphertext or initial message already received."""
    DHT_REQUEST = 7
    """A DHT RPC (ping, find_node, find_value, signal) from this peer."""
    DHT_STORE = 8
    """A DHT store request from this peer."""
    RECORD_REJECTED = 9
    """A DHT record or history event refused (invalid, stale, over quota)."""
    CONNECT = 10
    """An authenticated connection came up."""
    DISCONNECT = 11
    """A connection went down."""
    HANDSHAKE_FAILED = 12
    """A handshake or identity binding was refused."""


N_SIGNALS = len(Signal)
_FAILURES = (Signal.DECRYPT_FAILED, Signal.MALFORMED, Signal.INVALID_SIGNATURE, Signal.REPLAY)
_FAILURE_SET = frozenset(int(f) for f in _FAILURES)
ACTIVITY_SIGNALS = (Signal.FRAME, Signal.DHT_REQUEST, Signal.DHT_STORE)
"""Signals whose active seconds (seconds of a window with any of them) are features."""

FEATURE_NAMES: tuple[str, ...] = (
    *(f"{s.name.lower()}_{SHORT_WINDOW}s" for s in Signal),
    *(f"{s.name.lower()}_{LONG_WINDOW}s" for s in Signal),
    f"failure_ratio_{SHORT_WINDOW}s",
    f"failure_ratio_{LONG_WINDOW}s",
    f"rejected_ratio_{LONG_WINDOW}s",
    f"bytes_per_frame_{LONG_WINDOW}s",
    f"churn_{LONG_WINDOW}s",
    "age",
    *(f"{s.name.lower()}_decayed_{DECAY_HALF_LIFE}s" for s in Signal),
    "failures_total",
    "failure_span",
    "since_last_failure",
    *(f"{s.name.lower()}_seconds_{SHORT_WINDOW}s" for s in ACTIVITY_SIGNALS),
    *(f"{s.name.lower()}_seconds_{LONG_WINDOW}s" for s in ACTIVITY_SIGNALS),
)
N_FEATURES = len(FEATURE_NAMES)


_DECAY = [math.pow(0.5, dt / DECAY_HALF_LIFE) for dt in range(LONG_WINDOW + 1)]
"""Decay factors for 0..LONG_WINDOW seconds (longer gaps use `math.pow`)."""


def _decay(dt: int) -> float:
    return _DECAY[dt] if dt <= LONG_WINDOW else math.pow(0.5, dt / DECAY_HALF_LIFE)


class _PeerWindow:
    """One peer's buckets, running window sums and sequential evidence."""

    __slots__ = (
        "active_long",
        "active_short",
        "buckets",
        "decayed",
        "decayed_at",
        "failures",
        "first_failure",
        "first_seen",
        "head",
        "held",
        "last_failure",
        "last_seen",
        "long",
        "short",
    )

    def __init__(self, second: int) -> None:
        self.buckets: list[list[float] | None] = [None] * LONG_WINDOW
        """Per-second counts; a second without any event holds no list (a peer that
        sent once costs one, not `LONG_WINDOW`)."""
        self.held = 0
        """How many of `buckets` hold a list."""
        self.short = [0.0] * N_SIGNALS
        self.long = [0.0] * N_SIGNALS
        self.active_short = [0] * N_SIGNALS
        """Seconds of the short window with any of each signal."""
        self.active_long = [0] * N_SIGNALS
        self.head = second
        self.first_seen = second
        self.last_seen = second
        """The latest second with an event (reading a row moves `head`, not this)."""
        self.decayed = [0.0] * N_SIGNALS
        self.decayed_at = second
        self.failures = 0.0
        self.first_failure: int | None = None
        self.last_failure: int | None = None

    def advance(self, second: int) -> None:
        """Move the head to `second`, dropping what left each window."""
        if second <= self.head:
            return
        if second - self.head >= LONG_WINDOW:
            self.empty(second)
            return
        short, long = self.short, self.long
        active_short, active_long = self.active_short, self.active_long
        buckets = self.buckets
        for t in range(self.head + 1, second + 1):
            leaving_short = buckets[(t - SHORT_WINDOW) % LONG_WINDOW]
            if leaving_short is not None:
                for i in range(N_SIGNALS):
                    if leaving_short[i]:
                        short[i] -= leaving_short[i]
                        active_short[i] -= 1
            leaving_long = buckets[t % LONG_WINDOW]  # t - LONG_WINDOW, same slot
            if leaving_long is not None:
                for i in range(N_SIGNALS):
                    if leaving_long[i]:
                        long[i] -= leaving_long[i]
                        active_long[i] -= 1
                buckets[t % LONG_WINDOW] = None
                self.held -= 1
        self.head = second

    def empty(self, second: int) -> None:
        """Move the head to `second`, nothing left in either window (every event is
        older than `LONG_WINDOW`)."""
        self.buckets = [None] * LONG_WINDOW
        self.held = 0
        self.short = [0.0] * N_SIGNALS
        self.long = [0.0] * N_SIGNALS
        self.active_short = [0] * N_SIGNALS
        self.active_long = [0] * N_SIGNALS
        self.head = second

    def decay_to(self, second: int) -> None:
        """Bring the decayed counts to `second` (never backwards)."""
        if second > self.decayed_at:
            factor = _decay(second - self.decayed_at)
            self.decayed = [v * factor for v in self.decayed]
            self.decayed_at = second

    def add(self, second: int, signal: int, amount: float) -> None:
        self.last_seen = max(self.last_seen, second)
        self.decay_to(second)
        self.decayed[signal] += amount * _decay(self.decayed_at - second)
        if amount > 0.0 and signal in _FAILURE_SET:
            self.failures += amount
            if self.first_failure is None or second < self.first_failure:
                self.first_failure = second
            if self.last_failure is None or second > self.last_failure:
                self.last_failure = second
        if second < self.head - SHORT_WINDOW + 1:
            if second > self.head - LONG_WINDOW:  # late, but still in the long window
                bucket = self._bucket(second)
                if not bucket[signal] and amount > 0.0:
                    self.active_long[signal] += 1
                bucket[signal] += amount
                self.long[signal] += amount
            return
        self.advance(second)
        bucket = self._bucket(second)
        if not bucket[signal] and amount > 0.0:
            self.active_short[signal] += 1
            self.active_long[signal] += 1
        bucket[signal] += amount
        self.short[signal] += amount
        self.long[signal] += amount

    def _bucket(self, second: int) -> list[float]:
        bucket = self.buckets[second % LONG_WINDOW]
        if bucket is None:
            bucket = self.buckets[second % LONG_WINDOW] = [0.0] * N_SIGNALS
            self.held += 1
        return bucket

    def sequential(self, second: int) -> tuple[float, ...]:
        """The sequential evidence at `second` (see the module docstring)."""
        self.decay_to(second)
        log1p = math.log1p
        if self.first_failure is None or self.last_failure is None:
            span, since = 0.0, log1p(MAX_AGE)
        else:
            span = log1p(min(self.last_failure - self.first_failure, MAX_AGE))
            since = log1p(min(max(second - self.last_failure, 0), MAX_AGE))
        return (
            *(log1p(max(0.0, v)) for v in self.decayed),
            log1p(self.failures),
            span,
            since,
            *(float(self.active_short[s]) for s in ACTIVITY_SIGNALS),
            *(float(self.active_long[s]) for s in ACTIVITY_SIGNALS),
        )


@dataclass(frozen=True)
class FeatureRow:
    """One peer's features at one instant (`values` in `FEATURE_NAMES` order)."""

    peer: str
    values: tuple[float, ...]


def features_of(short: list[float], long: list[float], age: float) -> tuple[float, ...]:
    """The window part of a feature vector, from window sums (see the module docstring);
    the sequential part follows it in a row."""
    log1p = math.log1p
    s = [max(0.0, v) for v in short]  # float drift of the running sums never goes below 0
    lg = [max(0.0, v) for v in long]
    fail_s = sum(s[f] for f in _FAILURES)
    fail_l = sum(lg[f] for f in _FAILURES)
    frames_s = s[Signal.FRAME] + s[Signal.DHT_REQUEST] + s[Signal.DHT_STORE]
    frames_l = lg[Signal.FRAME] + lg[Signal.DHT_REQUEST] + lg[Signal.DHT_STORE]
    return (
        *(log1p(v) for v in s),
        *(log1p(v) for v in lg),
        fail_s / (frames_s + 1.0),
        fail_l / (frames_l + 1.0),
        lg[Signal.RECORD_REJECTED] / (lg[Signal.DHT_STORE] + lg[Signal.MESSAGE_OK] + 1.0),
        log1p(lg[Signal.BYTES] / (lg[Signal.FRAME] + 1.0)),
        log1p(lg[Signal.CONNECT] + lg[Signal.DISCONNECT] + lg[Signal.HANDSHAKE_FAILED]),
        log1p(min(age, MAX_AGE)),
    )


class PeerFeatures:
    """Sliding-window counters of every peer the node hears from (bounded)."""

    def __init__(self, max_peers: int = MAX_PEERS, max_buckets: int = MAX_BUCKETS) -> None:
        if max_peers < 1 or max_buckets < LONG_WINDOW:
            raise LocalProtocolError("max_peers must be positive, max_buckets a window's")
        self._max_peers = max_peers
        self._max_buckets = max_buckets
        self._peers: OrderedDict[str, _PeerWindow] = OrderedDict()
        self._held = 0
        """Buckets held over all peers (`_PeerWindow.held`)."""

    @property
    def buckets_held(self) -> int:
        """Per-second counts held over all peers (at most `MAX_BUCKETS`)."""
        return self._held

    def __len__(self) -> int:
        return len(self._peers)

    def __contains__(self, peer: object) -> bool:
        return peer in self._peers

    def observe(self, peer: str, signal: Signal, now: float, amount: float = 1.0) -> None:
        """Count `amount` of `signal` for `peer` at time `now` (seconds)."""
        if amount < 0:
            raise LocalProtocolError("a signal count can't be negative")
        second = math.floor(now)
        window = self._peers.get(peer)
        if window is None:
            window = self._peers[peer] = _PeerWindow(second)
            if len(self._peers) > self._max_peers:
                self._held -= self._peers.popitem(last=False)[1].held
        else:
            self._peers.move_to_end(peer)
        held = window.held
        window.add(second, int(signal), float(amount))
        self._held += window.held - held
        while self._held > self._max_buckets:  # `peer` is the last one to go (held <= 60)
            self._held -= self._peers.popitem(last=False)[1].held

    def row(self, peer: str, now: float) -> FeatureRow | None:
        """`peer`'s features at `now`, or None for a peer never seen (or forgotten)."""
        window = self._peers.get(peer)
        if window is None:
            return None
        second = math.floor(now)
        held = window.held
        window.advance(second)
        self._held += window.held - held
        windows = features_of(window.short, window.long, now - window.first_seen)
        return FeatureRow(peer, windows + window.sequential(second))

    def active(self, now: float) -> Iterator[str]:
        """Peers with any activity in the long window (others need no evaluation)."""
        second = math.floor(now)
        for peer, window in self._peers.items():
            if second - window.last_seen < LONG_WINDOW:
                yield peer

    def is_active(self, peer: str, now: float) -> bool:
        """Whether `peer` did anything in the long window (`active` for one peer)."""
        window = self._peers.get(peer)
        return window is not None and math.floor(now) - window.last_seen < LONG_WINDOW

    def rows(self, now: float) -> list[FeatureRow]:
        """Rows of every active peer at `now`."""
        found = []
        for peer in list(self.active(now)):
            row = self.row(peer, now)
            if row is not None:
                found.append(row)
        return found

    def forget(self, peer: str) -> None:
        """Drop a peer's counters (e.g. a removed contact)."""
        window = self._peers.pop(peer, None)
        if window is not None:
            self._held -= window.held

    def expire(self, now: float, idle: float = EXPIRE_IDLE) -> int:
        """Forget peers without any event for `idle` seconds; how many were forgotten.

        A peer idle for `LONG_WINDOW` keeps only its sequential evidence: its windows
        are empty, and their per-second counts are let go at once."""
        second = math.floor(now)
        limit = second - idle
        stale = []
        for peer, window in self._peers.items():
            if window.last_seen < limit:
                stale.append(peer)
            elif (
                second - window.last_seen >= LONG_WINDOW
                and window.head - window.last_seen < LONG_WINDOW
            ):
                self._held -= window.held
                window.empty(second)
        for peer in stale:
            self._held -= self._peers.pop(peer).held
        return len(stale)
