"""The TURN password in the Settings window's STUN / TURN field is shown as ••• until
"Show passwords" is ticked (it was shown as typed, to anyone looking at the screen or a
shared screen); saving without touching it keeps the real password, and an entry edited
while hidden, which still holds •••, is refused rather than saved with it (a real
coturn answers the check of the entry)."""

from __future__ import annotations

import pytest
from gui_helpers import wait_for
from PySide6.QtCore import Qt
from pytestqt.qtbot import QtBot

from app.gui.bridge import NodeBridge
from app.gui.dialogs.settings import SettingsDialog
from app.node import api
from tests.conftest import TURN_PASSWORD


async def _dialog(qtbot: QtBot, node: api.NodeApi) -> SettingsDialog:
    bridge = NodeBridge(node)
    dialog = SettingsDialog(bridge, await bridge.settings())
    qtbot.addWidget(dialog)
    dialog.show()
    return dialog


@pytest.mark.asyncio
@pytest.mark.slow
async def test_the_turn_password_is_hidden_until_shown(
    qtbot: QtBot, node: api.NodeApi, coturn: int
) -> None:
    entry = f"turn:u:{TURN_PASSWORD}@127.0.0.1:{coturn}"
    await node.update_settings(api.UpdateSettings(ice_servers=["stun:127.0.0.1:3478", entry]))
    dialog = await _dialog(qtbot, node)
    hidden = f"stun:127.0.0.1:3478\nturn:u:•••@127.0.0.1:{coturn}"
    assert dialog.ice.toPlainText() == hidden
    assert not dialog.show_passwords.isChecked()
    assert dialog.changes().ice_servers is None  # untouched: nothing to change

    dialog.show_passwords.setChecked(True)
    assert dialog.ice.toPlainText() == f"stun:127.0.0.1:3478\n{entry}"
    dialog.show_passwords.setChecked(False)
    assert dialog.ice.toPlainText() == hidden

    # saving with the password hidden keeps it (the name changes, the servers don't)
    dialog.display_name.setText("Alice B")
    qtbot.mouseClick(dialog.save_button, Qt.MouseButton.LeftButton)
    await wait_for(lambda: dialog.saved is not None, timeout=15)
    assert (await node.get_settings()).ice_servers == ["stun:127.0.0.1:3478", entry]

    # an entry edited while hidden keeps the ••• it showed: refused, not saved
    dialog = await _dialog(qtbot, node)
    dialog.ice.setPlainText(f"turn:u:•••@localhost:{coturn}")
    qtbot.mouseClick(dialog.save_button, Qt.MouseButton.LeftButton)
    await wait_for(dialog.error.isVisible)
    assert "password is hidden" in dialog.error.text()
    assert dialog.saved is None
    assert (await node.get_settings()).ice_servers == ["stun:127.0.0.1:3478", entry]
