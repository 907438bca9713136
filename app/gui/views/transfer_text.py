"""Words and numbers for file transfers: sizes, speeds, time left, and the one-line
summaries the file bubbles and the transfers list show.

Sizes use decimal units (1 kB = 1000 B), as GNOME and macOS do; numbers follow the user's
locale (decimal comma where that is usual)."""

from __future__ import annotations

import math

from PySide6.QtCore import QCoreApplication, QLocale

from app.node.api import Message, MessageStatus, Transfer, TransferState

UNITS = ("B", "kB", "MB", "GB", "TB", "PB")


def _tr(text: str) -> str:
    return QCoreApplication.translate("Transfers", text)


def format_size(size: float, locale: QLocale | None = None) -> str:
    """`size` bytes with a unit and three significant digits: "0 B", "999 B", "1.00 kB",
    "12.4 MB", "150 GB"."""
    locale = locale or QLocale()
    value = max(0.0, float(size))
    if value < 1000:
        return f"{locale.toString(int(value))} B"
    unit = 0
    while True:
        value /= 1000
        unit += 1
        rounded = float(f"{value:.3g}")  # three significant digits, as shown
        if rounded < 1000 or unit == len(UNITS) - 1:
            break
    decimals = 2 if rounded < 10 else 1 if rounded < 100 else 0
    return f"{locale.toString(rounded, 'f', decimals)} {UNITS[unit]}"


def format_speed(bytes_per_second: float, locale: QLocale | None = None) -> str:
    """A transfer rate: "850 kB/s", "12.4 MB/s"."""
    return f"{format_size(bytes_per_second, locale)}/s"


def format_duration(seconds: float) -> str:
    """A coarse duration, rounded up: "1 s", "45 s", "3 min 20 s", "2 h 05 min", "3 d 4 h"."""
    total = max(1, math.ceil(seconds))
    if total < 60:
        return _tr("{0} s").format(total)
    if total < 600:
        minutes, secs = divmod(total, 60)
        return _tr("{0} min {1} s").format(minutes, f"{secs:02d}")
    minutes = math.ceil(total / 60)
    if minutes < 60:
        return _tr("{0} min").format(minutes)
    if minutes < 24 * 60:
        hours, minutes = divmod(minutes, 60)
        return _tr("{0} h {1} min").format(hours, f"{minutes:02d}")
    days, hours = divmod(math.ceil(total / 3600), 24)
    return _tr("{0} d {1} h").format(days, hours)


def eta_seconds(transfer: Transfer) -> float | None:
    """Seconds until a running transfer is done at its recent speed; None if unknown."""
    if transfer.state != TransferState.RUNNING or transfer.speed_bps <= 0:
        return None
    return max(0, transfer.size - transfer.done_bytes) / transfer.speed_bps


def format_eta(transfer: Transfer) -> str:
    """ "2 min 10 s left", or "" when the speed is not known yet."""
    seconds = eta_seconds(transfer)
    if seconds is None:
        return ""
    return _tr("{0} left").format(format_duration(seconds))


def fraction_done(transfer: Transfer) -> float:
    """Progress between 0 and 1 (an empty file is complete once DONE)."""
    if transfer.state == TransferState.DONE:
        return 1.0
    if transfer.size <= 0:
        return 0.0
    return min(1.0, max(0.0, transfer.done_bytes / transfer.size))


def state_text(transfer: Transfer) -> str:
    """The state in a few words, from the user's side of the transfer."""
    state = transfer.state
    if state == TransferState.OFFERED:
        return _tr("Waiting for them to accept") if transfer.outgoing else _tr("Offered to you")
    if state == TransferState.RUNNING:
        return _tr("Sending") if transfer.outgoing else _tr("Receiving")
    if state == TransferState.PAUSED:
        return _tr("Paused by them") if transfer.outgoing else _tr("Paused")
    if state == TransferState.DONE:
        return _tr("Sent") if transfer.outgoing else _tr("Received")
    if state == TransferState.FAILED:
        return _tr("Failed")
    if transfer.declined:
        return _tr("Declined by them") if transfer.ended_by == "contact" else _tr("Declined")
    return _tr("Cancelled by them") if transfer.ended_by == "contact" else _tr("Cancelled")


def summary_text(transfer: Transfer, locale: QLocale | None = None) -> str:
    """Size and state: "12.4 MB · Receiving"."""
    return f"{format_size(transfer.size, locale)} · {state_text(transfer)}"


def reached_them(message: Message) -> bool:
    """Whether the contact has the file message (always true for one they sent us): an
    offer to a contact who is offline waits in the outbox or in a mailbox until then."""
    return not message.outgoing or message.status in (MessageStatus.DELIVERED, MessageStatus.READ)


def progress_text(
    transfer: Transfer,
    locale: QLocale | None = None,
    *,
    delivered: bool = True,
    starting: bool = False,
    compact: bool = False,
) -> str:
    """The line under the progress bar (or in its place when there is none):
    "4.10 MB of 12.4 MB · 3.20 MB/s · 3 s left" while running, the error when failed,
    where the file is once received. `delivered` is false while our offer has not
    reached the contact (see `reached_them`); `starting` true while a transfer that has
    just begun has no speed yet (without a speed it otherwise waits for the peer, see
    `TransferModel.starting`). `compact` leaves out the file's size,
    which the summary line shows too ("4.10 MB · 3.20 MB/s · 3 s left"), for a line
    that would otherwise not fit."""
    state = transfer.state
    if state in (TransferState.RUNNING, TransferState.PAUSED):
        done = format_size(transfer.done_bytes, locale)
        parts = [
            done if compact else _tr("{0} of {1}").format(done, format_size(transfer.size, locale))
        ]
        if state == TransferState.RUNNING:
            if transfer.speed_bps > 0:
                parts.append(format_speed(transfer.speed_bps, locale))
                parts.append(format_eta(transfer))
            elif starting:
                parts.append(_tr("starting…"))
            elif transfer.waiting:  # e.g. the IPFS daemon it would fetch from is down
                parts.append(_tr("waiting for the peer; {0}").format(transfer.waiting))
            else:
                parts.append(_tr("waiting for the peer"))
        else:
            parts.append(_tr("{0} %").format(int(fraction_done(transfer) * 100)))
        return " · ".join(parts)
    if state == TransferState.FAILED:
        return transfer.error or _tr("The transfer stopped; retry to resume it.")
    if state == TransferState.OFFERED:
        if transfer.outgoing:
            if not delivered:
                return _tr("They are asked when it reaches them.")
            return _tr("They are asked whether to accept it.")
        return _tr("Accept to download it.")
    if state == TransferState.DONE:
        if transfer.outgoing:
            return _tr("They have the whole file.")
        return _tr("Saved as {0}").format(transfer.path) if transfer.path else _tr("Saved")
    return _tr("Nothing more will be transferred.")


def accessible_text(
    transfer: Transfer,
    locale: QLocale | None = None,
    *,
    delivered: bool = True,
    starting: bool = False,
) -> str:
    """Everything the row says, as one sentence for screen readers and tooltips."""
    progress = progress_text(transfer, locale, delivered=delivered, starting=starting)
    return f"{transfer.name}, {summary_text(transfer, locale)}, {progress}"
