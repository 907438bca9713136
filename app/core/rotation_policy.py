"""When keys must rotate: time, volume and compromise signals (sans-I/O; time passed in).

Rules of this module: it only decides. It is told what happened (`message`, `signal`,
`alert`, `rotated`, `tick`) and answers with `RotationDue` values naming what to rotate
and why; the node performs the rotation (`app.node.anomaly.KeyRotator`) and reports it
back with `rotated`. Three things rotate:

* ``session``: a forced DH ratchet step with the contact (`app.core.session.force_ratchet`):
  our next message asks the peer to step, and our send after its answer uses a fresh key
  pair, so an attacker holding a snapshot of either state reads nothing past the next
  round trip;
* ``prekeys``: a new signed prekey, published at once (one-time prekeys replenished);
* ``mailbox``: a new mailbox epoch for the contact (new DHT slot keys and sealing keys).

Triggers:

* time: a contact's session is stepped at least every `session_max_age`; our signed
  prekey is replaced once older than `prekey_max_age` (48 h);
* volume: after `max_messages` messages or `max_bytes` bytes with a contact since its
  last rotation;
* compromise signals: a detector alert about the contact, a burst of decryption
  failures (`failure_burst` within `burst_window`) or any replay rotate all three.

Forced rotations of one contact are at least `min_interval` apart (an attacker must not
turn the trigger into a flood of republished prekeys); time and volume triggers wait for
the same interval.

Times are the wall clock, which can be stepped back (a wrong date corrected by NTP or the
user): a time read more than `CLOCK_STEPPED_BACK` ahead of `now` counts as long ago, or a
clock that ran a year ahead would hold every rotation back for a year (decision 0020).
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field

from app.core.errors import LocalProtocolError

CLOCK_STEPPED_BACK = 24 * 3600.0
"""A recorded time this far ahead of the clock was read before the clock was stepped back."""


def elapsed(now: float, then: float) -> float:
    """Seconds from `then` to `now`; infinite when `then` is more than `CLOCK_STEPPED_BACK`
    ahead of `now` (read while our clock ran ahead, since corrected)."""
    age = now - then
    return math.inf if age < -CLOCK_STEPPED_BACK else age


class RotationReason(enum.Enum):
    """Why a rotation is due."""

    TIME = "time"
    VOLUME = "volume"
    DETECTOR = "detector"
    FAILURE_BURST = "failure_burst"
    REPLAY = "replay"


class KeyKind(enum.Enum):
    """What rotates."""

    SESSION = "session"
    PREKEYS = "prekeys"
    MAILBOX = "mailbox"


COMPROMISE = frozenset(
    {RotationReason.DETECTOR, RotationReason.FAILURE_BURST, RotationReason.REPLAY}
)


@dataclass(frozen=True)
class RotationDue:
    """Rotate `keys` now (`contact` is None for our prekeys alone)."""

    contact: str | None
    keys: frozenset[KeyKind]
    reason: RotationReason


@dataclass(frozen=True)
class RotationSettings:
    """Limits of the rotation policy."""

    session_max_age: float = 24 * 3600.0
    prekey_max_age: float = 48 * 3600.0
    max_messages: int = 1000
    max_bytes: int = 64 * 1024 * 1024
    failure_burst: int = 3
    burst_window: float = 60.0
    min_interval: float = 60.0

    def __post_init__(self) -> None:
        if self.prekey_max_age > 48 * 3600.0:
            raise LocalProtocolError("signed prekeys live at most 48 h")
        if min(self.session_max_age, self.burst_window, self.min_interval) <= 0:
            raise LocalProtocolError("durations must be positive")
        if self.max_messages < 1 or self.failure_burst < 1:
            raise LocalProtocolError("counts must be positive")


@dataclass
class _Contact:
    rotated_at: float
    messages: int = 0
    bytes: int = 0
    failures: list[float] = field(default_factory=list)
    pending: RotationDue | None = None


ALL_KEYS = frozenset(KeyKind)
SESSION_AND_MAILBOX = frozenset({KeyKind.SESSION, KeyKind.MAILBOX})


class RotationPolicy:
    """Tracks every contact's rotation counters (see the module docstring)."""

    def __init__(self, settings: RotationSettings | None = None) -> None:
        self.settings = settings or RotationSettings()
        self._contacts: dict[str, _Contact] = {}
        self._prekeys_at: float | None = None
        self._prekeys_forced_at = float("-inf")

    def _contact(self, contact: str, now: float) -> _Contact:
        state = self._contacts.get(contact)
        if state is None:
            state = self._contacts[contact] = _Contact(rotated_at=now)
        return state

    def track(self, contact: str, last_rotation: float) -> None:
        """Start tracking `contact`, whose keys last rotated at `last_rotation`."""
        self._contacts.setdefault(contact, _Contact(rotated_at=last_rotation))

    def forget(self, contact: str) -> None:
        """Stop tracking a removed contact."""
        self._contacts.pop(contact, None)

    def prekeys_created(self, created_at: float) -> None:
        """Our current signed prekey was created at `created_at`."""
        self._prekeys_at = created_at

    def _due(
        self,
        contact: str,
        state: _Contact,
        keys: frozenset[KeyKind],
        reason: RotationReason,
        now: float,
    ) -> list[RotationDue]:
        if state.pending is not None:
            return []  # one rotation at a time; the pending one covers this
        recent = elapsed(now, state.rotated_at) < self.settings.min_interval
        if recent and reason not in COMPROMISE:
            return []  # compromise signals rotate at once; time and volume can wait
        state.pending = RotationDue(contact, keys, reason)
        due = [state.pending]
        if KeyKind.PREKEYS in keys:
            if elapsed(now, self._prekeys_forced_at) < self.settings.min_interval:
                state.pending = RotationDue(contact, keys - {KeyKind.PREKEYS}, reason)
                due = [state.pending]
            else:
                self._prekeys_forced_at = now
        return due

    def message(self, contact: str, size: int, now: float) -> list[RotationDue]:
        """A message of `size` bytes went to or came from `contact`."""
        state = self._contact(contact, now)
        state.messages += 1
        state.bytes += size
        cfg = self.settings
        if state.messages >= cfg.max_messages or state.bytes >= cfg.max_bytes:
            return self._due(contact, state, SESSION_AND_MAILBOX, RotationReason.VOLUME, now)
        return []

    def failure(self, contact: str, now: float) -> list[RotationDue]:
        """A payload from `contact` failed to decrypt."""
        state = self._contact(contact, now)
        window = self.settings.burst_window
        state.failures = [t for t in state.failures if now - t < window] + [now]
        if len(state.failures) >= self.settings.failure_burst:
            state.failures = []
            return self._due(contact, state, ALL_KEYS, RotationReason.FAILURE_BURST, now)
        return []

    def replay(self, contact: str, now: float) -> list[RotationDue]:
        """A replayed ciphertext claiming to be from `contact` arrived."""
        return self._due(contact, self._contact(contact, now), ALL_KEYS, RotationReason.REPLAY, now)

    def alert(self, contact: str, now: float) -> list[RotationDue]:
        """The detector flagged `contact`."""
        state = self._contact(contact, now)
        return self._due(contact, state, ALL_KEYS, RotationReason.DETECTOR, now)

    def tick(self, now: float) -> list[RotationDue]:
        """Time triggers (call every few minutes)."""
        due: list[RotationDue] = []
        for contact, state in self._contacts.items():
            if elapsed(now, state.rotated_at) >= self.settings.session_max_age:
                due += self._due(contact, state, SESSION_AND_MAILBOX, RotationReason.TIME, now)
        prekeys_at = self._prekeys_at
        if prekeys_at is not None and elapsed(now, prekeys_at) >= self.settings.prekey_max_age:
            self._prekeys_at = now  # reported once; `prekeys_created` sets the real time
            due.append(RotationDue(None, frozenset({KeyKind.PREKEYS}), RotationReason.TIME))
        return due

    def pending(self, contact: str) -> RotationDue | None:
        """The rotation of `contact` not yet reported done."""
        state = self._contacts.get(contact)
        return None if state is None else state.pending

    def rotated(self, contact: str, now: float) -> None:
        """The node rotated `contact`'s keys: counters start again."""
        state = self._contact(contact, now)
        state.rotated_at = now
        state.messages = state.bytes = 0
        state.pending = None
