"""Settings: profile and passphrase, network, appearance and notifications, files."""

from __future__ import annotations

import asyncio
from typing import TypeVar

from PySide6.QtGui import QShowEvent
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QSpinBox,
    QTabWidget,
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
)
from app.gui.widgets.text_sized import show_lines
from app.node.api import (
    Protection,
    Settings,
    UpdateSettings,
    check_settings,
    check_settings_here,
    ice_server_shown,
)

MB = 1_000_000  # the unit file cards show sizes in (QLocale: 10 MiB is "10.5 MB")


T = TypeVar("T")


def _changed(new: T, old: T) -> T | None:
    return new if new != old else None


def _lines(edit: QPlainTextEdit) -> list[str]:
    return [line.strip() for line in edit.toPlainText().splitlines() if line.strip()]


def _combo(options: list[tuple[str, str]], current: str, name: str) -> QComboBox:
    combo = QComboBox()
    combo.setAccessibleName(name)
    for value, label in options:
        combo.addItem(label, value)
    index = combo.findData(current)
    combo.setCurrentIndex(max(0, index))
    return combo


def _with_error(field: QWidget | QHBoxLayout, error: QLabel) -> QVBoxLayout:
    """`field` with its error line under it (hidden, taking no room, until shown)."""
    column = QVBoxLayout()
    column.setSpacing(4)
    if isinstance(field, QWidget):
        column.addWidget(field)
    else:
        column.addLayout(field)
    column.addWidget(error)
    return column


def _fit_page(page: QWidget) -> None:
    """Grow the window until `page` (a tab) holds its wrapped lines at its width: a tab
    widget passes no height-for-width up, so an error under a field was cut off."""
    layout = page.layout()
    if layout is None or not layout.hasHeightForWidth():
        return
    missing = layout.totalHeightForWidth(page.width()) - page.height()
    window = page.window()
    if missing > 0 and window.isVisible():
        window.resize(window.width(), window.height() + missing)


class SettingsDialog(QDialog):
    """Edits `Settings`; Save sends only what changed through `update_settings`."""

    def __init__(
        self, bridge: NodeBridge, settings: Settings, parent: QWidget | None = None
    ) -> None:
        super().__init__(parent)
        self.setWindowTitle(self.tr("Settings"))
        minimum_width(self, 560)
        self._bridge = bridge
        self._original = settings
        self.saved: Settings | None = None
        self.tabs = tabs = QTabWidget()
        tabs.addTab(self._profile_tab(settings), self.tr("Profile"))
        tabs.addTab(self._network_tab(settings), self.tr("Network"))
        tabs.addTab(self._appearance_tab(settings), self.tr("Appearance"))
        tabs.addTab(self._files_tab(settings), self.tr("Files"))
        self.error = error_label()
        clear_error_on_edit(
            self.error,
            self.display_name,
            self.listen,
            self.bootstrap,
            self.ice,
            self.ipfs,
            self.downloads,
        )
        self.field_errors = {
            "listen": self.listen_error,
            "ice_servers": self.ice_error,
            "ipfs_api": self.ipfs_error,
            "downloads_folder": self.downloads_error,
        }
        """Setting name -> the error line under its field (what this machine can't use)."""
        self._fields: dict[str, QWidget] = {
            "listen": self.listen,
            "ice_servers": self.ice,
            "ipfs_api": self.ipfs,
            "downloads_folder": self.downloads,
        }
        clear_error_on_edit(self.listen_error, self.listen)
        clear_error_on_edit(self.ice_error, self.ice)
        clear_error_on_edit(self.ipfs_error, self.ipfs)
        clear_error_on_edit(self.downloads_error, self.downloads)
        self.save_button = primary_button(self.tr("Save"))
        self.save_button.clicked.connect(self.save)
        cancel = QPushButton(self.tr("Close"))
        cancel.clicked.connect(self.reject)
        buttons = button_row(cancel, self.save_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(20, 20, 20, 16)
        layout.setSpacing(12)
        layout.addWidget(tabs)
        layout.addWidget(self.error)
        layout.addLayout(buttons)

    def showEvent(self, event: QShowEvent) -> None:
        super().showEvent(event)
        fit_height(self)

    # ------------------------------------------------------------------ tabs

    def _profile_tab(self, s: Settings) -> QWidget:
        page = QWidget()
        form = QFormLayout(page)
        self.display_name = QLineEdit(s.display_name)
        self.display_name.setAccessibleName(self.tr("Display name"))
        # no maxLength: Qt counts UTF-16 units (an emoji is two), so a name of 64
        # characters opened cut, and saving any setting saved the cut name
        form.addRow(self.tr("Display name"), self.display_name)
        protection = {
            Protection.PASSPHRASE: self.tr("a passphrase"),
            Protection.KEYRING: self.tr("the system keyring"),
            Protection.KEY_FILE: self.tr("a key file inside the profile (weakest)"),
        }[s.protection]
        self.protection_label = QLabel(self.tr("Protected by {0}.").format(protection))
        self.protection_label.setWordWrap(True)
        form.addRow(self.tr("Protection"), self.protection_label)
        self.current_passphrase = QLineEdit()
        self.current_passphrase.setEchoMode(QLineEdit.EchoMode.Password)
        self.current_passphrase.setAccessibleName(self.tr("Current passphrase"))
        self.new_passphrase = QLineEdit()
        self.new_passphrase.setEchoMode(QLineEdit.EchoMode.Password)
        self.new_passphrase.setAccessibleName(self.tr("New passphrase"))
        self.repeat_passphrase = QLineEdit()
        self.repeat_passphrase.setEchoMode(QLineEdit.EchoMode.Password)
        self.repeat_passphrase.setAccessibleName(self.tr("Repeat new passphrase"))
        self.passphrase_button = QPushButton(self.tr("Change passphrase"))
        self.passphrase_button.clicked.connect(self.change_passphrase)
        self.passphrase_status = QLabel()
        self.passphrase_status.setWordWrap(True)
        form.addRow(self.tr("Current passphrase"), self.current_passphrase)
        form.addRow(self.tr("New passphrase"), self.new_passphrase)
        form.addRow(self.tr("Repeat"), self.repeat_passphrase)
        form.addRow("", self.passphrase_button)
        form.addRow("", self.passphrase_status)
        self._profile_form = form
        self._show_current_passphrase(s.protection is Protection.PASSPHRASE)
        return page

    def _show_current_passphrase(self, on: bool) -> None:
        """Only a passphrase-protected profile has a current passphrase to ask for."""
        self._profile_form.setRowVisible(self.current_passphrase, on)

    def _network_tab(self, s: Settings) -> QWidget:
        page = QWidget()
        form = QFormLayout(page)
        self.listen = QLineEdit(s.listen)
        self.listen.setAccessibleName(self.tr("Listen address"))
        self.bootstrap = QPlainTextEdit("\n".join(s.bootstrap))
        self.bootstrap.setTabChangesFocus(True)
        self.bootstrap.setPlaceholderText(self.tr("host:port, one per line"))
        self.bootstrap.setAccessibleName(self.tr("Bootstrap peers"))
        show_lines(self.bootstrap, 3)
        self.lan = QCheckBox(self.tr("Find peers on the local network"))
        self.lan.setChecked(s.lan_discovery)
        # a TURN password is shown as ••• until "Show passwords" is ticked (someone may
        # look at the screen, or share it); the real entries are kept here meanwhile
        self._ice_entries = list(s.ice_servers)
        self.ice = QPlainTextEdit("\n".join(map(ice_server_shown, s.ice_servers)))
        self.ice.setTabChangesFocus(True)
        self.ice.setPlaceholderText(self.tr("stun:host:port or turn:user:pass@host:port"))
        self.ice.setAccessibleName(self.tr("STUN and TURN servers"))
        show_lines(self.ice, 3)
        self.show_passwords = QCheckBox(self.tr("Show passwords"))
        self.show_passwords.setAccessibleName(self.tr("Show the TURN server's password"))
        self.show_passwords.toggled.connect(self._show_ice_passwords)
        self.ipfs = QLineEdit(s.ipfs_api)
        self.ipfs.setPlaceholderText(self.tr("Empty: use the built-in block store"))
        self.ipfs.setAccessibleName(self.tr("IPFS API address"))
        self.shaping = _combo(
            [
                ("off", self.tr("Off")),
                ("balanced", self.tr("Balanced")),
                ("strict", self.tr("Strict (more cover traffic)")),
            ],
            s.shaping_mode,
            self.tr("Traffic shaping"),
        )
        self.listen_error = error_label()
        self.ice_error = error_label()
        self.ipfs_error = error_label()
        form.addRow(self.tr("Listen on"), _with_error(self.listen, self.listen_error))
        form.addRow(self.tr("Bootstrap peers"), self.bootstrap)
        form.addRow("", self.lan)
        form.addRow(self.tr("STUN / TURN"), _with_error(self.ice, self.ice_error))
        form.addRow("", self.show_passwords)
        form.addRow(self.tr("IPFS API"), _with_error(self.ipfs, self.ipfs_error))
        form.addRow(self.tr("Traffic shaping"), self.shaping)
        form.addRow(
            "",
            explanation_label(
                self.tr(
                    "The app contacts no server you didn't list here. The IPFS address "
                    "applies at once, traffic shaping to connections made from now on, "
                    "the rest the next time the app starts."
                )
            ),
        )
        return page

    def _ice_lines(self) -> list[str]:
        """The STUN/TURN entries in the field, each hidden password put back."""
        lines = _lines(self.ice)
        if self.show_passwords.isChecked():
            return lines
        return self._unhidden(lines)

    def _unhidden(self, lines: list[str]) -> list[str]:
        """`lines` (as shown while passwords are hidden) with the entries they stand for:
        an entry edited since keeps the ••• it shows, which the node refuses."""
        entries = {ice_server_shown(entry): entry for entry in self._ice_entries}
        return [entries.get(line, line) for line in lines]

    def _show_ice_passwords(self, shown: bool) -> None:
        """Show the field's TURN password, or hide it again (keeping what was typed)."""
        if shown:
            self._ice_entries = self._unhidden(_lines(self.ice))
            self.ice.setPlainText("\n".join(self._ice_entries))
        else:
            self._ice_entries = _lines(self.ice)
            self.ice.setPlainText("\n".join(map(ice_server_shown, self._ice_entries)))

    def _appearance_tab(self, s: Settings) -> QWidget:
        page = QWidget()
        form = QFormLayout(page)
        self.theme = _combo(
            [
                ("system", self.tr("Follow the system")),
                ("light", self.tr("Light")),
                ("dark", self.tr("Dark")),
            ],
            s.theme,
            self.tr("Theme"),
        )
        self.notifications = QCheckBox(self.tr("Show a notification for new messages"))
        self.notifications.setChecked(s.notifications)
        form.addRow(self.tr("Theme"), self.theme)
        form.addRow("", self.notifications)
        return page

    def _files_tab(self, s: Settings) -> QWidget:
        page = QWidget()
        form = QFormLayout(page)
        self.downloads = QLineEdit(s.downloads_folder)
        self.downloads.setPlaceholderText(self.tr("Empty: the Scrambled Eggs folder in Downloads"))
        self.downloads.setAccessibleName(self.tr("Downloads folder"))
        self.choose_downloads = QPushButton(self.tr("Choose…"))
        self.choose_downloads.setAccessibleName(self.tr("Choose the downloads folder"))
        self.choose_downloads.clicked.connect(self.choose_downloads_folder)
        folder = QHBoxLayout()
        folder.addWidget(self.downloads, 1)
        folder.addWidget(self.choose_downloads)
        self.auto_accept = QSpinBox()
        self.auto_accept.setRange(0, 100_000)
        self.auto_accept.setSuffix(" MB")
        self.auto_accept.setValue(round(s.auto_accept_bytes / MB))
        self.auto_accept.setAccessibleName(self.tr("Accept files automatically up to"))
        self.downloads_error = error_label()
        form.addRow(self.tr("Save received files in"), _with_error(folder, self.downloads_error))
        form.addRow(self.tr("Auto-accept files up to"), self.auto_accept)
        form.addRow(
            "",
            explanation_label(
                self.tr("Larger files wait until you accept them. 0 MB: always ask.")
            ),
        )
        return page

    # ------------------------------------------------------------------ actions

    def changes(self) -> UpdateSettings:
        """The fields that differ from the settings the dialog opened with."""
        s = self._original

        auto_accept = self.auto_accept.value() * MB
        if self.auto_accept.value() == round(s.auto_accept_bytes / MB):  # not changed
            auto_accept = s.auto_accept_bytes
        return UpdateSettings(
            display_name=_changed(self.display_name.text().strip(), s.display_name),
            listen=_changed(self.listen.text().strip(), s.listen),
            bootstrap=_changed(_lines(self.bootstrap), s.bootstrap),
            lan_discovery=_changed(self.lan.isChecked(), s.lan_discovery),
            ice_servers=_changed(self._ice_lines(), s.ice_servers),
            ipfs_api=_changed(self.ipfs.text().strip(), s.ipfs_api),
            shaping_mode=_changed(str(self.shaping.currentData()), s.shaping_mode),
            theme=_changed(str(self.theme.currentData()), s.theme),
            notifications=_changed(self.notifications.isChecked(), s.notifications),
            auto_accept_bytes=_changed(auto_accept, s.auto_accept_bytes),
            downloads_folder=_changed(self.downloads.text().strip(), s.downloads_folder),
        )

    def problems(self) -> list[str]:
        """Every reason the form can't be saved, in field order (the node's own rules)."""
        found = []
        if not self.display_name.text().strip():
            found.append(self.tr("Your display name can't be empty."))
        typed = UpdateSettings(
            listen=self.listen.text().strip(),
            bootstrap=_lines(self.bootstrap),
            ice_servers=self._ice_lines(),
            ipfs_api=self.ipfs.text().strip(),
            downloads_folder=self.downloads.text().strip(),
        )
        return found + check_settings(typed)

    def choose_downloads_folder(self) -> None:
        """Pick the downloads folder with the system's folder dialog."""
        chosen = QFileDialog.getExistingDirectory(
            self, self.tr("Save received files in"), self.downloads.text().strip()
        )
        if chosen:
            self.downloads.setText(chosen)

    def _show_field_errors(self, found: dict[str, str]) -> None:
        """Each sentence under its field; the first such field's tab comes to the front."""
        for name, text in found.items():
            show_error(self.field_errors[name], text)
        first = self._fields[next(iter(found))]
        page = first.parentWidget()
        while page is not None and self.tabs.indexOf(page) < 0:
            page = page.parentWidget()
        if page is not None:
            self.tabs.setCurrentWidget(page)
            _fit_page(page)
        first.setFocus()

    @async_slot()
    async def save(self) -> None:
        """Persist the changes and close; errors stay in the dialog."""
        problems = self.problems()
        if problems:
            show_error(self.error, "\n".join(problems))
            return
        self.save_button.setEnabled(False)
        try:
            changes = self.changes()
            # a listen address or downloads folder this machine can't use: said under
            # the field (the node refuses it too, in one sentence for the whole form)
            here = await asyncio.to_thread(check_settings_here, changes)
            if here:
                self._show_field_errors(here)
                return
            self.saved = await self._bridge.update_settings(changes)
        except ActionFailed as exc:
            show_error(self.error, str(exc))
            return
        finally:
            self.save_button.setEnabled(True)
        self._original = self.saved
        self.accept()

    def _passphrase_problem(self) -> str | None:
        asks_current = self._profile_form.isRowVisible(self.current_passphrase)
        if asks_current and not self.current_passphrase.text():
            return self.tr("Type your current passphrase first.")
        new = self.new_passphrase.text()
        if not new:
            return self.tr("Type the new passphrase twice.")
        if new != self.repeat_passphrase.text():
            return self.tr("The two passphrases differ.")
        return None

    @async_slot()
    async def change_passphrase(self) -> None:
        """Check the current passphrase and re-protect the profile with the new one."""
        problem = self._passphrase_problem()
        if problem is not None:
            self._passphrase_says(problem, error=True)
            return
        self.passphrase_button.setEnabled(False)
        self._passphrase_says(self.tr("Changing…"))
        try:
            await self._send_passphrase_change()
        except ActionFailed as exc:
            self._passphrase_says(str(exc), error=True)
            return
        finally:
            self.passphrase_button.setEnabled(True)
        for edit in (self.current_passphrase, self.new_passphrase, self.repeat_passphrase):
            edit.clear()
        self._show_current_passphrase(True)
        self.protection_label.setText(self.tr("Protected by {0}.").format(self.tr("a passphrase")))
        self._passphrase_says(
            self.tr("Done. Use the new passphrase the next time you open the app.")
        )

    def _passphrase_says(self, text: str, error: bool = False) -> None:
        """The line under the passphrase fields: red for a problem (like the form's)."""
        self.passphrase_status.setObjectName("ErrorLabel" if error else "")
        self.passphrase_status.style().unpolish(self.passphrase_status)
        self.passphrase_status.style().polish(self.passphrase_status)
        self.passphrase_status.setText(text)

    async def _send_passphrase_change(self) -> None:
        await self._bridge.change_passphrase(
            self.new_passphrase.text(), self.current_passphrase.text() or None
        )
