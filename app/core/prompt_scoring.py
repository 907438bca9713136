"""When to score a peer before the next periodic round (sans-I/O; time is passed in).

The node scores every active peer every `EVALUATION_INTERVAL` seconds
(`app.node.anomaly`). Evidence that only attackers produce in numbers (a payload that
does not decrypt, a replay, a broken signature, a refused record or handshake,
`PROMPT_SIGNALS`) also schedules a *prompt* evaluation of that one peer, so a flag does
not wait up to a full interval for the round. The cost is bounded whatever a flood
sends: a peer is scored promptly at most once per `PROMPT_GAP` seconds, prompt peers
are batched (`PROMPT_DELAY`: every peer whose evidence arrived within it goes into one
inference), and at most `MAX_PENDING` peers wait at once (past that, the periodic round
still scores them). The node and the simulator that benchmarks the detector
(`tools.anomaly.simulator.replay`) both schedule through this class.
"""

from __future__ import annotations

from app.core.errors import LocalProtocolError
from app.core.peer_features import Signal

PROMPT_SIGNALS = frozenset(
    (
        Signal.DECRYPT_FAILED,
        Signal.MALFORMED,
        Signal.INVALID_SIGNATURE,
        Signal.REPLAY,
        Signal.RECORD_REJECTED,
        Signal.HANDSHAKE_FAILED,
    )
)
"""Signals that schedule a prompt evaluation of their peer."""
PROMPT_DELAY = 0.05
"""Seconds a prompt evaluation waits, so one inference scores a burst's peers together."""
PROMPT_GAP = 1.0
"""Seconds between two prompt evaluations of one peer (a flood costs one row a second)."""
MAX_PENDING = 1024
"""Peers waiting for a prompt evaluation at once."""


class PromptScoring:
    """Which peers are due for a prompt evaluation, and when (see the module docstring)."""

    def __init__(
        self, gap: float = PROMPT_GAP, delay: float = PROMPT_DELAY, max_pending: int = MAX_PENDING
    ) -> None:
        if gap <= 0 or delay < 0 or max_pending < 1:
            raise LocalProtocolError("need gap > 0, delay >= 0 and max_pending >= 1")
        self._gap = gap
        self._delay = delay
        self._max_pending = max_pending
        self._pending: dict[str, float] = {}
        """Peer -> when its prompt evaluation is due."""
        self._last: dict[str, float] = {}
        """Peer -> when it was last scored promptly (only the last `gap` seconds matter)."""
        self.overflow = 0
        """Evidence not scheduled because `max_pending` peers were waiting already."""

    def __len__(self) -> int:
        return len(self._pending)

    def note(self, peer: str, signal: Signal, now: float) -> float | None:
        """`peer` did `signal` at `now`; when its prompt evaluation is due, if that
        scheduled one (None: not evidence of the kinds that matter, already waiting, or
        no room)."""
        if signal not in PROMPT_SIGNALS or peer in self._pending:
            return None
        if len(self._pending) >= self._max_pending:
            self.overflow += 1
            return None
        due = now + self._delay
        last = self._last.get(peer)
        if last is not None:
            due = max(due, last + self._gap)
        self._pending[peer] = due
        return due

    def get_timer(self) -> float | None:
        """When the next prompt evaluation is due, if any is waiting."""
        return min(self._pending.values()) if self._pending else None

    def due(self, now: float) -> list[str]:
        """The peers to score now (each taken off the waiting list, in order of arrival)."""
        ready = [peer for peer, at in self._pending.items() if at <= now]
        for peer in ready:
            del self._pending[peer]
            self._last[peer] = now
        if len(self._last) > 2 * self._max_pending:
            self._last = {p: at for p, at in self._last.items() if now - at < self._gap}
        return ready
