"""Dialog layout and feedback: inline errors never squash the fields and clear on edit;
the settings dialog checks every field at once and sets the downloads folder."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import pytest
from gui_helpers import wait_for
from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QApplication,
    QFileDialog,
    QInputDialog,
    QLineEdit,
    QMessageBox,
    QTabWidget,
    QWidget,
)
from pytestqt.qtbot import QtBot

from app.gui.bridge import NodeBridge
from app.gui.dialogs import contact_actions
from app.gui.dialogs.add_contact import AddContactDialog
from app.gui.dialogs.contact_actions import ask_new_name, confirm_remove, pick_paths
from app.gui.dialogs.first_run import FirstRunDialog
from app.gui.dialogs.settings import SettingsDialog
from app.node import api
from tests.conftest import TURN_PASSWORD
from tests.integration.ipfs_daemon import running_ipfs_daemon


def squashed(dialog: QWidget) -> list[str]:
    """The line edits shorter than their size hint (their text cut off vertically)."""
    QApplication.processEvents()
    return [
        edit.accessibleName()
        for edit in dialog.findChildren(QLineEdit)
        if edit.isVisible() and edit.height() < edit.sizeHint().height()
    ]


@pytest.mark.asyncio
async def test_first_run_error_keeps_the_fields_whole_and_clears_on_edit(
    qtbot: QtBot, tmp_path: Path
) -> None:
    dialog = FirstRunDialog(tmp_path / "new")
    qtbot.addWidget(dialog)
    dialog.show()
    await wait_for(dialog.isVisible)
    assert squashed(dialog) == []
    qtbot.mouseClick(dialog.create_button, Qt.MouseButton.LeftButton)
    await wait_for(dialog.error.isVisible)
    assert squashed(dialog) == []
    qtbot.keyClicks(dialog.name, "D")
    assert not dialog.error.isVisible()


@pytest.mark.asyncio
async def test_first_run_fields_stay_put_when_an_error_clears(qtbot: QtBot, tmp_path: Path) -> None:
    """Found by a tester: after a passphrase error, the next keystroke hid the error and
    the whole form moved down, so a click meant for "Repeat" missed; focus went to the
    display name."""
    dialog = FirstRunDialog(tmp_path / "new")
    qtbot.addWidget(dialog)
    dialog.show()
    await wait_for(dialog.isVisible)
    dialog.name.setText("Alice")
    dialog.passphrase_edit.setText("short")
    dialog.repeat_edit.setText("short")
    qtbot.mouseClick(dialog.create_button, Qt.MouseButton.LeftButton)
    await wait_for(dialog.error.isVisible)
    assert "at least" in dialog.error.text()
    await wait_for(dialog.passphrase_edit.hasFocus)
    where = [w.mapTo(dialog, w.rect().topLeft()) for w in (dialog.name, dialog.repeat_edit)]
    qtbot.keyClicks(dialog.passphrase_edit, "a longer one")
    assert not dialog.error.isVisible()
    QApplication.processEvents()
    assert [w.mapTo(dialog, w.rect().topLeft()) for w in (dialog.name, dialog.repeat_edit)] == where
    assert not (tmp_path / "new").exists()  # nothing was created


@pytest.mark.asyncio
async def test_add_contact_error_keeps_the_fields_whole_and_clears_on_edit(
    qtbot: QtBot, node: api.NodeApi
) -> None:
    dialog = AddContactDialog(NodeBridge(node))
    qtbot.addWidget(dialog)
    dialog.show()
    dialog.invite.setPlainText("eggs:garbage")
    qtbot.mouseClick(dialog.add_button, Qt.MouseButton.LeftButton)
    await wait_for(dialog.error.isVisible)
    assert dialog.error.text() == (
        "That invite link can't be used: the address after 'eggs:' is incomplete or mistyped."
    )
    assert squashed(dialog) == []
    assert dialog.invite.height() >= dialog.invite.minimumHeight()
    qtbot.keyClicks(dialog.invite, "x")
    assert not dialog.error.isVisible()
    dialog.invite.setPlainText("eggs:garbage")
    qtbot.mouseClick(dialog.add_button, Qt.MouseButton.LeftButton)
    await wait_for(dialog.error.isVisible)
    qtbot.keyClicks(dialog.name, "Bob")
    assert not dialog.error.isVisible()
    qtbot.keyClick(dialog.invite, Qt.Key.Key_Return)  # Enter adds: no line break typed
    await wait_for(dialog.error.isVisible)
    assert dialog.invite.toPlainText() == "eggs:garbage"


@pytest.mark.asyncio
async def test_enter_in_the_name_field_adds_the_contact_once(
    qtbot: QtBot, node: api.NodeApi, friend: api.InitResult
) -> None:
    """Found by a tester: Enter in the name field added the contact twice (the field's
    Enter and the default button's), the second failing with "already in your contacts"
    on a dialog that was gone (a traceback in the log)."""
    bridge = NodeBridge(node)
    asked: list[str] = []
    add = bridge.add_contact

    async def counted(text: str, name: str | None = None) -> api.Contact:
        asked.append(text)
        return await add(text, name)

    bridge.add_contact = counted  # type: ignore[method-assign]
    dialog = AddContactDialog(bridge)
    qtbot.addWidget(dialog)
    dialog.show()
    dialog.invite.setPlainText(friend.whoami.invite)
    qtbot.keyClicks(dialog.name, "Bob")
    qtbot.keyClick(dialog.name, Qt.Key.Key_Return)
    await wait_for(lambda: dialog.result() == AddContactDialog.DialogCode.Accepted)
    await asyncio.sleep(0.3)
    assert asked == [friend.whoami.invite]
    assert not dialog.error.isVisible()
    assert [c.name for c in await node.list_contacts()] == ["Bob"]


async def settings_dialog(qtbot: QtBot, node: api.NodeApi) -> SettingsDialog:
    bridge = NodeBridge(node)
    dialog = SettingsDialog(bridge, await bridge.settings())
    qtbot.addWidget(dialog)
    dialog.show()
    return dialog


@pytest.mark.asyncio
async def test_settings_show_every_bad_field_at_once(qtbot: QtBot, node: api.NodeApi) -> None:
    dialog = await settings_dialog(qtbot, node)
    dialog.listen.setText("nowhere")
    dialog.bootstrap.setPlainText("127.0.0.1:4000\nnope")
    dialog.ice.setPlainText("http://not-a-stun-server")
    dialog.ipfs.setText("zzz")
    qtbot.mouseClick(dialog.save_button, Qt.MouseButton.LeftButton)
    await wait_for(dialog.error.isVisible)
    lines = dialog.error.text().splitlines()
    assert len(lines) == 4
    for typed, line in zip(["'nowhere'", "'nope'", "http://not", "'zzz'"], lines, strict=True):
        assert typed in line
    assert "IPFS API address" in lines[3]
    assert squashed(dialog) == []
    assert dialog.saved is None
    assert (await node.get_settings()).ipfs_api == ""
    dialog.ipfs.setText("")  # fixing a field hides the stale errors
    assert not dialog.error.isVisible()


@pytest.mark.asyncio
@pytest.mark.slow
async def test_settings_save_the_address_of_a_running_ipfs_daemon(
    qtbot: QtBot, node: api.NodeApi, tmp_path: Path
) -> None:
    with running_ipfs_daemon(tmp_path) as daemon:  # the real (js-ipfs) daemon
        dialog = await settings_dialog(qtbot, node)
        dialog.ipfs.setText(daemon.api_addr)
        qtbot.mouseClick(dialog.save_button, Qt.MouseButton.LeftButton)
        await wait_for(lambda: dialog.saved is not None, timeout=15)
    assert (await node.get_settings()).ipfs_api == daemon.api_addr


@pytest.mark.asyncio
@pytest.mark.slow
async def test_settings_say_under_the_field_when_the_turn_server_refuses_the_password(
    qtbot: QtBot, node: api.NodeApi, coturn: int
) -> None:
    """A real coturn. aioice drops a refused TURN allocation silently: the entry was
    saved, and no connection ever got a relay path, without a word."""
    dialog = await settings_dialog(qtbot, node)
    wrong = f"turn:u:{TURN_PASSWORD}-not@127.0.0.1:{coturn}"
    dialog.ice.setPlainText(wrong)
    qtbot.mouseClick(dialog.save_button, Qt.MouseButton.LeftButton)
    await wait_for(dialog.ice_error.isVisible, timeout=15)
    assert "refused the user name and password" in dialog.ice_error.text()
    assert TURN_PASSWORD not in dialog.ice_error.text()
    assert dialog.tabs.currentWidget() is dialog.ice.parentWidget()  # the Network tab
    assert squashed(dialog) == []
    assert dialog.saved is None and (await node.get_settings()).ice_servers == []
    right = f"turn:u:{TURN_PASSWORD}@127.0.0.1:{coturn}"
    dialog.ice.setPlainText(right)
    assert dialog.ice_error.isHidden()  # editing the field hides its error
    qtbot.mouseClick(dialog.save_button, Qt.MouseButton.LeftButton)
    await wait_for(lambda: dialog.saved is not None, timeout=15)
    assert (await node.get_settings()).ice_servers == [right]


@pytest.mark.asyncio
async def test_settings_say_under_the_field_when_no_ipfs_daemon_answers(
    qtbot: QtBot, node: api.NodeApi
) -> None:
    """It was saved, and every share failed from then on ("Nothing was shared")."""
    dialog = await settings_dialog(qtbot, node)
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        address = f"/ip4/127.0.0.1/tcp/{probe.getsockname()[1]}/http"
    dialog.tabs.setCurrentIndex(0)
    dialog.ipfs.setText(address)
    qtbot.mouseClick(dialog.save_button, Qt.MouseButton.LeftButton)
    await wait_for(dialog.ipfs_error.isVisible)
    assert "no IPFS daemon answers there" in dialog.ipfs_error.text()
    assert dialog.tabs.currentWidget() is dialog.ipfs.parentWidget()  # the Network tab
    assert dialog.saved is None and (await node.get_settings()).ipfs_api == ""
    assert squashed(dialog) == []
    dialog.ipfs.setText("")  # editing the field hides its error
    assert dialog.ipfs_error.isHidden()


@pytest.mark.asyncio
async def test_settings_choose_the_downloads_folder_in_the_files_tab(
    qtbot: QtBot, node: api.NodeApi, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dialog = await settings_dialog(qtbot, node)
    tabs = dialog.findChild(QTabWidget)
    assert isinstance(tabs, QTabWidget)
    files = next(tabs.widget(i) for i in range(tabs.count()) if tabs.tabText(i) == "Files")
    assert files.isAncestorOf(dialog.downloads) and files.isAncestorOf(dialog.auto_accept)
    assert (await node.get_settings()).downloads_folder == dialog.downloads.text()

    chosen = tmp_path / "received"
    chosen.mkdir()
    asked: list[str] = []

    def pick(parent: QWidget, caption: str, start: str) -> str:
        asked.append(start)
        return str(chosen)

    monkeypatch.setattr(QFileDialog, "getExistingDirectory", pick)
    qtbot.mouseClick(dialog.choose_downloads, Qt.MouseButton.LeftButton)
    assert asked and dialog.downloads.text() == str(chosen)
    qtbot.mouseClick(dialog.save_button, Qt.MouseButton.LeftButton)
    await wait_for(lambda: dialog.saved is not None)
    assert (await node.get_settings()).downloads_folder == str(chosen)

    again = await settings_dialog(qtbot, node)
    again.downloads.clear()  # empty: back to the default folder
    qtbot.mouseClick(again.save_button, Qt.MouseButton.LeftButton)
    await wait_for(lambda: again.saved is not None)
    assert (await node.get_settings()).downloads_folder.endswith("Scrambled Eggs")


@pytest.mark.asyncio
async def test_contact_questions_return_the_users_answer(qtbot: QtBot) -> None:
    parent = QWidget()
    qtbot.addWidget(parent)
    parent.show()
    bob = api.Contact(name="Bob", address="eggs" + "a" * 56, verified=False)

    asked = asyncio.ensure_future(ask_new_name(parent, bob))
    await wait_for(lambda: [d for d in parent.findChildren(QInputDialog) if d.isVisible()])
    [dialog] = [d for d in parent.findChildren(QInputDialog) if d.isVisible()]
    dialog.setTextValue("  Robert ")
    dialog.accept()
    assert await asked == "Robert"

    asked = asyncio.ensure_future(ask_new_name(parent, bob))
    await wait_for(lambda: [d for d in parent.findChildren(QInputDialog) if d.isVisible()])
    [dialog] = [d for d in parent.findChildren(QInputDialog) if d.isVisible()]
    dialog.reject()
    assert await asked is None

    for choose_remove in (True, False):
        confirm = asyncio.ensure_future(confirm_remove(parent, bob))
        await wait_for(lambda: [b for b in parent.findChildren(QMessageBox) if b.isVisible()])
        [box] = [b for b in parent.findChildren(QMessageBox) if b.isVisible()]
        assert "Bob" in box.text()
        wanted = next(b for b in box.buttons() if (b.text() == "Remove") == choose_remove)
        wanted.click()
        assert await confirm is choose_remove
        await wait_for(lambda: not [b for b in parent.findChildren(QMessageBox) if b.isVisible()])


@pytest.mark.asyncio
async def test_the_file_picker_opens_where_the_last_pick_was(
    qtbot: QtBot, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found by a tester: each paper clip opened the picker in the folder the app was
    started from, not where the last shared file was."""
    photos = tmp_path / "photos"
    photos.mkdir()
    parent = QWidget()
    qtbot.addWidget(parent)
    bob = api.Contact(name="Bob", address="eggs" + "a" * 56, verified=False)
    opened_in: list[Path] = []
    answer: list[Path] = []

    async def answered(dialog: QFileDialog) -> int:  # Qt's own dialog is not shown
        opened_in.append(Path(dialog.directory().absolutePath()))
        dialog.selectedFiles = lambda: [str(p) for p in answer]  # type: ignore[method-assign]
        return 1 if answer else 0

    monkeypatch.setattr(contact_actions, "run_dialog", answered)
    monkeypatch.setattr(contact_actions, "_last_folder", [])
    answer[:] = [photos / "a.jpg", photos / "b.jpg"]
    assert await pick_paths(parent, bob) == answer
    answer[:] = []
    assert await pick_paths(parent, bob, folder=True) == []  # cancelled: nothing changes
    answer[:] = [photos]
    assert await pick_paths(parent, bob, folder=True) == [photos]
    await pick_paths(parent, bob)
    assert opened_in == [Path.home(), photos, photos, tmp_path]  # a folder: among its siblings
