"""Telling the user that the computer's clock looks wrong (`app.core.clock_check`).

The messenger hands over the sender's clock of every state message that arrives over a
live connection. The alarm publishes a `ClockAlert` when the verdict appears or its
sentence changes (at most once a minute), answers `status` with the sentence, and
publishes the all-clear when the clock looks right again.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from app.core.clock_check import ClockCheck, ClockVerdict, describe_offset
from app.node.api import ClockAlert, NodeEvent

ALERT_EVERY_SECONDS = 60.0
"""A changed sentence is published at most this often (the status always has the
latest)."""


class ClockAlarm:
    """Judges our clock from our contacts' and tells the user when it looks wrong."""

    def __init__(
        self,
        publish: Callable[[NodeEvent], None],
        *,
        wall: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._publish = publish
        self._wall = wall
        self._monotonic = monotonic
        self._check = ClockCheck()
        self._alerted_at = -ALERT_EVERY_SECONDS
        self._alerted = ""
        self.problem = ""
        """The sentence of the current alert ("" while the clock looks right)."""

    def heard(self, contact: str, sent_ms: int) -> None:
        """`contact` sealed a message that just arrived live at `sent_ms` by its clock."""
        wall_ms, mono = int(self._wall() * 1000), self._monotonic()
        self._check.sample(contact, sent_ms, wall_ms, mono)
        self._judge(self._check.verdict(wall_ms, mono), mono)

    def forget(self, contact: str) -> None:
        """A removed contact's clock counts no more."""
        self._check.forget(contact)
        mono = self._monotonic()
        self._judge(self._check.verdict(int(self._wall() * 1000), mono), mono)

    def _judge(self, verdict: ClockVerdict | None, now: float) -> None:
        detail = "" if verdict is None else self.describe(verdict)
        if detail == self.problem:
            return
        self.problem = detail
        if not detail:
            if self._alerted:
                self._alerted = ""
                self._publish(
                    ClockAlert(
                        "Your computer's clock agrees with your contacts' clocks again.",
                        resolved=True,
                    )
                )
            return
        if not self._alerted or now - self._alerted_at >= ALERT_EVERY_SECONDS:
            self._alerted, self._alerted_at = detail, now
            self._publish(ClockAlert(detail))

    @staticmethod
    def describe(verdict: ClockVerdict) -> str:
        """The alert's sentence for `verdict`."""
        return (
            f"Your computer's clock seems to be {describe_offset(verdict.offset_ms)} "
            f"({verdict.agreeing} of the {verdict.heard} contacts you heard from agree). "
            "Set the date, time and time zone right: a clock a day or more off keeps "
            "messages to contacts who are offline from being left for them."
        )
