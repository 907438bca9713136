"""Is the link to a peer still alive? One state machine per connection (sans-I/O).

Time is passed in; the node sends the PINGs and closes the connection when told to.
Two rules share one outstanding PING:

* **Keepalive** (idle or not): a PING `keepalive_interval` after the last PONG; the link
  is dead when a PING is out and nothing at all (any frame counts as life) has been
  heard for `keepalive_timeout` (or `probe_timeout`, if longer) since it left. An idle
  link costs exactly this.
* **Probe** (only while an answer is awaited): the node says when it sent something
  the peer must answer (`AnswerAwaited`: a message waiting for its acknowledgement, a
  block request). If nothing at all is heard for `silence` after that (or after the
  last frame, whichever is later), a PING goes at once, without waiting for the
  keepalive; if the link then stays silent for `probe_timeout` more, it is dead.

`silence` and `probe_timeout` are at least `probe_after` / `probe_timeout_min` (2 s)
and grow with the measured round trip (`rtt_factor` x RTO, RTO = SRTT + 4 RTTVAR as in
RFC 6298, from the PONGs), so a slow, queue-filled link is not cut. A PONG to a PING
sent after an awaited answer's frame proves that frame reached the peer (the path is
ordered): the wait ends there, whatever the application does with its answer, so a
peer that is alive but slow to answer costs one PING, not one every `silence`. The
next keepalive PING follows any PONG by `keepalive_interval`, so a probe also stands
for the next keepalive.

* **Suspect** (the machine woke up or changed networks: `Suspected`): a PING goes at
  once, even if one is already out (a fresh frame also prompts the path to retransmit
  what the change lost); unless something is heard after the change, the link is dead
  `probe_timeout` after that PING. A live link answers in a round trip and stays.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from app.core.errors import LocalProtocolError


@dataclass(frozen=True)
class LivenessSettings:
    """Timings of `LinkLiveness` (seconds)."""

    keepalive_interval: float = 15.0
    keepalive_timeout: float = 10.0
    probe_after: float = 2.0
    """Least silence, while an answer is awaited, before a probe PING."""
    probe_timeout_min: float = 2.0
    """Least further silence after the probe PING before the link counts as dead."""
    rtt_factor: float = 3.0
    """Both of the above are at least this many RTOs."""

    def __post_init__(self) -> None:
        if min(self.keepalive_interval, self.keepalive_timeout, self.probe_after) <= 0:
            raise LocalProtocolError("liveness durations must be positive")
        if self.probe_timeout_min <= 0 or self.rtt_factor <= 0:
            raise LocalProtocolError("liveness durations must be positive")


# ---------------------------------------------------------------------- events


@dataclass(frozen=True)
class Heard:
    """Bytes from the peer arrived at `at` (any frame: data, cover, PONG...)."""

    at: float


@dataclass(frozen=True)
class AnswerAwaited:
    """At `at` we sent a frame the peer is expected to answer."""

    at: float


@dataclass(frozen=True)
class PingSent:
    """A PING left at `at`."""

    at: float


@dataclass(frozen=True)
class PongReceived:
    """The PONG to a PING sent at `sent_at` arrived at `at`."""

    at: float
    sent_at: float


@dataclass(frozen=True)
class Suspected:
    """At `at` the machine woke from sleep or its network changed: the link may be dead."""

    at: float


LivenessEvent = Heard | AnswerAwaited | PingSent | PongReceived | Suspected


# ---------------------------------------------------------------------- verdicts


class PingKind(enum.Enum):
    """Why a PING is due."""

    KEEPALIVE = "keepalive"
    PROBE = "probe"


@dataclass(frozen=True)
class Wait:
    """Nothing to do before `until` (unless an event comes first)."""

    until: float


@dataclass(frozen=True)
class SendPing:
    """Send a PING now (then report `PingSent`)."""

    kind: PingKind


@dataclass(frozen=True)
class LinkDead:
    """Close the connection: `reason` says why."""

    reason: str


Verdict = Wait | SendPing | LinkDead


class LinkLiveness:
    """The liveness of one connection (see the module docstring)."""

    def __init__(self, settings: LivenessSettings, now: float) -> None:
        self.settings = settings
        self._heard = now
        self._next_keepalive = now
        """When the next keepalive PING is due (the first one at once, on opening)."""
        self._ping_at: float | None = None
        """When the outstanding PING left (None: none is out)."""
        self._awaiting_since: float | None = None
        """The oldest awaited answer's frame no PONG has vouched for yet."""
        self._srtt: float | None = None
        self._rttvar = 0.0
        self._suspect_since: float | None = None
        """When the network last changed, until something is heard after it."""
        self._suspect_ping: float | None = None
        """When the PING that checks the link since that change left (None: not yet)."""
        self.probes = 0
        """Probe PINGs sent (for tests and statistics)."""

    # ------------------------------------------------------------------ inputs

    def handle(self, event: LivenessEvent) -> None:
        """Take one event into account (events may come slightly out of time order)."""
        match event:
            case Heard(at):
                self._heard = max(self._heard, at)
                self._clear_suspicion(at)
            case Suspected(at):
                self._suspect_since, self._suspect_ping = at, None
            case AnswerAwaited(at):
                if self._awaiting_since is None:
                    self._awaiting_since = at
            case PingSent(at):
                if self._ping_at is None:
                    self._ping_at = at
                since = self._suspect_since
                if since is not None and self._suspect_ping is None and at >= since:
                    self._suspect_ping = at
            case PongReceived(at, sent_at):
                self._heard = max(self._heard, at)
                self._clear_suspicion(at)
                self._sample(at - sent_at)
                if self._ping_at is not None and sent_at >= self._ping_at:
                    self._ping_at = None
                    self._next_keepalive = at + self.settings.keepalive_interval
                if self._awaiting_since is not None and sent_at >= self._awaiting_since:
                    self._awaiting_since = None

    def _clear_suspicion(self, heard_at: float) -> None:
        """A frame heard after the change proves the link survived it."""
        if self._suspect_since is not None and heard_at > self._suspect_since:
            self._suspect_since = self._suspect_ping = None

    def _sample(self, rtt: float) -> None:
        rtt = max(0.0, rtt)
        if self._srtt is None:
            self._srtt, self._rttvar = rtt, rtt / 2
        else:
            self._rttvar = 0.75 * self._rttvar + 0.25 * abs(self._srtt - rtt)
            self._srtt = 0.875 * self._srtt + 0.125 * rtt

    # ------------------------------------------------------------------ queries

    @property
    def rto(self) -> float | None:
        """SRTT + 4 RTTVAR in seconds, None before the first PONG."""
        return None if self._srtt is None else self._srtt + 4 * self._rttvar

    @property
    def suspected(self) -> bool:
        """True from a `Suspected` until something is heard after it."""
        return self._suspect_since is not None

    @property
    def awaiting(self) -> bool:
        """True while an awaited answer's frame is not vouched for by a PONG."""
        return self._awaiting_since is not None

    @property
    def silence(self) -> float:
        """Seconds of silence, while an answer is awaited, before a probe PING."""
        return self._scaled(self.settings.probe_after)

    @property
    def probe_timeout(self) -> float:
        """Further seconds of silence after the probe PING before the link is dead."""
        return self._scaled(self.settings.probe_timeout_min)

    def _scaled(self, least: float) -> float:
        rto = self.rto
        return least if rto is None else max(least, self.settings.rtt_factor * rto)

    def poll(self, now: float) -> Verdict:
        """What to do at `now`: wait (until when), send a PING, or give the link up."""
        if self._suspect_since is not None:
            if self._suspect_ping is None:
                self.probes += 1
                return SendPing(PingKind.PROBE)
            suspect_dead_at = self._suspect_ping + self.probe_timeout
            if now >= suspect_dead_at:
                return LinkDead("no answer after the network changed")
            verdict = self._poll_unsuspected(now)
            if isinstance(verdict, Wait):
                return Wait(min(verdict.until, suspect_dead_at))
            return verdict
        return self._poll_unsuspected(now)

    def _poll_unsuspected(self, now: float) -> Verdict:
        s = self.settings
        awaiting = self._awaiting_since
        if self._ping_at is not None:
            allowance = max(s.keepalive_timeout, self.probe_timeout)
            dead_at = max(self._ping_at, self._heard) + allowance
            reason = "keepalive timeout"
            if awaiting is not None:
                probe_dead_at = (
                    max(max(self._heard, awaiting) + self.silence, self._ping_at)
                    + self.probe_timeout
                )
                if probe_dead_at < dead_at:
                    dead_at, reason = probe_dead_at, "no answer: the link went silent"
            return LinkDead(reason) if now >= dead_at else Wait(dead_at)
        due, kind = self._next_keepalive, PingKind.KEEPALIVE
        if awaiting is not None:
            probe_at = max(self._heard, awaiting) + self.silence
            if probe_at < due:
                due, kind = probe_at, PingKind.PROBE
        if now < due:
            return Wait(due)
        if kind is PingKind.PROBE:
            self.probes += 1
        return SendPing(kind)
