"""Sizes, speeds, time left and the per-state wording of file transfers, and which buttons
each state offers."""

from __future__ import annotations

from dataclasses import replace

import pytest
from PySide6.QtCore import QLocale

from app.gui.views.file_card import TransferAction, actions_for, extension_label
from app.gui.views.transfer_text import (
    eta_seconds,
    format_duration,
    format_eta,
    format_size,
    format_speed,
    fraction_done,
    progress_text,
    state_text,
    summary_text,
)
from app.node.api import Transfer, TransferState

EN = QLocale(QLocale.Language.English, QLocale.Country.UnitedStates)
DE = QLocale(QLocale.Language.German, QLocale.Country.Germany)


def transfer(
    state: TransferState,
    outgoing: bool = False,
    size: int = 4_000_000,
    done: int = 1_000_000,
    speed: float = 0.0,
    path: str | None = None,
    error: str | None = None,
) -> Transfer:
    return Transfer(
        id="t1",
        contact="bob-address",
        outgoing=outgoing,
        name="holiday.jpg",
        size=size,
        done_bytes=done,
        state=state,
        path=path,
        mime="image/jpeg",
        time=1_700_000_000.0,
        speed_bps=speed,
        error=error,
    )


@pytest.mark.parametrize(
    ("size", "text"),
    [
        (0, "0 B"),
        (1, "1 B"),
        (999, "999 B"),
        (1000, "1.00 kB"),
        (1234, "1.23 kB"),
        (262_144, "262 kB"),
        (262_145, "262 kB"),
        (999_499, "999 kB"),
        (999_999, "1.00 MB"),  # rounds up to the next unit, never "1000 kB"
        (12_345_678, "12.3 MB"),
        (52_428_800, "52.4 MB"),
        (1_073_741_824, "1.07 GB"),
        (150_000_000_000, "150 GB"),
        (10**18, "1,000 PB"),  # the largest unit keeps growing
    ],
)
def test_sizes_have_three_significant_digits(size: int, text: str) -> None:
    assert format_size(size, EN) == text


def test_sizes_follow_the_locale() -> None:
    assert format_size(1234, DE) == "1,23 kB"
    assert format_speed(3_200_000, DE) == "3,20 MB/s"


def test_speed() -> None:
    assert format_speed(850_000, EN) == "850 kB/s"
    assert format_speed(12_400_000, EN) == "12.4 MB/s"
    assert format_speed(0, EN) == "0 B/s"


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "1 s"),
        (0.2, "1 s"),
        (45, "45 s"),
        (59.5, "1 min 00 s"),
        (200, "3 min 20 s"),
        (601, "11 min"),
        (3599, "1 h 00 min"),
        (7500, "2 h 05 min"),
        (90_000, "1 d 1 h"),
    ],
)
def test_durations_round_up(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


def test_eta_is_the_rest_at_the_recent_speed() -> None:
    running = transfer(TransferState.RUNNING, size=4_000_000, done=1_000_000, speed=1_000_000)
    assert eta_seconds(running) == pytest.approx(3.0)
    assert format_eta(running) == "3 s left"
    assert eta_seconds(transfer(TransferState.RUNNING, speed=0)) is None  # not known yet
    assert format_eta(transfer(TransferState.PAUSED, speed=1000)) == ""


def test_fraction_done() -> None:
    assert fraction_done(transfer(TransferState.RUNNING, size=4, done=1)) == 0.25
    assert fraction_done(transfer(TransferState.RUNNING, size=0, done=0)) == 0.0
    assert fraction_done(transfer(TransferState.DONE, size=0, done=0)) == 1.0
    assert fraction_done(transfer(TransferState.RUNNING, size=4, done=9)) == 1.0


def test_progress_line_while_running_has_speed_and_time_left() -> None:
    running = transfer(TransferState.RUNNING, speed=1_500_000)
    assert progress_text(running, EN) == "1.00 MB of 4.00 MB · 1.50 MB/s · 2 s left"
    assert summary_text(running, EN) == "4.00 MB · Receiving"
    # for a narrow card: the size is on the summary line already
    assert progress_text(running, EN, compact=True) == "1.00 MB · 1.50 MB/s · 2 s left"
    stalled = transfer(TransferState.RUNNING, speed=0)
    assert progress_text(stalled, EN) == "1.00 MB of 4.00 MB · waiting for the peer"
    paused = transfer(TransferState.PAUSED)
    assert progress_text(paused, EN) == "1.00 MB of 4.00 MB · 25 %"


def test_wording_per_state_and_direction() -> None:
    assert state_text(transfer(TransferState.OFFERED)) == "Offered to you"
    assert state_text(transfer(TransferState.OFFERED, outgoing=True)) == (
        "Waiting for them to accept"
    )
    assert state_text(transfer(TransferState.RUNNING, outgoing=True)) == "Sending"
    assert state_text(transfer(TransferState.DONE)) == "Received"
    assert state_text(transfer(TransferState.DONE, outgoing=True)) == "Sent"
    assert state_text(transfer(TransferState.CANCELLED)) == "Cancelled"
    # who ended it: a declined offer read as any cancel
    cancelled = transfer(TransferState.CANCELLED, outgoing=True)
    assert state_text(replace(cancelled, ended_by="contact", declined=True)) == "Declined by them"
    assert state_text(replace(cancelled, ended_by="contact")) == "Cancelled by them"
    assert state_text(replace(cancelled, ended_by="me")) == "Cancelled"
    mine = transfer(TransferState.CANCELLED, done=0)
    assert state_text(replace(mine, ended_by="me", declined=True)) == "Declined"
    failed = transfer(TransferState.FAILED, error="The disk is full.")
    assert state_text(failed) == "Failed" and progress_text(failed) == "The disk is full."
    done = transfer(TransferState.DONE, path="/home/a/Downloads/holiday.jpg")
    assert progress_text(done) == "Saved as /home/a/Downloads/holiday.jpg"


def test_buttons_per_state() -> None:
    a = TransferAction
    assert actions_for(None) == []
    assert actions_for(transfer(TransferState.OFFERED)) == [a.ACCEPT, a.DECLINE]
    assert actions_for(transfer(TransferState.OFFERED, outgoing=True)) == [a.CANCEL]
    assert actions_for(transfer(TransferState.RUNNING)) == [a.PAUSE, a.CANCEL]
    assert actions_for(transfer(TransferState.RUNNING, outgoing=True)) == [a.CANCEL]
    assert actions_for(transfer(TransferState.PAUSED)) == [a.RESUME, a.CANCEL]
    assert actions_for(transfer(TransferState.FAILED)) == [a.RETRY, a.CANCEL]
    # paused or failed on the receiver's side: only they can resume it
    assert actions_for(transfer(TransferState.PAUSED, outgoing=True)) == [a.CANCEL]
    assert actions_for(transfer(TransferState.FAILED, outgoing=True)) == [a.CANCEL]
    assert actions_for(transfer(TransferState.DONE, path="/tmp/x")) == [a.OPEN, a.SHOW_IN_FOLDER]
    assert actions_for(transfer(TransferState.DONE, path=None)) == []
    assert actions_for(transfer(TransferState.CANCELLED)) == []


def test_file_glyph_label() -> None:
    assert extension_label("holiday.jpg") == "JPG"
    assert extension_label("photos/2024/beach.jpeg") == "JPEG"
    assert extension_label("archive.tar.gz") == "GZ"
    assert extension_label("README") == ""
