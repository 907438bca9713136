"""The storage alarm: the user is told when what contacts send can't be stored, not
flooded while it lasts, and told when it can be again."""

from __future__ import annotations

from pathlib import Path

from app.node.api import NodeEvent, StorageAlert, StorageFailed
from app.node.storage_alarm import ALERT_EVERY_SECONDS, StorageAlarm

FULL = StorageFailed("Couldn't save ...: the disk is full. ...", "the disk is full")
READ_ONLY = StorageFailed("Couldn't save ...: the disk is read-only. ...", "the disk is read-only")


def test_alerts_once_per_minute_per_reason_and_says_when_it_is_over() -> None:
    published: list[NodeEvent] = []
    now = [100.0]
    alarm = StorageAlarm(Path("/p"), published.append, clock=lambda: now[0])
    alarm.stored()  # nothing was wrong: nothing to say
    assert published == [] and alarm.problem == ""

    for _ in range(5):  # a run of failures: one alert
        alarm.failed(FULL)
        now[0] += 1
    assert published == [StorageAlert(alarm.problem)]
    assert alarm.problem == (
        "What your contacts send can't be stored: the disk is full (/p). "
        "It waits with them and arrives by itself once space is freed."
    )
    now[0] += ALERT_EVERY_SECONDS  # still failing a minute later: said again
    alarm.failed(FULL)
    alarm.failed(READ_ONLY)  # another reason: said at once
    assert [e.detail.split(": ")[1].split(" (")[0] for e in published] == [  # type: ignore[union-attr]
        "the disk is full",
        "the disk is full",
        "the disk is read-only",
    ]
    assert "once the disk works again" in alarm.problem

    alarm.stored()
    assert alarm.problem == "" and published[-1] == StorageAlert(
        "The profile's disk (/p) takes what your contacts send again; what waited is coming in.",
        resolved=True,
    )
    # a disk on the edge (small writes pass, larger fail) does not flood the user
    count = len(published)
    alarm.failed(READ_ONLY)
    alarm.stored()
    alarm.failed(READ_ONLY)
    assert len(published) == count and alarm.problem
