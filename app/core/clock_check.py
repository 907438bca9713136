"""Whether our own wall clock looks wrong, judged from our contacts' clocks (sans-I/O).

A clock a day or more off breaks what other nodes check against their own clocks
(decision 0020): DHT records and prekey bundles dated that far off are refused, so
messages to a contact who is offline stay queued. Nothing tells the user, and one
contact alone can't say whose clock is wrong. So each state message sent over a live
connection carries its sender's wall clock when it was sealed (``"w"``, docs/protocol.md
section 7), and we compare it with ours when it arrives:

    d = our clock at arrival - their clock at sealing = (our offset - theirs) + delay

Delay only adds, so the smallest `d` among a contact's recent samples is the best
estimate of how far our clock is ahead of theirs (negative: behind). Samples taken
before our own clock stepped (the wall clock moved against the monotonic one: NTP, the
user setting it) say nothing of the clock now and are dropped.

The verdict needs at least `MIN_CONTACTS` contacts, and more than half of the contacts
heard from to put our clock off the same way by `WARN_MS` or more: then it is our clock
(or theirs all alike, which the user can check as easily). A warning clears once fewer
than half put it off by `CLEAR_MS` (hysteresis: an estimate near the line doesn't make
it flicker).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

WARN_MS = 3_600_000
"""Our clock is said to be wrong once it is this far off (an hour: a wrong time zone
or date, not drift; a day breaks offline delivery)."""
CLEAR_MS = 1_800_000
"""A warning clears once our clock is less than this far off."""
MIN_CONTACTS = 2
"""Contacts needed for a verdict: one alone can't say whose clock is wrong."""
WINDOW_S = 600.0
"""A contact's estimate is the smallest `d` among its samples of the last 10 minutes
(monotonic) before its newest one."""
STEP_MS = 60_000
"""Our wall clock moved this much against the monotonic one since a sample: it stepped,
and the sample is dropped."""
MAX_SAMPLES = 64
"""Samples kept per contact (the newest)."""
MAX_CONTACTS = 1024
"""Contacts kept (the least recently heard from goes first)."""
RECHECK_MS = 1_000
"""A contact's estimate is worked out again once our wall clock moved this much against
the monotonic one since (drift is microseconds a second: in practice, after a step);
otherwise only when the contact sends a sample. Every state message received asks for a
verdict: with 50 contacts heard from, working out every estimate each time cost 465 us."""


@dataclass(frozen=True)
class ClockVerdict:
    """Our clock is `offset_ms` ahead of our contacts' (negative: behind), as
    `agreeing` of the `heard` contacts heard from say."""

    offset_ms: int
    agreeing: int
    heard: int


@dataclass(frozen=True)
class _Sample:
    at: float  # our monotonic clock when it arrived (s)
    base_ms: int  # our wall clock minus our monotonic one then (ms)
    d_ms: int  # our wall clock at arrival minus the sender's at sealing


class ClockCheck:
    """Samples of our contacts' clocks and the verdict on ours."""

    def __init__(self) -> None:
        self._samples: dict[str, deque[_Sample]] = {}
        self._estimates: dict[str, tuple[int, int | None]] = {}
        """Per contact: our wall clock minus the monotonic one when its estimate was
        worked out, and the estimate (None: no sample counts)."""
        self._warning: ClockVerdict | None = None

    def sample(self, contact: str, sent_ms: int, wall_ms: int, mono_s: float) -> None:
        """`contact` sealed a message at `sent_ms` by its clock; it arrived at `wall_ms`
        by ours, `mono_s` by our monotonic clock."""
        samples = self._samples.pop(contact, None)
        if samples is None:
            samples = deque(maxlen=MAX_SAMPLES)
            if len(self._samples) >= MAX_CONTACTS:
                self.forget(next(iter(self._samples)))
        self._samples[contact] = samples  # now the most recently heard from
        samples.append(_Sample(mono_s, wall_ms - int(mono_s * 1000), wall_ms - sent_ms))
        self._estimates.pop(contact, None)

    def forget(self, contact: str) -> None:
        """A contact was removed: its samples count no more."""
        self._samples.pop(contact, None)
        self._estimates.pop(contact, None)

    def estimates(self, wall_ms: int, mono_s: float) -> dict[str, int]:
        """Per contact heard from: how far our clock is ahead of its clock (ms)."""
        base = wall_ms - int(mono_s * 1000)
        found: dict[str, int] = {}
        for contact, samples in self._samples.items():
            known = self._estimates.get(contact)
            if known is None or abs(known[0] - base) >= RECHECK_MS:
                known = self._estimates[contact] = (base, _estimate(samples, base))
            if known[1] is not None:
                found[contact] = known[1]
        return found

    def verdict(self, wall_ms: int, mono_s: float) -> ClockVerdict | None:
        """Our clock's offset if it looks wrong now (see the module docstring), else
        None."""
        found = sorted(self.estimates(wall_ms, mono_s).values())
        if len(found) < MIN_CONTACTS:
            self._warning = None
            return None
        limit = CLEAR_MS if self._warning is not None else WARN_MS
        ahead = [d for d in found if d >= limit]
        behind = [d for d in found if d <= -limit]
        side = ahead if len(ahead) > len(behind) else behind
        if len(side) < MIN_CONTACTS or 2 * len(side) <= len(found):
            self._warning = None
            return None
        # the middle of the contacts that agree: one contact's wild clock can't set it
        self._warning = ClockVerdict(side[len(side) // 2], len(side), len(found))
        return self._warning


def _estimate(samples: deque[_Sample], base: int) -> int | None:
    """The smallest `d` among the samples of the last `WINDOW_S` before the newest, of
    those taken since our clock last stepped (`base`: its wall minus monotonic now)."""
    valid = [s for s in samples if abs(s.base_ms - base) < STEP_MS]
    if not valid:
        return None
    newest = max(s.at for s in valid)
    return min(s.d_ms for s in valid if newest - s.at <= WINDOW_S)


def describe_offset(offset_ms: int) -> str:
    """ "about 3 hours ahead", "about 2 days behind"... for a clock `offset_ms` off."""
    minutes = abs(offset_ms) / 60_000
    if minutes < 90:
        amount = f"{round(minutes)} minutes"
    elif minutes < 36 * 60:
        hours = round(minutes / 60)
        amount = f"{hours} hours"
    else:
        days = round(minutes / (24 * 60))
        amount = "1 day" if days == 1 else f"{days} days"
    return f"about {amount} {'ahead' if offset_ms > 0 else 'behind'}"
