"""Add a contact from an invite link or an address."""

from __future__ import annotations

from PySide6.QtCore import QMimeData, Qt, QTimer, Signal
from PySide6.QtGui import QGuiApplication, QImage, QKeyEvent, QShowEvent
from PySide6.QtWidgets import (
    QDialog,
    QFileDialog,
    QFormLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from app.gui.asyncqt import async_slot
from app.gui.bridge import ActionFailed, NodeBridge
from app.gui.dialogs.common import (
    button_row,
    clear_error_on_edit,
    error_label,
    explanation_label,
    fit_height,
    minimum_width,
    primary_button,
    show_error,
    title_label,
)
from app.gui.qr_reading import PICTURE_SUFFIXES, NoQrCode, invite_in_picture, picture_in
from app.gui.views.peer_text import breakable, isolated, one_line_name
from app.gui.widgets.text_sized import show_lines
from app.node.api import BadInvite, Contact, NameTaken, check_invite_link, read_invite


class InviteEdit(QPlainTextEdit):
    """The invite field: wraps a long link, and Enter adds (an invite is one line). A
    picture pasted or dropped into it (image data, or a picture file) is handed on as
    `picture`, to read the QR code it shows."""

    submitted = Signal()
    picture = Signal(QImage)

    def keyPressEvent(self, event: QKeyEvent) -> None:
        if event.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter):
            self.submitted.emit()
            return
        super().keyPressEvent(event)

    def canInsertFromMimeData(self, source: QMimeData) -> bool:
        return picture_in(source) is not None or super().canInsertFromMimeData(source)

    def insertFromMimeData(self, source: QMimeData) -> None:
        image = picture_in(source)
        if image is None:
            super().insertFromMimeData(source)
        else:
            self.picture.emit(image)


INVITE_LINES = 5
"""Lines of the invite box (it was 96 pixels, five lines at 10 pt and three at 15 pt;
a whole invite link takes about eight)."""

LINK_SETTLE_MS = 1000
"""Add stays disabled this long after a link from outside the app fills the dialog: a
page can open links one after another, and the one the user read must not be swapped
for another under their click (as browsers hold their download buttons a moment)."""


class AddContactDialog(QDialog):
    """Paste an invite, optionally name the contact; errors appear inline. An invite's
    name and fingerprint are shown under it before the user adds it. `link`: an invite
    link clicked outside the app, filled in (see `use_link`)."""

    def __init__(
        self,
        bridge: NodeBridge,
        parent: QWidget | None = None,
        own_address: str | None = None,
        link: str | None = None,
    ) -> None:
        super().__init__(parent)
        self.setWindowTitle(self.tr("Add contact"))
        minimum_width(self, 520)
        self._bridge = bridge
        self.added: Contact | None = None
        self._adding = False
        self._held = 0
        """How many links from outside arrived in the last `LINK_SETTLE_MS` (Add waits)."""
        self.invite = InviteEdit()
        self.invite.submitted.connect(self.add)
        self.invite.setTabChangesFocus(True)
        self.invite.setPlaceholderText(self.tr("eggs:egg… invite link, or an egg… address"))
        self.invite.setAccessibleName(self.tr("Invite link or address"))
        show_lines(self.invite, INVITE_LINES)
        self.invite.picture.connect(self.use_picture)
        self.from_picture = QPushButton(self.tr("Read a QR code picture…"))
        self.from_picture.setToolTip(
            self.tr(
                "A screenshot or photo of your contact's invite QR code (you can also paste "
                "or drop the picture into the invite field)"
            )
        )
        self.from_picture.clicked.connect(self.choose_picture)
        self.preview = QLabel()
        self.preview.setObjectName("Explanation")
        self.preview.setWordWrap(True)
        self.preview.setTextFormat(Qt.TextFormat.PlainText)
        self.preview.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.preview.setAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop)
        self.preview.hide()
        self.invite.textChanged.connect(self._show_preview)
        # an invite on the clipboard is offered, unless it is the user's own (just copied
        # to send to someone)
        clipboard = QGuiApplication.clipboard().text().strip()
        if clipboard.startswith("eggs:") and not (
            own_address and clipboard.startswith(f"eggs:{own_address}")
        ):
            self.invite.setPlainText(clipboard)
        self.name = QLineEdit()
        self.name.setPlaceholderText(self.tr("Optional: the name in the invite is used"))
        self.name.setAccessibleName(self.tr("Contact name"))
        self.name.returnPressed.connect(self.add)
        form = QFormLayout()
        invite_column = QVBoxLayout()
        invite_column.setSpacing(6)
        invite_column.addWidget(self.invite)
        invite_column.addWidget(self.preview)
        invite_column.addWidget(self.from_picture, 0, Qt.AlignmentFlag.AlignLeft)
        form.addRow(self.tr("Invite"), invite_column)
        form.addRow(self.tr("Name"), self.name)
        self.error = error_label()
        self.add_button = primary_button(self.tr("Add contact"))
        self.add_button.clicked.connect(self.add)
        cancel = QPushButton(self.tr("Cancel"))
        cancel.clicked.connect(self.reject)
        buttons = button_row(cancel, self.add_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(24, 20, 24, 20)
        layout.setSpacing(12)
        layout.addWidget(title_label(self.tr("Add a contact")))
        if link is None:
            explanation = self.tr(
                "Paste the invite link your contact shared with you, or a picture of its "
                "QR code. An invite carries their keys, so you can compare safety numbers "
                "later."
            )
        else:  # opened by a link clicked elsewhere: what to check before adding
            explanation = self.tr(
                "You opened an invite link. Check who it is from, then add them: nothing "
                "is added until you do. An invite carries their keys, so you can compare "
                "safety numbers later."
            )
        self.explanation = explanation_label(explanation)
        layout.addWidget(self.explanation)
        layout.addLayout(form)
        layout.addWidget(self.error)
        layout.addLayout(buttons)
        clear_error_on_edit(self.error, self.invite, self.name)
        self.invite.setFocus()
        if link is not None:
            self.use_link(link)

    def use_link(self, link: str) -> None:
        """Fill in an invite link from outside the app (replacing what the field held),
        with what is wrong with it shown at once; nothing is added until Add. A link
        that can't be an invite (too long, not `eggs:`, control characters) is not put
        in the field, only said."""
        self._hold_add()
        try:
            link = check_invite_link(link)
        except BadInvite as exc:
            self.invite.clear()
            show_error(self.error, str(exc))
            self.invite.setFocus()
            return
        self.invite.setPlainText(link)
        try:
            read_invite(link)
        except BadInvite as exc:
            show_error(self.error, str(exc))
            self.invite.setFocus()
            return
        self.name.setFocus()  # the invite is whole: what is left is to name them, or Add

    def choose_picture(self) -> None:
        """Pick a picture file of an invite's QR code (a screenshot, a photo)."""
        patterns = " ".join(f"*{suffix}" for suffix in PICTURE_SUFFIXES)
        path, _ = QFileDialog.getOpenFileName(
            self,
            self.tr("Picture of an invite QR code"),
            "",
            self.tr("Pictures ({0})").format(patterns),
        )
        if path:
            self.use_picture(QImage(path))

    def use_picture(self, image: QImage) -> None:
        """Fill in the invite a picture's QR code holds, as a link from outside the app
        (`use_link`: the same checks, and Add waits a moment); say so if there is none."""
        try:
            text = invite_in_picture(image)
        except NoQrCode:
            text = ""
        if not text:
            show_error(
                self.error,
                self.tr(
                    "No QR code could be read in that picture. Try a sharper or larger "
                    "one, with the whole code in it."
                ),
            )
            return
        if not text.lower().startswith("eggs:"):
            if text.lower().startswith("egg"):  # an address alone: the field takes it
                self.invite.setPlainText(text)
                self.name.setFocus()
                return
            show_error(
                self.error,
                self.tr(
                    "The QR code in that picture is not a Scrambled Eggs invite. Ask your "
                    "contact for the code in their invite window (the QR code button)."
                ),
            )
            return
        self.use_link(text)

    def _hold_add(self) -> None:
        """Disable Add for `LINK_SETTLE_MS` after a link from outside."""
        self._held += 1
        self.add_button.setEnabled(False)
        QTimer.singleShot(LINK_SETTLE_MS, self._release_add)

    def _release_add(self) -> None:
        self._held -= 1
        if not self._held and not self._adding:
            self.add_button.setEnabled(True)

    def _show_preview(self) -> None:
        """Under the invite: the name and fingerprint a whole, signed invite holds."""
        text = self.invite.toPlainText().strip()
        found = None
        if text.lower().startswith("eggs:"):
            try:
                found = read_invite(text)
            except BadInvite:
                found = None
        if found is None:
            self.preview.clear()
            self.preview.hide()
            return
        self.preview.setText(
            self.tr("Invite from {0}\nFingerprint {1}").format(
                isolated(breakable(one_line_name(found.name))), found.fingerprint
            )
        )
        self.preview.show()
        if self.isVisible():
            fit_height(self)

    def showEvent(self, event: QShowEvent) -> None:
        super().showEvent(event)
        fit_height(self)

    @async_slot()
    async def add(self) -> None:
        """Ask the node to add the contact (once: Enter in the name field also presses
        the default button)."""
        if self._adding or self._held:
            return  # already asking, or a link from outside just arrived
        text = self.invite.toPlainText().strip()
        if not text:
            show_error(self.error, self.tr("Paste an invite link or an address first."))
            self.invite.setFocus()
            return
        self._adding = True
        self.add_button.setEnabled(False)
        try:
            self.added = await self._bridge.add_contact(text, self.name.text().strip() or None)
        except ActionFailed as exc:
            self._refused(exc)
            return
        finally:
            self._adding = False
            self.add_button.setEnabled(not self._held)
        self.accept()

    def _refused(self, exc: ActionFailed) -> None:
        """Show why the node refused; a taken name points at the Name field."""
        text = str(exc)
        if isinstance(exc.__cause__, NameTaken):
            text = self.tr("{0} Type another name for this one below.").format(text)
            self.name.setFocus()
            self.name.selectAll()
        show_error(self.error, text)
