"""What the node does about a peer that behaves badly: one state machine per peer.

Rules of this module (sans-I/O: time is passed in, nothing is sent or dropped here):

* A peer is `NORMAL`, `RATE_LIMITED` or `QUARANTINED` (graylisted). The detector's
  score (`assess`) moves it up; timers (`handle_timer`) move it back down::

      NORMAL --score >= limit--> RATE_LIMITED --score >= quarantine--> QUARANTINED
        ^                           |   ^                                   |
        +--- calm for `probation` --+   +------ quarantine expires ---------+

  A score at or above `quarantine_score` quarantines from any state. The rate-limit
  threshold may differ per peer kind (`limit_by_kind`: DHT senders, named
  ``dht:<ip>:<port>``, and transport peers score differently when honest, so one
  threshold calibrated on both is too high for one of them; see `peer_kind`). Each quarantine
  lasts `quarantine_seconds` doubled per repeat offence (`strikes`), capped at
  `max_quarantine_seconds`; strikes are forgiven after `forgive_seconds` of calm.
* Admission (`admit`) never discards anything: it answers DELIVER or QUEUE. A
  rate-limited peer gets a token bucket (`rate` payloads/s, `burst`); a quarantined peer
  gets nothing delivered until released. The node keeps what is queued and delivers it
  on release, in order (see `app.node.anomaly`).
* Every change of standing is returned as a `StandingChanged` event, once.
* At most `max_tracked` peers are remembered: a calm peer is kept only for its strikes
  (an hour), and peers (DHT senders by source port, strangers) cost nothing to make
  up; when full, calm peers are forgotten first, then the longest tracked.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from app.core.errors import LocalProtocolError

MAX_TRACKED = 20_000
"""Peers remembered at once (see the module docstring)."""

DHT_PREFIX = "dht:"
"""How the node names a DHT sender (``dht:<ip>:<port>``); other peers are transport peers."""
PEER_KINDS = ("dht", "transport")


def peer_kind(peer: str) -> str:
    """``"dht"`` for a DHT sender, ``"transport"`` for a contact or stranger."""
    return "dht" if peer.startswith(DHT_PREFIX) else "transport"


class Standing(enum.Enum):
    """Where a peer stands with us."""

    NORMAL = "normal"
    RATE_LIMITED = "rate_limited"
    QUARANTINED = "quarantined"


class Admission(enum.Enum):
    """What to do with one payload from a peer now."""

    DELIVER = "deliver"
    QUEUE = "queue"


@dataclass(frozen=True)
class PolicySettings:
    """Thresholds and durations of the response policy."""

    limit_score: float = 0.5
    """A detector score at or above this rate-limits the peer (unless its kind has its own)."""
    limit_by_kind: tuple[tuple[str, float], ...] = ()
    """Rate-limit thresholds of peer kinds (`PEER_KINDS`) calibrated apart."""
    quarantine_score: float = 0.9
    """A detector score at or above this quarantines the peer."""
    quarantine_seconds: float = 60.0
    max_quarantine_seconds: float = 3600.0
    probation_seconds: float = 60.0
    """Calm seconds (score below its limit) before a rate-limited peer is NORMAL."""
    forgive_seconds: float = 3600.0
    rate: float = 5.0
    """Payloads per second delivered for a rate-limited peer."""
    burst: float = 20.0

    def __post_init__(self) -> None:
        limits = [self.limit_score, *(score for _, score in self.limit_by_kind)]
        if not all(0.0 < limit <= self.quarantine_score for limit in limits):
            raise LocalProtocolError("need 0 < limit_score <= quarantine_score")
        kinds = [kind for kind, _ in self.limit_by_kind]
        if len(set(kinds)) != len(kinds) or not set(kinds) <= set(PEER_KINDS):
            raise LocalProtocolError(f"limit_by_kind: each of {PEER_KINDS} at most once")
        if min(self.quarantine_seconds, self.probation_seconds, self.rate, self.burst) <= 0:
            raise LocalProtocolError("durations and rates must be positive")

    def limit_for(self, peer: str) -> float:
        """The rate-limit threshold that applies to `peer` (by its kind)."""
        kind = peer_kind(peer)
        for name, score in self.limit_by_kind:
            if name == kind:
                return score
        return self.limit_score


@dataclass(frozen=True)
class StandingChanged:
    """`peer` moved from `old` to `new` (`until`: when a quarantine ends)."""

    peer: str
    old: Standing
    new: Standing
    score: float
    reason: str
    until: float | None = None


@dataclass
class _Peer:
    standing: Standing = Standing.NORMAL
    until: float = 0.0
    calm_since: float = 0.0
    strikes: int = 0
    last_offence: float = 0.0
    tokens: float = 0.0
    refilled: float = 0.0
    last_score: float = 0.0


class PeerPolicy:
    """The response state machine of every peer (see the module docstring)."""

    def __init__(
        self, settings: PolicySettings | None = None, max_tracked: int = MAX_TRACKED
    ) -> None:
        if max_tracked < 8:
            raise LocalProtocolError("max_tracked must be at least 8")
        self.settings = settings or PolicySettings()
        self._max_tracked = max_tracked
        self._peers: dict[str, _Peer] = {}

    def __len__(self) -> int:
        return len(self._peers)

    def standing(self, peer: str) -> Standing:
        """`peer`'s current standing (NORMAL for a peer never assessed)."""
        state = self._peers.get(peer)
        return Standing.NORMAL if state is None else state.standing

    def quarantined_until(self, peer: str) -> float | None:
        """When `peer`'s quarantine ends, if it is quarantined."""
        state = self._peers.get(peer)
        if state is None or state.standing is not Standing.QUARANTINED:
            return None
        return state.until

    def flagged(self) -> dict[str, Standing]:
        """Every peer not in NORMAL standing."""
        return {p: s.standing for p, s in self._peers.items() if s.standing is not Standing.NORMAL}

    def assess(self, peer: str, score: float, now: float) -> list[StandingChanged]:
        """Apply one detector score for `peer` at `now`."""
        cfg = self.settings
        limit = cfg.limit_for(peer)
        state = self._peers.get(peer)
        if state is None:
            if score < limit:
                return []  # nothing to remember about a calm peer
            self._make_room()
            state = self._peers[peer] = _Peer()
        state.last_score = score
        if state.strikes and now - state.last_offence >= cfg.forgive_seconds:
            state.strikes = 0
        old = state.standing
        if score >= cfg.quarantine_score:
            if old is Standing.QUARANTINED:
                return []
            duration = min(
                cfg.max_quarantine_seconds, cfg.quarantine_seconds * (2.0 ** min(state.strikes, 20))
            )
            state.strikes += 1
            state.last_offence = now
            state.standing = Standing.QUARANTINED
            state.until = now + duration
            return [StandingChanged(peer, old, state.standing, score, "detector", state.until)]
        if score >= limit:
            state.calm_since = now
            if old is Standing.NORMAL:
                state.standing = Standing.RATE_LIMITED
                state.tokens, state.refilled = cfg.burst, now
                state.last_offence = now
                return [StandingChanged(peer, old, state.standing, score, "detector")]
            return []
        if old is Standing.RATE_LIMITED and now - state.calm_since >= cfg.probation_seconds:
            return [self._set(peer, state, Standing.NORMAL, score, "calm")]
        return []

    def _make_room(self) -> None:
        """Below `max_tracked` again: calm peers go first, then (an eighth at once, so a
        flood of new peers costs no scan each) the longest tracked."""
        if len(self._peers) < self._max_tracked:
            return
        for peer in [p for p, s in self._peers.items() if s.standing is Standing.NORMAL]:
            del self._peers[peer]
        if len(self._peers) >= self._max_tracked:
            for peer in list(self._peers)[: self._max_tracked // 8]:
                del self._peers[peer]

    def get_timer(self) -> float | None:
        """The next instant `handle_timer` has work (a quarantine ending), if any."""
        ends = [s.until for s in self._peers.values() if s.standing is Standing.QUARANTINED]
        return min(ends) if ends else None

    def handle_timer(self, now: float) -> list[StandingChanged]:
        """Release quarantines that ended (to RATE_LIMITED: probation) and forget calm peers."""
        changes = []
        for peer, state in list(self._peers.items()):
            if state.standing is Standing.QUARANTINED and now >= state.until:
                state.calm_since = now
                state.last_score = 0.0  # probation judges what it does from now on
                state.tokens, state.refilled = self.settings.burst, now
                changes.append(self._set(peer, state, Standing.RATE_LIMITED, 0.0, "released"))
            elif (
                state.standing is Standing.RATE_LIMITED
                and now - state.calm_since >= self.settings.probation_seconds
                and state.last_score < self.settings.limit_for(peer)
            ):
                changes.append(self._set(peer, state, Standing.NORMAL, 0.0, "calm"))
            elif (
                state.standing is Standing.NORMAL
                and now - state.last_offence >= self.settings.forgive_seconds
            ):
                del self._peers[peer]
        return changes

    def release(self, peer: str, now: float) -> list[StandingChanged]:
        """End `peer`'s restrictions at once (the user trusts it again)."""
        state = self._peers.pop(peer, None)
        if state is None or state.standing is Standing.NORMAL:
            return []
        return [StandingChanged(peer, state.standing, Standing.NORMAL, 0.0, "released by user")]

    def admit(self, peer: str, now: float) -> Admission:
        """Whether one payload from `peer` may be delivered now (else it is queued)."""
        state = self._peers.get(peer)
        if state is None or state.standing is Standing.NORMAL:
            return Admission.DELIVER
        if state.standing is Standing.QUARANTINED:
            return Admission.QUEUE
        cfg = self.settings
        state.tokens = min(cfg.burst, state.tokens + (now - state.refilled) * cfg.rate)
        state.refilled = now
        if state.tokens >= 1.0:
            state.tokens -= 1.0
            return Admission.DELIVER
        return Admission.QUEUE

    def next_admission(self, peer: str, now: float) -> float:
        """Seconds until `admit` may next say DELIVER for `peer` (0 if it would now)."""
        state = self._peers.get(peer)
        if state is None or state.standing is Standing.NORMAL:
            return 0.0
        if state.standing is Standing.QUARANTINED:
            return max(0.0, state.until - now)
        tokens = min(
            self.settings.burst, state.tokens + (now - state.refilled) * self.settings.rate
        )
        return 0.0 if tokens >= 1.0 else (1.0 - tokens) / self.settings.rate

    def _set(
        self, peer: str, state: _Peer, new: Standing, score: float, reason: str
    ) -> StandingChanged:
        old, state.standing = state.standing, new
        return StandingChanged(peer, old, new, score, reason)
