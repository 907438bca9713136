"""Asking before a transfer that has moved data is cancelled.

Cancelling is final: the receiver's part is deleted and the sender's blocks go, so the
file can't be resumed, only shared again. The Cancel button sits beside Pause on a
running download, and a click on it threw away what had arrived with nothing asked. An offer
nobody accepted yet (Decline, or the sender's Cancel) moved nothing and is not asked
about.
"""

from __future__ import annotations

from PySide6.QtWidgets import QMessageBox, QWidget

from app.gui.asyncqt import run_dialog
from app.gui.views.peer_text import isolated
from app.gui.views.transfer_text import format_size
from app.node.api import Transfer, TransferState


def worth_asking(transfer: Transfer | None) -> bool:
    """Whether cancelling `transfer` would throw away data it has moved."""
    return (
        transfer is not None
        and transfer.done_bytes > 0
        and transfer.state in (TransferState.RUNNING, TransferState.PAUSED, TransferState.FAILED)
    )


async def confirm_cancel(parent: QWidget, transfer: Transfer, contact_name: str) -> bool:
    """Whether the user confirms cancelling `transfer` (shared with `contact_name`)."""
    box = QMessageBox(parent)
    box.setIcon(QMessageBox.Icon.Question)
    name = isolated(transfer.name)
    done = format_size(transfer.done_bytes)
    if transfer.outgoing:
        box.setWindowTitle(parent.tr("Stop sending"))
        box.setText(parent.tr("Stop sending {0}?").format(name))
        box.setInformativeText(
            parent.tr(
                "{0} has received {1} of it and can't finish it. To send it again, share it again."
            ).format(isolated(contact_name), done)
        )
    else:
        box.setWindowTitle(parent.tr("Stop receiving"))
        box.setText(parent.tr("Stop receiving {0}?").format(name))
        box.setInformativeText(
            parent.tr(
                "The {0} received so far are deleted and this download can't be resumed; "
                "{1} would have to send it again."
            ).format(done, isolated(contact_name))
        )
    stop = box.addButton(parent.tr("Cancel transfer"), QMessageBox.ButtonRole.DestructiveRole)
    keep = box.addButton(parent.tr("Keep going"), QMessageBox.ButtonRole.RejectRole)
    box.setDefaultButton(keep)
    box.setEscapeButton(keep)
    try:
        await run_dialog(box)
        return box.clickedButton() is stop
    finally:
        box.deleteLater()
