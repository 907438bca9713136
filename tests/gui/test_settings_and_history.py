"""Settings persist across a node restart; long histories load lazily; theme and tray."""

from __future__ import annotations

from pathlib import Path

import pytest
from gui_helpers import PASSPHRASE, options, wait_for
from PySide6.QtCore import QModelIndex, Qt
from PySide6.QtWidgets import QApplication
from pytestqt.qtbot import QtBot

from app.gui import theme
from app.gui.app import GuiSession
from app.gui.bridge import NodeBridge
from app.gui.dialogs.first_run import FirstRunDialog
from app.gui.dialogs.settings import SettingsDialog
from app.gui.models.messages import MessageModel, MessageRole
from app.gui.tray import TrayIcon, badged_icon
from app.node import api


@pytest.mark.asyncio
async def test_settings_persist_across_a_restart(qtbot: QtBot, profile: Path) -> None:
    app = QApplication.instance()
    assert isinstance(app, QApplication)
    themes = theme.ThemeManager(app)
    themes.apply("light")
    session = GuiSession(options(profile), themes)
    assert await session.attempt_unlock(PASSPHRASE) is None
    window = await session.start_window()
    try:
        assert session.bridge is not None
        dialog = SettingsDialog(session.bridge, await session.bridge.settings(), window)
        qtbot.addWidget(dialog)
        dialog.show()
        dialog.display_name.setText("Alice L.")
        dialog.bootstrap.setPlainText("127.0.0.1:4000\n127.0.0.1:4001")
        dialog.ice.setPlainText("stun:127.0.0.1:3478")
        dialog.shaping.setCurrentIndex(dialog.shaping.findData("strict"))
        dialog.theme.setCurrentIndex(dialog.theme.findData("dark"))
        dialog.notifications.setChecked(False)
        dialog.auto_accept.setValue(5)
        dialog.ice.setPlainText("http://not-a-stun-server")
        qtbot.mouseClick(dialog.save_button, Qt.MouseButton.LeftButton)
        await wait_for(dialog.error.isVisible)
        assert "stun" in dialog.error.text()
        dialog.ice.setPlainText("stun:127.0.0.1:3478")
        qtbot.mouseClick(dialog.save_button, Qt.MouseButton.LeftButton)
        await wait_for(lambda: dialog.saved is not None)
        # the theme switches live, through the SettingsChanged event
        await wait_for(lambda: themes.choice == "dark")
        assert theme.colors().dark
        assert window.profile_name.full_text() == "Alice L."
    finally:
        await session.shutdown()
        themes.apply("light")

    async with api.host_node(options(profile), lambda: PASSPHRASE) as node:
        saved = await node.get_settings()
    assert saved.display_name == "Alice L."
    assert saved.bootstrap == ["127.0.0.1:4000", "127.0.0.1:4001"]
    assert saved.ice_servers == ["stun:127.0.0.1:3478"]
    assert saved.shaping_mode == "strict"
    assert saved.theme == "dark"
    assert saved.notifications is False
    assert saved.auto_accept_bytes == 5_000_000  # MB, as file cards show sizes


@pytest.mark.asyncio
async def test_passphrase_change_from_settings(qtbot: QtBot, session: GuiSession) -> None:
    assert session.bridge is not None
    dialog = SettingsDialog(session.bridge, await session.bridge.settings())
    qtbot.addWidget(dialog)
    dialog.new_passphrase.setText("a brand new passphrase")
    dialog.repeat_passphrase.setText("a brand new passphrase")
    qtbot.mouseClick(dialog.passphrase_button, Qt.MouseButton.LeftButton)
    await wait_for(lambda: "current passphrase" in dialog.passphrase_status.text())
    dialog.current_passphrase.setText("not the passphrase")
    qtbot.mouseClick(dialog.passphrase_button, Qt.MouseButton.LeftButton)
    await wait_for(lambda: "not your current" in dialog.passphrase_status.text(), timeout=20)
    assert dialog.passphrase_status.objectName() == "ErrorLabel"  # red, not like "Done."
    dialog.current_passphrase.setText(PASSPHRASE)
    qtbot.mouseClick(dialog.passphrase_button, Qt.MouseButton.LeftButton)
    await wait_for(lambda: dialog.passphrase_status.text().startswith("Done"), timeout=20)
    assert dialog.passphrase_status.objectName() != "ErrorLabel"
    assert dialog.current_passphrase.text() == ""
    profile = session.options.profile
    await session.shutdown()
    async with api.host_node(options(profile), lambda: "a brand new passphrase") as node:
        assert (await node.whoami()).name == "Alice"


@pytest.mark.asyncio
async def test_settings_this_machine_cant_use_are_shown_under_their_fields(
    qtbot: QtBot, session: GuiSession, tmp_path: Path
) -> None:
    """A listen address that is not this machine's, a downloads folder under a file: they
    used to be saved, then refused at the next start (or by every received file)."""
    assert session.bridge is not None
    dialog = SettingsDialog(session.bridge, await session.bridge.settings())
    qtbot.addWidget(dialog)
    dialog.show()
    dialog.resize(dialog.minimumSizeHint())  # no spare room: an error must make its own
    notes = tmp_path / "notes.txt"
    notes.write_text("x")
    bad_folder = str(notes / "Downloads")
    dialog.listen.setText("192.0.2.1:0")  # TEST-NET-1: no machine's own address
    dialog.downloads.setText(bad_folder)
    dialog.theme.setCurrentIndex(dialog.theme.findData("dark"))
    qtbot.mouseClick(dialog.save_button, Qt.MouseButton.LeftButton)
    await wait_for(dialog.listen_error.isVisible)
    assert "192.0.2.1 is not an address of this machine" in dialog.listen_error.text()
    assert not dialog.downloads_error.isHidden()  # shown, on the Files tab
    assert f"{notes} is a file, not a folder" in dialog.downloads_error.text()
    # the dialog stays open with what the user typed, on the tab of the first field
    assert dialog.isVisible() and dialog.saved is None
    assert dialog.listen.text() == "192.0.2.1:0" and dialog.downloads.text() == bad_folder
    assert dialog.tabs.currentWidget() is dialog.listen.parentWidget()
    assert not dialog.error.isVisible()
    # all of it readable: a tab passes no height-for-width up, so the form was squeezed
    # and the error's last line cut off (seen under Xvfb)
    page = dialog.tabs.currentWidget()
    layout = page.layout()
    assert layout is not None
    qtbot.waitUntil(lambda: layout.totalHeightForWidth(page.width()) <= page.height())
    saved = await session.bridge.settings()
    assert saved.theme == "system" and saved.downloads_folder != bad_folder
    # editing a field hides its error; the others stay until fixed
    dialog.listen.setText("127.0.0.1:0")
    assert dialog.listen_error.isHidden() and not dialog.downloads_error.isHidden()
    dialog.downloads.setText(str(tmp_path / "Received"))
    qtbot.mouseClick(dialog.save_button, Qt.MouseButton.LeftButton)
    await wait_for(lambda: dialog.saved is not None)
    assert dialog.saved is not None and dialog.saved.listen == "127.0.0.1:0"
    assert dialog.saved.downloads_folder == str(tmp_path / "Received")
    assert not (tmp_path / "Received").exists()  # checked, not made before a file comes


@pytest.mark.asyncio
async def test_long_history_loads_page_by_page(
    qtbot: QtBot, node: api.NodeApi, friend: api.InitResult
) -> None:
    bob = (await node.add_contact(api.AddContact(friend.whoami.invite))).contact
    for i in range(250):
        await node.send_message(api.SendMessage(bob.address, f"message {i}"))
    bridge = NodeBridge(node)
    model = MessageModel(bridge, page=100)
    root = QModelIndex()
    await model.open(bob.address)
    assert model.rowCount() == 100
    assert model.message_at(0).text == "message 150"
    assert model.message_at(99).text == "message 249"
    assert model.canFetchMore(root)
    assert model.data(model.index(0), MessageRole.DAY_HEADER) is True
    assert model.data(model.index(1), MessageRole.DAY_HEADER) is False

    model.fetchMore(root)
    assert not model.canFetchMore(root)  # one page at a time
    await wait_for(lambda: model.rowCount() == 200)
    assert model.message_at(0).text == "message 50"
    assert model.data(model.index(100), MessageRole.DAY_HEADER) is False  # same day as above
    await wait_for(lambda: model.canFetchMore(root))
    model.fetchMore(root)
    await wait_for(lambda: model.rowCount() == 250)
    assert [model.message_at(r).text for r in range(3)] == ["message 0", "message 1", "message 2"]
    assert not model.canFetchMore(root)


@pytest.mark.asyncio
async def test_scrolling_to_the_top_of_the_view_loads_older_messages(
    qtbot: QtBot, session: GuiSession, friend: api.InitResult
) -> None:
    assert session.node is not None and session.window is not None
    bob = (await session.node.add_contact(api.AddContact(friend.whoami.invite))).contact
    for i in range(260):
        await session.node.send_message(api.SendMessage(bob.address, f"line {i}"))
    window = session.window
    window.open_conversation(bob.address)
    await wait_for(lambda: window.messages.rowCount() >= 100 and not window.messages.loading)
    before = window.messages.rowCount()
    bar = window.conversation.list.verticalScrollBar()
    await wait_for(lambda: bar.maximum() > 0)
    bar.setValue(bar.minimum())
    await wait_for(lambda: window.messages.rowCount() > before)


def test_tray_badge_and_tooltip(qtbot: QtBot) -> None:
    assert not badged_icon(3).isNull()
    tray = TrayIcon()
    tray.set_unread(4)
    assert "4 unread" in tray.toolTip()
    tray.set_unread(0)
    assert tray.toolTip() == "Scrambled Eggs"


@pytest.mark.asyncio
async def test_a_message_written_meanwhile_is_shown_in_its_place(
    qtbot: QtBot, session: GuiSession, friend: api.InitResult
) -> None:
    """A received message that comes before ours in the shared order (`MessageAdded
    .before`) is inserted there while the conversation is open, not at the bottom."""
    assert session.node is not None and session.window is not None
    bob = (await session.node.add_contact(api.AddContact(friend.whoami.invite))).contact
    sent = [
        await session.node.send_message(api.SendMessage(bob.address, f"mine {i}")) for i in range(3)
    ]
    window = session.window
    window.open_conversation(bob.address)
    await wait_for(lambda: window.messages.rowCount() == 3 and not window.messages.loading)

    def received(msg_id: str, text: str) -> api.Message:
        return api.Message(msg_id, bob.address, bob.address, False, text, sent[-1].time,
                           api.MessageStatus.RECEIVED)  # fmt: skip

    window.bridge._dispatch(api.MessageAdded(received("b1", "theirs"), before=sent[1].id))
    window.bridge._dispatch(api.MessageAdded(received("b2", "newest")))
    model = window.messages
    assert [model.message_at(r).text for r in range(model.rowCount())] == [
        "mine 0", "theirs", "mine 1", "mine 2", "newest"]  # fmt: skip
    assert model.data(model.index(2), MessageRole.DAY_HEADER) is False


FLAGS = "\U0001f1eb\U0001f1f7" * 29  # 29 flags: 58 characters, two UTF-16 units each


@pytest.mark.asyncio
async def test_a_long_name_of_emoji_is_not_cut_by_the_name_fields(
    qtbot: QtBot, session: GuiSession, tmp_path: Path
) -> None:
    """A name may hold 64 characters; the window's name fields held 64 UTF-16 units
    (as Qt counts), half as many emoji. A name of 63 characters set from the command
    line opened in Settings cut in the middle of a flag, and saving any other setting
    (the theme) saved the cut name. The first-run field cut a pasted name likewise."""
    assert session.bridge is not None and session.node is not None
    name = "Alice " + FLAGS  # 64 characters
    await session.node.update_settings(api.UpdateSettings(display_name=name))
    dialog = SettingsDialog(session.bridge, await session.bridge.settings())
    qtbot.addWidget(dialog)
    dialog.show()
    assert dialog.display_name.text() == name
    dialog.theme.setCurrentIndex(dialog.theme.findData("dark"))
    assert dialog.changes().display_name is None  # only the theme changed
    first_run = FirstRunDialog(tmp_path / "new")
    qtbot.addWidget(first_run)
    first_run.show()
    first_run.name.setText(name)
    assert first_run.name.text() == name
    first_run.name.setText(name + "!")  # one too many: the node's rule says so
    first_run.passphrase_edit.setText(PASSPHRASE)
    first_run.repeat_edit.setText(PASSPHRASE)
    first_run.create_identity()
    await wait_for(first_run.error.isVisible)
    assert "at most 64 characters" in first_run.error.text()
