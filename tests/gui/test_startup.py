"""First run, unlock and "profile in use", against real profiles and the real node."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import pytest
from gui_helpers import PASSPHRASE, options, wait_for
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication, QDialog, QMessageBox
from pytestqt.qtbot import QtBot

from app.gui import theme
from app.gui.app import GuiSession
from app.gui.dialogs.first_run import FirstRunDialog
from app.gui.dialogs.unlock import UnlockDialog
from app.node import api


@pytest.mark.asyncio
async def test_first_run_creates_a_passphrase_profile(qtbot: QtBot, tmp_path: Path) -> None:
    target = tmp_path / "new-profile"
    dialog = FirstRunDialog(target)
    qtbot.addWidget(dialog)
    dialog.show()
    qtbot.keyClicks(dialog.name, "Dora")
    qtbot.keyClicks(dialog.passphrase_edit, PASSPHRASE)
    qtbot.keyClicks(dialog.repeat_edit, "something else")
    qtbot.mouseClick(dialog.create_button, Qt.MouseButton.LeftButton)
    await wait_for(dialog.error.isVisible)
    assert "differ" in dialog.error.text()
    assert not api.inspect_profile(target).exists

    dialog.repeat_edit.setText(PASSPHRASE)
    qtbot.mouseClick(dialog.create_button, Qt.MouseButton.LeftButton)
    await wait_for(lambda: dialog.result() == QDialog.DialogCode.Accepted, timeout=20)
    info = api.inspect_profile(target)
    assert info.exists and info.protection == api.Protection.PASSPHRASE
    assert dialog.result_info is not None and dialog.result_info.whoami.name == "Dora"
    assert dialog.passphrase == PASSPHRASE


@pytest.mark.asyncio
async def test_first_run_without_passphrase_warns_about_the_key_file(
    qtbot: QtBot, tmp_path: Path
) -> None:
    target = tmp_path / "no-pass"
    dialog = FirstRunDialog(target)
    qtbot.addWidget(dialog)
    dialog.show()
    assert "keyring" in dialog.trade_off.text()
    dialog.name.setText("Eve")
    dialog.use_passphrase.setChecked(False)
    assert not dialog.passphrase_edit.isEnabled()
    dialog.create_identity()
    await wait_for(lambda: dialog.result() == QDialog.DialogCode.Accepted, timeout=20)
    assert dialog.passphrase is None
    # the test keyring backend always fails: the key lands in a key file, and we are told
    assert dialog.result_info is not None
    assert dialog.result_info.protection == api.Protection.KEY_FILE
    assert dialog.result_info.warning


@pytest.mark.asyncio
async def test_unlock_wrong_then_right_passphrase(qtbot: QtBot, profile: Path) -> None:
    session = GuiSession(options(profile))
    dialog = UnlockDialog(str(profile), session.attempt_unlock)
    qtbot.addWidget(dialog)
    dialog.show()
    try:
        qtbot.keyClicks(dialog.passphrase, "not the passphrase")
        qtbot.keyClick(dialog.passphrase, Qt.Key.Key_Return)
        await wait_for(dialog.error.isVisible, timeout=20)
        assert "doesn't unlock" in dialog.error.text()
        assert session.node is None
        assert dialog.result() != QDialog.DialogCode.Accepted
        assert not api.inspect_profile(profile).in_use  # the failed try released the lock

        dialog.passphrase.setText(PASSPHRASE)
        qtbot.mouseClick(dialog.unlock_button, Qt.MouseButton.LeftButton)
        await wait_for(lambda: dialog.result() == QDialog.DialogCode.Accepted, timeout=20)
        assert session.node is not None
        assert (await session.node.whoami()).name == "Alice"
        assert api.inspect_profile(profile).in_use
    finally:
        await session.shutdown()
    assert not api.inspect_profile(profile).in_use


def _visible_message_box() -> QMessageBox | None:
    for widget in QApplication.topLevelWidgets():
        if isinstance(widget, QMessageBox) and widget.isVisible():
            return widget
    return None


@pytest.mark.asyncio
async def test_profile_in_use_is_explained(qtbot: QtBot, profile: Path) -> None:
    async with api.host_node(options(profile), lambda: PASSPHRASE):
        session = GuiSession(options(profile))
        opening = asyncio.ensure_future(session.open_profile())
        await wait_for(lambda: _visible_message_box() is not None)
        box = _visible_message_box()
        assert box is not None
        assert "already running" in box.text()
        # the holder may be headless: the daemon is named, and its process
        assert f"(process {os.getpid()})" in box.text() and "daemon" in box.text()
        box.accept()
        assert await opening is False
        assert session.node is None


@pytest.mark.asyncio
async def test_passphrase_from_environment_opens_without_a_dialog(
    qtbot: QtBot, profile: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(api.PASSPHRASE_ENV, PASSPHRASE)
    session = GuiSession(options(profile))
    try:
        assert await session.open_profile() is True
        assert session.node is not None
    finally:
        await session.shutdown()


def test_paths_in_messages_are_not_broken_across_lines() -> None:
    """Found by a tester: the key file's path wrapped after its first "/"."""
    from app.gui.app import _unbroken_paths

    shown = _unbroken_paths("saved in /tmp/fresh/data.key (readable only by you)")
    assert shown.replace("\u2060", "") == "saved in /tmp/fresh/data.key (readable only by you)"
    assert "/\u2060tmp/\u2060fresh/\u2060data.key" in shown


@pytest.mark.asyncio
async def test_the_saved_theme_is_used_before_the_passphrase_is_asked(
    qtbot: QtBot, profile: Path
) -> None:
    """Found by a tester: with the dark theme chosen, the unlock dialog (and a profile
    without passphrase's first window) came up light, turning dark once the node ran."""
    config = profile / "config.json"
    saved = json.loads(config.read_text())
    config.write_text(json.dumps({**saved, "theme": "dark"}))
    app = QApplication.instance()
    assert isinstance(app, QApplication)
    before = (app.palette(), app.styleSheet(), theme._active)
    themes = theme.ThemeManager(app)
    themes.apply("light")
    session = GuiSession(options(profile), themes)
    opening = asyncio.ensure_future(session.open_profile())
    try:
        await wait_for(
            lambda: any(
                isinstance(w, UnlockDialog) and w.isVisible()
                for w in QApplication.topLevelWidgets()
            )
        )
        assert themes.choice == "dark" and theme.colors().dark
        [dialog] = [w for w in QApplication.topLevelWidgets() if isinstance(w, UnlockDialog)]
        dialog.reject()
        assert await opening is False
    finally:
        await session.shutdown()
        app.setPalette(before[0])
        app.setStyleSheet(before[1])
        theme._active = before[2]
