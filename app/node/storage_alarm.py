"""Telling the user that what contacts send can't be stored (the profile's disk is full
or read-only).

Nothing is lost meanwhile: what could not be stored was not acknowledged, so it waits
with its sender and the messenger asks for it again (`STORAGE_RETRY_SECONDS`). Without
a word, though, the user would only see messages that don't come. The alarm publishes a
`StorageAlert` when storing starts failing (again at most once a minute while it
lasts), answers `status` with the reason, and publishes the all-clear once a payload is
stored again.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from app.node.api import NodeEvent, StorageAlert, StorageFailed

ALERT_EVERY_SECONDS = 60.0
"""While storing keeps failing for the same reason, the alert is repeated this often."""


class StorageAlarm:
    """Tracks whether what contacts send can be stored, and tells the user when that
    changes."""

    def __init__(
        self,
        profile: Path,
        publish: Callable[[NodeEvent], None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._profile = profile
        self._publish = publish
        self._clock = clock
        self._alerted_at = -ALERT_EVERY_SECONDS
        self._alerted = ""  # the last alert's sentence
        self._outstanding = False  # an alert was published and not yet resolved
        self.problem = ""
        """The sentence of the current alert ("" while storing works)."""

    def failed(self, exc: StorageFailed) -> None:
        """Storing what a contact sent failed with `exc`. Alerted when the reason is new
        or the last alert is a minute old: a disk on the edge of full, where small
        writes pass and larger ones fail, does not flood the user."""
        detail = self.problem = self.describe(exc)
        now = self._clock()
        if detail != self._alerted or now - self._alerted_at >= ALERT_EVERY_SECONDS:
            self._alerted, self._alerted_at, self._outstanding = detail, now, True
            self._publish(StorageAlert(detail))

    def stored(self) -> None:
        """Something was stored: the disk takes writes again."""
        self.problem = ""
        if self._outstanding:
            self._outstanding = False
            self._publish(
                StorageAlert(
                    f"The profile's disk ({self._profile}) takes what your contacts send "
                    "again; what waited is coming in.",
                    resolved=True,
                )
            )

    def describe(self, exc: StorageFailed) -> str:
        """The alert's sentence for `exc`."""
        reason = exc.reason or "the disk refused a write"
        fix = "space is freed" if reason == "the disk is full" else "the disk works again"
        return (
            f"What your contacts send can't be stored: {reason} ({self._profile}). "
            f"It waits with them and arrives by itself once {fix}."
        )
