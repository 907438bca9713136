"""Small questions asked about a contact: another name, removing them, files to share.

Each is a window-modal dialog run without blocking the event loop (`run_dialog`), so the
node keeps working while the user answers.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtWidgets import (
    QFileDialog,
    QHeaderView,
    QInputDialog,
    QLineEdit,
    QMessageBox,
    QTreeView,
    QWidget,
)

from app.gui.asyncqt import run_dialog
from app.gui.views.peer_text import isolated
from app.node.api import Contact


async def ask_new_name(parent: QWidget, contact: Contact) -> str | None:
    """The name the user typed for `contact` (None: cancelled or unchanged)."""
    dialog = QInputDialog(parent)
    dialog.setWindowTitle(parent.tr("Rename contact"))
    dialog.setLabelText(
        parent.tr("A new name for {0} (only you see it):").format(isolated(contact.name))
    )
    dialog.setTextEchoMode(QLineEdit.EchoMode.Normal)
    dialog.setTextValue(contact.name)
    dialog.setOkButtonText(parent.tr("Rename"))
    try:
        accepted = await run_dialog(dialog)
        name = dialog.textValue().strip()
    finally:
        dialog.deleteLater()
    return name if accepted and name and name != contact.name else None


async def confirm_remove(parent: QWidget, contact: Contact) -> bool:
    """Whether the user confirms removing `contact`."""
    box = QMessageBox(parent)
    box.setIcon(QMessageBox.Icon.Question)
    box.setWindowTitle(parent.tr("Remove contact"))
    box.setText(parent.tr("Remove {0} from your contacts?").format(isolated(contact.name)))
    box.setInformativeText(
        parent.tr(
            "Files still being sent to or received from them are cancelled. Your "
            "conversation is kept on this computer and comes back if you add them again "
            "from their invite."
        )
    )
    remove = box.addButton(parent.tr("Remove"), QMessageBox.ButtonRole.DestructiveRole)
    box.addButton(QMessageBox.StandardButton.Cancel)
    box.setDefaultButton(QMessageBox.StandardButton.Cancel)
    try:
        await run_dialog(box)
        return box.clickedButton() is remove
    finally:
        box.deleteLater()


PICKER_SIZE = (860, 560)
_last_folder: list[Path] = []
"""Where the user last picked something to share (this run only): the next picker opens
there, not in the folder the app was started from."""


async def pick_paths(parent: QWidget, contact: Contact, folder: bool = False) -> list[Path]:
    """Files (or one folder) the user chose to share with `contact` (empty: cancelled)."""
    dialog = QFileDialog(parent)
    if folder:
        dialog.setWindowTitle(parent.tr("Share a folder with {0}").format(isolated(contact.name)))
        dialog.setFileMode(QFileDialog.FileMode.Directory)
        dialog.setOption(QFileDialog.Option.ShowDirsOnly, True)
    else:
        dialog.setWindowTitle(parent.tr("Share files with {0}").format(isolated(contact.name)))
        dialog.setFileMode(QFileDialog.FileMode.ExistingFiles)
    dialog.setAcceptMode(QFileDialog.AcceptMode.AcceptOpen)
    start = next((p for p in _last_folder if p.is_dir()), Path.home())
    dialog.setDirectory(str(start))
    dialog.setLabelText(QFileDialog.DialogLabel.Accept, parent.tr("Share"))
    # Qt's own dialog (no desktop portal, e.g. the packaged app) opens small, with its
    # size and date columns cut: give it room, within the window's screen
    screen = parent.screen().availableGeometry()
    dialog.resize(min(PICKER_SIZE[0], screen.width()), min(PICKER_SIZE[1], screen.height()))
    for view in dialog.findChildren(QTreeView):  # the detail view: columns fit their text
        header = view.header()
        header.setStretchLastSection(False)
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
    try:
        if not await run_dialog(dialog):
            return []
        chosen = [Path(name) for name in dialog.selectedFiles()]
        if chosen:
            _last_folder[:] = [chosen[0].parent]  # a folder: where it is, to pick a sibling
        return chosen
    finally:
        dialog.deleteLater()


__all__ = ["ask_new_name", "confirm_remove", "pick_paths"]
