"""Unlock a passphrase-protected profile; a wrong passphrase is said in the dialog."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from PySide6.QtCore import Qt
from PySide6.QtGui import QShowEvent
from PySide6.QtWidgets import QDialog, QLabel, QLineEdit, QPushButton, QVBoxLayout

from app.gui.asyncqt import async_slot
from app.gui.dialogs.common import (
    button_row,
    error_label,
    explanation_label,
    fit_height,
    minimum_width,
    primary_button,
    show_error,
    title_label,
)
from app.gui.resources import app_icon

# Tries a passphrase; returns None on success or a sentence saying what went wrong.
UnlockAttempt = Callable[[str], Awaitable[str | None]]


class UnlockDialog(QDialog):
    """Asks for the passphrase until `attempt` accepts one or the user gives up."""

    def __init__(
        self, profile_label: str, attempt: UnlockAttempt, first_error: str | None = None
    ) -> None:
        super().__init__()
        self.setWindowTitle(self.tr("Unlock Scrambled Eggs"))
        self.setWindowIcon(app_icon())
        minimum_width(self, 440)
        self._attempt = attempt
        logo = QLabel()
        logo.setPixmap(app_icon().pixmap(64, 64))
        logo.setAlignment(Qt.AlignmentFlag.AlignCenter)
        heading = title_label(self.tr("Welcome back"))
        heading.setAlignment(Qt.AlignmentFlag.AlignCenter)
        detail = explanation_label(
            self.tr("Enter the passphrase of the profile in {0}.").format(profile_label)
        )
        detail.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.passphrase = QLineEdit()
        self.passphrase.setEchoMode(QLineEdit.EchoMode.Password)
        self.passphrase.setPlaceholderText(self.tr("Passphrase"))
        self.passphrase.setAccessibleName(self.tr("Passphrase"))
        self.passphrase.returnPressed.connect(self.unlock)
        self.error = error_label()
        show_error(self.error, first_error)
        self.unlock_button = primary_button(self.tr("Unlock"))
        self.unlock_button.clicked.connect(self.unlock)
        quit_button = QPushButton(self.tr("Quit"))
        quit_button.clicked.connect(self.reject)
        buttons = button_row(quit_button, self.unlock_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(28, 24, 28, 20)
        layout.setSpacing(12)
        layout.addWidget(logo)
        layout.addWidget(heading)
        layout.addWidget(detail)
        layout.addWidget(self.passphrase)
        layout.addWidget(self.error)
        layout.addStretch(1)  # an error's room stays below: the fields don't move
        layout.addLayout(buttons)
        self.passphrase.setFocus()

    def showEvent(self, event: QShowEvent) -> None:
        super().showEvent(event)
        fit_height(self)  # the wrapped profile folder line, at a large font

    @async_slot()
    async def unlock(self) -> None:
        """Try the typed passphrase."""
        if not self.unlock_button.isEnabled():
            return  # an attempt is running
        text = self.passphrase.text()
        if not text:
            show_error(self.error, self.tr("Type your passphrase."))
            return
        self.unlock_button.setEnabled(False)
        self.passphrase.setEnabled(False)
        self.unlock_button.setText(self.tr("Unlocking…"))
        try:
            problem = await self._attempt(text)
        finally:
            self.unlock_button.setEnabled(True)
            self.passphrase.setEnabled(True)
            self.unlock_button.setText(self.tr("Unlock"))
        if problem is None:
            self.accept()
            return
        show_error(self.error, problem)
        self.passphrase.selectAll()
        self.passphrase.setFocus()
