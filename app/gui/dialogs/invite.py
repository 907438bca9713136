"""Your invite: the link as text and as a QR code, one click to copy."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QGuiApplication, QShowEvent, QTextOption
from PySide6.QtWidgets import (
    QDialog,
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from app.gui.dialogs.common import (
    explanation_label,
    fit_height,
    minimum_width,
    primary_button,
    title_label,
)
from app.gui.resources import qr_pixmap
from app.gui.widgets.text_sized import show_lines
from app.node.api import Whoami

QR_EDGE = 280


class InviteDialog(QDialog):
    """Shows `whoami.invite` so the user can hand it to someone."""

    def __init__(self, me: Whoami, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle(self.tr("My invite"))
        minimum_width(self, 520)
        self.invite_link = me.invite
        self.qr = QLabel()
        self.qr.setAlignment(Qt.AlignmentFlag.AlignCenter)
        code = qr_pixmap(me.invite, QR_EDGE)
        self.qr.setPixmap(code)
        self.qr.setFixedSize(code.size())
        self.qr.setAccessibleName(self.tr("QR code of your invite link"))
        self.text = QPlainTextEdit(me.invite)
        self.text.setObjectName("InviteText")
        self.text.setReadOnly(True)
        self.text.setWordWrapMode(QTextOption.WrapMode.WrapAnywhere)
        show_lines(self.text, INVITE_LINES)
        self.text.setAccessibleName(self.tr("Your invite link"))
        fingerprint = QLabel(self.tr("Your fingerprint: {0}").format(me.fingerprint))
        fingerprint.setObjectName("MutedLabel")
        fingerprint.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.status = QLabel()
        self.status.setObjectName("MutedLabel")
        self.copy_button = primary_button(self.tr("Copy link"))
        self.copy_button.clicked.connect(self.copy)
        close = QPushButton(self.tr("Close"))
        close.clicked.connect(self.accept)
        buttons = QHBoxLayout()
        buttons.addWidget(self.status, 1)
        buttons.addWidget(close)
        buttons.addWidget(self.copy_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(24, 20, 24, 20)
        layout.setSpacing(12)
        layout.addWidget(title_label(self.tr("Your invite link")))
        layout.addWidget(
            explanation_label(
                self.tr(
                    "Send this link to the people you want to talk to, or let them scan the "
                    "code. It holds your name, your public keys and where to reach you: "
                    "nothing secret."
                )
            )
        )
        layout.addWidget(self.qr, 0, Qt.AlignmentFlag.AlignHCenter)
        layout.addWidget(self.text)
        layout.addWidget(fingerprint)
        layout.addLayout(buttons)

    def showEvent(self, event: QShowEvent) -> None:
        super().showEvent(event)
        fit_height(self)

    def copy(self) -> None:
        """Put the invite link on the clipboard."""
        QGuiApplication.clipboard().setText(self.invite_link)
        self.status.setText(self.tr("Copied to the clipboard."))


INVITE_LINES = 6
"""Whole lines the invite box shows (a link with two endpoints takes about six)."""
