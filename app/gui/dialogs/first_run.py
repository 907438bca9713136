"""First run: create an identity (display name, optional passphrase)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtGui import QShowEvent
from PySide6.QtWidgets import (
    QCheckBox,
    QDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from app.gui.asyncqt import async_slot
from app.gui.bridge import describe_error
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
from app.gui.resources import app_icon
from app.node.api import InitResult, InvalidArgument, check_new_passphrase, init_profile


class FirstRunDialog(QDialog):
    """Creates the profile. After `accept`, `result_info` holds what was created and
    `passphrase` what unlocks it (None: OS keyring or key file)."""

    def __init__(self, profile: Path, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle(self.tr("Welcome to Scrambled Eggs"))
        self.setWindowIcon(app_icon())
        minimum_width(self, 520)
        self._profile = profile
        self.result_info: InitResult | None = None
        self.passphrase: str | None = None

        logo = QLabel()
        logo.setPixmap(app_icon().pixmap(72, 72))
        logo.setAccessibleName(self.tr("Scrambled Eggs logo"))
        heading = title_label(self.tr("Create your identity"))
        intro = explanation_label(
            self.tr(
                "Your identity is a key pair made on this computer. No account, no server, "
                "no phone number: you share an invite link with the people you want to talk to."
            )
        )
        top = QHBoxLayout()
        top.addWidget(logo, 0, Qt.AlignmentFlag.AlignTop)
        texts = QVBoxLayout()
        texts.addWidget(heading)
        texts.addWidget(intro)
        top.addLayout(texts, 1)

        self.name = QLineEdit()
        self.name.setPlaceholderText(self.tr("How your contacts will see you"))
        self.name.setAccessibleName(self.tr("Display name"))
        # no maxLength: Qt counts UTF-16 units (an emoji is two) where a name holds 64
        # characters, and cut a pasted name in the middle of a flag; the node's rule says
        # "at most 64 characters" instead
        self.use_passphrase = QCheckBox(self.tr("Protect this profile with a passphrase"))
        self.use_passphrase.setChecked(True)
        self.use_passphrase.setAccessibleName(self.tr("Protect with a passphrase"))
        self.passphrase_edit = QLineEdit()
        self.passphrase_edit.setEchoMode(QLineEdit.EchoMode.Password)
        self.passphrase_edit.setPlaceholderText(self.tr("At least 8 characters"))
        self.passphrase_edit.setAccessibleName(self.tr("Passphrase"))
        self.repeat_edit = QLineEdit()
        self.repeat_edit.setEchoMode(QLineEdit.EchoMode.Password)
        self.repeat_edit.setAccessibleName(self.tr("Repeat passphrase"))
        self.trade_off = explanation_label(
            self.tr(
                "With a passphrase, your messages, contacts and keys are encrypted with a key "
                "only the passphrase unlocks: a stolen laptop or a copied profile folder "
                "reveals nothing, but you type it each time the app starts and nobody can "
                "recover it if you forget it. Without one, the key is kept in your system's "
                "keyring (or, where there is none, in a key file inside the profile), so anyone "
                "who can use your unlocked account, or who copies the profile together with "
                "that key, can read your messages."
            )
        )
        form = QFormLayout()
        form.setLabelAlignment(Qt.AlignmentFlag.AlignRight)
        form.addRow(self.tr("Display name"), self.name)
        form.addRow("", self.use_passphrase)
        form.addRow(self.tr("Passphrase"), self.passphrase_edit)
        form.addRow(self.tr("Repeat"), self.repeat_edit)

        self.error = error_label()
        self.create_button = primary_button(self.tr("Create identity"))
        self.create_button.clicked.connect(self.create_identity)
        cancel = QPushButton(self.tr("Quit"))
        cancel.clicked.connect(self.reject)
        buttons = button_row(cancel, self.create_button)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(24, 24, 24, 20)
        layout.setSpacing(14)
        layout.addLayout(top)
        layout.addLayout(form)
        layout.addWidget(self.trade_off)
        layout.addWidget(self.error)
        layout.addStretch(1)  # room an error leaves stays below: the fields don't move
        layout.addLayout(buttons)
        self.use_passphrase.toggled.connect(self._toggle_passphrase)
        clear_error_on_edit(self.error, self.name, self.passphrase_edit, self.repeat_edit)
        self.name.setFocus()

    def showEvent(self, event: QShowEvent) -> None:
        super().showEvent(event)
        fit_height(self)

    def _toggle_passphrase(self, on: bool) -> None:
        self.passphrase_edit.setEnabled(on)
        self.repeat_edit.setEnabled(on)

    def _chosen_passphrase(self) -> str | None:
        if not self.use_passphrase.isChecked():
            return None
        first = self.passphrase_edit.text()
        if first != self.repeat_edit.text():
            raise ValueError(self.tr("The two passphrases differ."))
        if not first:
            raise ValueError(self.tr("Type a passphrase, or untick the passphrase option."))
        try:
            check_new_passphrase(first)  # said here, with the field focused
        except InvalidArgument as exc:
            raise ValueError(str(exc)) from None
        return first

    @async_slot()
    async def create_identity(self) -> None:
        """Validate the form and create the profile (key derivation runs off the loop)."""
        name = self.name.text().strip()
        if not name:
            show_error(self.error, self.tr("Choose a display name."))
            self.name.setFocus()
            return
        try:
            passphrase = self._chosen_passphrase()
        except ValueError as exc:
            show_error(self.error, str(exc))
            self.passphrase_edit.setFocus()
            self.passphrase_edit.selectAll()
            return
        show_error(self.error, None)
        self.create_button.setEnabled(False)
        self.create_button.setText(self.tr("Creating…"))
        try:
            result = await asyncio.to_thread(init_profile, self._profile, name, passphrase)
        except Exception as exc:
            show_error(self.error, describe_error(exc))
            return
        finally:
            self.create_button.setEnabled(True)
            self.create_button.setText(self.tr("Create identity"))
        self.result_info = result
        self.passphrase = passphrase
        self.accept()
