"""What a receiver tells the sender of a file about its side of the transfer.

The sender cannot see the receiver pause, fail (disk full, no permission, a file that
does not verify) or resume. The receiver says so with an ephemeral ``xfer`` signal
(`app.node.state_message.TransferStatus`): when its transfer starts, is paused, fails
or is retried, and again for every unfinished transfer from that contact when the
contact (re)connects, since a signal to an offline contact is dropped. The states
waiting for one sender go together, up to `MAX_TOLD` in one ``xfers`` message
(`TransferStatuses`), one message at a time (`FileTransfers._tell`). A failure is
sent as a reason code, never as text: the sender shows its own words, and the
receiver's error (which names its folders) stays with the receiver.

The sender's row follows: RUNNING, PAUSED, or FAILED with an error saying it failed
on the other side. It keeps the file's blocks, so a retry by the receiver succeeds,
and it can still cancel. A done or cancelled transfer never changes.
"""

from __future__ import annotations

import dataclasses

from app.node.api import TransferState
from app.node.files_errors import (
    BlockCorrupt,
    DiskFull,
    DownloadPermissionDenied,
    FilesError,
    TransferFailed,
)
from app.node.state_message import TransferStatus
from app.node.storage.transfers import TransferRecord

_STATES = {
    TransferState.RUNNING: "running",
    TransferState.PAUSED: "paused",
    TransferState.FAILED: "failed",
}
_SHOWN = {
    "disk_full": "Failed on their side: not enough free space to save it.",
    "permission": "Failed on their side: their downloads folder cannot be written to.",
    "corrupt": "Failed on their side: the file did not verify.",
    "other": "Failed on their side.",
    "": "Failed on their side.",
}


def reason_code(exc: FilesError) -> str:
    """The code a receiver sends for its failure `exc`."""
    if isinstance(exc, DiskFull):
        return "disk_full"
    if isinstance(exc, DownloadPermissionDenied):
        return "permission"
    if isinstance(exc, TransferFailed | BlockCorrupt):
        return "corrupt"
    return "other"


def ended_reason(record: TransferRecord, by_contact: bool) -> str:
    """The reason kept for `record` cancelled now, by the contact or by us: who ended it,
    and whether it was still an offer nobody had accepted (a Decline)."""
    who = "contact" if by_contact else "me"
    # an offer the receiver had not accepted: our Decline of theirs, or their Decline
    declined = record.state is TransferState.OFFERED and record.outgoing == by_contact
    return f"declined_by_{who}" if declined else f"cancelled_by_{who}"


def ended_by(record: TransferRecord) -> tuple[str, bool]:
    """Who ended a cancelled `record` ("me", "contact" or "" if not known) and whether
    it was declined."""
    if record.state is not TransferState.CANCELLED:
        return "", False
    how, _, who = record.reason.partition("_by_")
    if how not in ("declined", "cancelled") or who not in ("me", "contact"):
        return "", False
    return who, how == "declined"


def status_of(record: TransferRecord) -> TransferStatus | None:
    """The signal telling the sender of the incoming `record` its state (None: the
    state is not one the sender is told: offered, or ended by its own event)."""
    state = _STATES.get(record.state)
    if record.outgoing or state is None:
        return None
    reason = record.reason if record.state is TransferState.FAILED else ""
    return TransferStatus(record.id, state, reason, record.done_bytes)


def sender_view(record: TransferRecord, status: TransferStatus) -> TransferRecord | None:
    """The outgoing `record` as the receiver's `status` makes it; None if nothing changes
    (or the transfer has ended, or is not ours to send)."""
    if not record.outgoing or record.state in (TransferState.DONE, TransferState.CANCELLED):
        return None
    if status.state == "running":
        new = dataclasses.replace(record, state=TransferState.RUNNING, error=None)
    elif status.state == "paused":  # what the receiver holds: served blocks may be lost
        done = min(status.done, record.size)
        new = dataclasses.replace(record, state=TransferState.PAUSED, error=None, done_bytes=done)
    else:  # a failed receiver's part is gone: its retry starts again from nothing
        new = dataclasses.replace(
            record,
            state=TransferState.FAILED,
            error=_SHOWN.get(status.reason, _SHOWN[""]),
            done_bytes=min(status.done, record.size),
        )
    return None if new == record else new


__all__ = ["reason_code", "sender_view", "status_of"]
