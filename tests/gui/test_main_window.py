"""The main window over a real node: contacts, composer, incoming messages, search,
verification, status bar, drag and drop."""

from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path
from typing import Any

import pytest
import shiboken6
from gui_helpers import drag_data, wait_for
from PySide6.QtCore import QMimeData, QPoint, QPointF, Qt
from PySide6.QtGui import QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import QApplication, QMenu
from pytestqt.qtbot import QtBot

from app.gui.app import GuiSession
from app.gui.dialogs.add_contact import AddContactDialog
from app.gui.dialogs.verify import VerifyDialog
from app.gui.main_window import MainWindow
from app.gui.models.contacts import ContactRole
from app.gui.models.messages import PAGE
from app.node import api


def window_of(session: GuiSession) -> MainWindow:
    assert session.window is not None
    return session.window


def node_of(session: GuiSession) -> api.NodeApi:
    assert session.node is not None
    return session.node


def child_dialog(window: MainWindow, kind: type) -> object | None:
    found = [d for d in window.findChildren(kind) if d.isVisible()]
    return found[0] if found else None


async def add_bob(session: GuiSession, friend: api.InitResult) -> api.Contact:
    contact = (await node_of(session).add_contact(api.AddContact(friend.whoami.invite))).contact
    await wait_for(lambda: window_of(session).contacts.row_of(contact.address) >= 0)
    return contact


async def open_chat(session: GuiSession, address: str) -> MainWindow:
    window = window_of(session)
    window.open_conversation(address)
    await wait_for(lambda: window.messages.contact == address and not window.messages.loading)
    return window


@pytest.mark.asyncio
async def test_add_contact_from_invite(
    qtbot: QtBot, session: GuiSession, friend: api.InitResult
) -> None:
    window = window_of(session)
    assert window.left_stack.currentWidget() is window.no_contacts
    window.add_action.trigger()
    await wait_for(lambda: child_dialog(window, AddContactDialog) is not None)
    dialog = child_dialog(window, AddContactDialog)
    assert isinstance(dialog, AddContactDialog)

    dialog.invite.setPlainText("eggs:this-is-not-an-invite")
    qtbot.mouseClick(dialog.add_button, Qt.MouseButton.LeftButton)
    await wait_for(dialog.error.isVisible)
    assert "invite" in dialog.error.text().lower()

    dialog.invite.setPlainText(friend.whoami.invite)
    dialog.name.setText("Bobby")
    qtbot.mouseClick(dialog.add_button, Qt.MouseButton.LeftButton)
    await wait_for(lambda: not shiboken6.isValid(dialog) or not dialog.isVisible())
    contacts = await node_of(session).list_contacts()
    assert [(c.name, c.address) for c in contacts] == [("Bobby", friend.whoami.address)]
    assert window.contacts.rowCount() == 1
    assert window.left_stack.currentWidget() is window.contact_list
    await wait_for(lambda: window.messages.contact == friend.whoami.address)
    assert window.conversation.contact is not None
    assert window.conversation.contact.name == "Bobby"
    assert window.conversation.banner.isVisibleTo(window)  # not verified yet


@pytest.mark.asyncio
async def test_enter_sends_and_shift_enter_adds_a_line(
    qtbot: QtBot, session: GuiSession, friend: api.InitResult
) -> None:
    bob = await add_bob(session, friend)
    window = await open_chat(session, bob.address)
    composer = window.conversation.composer
    qtbot.keyClicks(composer, "first line")
    qtbot.keyClick(composer, Qt.Key.Key_Return, Qt.KeyboardModifier.ShiftModifier)
    qtbot.keyClicks(composer, "second line")
    assert window.messages.rowCount() == 0
    assert composer.toPlainText() == "first line\nsecond line"
    qtbot.keyClick(composer, Qt.Key.Key_Return)
    await wait_for(lambda: window.messages.rowCount() == 1)
    sent = window.messages.message_at(0)
    assert sent.text == "first line\nsecond line"
    assert sent.outgoing and sent.status == api.MessageStatus.QUEUED
    assert composer.toPlainText() == ""
    stored = await node_of(session).list_messages(api.ListMessages(bob.address))
    assert [m.id for m in stored] == [sent.id]
    # the contact row shows the last message
    await wait_for(lambda: window.contacts.data(window.contacts.index(0), 0x0103) is not None)


@pytest.mark.asyncio
async def test_incoming_message_events_update_views(
    qtbot: QtBot, session: GuiSession, friend: api.InitResult
) -> None:
    """The node has no receive path yet (networking is being built), so this drives the
    node's own store and event bus the way the receiver will: persist, then publish
    `MessageAdded`. The GUI side is exactly what a real delivery will exercise."""
    bob = await add_bob(session, friend)
    window = window_of(session)
    assert window.messages.contact is None  # adding a contact doesn't open its conversation
    service = node_of(session)
    store = service.store  # type: ignore[attr-defined]

    async def deliver(text: str) -> api.Message:
        message = api.Message(
            id=f"in-{time.monotonic_ns()}",
            contact=bob.address,
            sender=bob.address,
            outgoing=False,
            text=text,
            time=time.time(),
            status=api.MessageStatus.RECEIVED,
        )
        await store.call(store.messages.add, message)
        service._bus.publish(api.MessageAdded(message))  # type: ignore[attr-defined]
        return message

    await deliver("are you there?")
    await wait_for(lambda: window.contacts.unread(bob.address) == 1)
    assert window.windowTitle().startswith("(1)")
    window = await open_chat(session, bob.address)
    assert window.contacts.unread(bob.address) == 0
    assert [m.text for m in _rows(window)] == ["are you there?"]
    second = await deliver("hello again")
    await wait_for(lambda: window.messages.rowCount() == 2)
    assert window.messages.message_at(1).id == second.id
    assert not window.messages.message_at(1).outgoing


def _rows(window: MainWindow) -> list[api.Message]:
    return [window.messages.message_at(r) for r in range(window.messages.rowCount())]


@pytest.mark.asyncio
async def test_status_changes_reach_the_bubbles(
    qtbot: QtBot, session: GuiSession, friend: api.InitResult
) -> None:
    bob = await add_bob(session, friend)
    window = await open_chat(session, bob.address)
    sent = await node_of(session).send_message(api.SendMessage(bob.address, "tick tock"))
    await wait_for(lambda: window.messages.rowCount() == 1)
    service = node_of(session)
    service._bus.publish(  # type: ignore[attr-defined]
        api.MessageStatusChanged(sent.id, bob.address, api.MessageStatus.DELIVERED)
    )
    await wait_for(lambda: window.messages.message_at(0).status == api.MessageStatus.DELIVERED)
    # one event for several messages (a read receipt covering a backlog) reaches each
    more = [await service.send_message(api.SendMessage(bob.address, f"m{i}")) for i in range(3)]
    await wait_for(lambda: window.messages.rowCount() == 4)
    service._bus.publish(  # type: ignore[attr-defined]
        api.MessageStatusChanged.of(
            [sent.id, *(m.id for m in more)], bob.address, api.MessageStatus.READ
        )
    )
    await wait_for(lambda: all(m.status == api.MessageStatus.READ for m in _rows(window)))


@pytest.mark.asyncio
async def test_verify_dialog_shows_the_safety_number_and_marks_verified(
    qtbot: QtBot, session: GuiSession, friend: api.InitResult
) -> None:
    bob = await add_bob(session, friend)
    window = await open_chat(session, bob.address)
    expected = await node_of(session).verify_contact(api.VerifyContact(bob.address))
    qtbot.mouseClick(window.conversation.verify_button, Qt.MouseButton.LeftButton)
    await wait_for(lambda: child_dialog(window, VerifyDialog) is not None)
    dialog = child_dialog(window, VerifyDialog)
    assert isinstance(dialog, VerifyDialog)
    await wait_for(lambda: dialog.verification is not None)
    shown = dialog.number.text().split()
    assert shown == expected.safety_number.split()
    assert len("".join(shown)) == 60
    assert not dialog.qr.pixmap().isNull()
    assert dialog.verify_button.isEnabled()
    # it opened while loading (one line): nothing overlaps once the number is in
    await wait_for(lambda: dialog.qr.geometry().bottom() < dialog.state.geometry().top())
    assert dialog.number.geometry().bottom() < dialog.qr.geometry().top()

    qtbot.mouseClick(dialog.verify_button, Qt.MouseButton.LeftButton)
    await wait_for(lambda: dialog.verification is not None and dialog.verification.verified)
    assert not dialog.verify_button.isEnabled()
    contacts = await node_of(session).list_contacts()
    assert contacts[0].verified
    await wait_for(lambda: window.contacts.contact_at(0).verified)
    await wait_for(lambda: not window.conversation.banner.isVisibleTo(window))
    dialog.accept()


@pytest.mark.asyncio
async def test_search_finds_history(
    qtbot: QtBot, session: GuiSession, friend: api.InitResult
) -> None:
    bob = await add_bob(session, friend)
    node = node_of(session)
    for text in ("the pancake recipe", "nothing here", "more PANCAKES please"):
        await node.send_message(api.SendMessage(bob.address, text))
    window = window_of(session)
    window.search_action.trigger()
    assert window.search.hasFocus() or QApplication.focusWidget() is window.search
    qtbot.keyClicks(window.search, "pancake")
    qtbot.keyClick(window.search, Qt.Key.Key_Return)
    await wait_for(lambda: window.left_stack.currentWidget() is window.results)
    texts = [window.results.item(i).text() for i in range(window.results.count())]
    assert len(texts) == 2
    assert window.results.currentRow() == 0  # Enter opens the first, Down goes to the next
    assert "more PANCAKES please" in texts[0] and "the pancake recipe" in texts[1]
    window._result_chosen(window.results.item(0))
    await wait_for(lambda: window.messages.contact == bob.address and window.messages.rowCount())
    window.search.clear()
    assert window.left_stack.currentWidget() is window.contact_list


@pytest.mark.asyncio
async def test_a_search_result_opens_its_conversation_at_that_message(
    qtbot: QtBot, session: GuiSession, friend: api.InitResult
) -> None:
    """Found by a tester: the conversation opened at its newest page, not at the
    message. An old one (before the newest page) is loaded and marked."""
    bob = await add_bob(session, friend)
    node = node_of(session)
    await node.send_message(api.SendMessage(bob.address, "the needle in the haystack"))
    for n in range(PAGE + 20):
        await node.send_message(api.SendMessage(bob.address, f"hay {n}"))
    window = window_of(session)
    window.search.setText("needle")
    await window.run_search()
    [found] = [window.results.item(i) for i in range(window.results.count())]
    message = found.data(Qt.ItemDataRole.UserRole)
    window._result_chosen(found)
    await wait_for(lambda: window.messages.row_of(message.id) >= 0)
    await wait_for(lambda: window.conversation.delegate.highlighted == message.id)
    index = window.conversation._proxy.mapFromSource(
        window.messages.index(window.messages.row_of(message.id), 0)
    )
    shown = window.conversation.list.visualRect(index)
    assert window.conversation.list.viewport().rect().intersects(shown)  # scrolled to it


@pytest.mark.asyncio
async def test_status_bar_shows_the_node(qtbot: QtBot, session: GuiSession) -> None:
    window = window_of(session)
    await wait_for(lambda: "127.0.0.1:" in window.endpoints_label.text())
    assert "peers" in window.peers_label.text().lower()
    # the narrow header says it in a word (it showed "Connected · 1 D…")
    assert window.profile_state.full_text() in ("Online", "Looking for peers")
    window.profile_name.set_full_text("Alice " + "Longname" * 20)  # elided, not clipped
    assert window.profile_name.text().endswith("…")


@pytest.mark.asyncio
async def test_quit_shortcut_asks_to_quit(qtbot: QtBot, session: GuiSession) -> None:
    window = window_of(session)
    assert window.quit_action.shortcut().toString() == "Ctrl+Q"
    assert window.add_action.shortcut().toString() == "Ctrl+N"
    assert window.search_action.shortcut().toString() == "Ctrl+F"
    assert "Ctrl+," in [s.toString() for s in window.settings_action.shortcuts()]
    with qtbot.waitSignal(window.quitRequested, timeout=1000):
        window.quit_action.trigger()


@pytest.mark.asyncio
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # QDragEnterEvent(QPoint...)
async def test_drop_shares_the_local_paths_with_the_contact(
    qtbot: QtBot,
    session: GuiSession,
    friend: api.InitResult,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The drop overlay shows while dragging; the drop makes the bridge call the node's
    `share_files` with the contact and the local paths (the web link is left out). The
    recorder hands the command on to the real `NodeService.share_files`."""
    bob = await add_bob(session, friend)
    window = await open_chat(session, bob.address)
    pane = window.conversation
    service = node_of(session)
    issued: list[api.ShareFiles] = []

    async def share_files(command: api.ShareFiles) -> list[api.Transfer]:
        issued.append(command)
        result: list[api.Transfer] = await type(service).share_files(service, command)  # type: ignore[attr-defined]
        return result

    monkeypatch.setattr(service, "share_files", share_files, raising=False)
    files = [tmp_path / "holiday.jpg", tmp_path / "notes.txt", tmp_path / "album"]
    files[0].write_bytes(b"x")
    files[1].write_bytes(b"y")
    files[2].mkdir()
    mime = drag_data(files)
    actions = Qt.DropAction.CopyAction
    enter = QDragEnterEvent(
        QPoint(50, 50), actions, mime, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier
    )
    QApplication.sendEvent(pane, enter)
    assert enter.isAccepted()
    assert pane.overlay.isVisible()
    assert pane.overlay.geometry() == pane.rect()

    received: list[tuple[str, list[str]]] = []
    assert session.bridge is not None
    session.bridge.shareRequested.connect(lambda a, p: received.append((a, p)))
    drop = QDropEvent(
        QPointF(50, 50), actions, mime, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier
    )
    QApplication.sendEvent(pane, drop)
    assert drop.isAccepted()
    assert not pane.overlay.isVisible()
    paths = [str(f) for f in files]
    assert received == [(bob.address, paths)]
    await wait_for(lambda: issued == [api.ShareFiles(bob.address, paths)])


@pytest.mark.asyncio
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # QDragEnterEvent(QPoint...)
async def test_drag_without_files_is_refused(
    qtbot: QtBot, session: GuiSession, friend: api.InitResult
) -> None:
    bob = await add_bob(session, friend)
    window = await open_chat(session, bob.address)
    mime = QMimeData()
    mime.setText("just text")
    enter = QDragEnterEvent(
        QPoint(5, 5),
        Qt.DropAction.CopyAction,
        mime,
        Qt.MouseButton.LeftButton,
        Qt.KeyboardModifier.NoModifier,
    )
    QApplication.sendEvent(window.conversation, enter)
    assert not enter.isAccepted()
    assert not window.conversation.overlay.isVisible()


@pytest.mark.asyncio
async def test_a_changed_key_turns_the_banner_into_a_warning(
    session: GuiSession, friend: api.InitResult, tmp_path: Path
) -> None:
    from gui_helpers import PASSPHRASE

    from app.core.identity import IdentityKeys, make_invite
    from app.node.lock import ProfileLock
    from app.node.paths import ProfilePaths
    from app.node.profile import open_store

    bob = await add_bob(session, friend)
    window = await open_chat(session, bob.address)
    assert window.conversation.banner.objectName() == "Banner"
    # an invite for Bob's address with another X25519 key (made with Bob's signing key,
    # as an attacker who stole it could): the node refuses it and flags the contact
    with ProfileLock(ProfilePaths(tmp_path / "bob").lock):
        store = open_store(tmp_path / "bob", lambda: PASSPHRASE)
        stolen = store.identity
        store.close()
    forged = make_invite(IdentityKeys(stolen.signing_seed, bytes([7] * 32)), "Bob", [])
    with pytest.raises(api.ContactExists):
        await node_of(session).add_contact(api.AddContact(forged))
    banner = window.conversation.banner
    await wait_for(lambda: banner.objectName() == "DangerBanner")
    assert banner.isVisibleTo(window)
    assert "different encryption key" in window.conversation.banner_label.text()
    assert not window.conversation.banner_button.isVisibleTo(window)


@pytest.mark.asyncio
async def test_a_contact_can_be_renamed_removed_and_sent_files_from_its_menu(
    qtbot: QtBot,
    session: GuiSession,
    friend: api.InitResult,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Found by a tester: no way to rename or remove a contact in the window (the
    key-changed warning tells users to remove one), and files could only be dropped."""
    from app.gui import main_window

    bob = await add_bob(session, friend)
    window = window_of(session)
    row = window.contacts.row_of(bob.address)
    rect = window.contact_list.visualRect(window.contacts.index(row))
    window._contact_menu(rect.center())
    menus = [m for m in window.findChildren(QMenu) if m.isVisible()]
    assert [a.text() for a in menus[0].actions() if a.text()] == [
        "Share files…",
        "Share a folder…",
        "Verify safety number…",
        "Rename…",
        "Remove…",
    ]
    menus[0].hide()

    async def robert(*_: object) -> str:
        return "Robert"

    monkeypatch.setattr(main_window, "ask_new_name", robert)
    window.rename_contact(bob.address)
    await wait_for(lambda: (c := window.contacts.contact(bob.address)) and c.name == "Robert")

    source = tmp_path / "notes.txt"
    source.write_text("for Robert")

    async def picked(*_: object) -> list[Path]:
        return [source]

    monkeypatch.setattr(main_window, "pick_paths", picked)
    window.share_with(bob.address)
    await wait_for(lambda: window.transfers.rowCount() == 1)

    async def confirmed(*_: object) -> bool:
        return True

    monkeypatch.setattr(main_window, "confirm_remove", confirmed)
    window.remove_contact(bob.address)
    await wait_for(lambda: window.contacts.row_of(bob.address) < 0)


@pytest.mark.asyncio
async def test_the_status_bar_tells_offers_waiting_for_us_from_moving_transfers(
    qtbot: QtBot, session: GuiSession
) -> None:
    window = window_of(session)
    offer = api.Transfer(
        "t1", "eggbob", False, "a.jpg", 10, 0, api.TransferState.OFFERED, None, "image/jpeg", 0.0
    )
    window.transfers.upsert(offer)
    assert window.active_transfers.text() == "1 file offered to you"
    window.transfers.upsert(dataclasses.replace(offer, state=api.TransferState.RUNNING))
    assert window.active_transfers.text() == "1 transfer active"


@pytest.mark.asyncio
async def test_the_status_bar_tells_our_offers_waiting_for_them(
    qtbot: QtBot, session: GuiSession
) -> None:
    """Found by a tester: a file we offered, not accepted yet, showed as "1 transfer
    active" while nothing moved."""
    window = window_of(session)
    ours = api.Transfer(
        "t2", "eggbob", True, "b.mkv", 10, 0, api.TransferState.OFFERED, None, "video/x", 0.0
    )
    window.transfers.upsert(ours)
    assert window.active_transfers.text() == "1 file waiting for them to accept"
    window.transfers.upsert(dataclasses.replace(ours, state=api.TransferState.RUNNING))
    assert window.active_transfers.text() == "1 transfer active"


@pytest.mark.asyncio
async def test_the_status_bar_does_not_count_an_offer_as_active_beside_a_running_file(
    qtbot: QtBot, session: GuiSession
) -> None:
    """Seen in the real app: one file moving and one offered to us read "2 transfers
    active", hiding the offer that waits for Accept or Decline."""
    window = window_of(session)
    offer = api.Transfer(
        "t1", "eggbob", False, "a.jpg", 10, 0, api.TransferState.OFFERED, None, "image/jpeg", 0.0
    )
    moving = dataclasses.replace(offer, id="t2", state=api.TransferState.RUNNING)
    ours = dataclasses.replace(offer, id="t3", outgoing=True)
    window.transfers.upsert(offer)
    window.transfers.upsert(moving)
    assert window.active_transfers.text() == "1 file offered to you · 1 transfer active"
    assert window.active_transfers.toolTip().startswith(window.active_transfers.text())
    window.transfers.upsert(ours)
    assert window.active_transfers.text() == (
        "1 file offered to you · 1 transfer active · 1 file waiting for them to accept"
    )
    window.transfers.upsert(dataclasses.replace(offer, state=api.TransferState.RUNNING))
    assert window.active_transfers.text() == (
        "2 transfers active · 1 file waiting for them to accept"
    )


@pytest.mark.asyncio
async def test_a_message_over_the_limit_stays_in_the_box_with_a_hint(
    qtbot: QtBot, session: GuiSession, friend: api.InitResult
) -> None:
    """Found by a tester: 40,000 characters gave "Something went wrong inside the app"
    and what was typed was gone."""
    bob = await add_bob(session, friend)
    window = await open_chat(session, bob.address)
    pane = window.conversation
    text = "x" * (api.MAX_MESSAGE_BYTES + 1)
    pane.composer.setPlainText(text)
    assert not pane.send_button.isEnabled()
    assert pane.length_hint.isVisible() and "too long" in pane.length_hint.text()
    qtbot.keyClick(pane.composer, Qt.Key.Key_Return)
    assert pane.composer.toPlainText() == text  # kept
    assert window.messages.rowCount() == 0
    pane.composer.setPlainText(text[:-1])
    assert pane.send_button.isEnabled() and not pane.length_hint.isVisible()


@pytest.mark.asyncio
async def test_every_button_icon_is_redrawn_for_a_new_theme(session: GuiSession) -> None:
    """Icons are drawn in the theme's text colour: switching to the dark theme redraws
    every one of ours (the paper clip kept its dark-on-dark colour)."""
    from PySide6.QtWidgets import QAbstractButton

    from app.gui import theme
    from app.gui.widgets import icons

    window = window_of(session)
    app = QApplication.instance()
    assert isinstance(app, QApplication)
    before = (app.palette(), app.styleSheet(), theme._active)
    window._themes = theme.ThemeManager(app)
    try:
        await node_of(session).update_settings(api.UpdateSettings(theme="dark"))
        await wait_for(lambda: window._themes is not None and window._themes.choice == "dark")
        text = theme.colors().text
        assert text == theme.DARK.text

        def drawn_in(button: QAbstractButton) -> set[str]:
            image = button.icon().pixmap(icons.SIZE, icons.SIZE).toImage()
            return {
                image.pixelColor(x, y).name()
                for x in range(image.width())
                for y in range(image.height())
                if image.pixelColor(x, y).alpha() == 255
            }

        ours = [
            b
            for b in window.findChildren(QAbstractButton)
            if not b.icon().isNull() and not b.objectName().startswith("qt_")
        ]
        assert window.conversation.attach_button in ours
        stale = [(b.objectName(), b.toolTip()) for b in ours if text not in drawn_in(b)]
        assert not stale
    finally:
        app.setPalette(before[0])
        app.setStyleSheet(before[1])
        theme._active = before[2]


@pytest.mark.asyncio
async def test_a_narrow_window_gives_the_conversation_more_room(
    qtbot: QtBot, session: GuiSession
) -> None:
    from app.gui.main_window import SIDEBAR_MIN_WIDTH, SIDEBAR_WIDTH

    window = window_of(session)
    window.resize(1100, 720)
    await wait_for(lambda: window.sidebar.width() == SIDEBAR_WIDTH)
    window.resize(640, 720)
    await wait_for(lambda: window.sidebar.width() == SIDEBAR_MIN_WIDTH)
    assert window.conversation.width() >= 640 - SIDEBAR_MIN_WIDTH - 10


@pytest.mark.asyncio
async def test_arrow_keys_browse_the_contacts_and_enter_goes_to_the_message_field(
    qtbot: QtBot, session: GuiSession, friend: api.InitResult, tmp_path: Path
) -> None:
    """Found by a tester: the first arrow key in the contact list moved the focus to the
    message field, so the next arrow or Tab went elsewhere and a keyboard user could not
    walk through the contacts. A mouse click still goes straight to the message field."""
    carol = api.init_profile(tmp_path / "carol", "Carol", None)
    bob = await add_bob(session, friend)
    await node_of(session).add_contact(api.AddContact(carol.whoami.invite))
    window = window_of(session)
    await wait_for(lambda: window.contacts.rowCount() == 2)
    window.activateWindow()
    window.contact_list.setFocus()
    await wait_for(lambda: QApplication.focusWidget() is window.contact_list)
    window.contact_list.setCurrentIndex(window.contacts.index(0))
    first = window.contact_list.currentIndex().data(ContactRole.CONTACT)
    await wait_for(lambda: window.messages.contact == first.address)
    qtbot.keyClick(window.contact_list, Qt.Key.Key_Down)
    second = window.contact_list.currentIndex().data(ContactRole.CONTACT)
    assert {first.address, second.address} == {bob.address, carol.whoami.address}
    await wait_for(lambda: window.messages.contact == second.address)
    assert QApplication.focusWidget() is window.contact_list
    qtbot.keyClick(window.contact_list, Qt.Key.Key_Up)
    await wait_for(lambda: window.messages.contact == first.address)
    assert QApplication.focusWidget() is window.contact_list
    qtbot.keyClick(window.contact_list, Qt.Key.Key_Return)
    assert QApplication.focusWidget() is window.conversation.composer

    window.contact_list.setFocus()
    row = window.contacts.row_of(second.address)
    where = window.contact_list.visualRect(window.contacts.index(row)).center()
    qtbot.mouseClick(window.contact_list.viewport(), Qt.MouseButton.LeftButton, pos=where)
    await wait_for(lambda: window.messages.contact == second.address)
    await wait_for(lambda: QApplication.focusWidget() is window.conversation.composer)


@pytest.mark.asyncio
async def test_add_contact_offers_an_invite_from_the_clipboard_but_not_ours(
    qtbot: QtBot, session: GuiSession, friend: api.InitResult
) -> None:
    """Found by a tester: right after "Copy link" in My invite, Add contact came filled
    with the user's own invite, and adding it said "That is your own address"."""
    window = window_of(session)
    me = await node_of(session).whoami()
    clipboard = QApplication.clipboard()
    for on_clipboard, offered in ((me.invite, ""), (friend.whoami.invite, friend.whoami.invite)):
        clipboard.setText(on_clipboard)
        window.add_action.trigger()
        await wait_for(lambda: child_dialog(window, AddContactDialog) is not None)
        dialog = child_dialog(window, AddContactDialog)
        assert isinstance(dialog, AddContactDialog)
        assert dialog.invite.toPlainText() == offered
        dialog.reject()
        await wait_for(lambda: child_dialog(window, AddContactDialog) is None)


@pytest.mark.asyncio
async def test_a_contact_added_again_shows_the_kept_conversation_in_its_row(
    qtbot: QtBot, session: GuiSession, friend: api.InitResult
) -> None:
    """Found by a tester: removed and added again, a contact's row was blank (no last
    message, no time) though the conversation was kept, as the remove dialog promises."""
    bob = await add_bob(session, friend)
    node = node_of(session)
    await node.send_message(api.SendMessage(bob.address, "kept across the removal"))
    window = window_of(session)
    await node.remove_contact(api.RemoveContact(bob.address))
    await wait_for(lambda: window.contacts.row_of(bob.address) < 0)
    await add_bob(session, friend)

    def last() -> api.Message | None:
        row = window.contacts.row_of(bob.address)
        return window.contacts.index(row).data(ContactRole.LAST_MESSAGE) if row >= 0 else None

    await wait_for(lambda: last() is not None)
    message = last()
    assert message is not None and message.text == "kept across the removal"


@pytest.mark.asyncio
async def test_a_message_text_can_be_copied_from_its_menu(
    qtbot: QtBot, session: GuiSession, friend: api.InitResult
) -> None:
    """Found by a tester: a link a friend sent could not be copied; right click on a
    message did nothing."""
    bob = await add_bob(session, friend)
    text = "https://example.com/a/long/link?x=1"
    await node_of(session).send_message(api.SendMessage(bob.address, text))
    window = await open_chat(session, bob.address)
    await wait_for(lambda: window.messages.rowCount() == 1)
    pane = window.conversation
    index = pane._proxy.mapFromSource(window.messages.index(0, 0))
    menu = pane._context_menu(pane.list.visualRect(index).center())
    assert isinstance(menu, QMenu)
    [copy] = [a for a in menu.actions() if a.text() == "Copy text"]
    QApplication.clipboard().clear()
    copy.trigger()
    assert QApplication.clipboard().text() == text
    menu.close()


@pytest.mark.asyncio
async def test_escape_leaves_the_search_for_the_contacts(
    qtbot: QtBot, session: GuiSession, friend: api.InitResult
) -> None:
    """Found by a tester: Esc in the search field or its results did nothing; only the
    small clear button went back to the contacts."""
    bob = await add_bob(session, friend)
    await node_of(session).send_message(api.SendMessage(bob.address, "the pancake recipe"))
    window = window_of(session)
    window.activateWindow()
    for where in ("field", "results"):
        window.search.setFocus()
        qtbot.keyClicks(window.search, "pancake")
        qtbot.keyClick(window.search, Qt.Key.Key_Return)
        await wait_for(lambda: window.left_stack.currentWidget() is window.results)
        target = window.search if where == "field" else window.results
        target.setFocus()
        await wait_for(lambda t=target: QApplication.focusWidget() is t)
        qtbot.keyClick(target, Qt.Key.Key_Escape)
        assert window.search.text() == ""
        assert window.left_stack.currentWidget() is window.contact_list


@pytest.mark.asyncio
async def test_a_profile_disk_that_refuses_what_contacts_send_is_shown_and_so_is_its_end(
    qtbot: QtBot, session: GuiSession
) -> None:
    """Found with the profile on a full disk: messages from contacts stopped arriving
    and the window said nothing. The node's `StorageAlert` is shown as an error, its
    all-clear as a notice."""
    window = window_of(session)
    full = "What your contacts send can't be stored: the disk is full (/p). It waits ..."
    window.bridge._dispatch(api.StorageAlert(full))
    assert window.statusBar().currentMessage() == full
    assert window.toast.text() == full
    back = "The profile's disk (/p) takes what your contacts send again; ..."
    window.bridge._dispatch(api.StorageAlert(back, resolved=True))
    assert window.statusBar().currentMessage() == back


@pytest.mark.asyncio
async def test_a_message_the_full_disk_refused_goes_back_into_the_composer(
    qtbot: QtBot,
    session: GuiSession,
    friend: api.InitResult,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Found with the profile on a full disk: Enter cleared the composer, the node
    refused to store the message ("the disk is full"), and the text was gone. It is put
    back (before anything typed since), so it can be sent once space is freed."""
    bob = await add_bob(session, friend)
    window = await open_chat(session, bob.address)
    node = node_of(session)
    real_send = node.send_message

    async def disk_full(command: api.SendMessage) -> api.Message:
        raise api.StorageFailed("Couldn't save to the profile database: the disk is full.")

    monkeypatch.setattr(node, "send_message", disk_full)
    composer = window.conversation.composer
    qtbot.keyClicks(composer, "a long thought")
    qtbot.keyClick(composer, Qt.Key.Key_Return)
    await wait_for(lambda: composer.toPlainText() == "a long thought")
    assert "the disk is full" in window.statusBar().currentMessage()
    assert window.messages.rowCount() == 0

    monkeypatch.setattr(node, "send_message", real_send)  # space was freed
    qtbot.keyClick(composer, Qt.Key.Key_Return)
    await wait_for(lambda: window.messages.rowCount() == 1)
    assert window.messages.message_at(0).text == "a long thought"
    assert composer.toPlainText() == ""


@pytest.mark.asyncio
async def test_status_bar_says_while_the_clock_looks_wrong(
    qtbot: QtBot, session: GuiSession
) -> None:
    """The node's clock check (`Status.clock`) shows in the status line while it lasts,
    with the node's sentence on hover; gone once the clock looks right."""
    window = window_of(session)
    await wait_for(lambda: "127.0.0.1:" in window.endpoints_label.text())
    status = await node_of(session).status()
    detail = "Your computer's clock seems to be about 5 hours ahead (2 of the 2 ...)."
    window._on_node_status(dataclasses.replace(status, clock=detail))
    assert "clock" in window.peers_label.text()
    assert window.peers_label.toolTip() == detail
    window._on_node_status(status)
    assert "clock" not in window.peers_label.text()
    assert window.peers_label.toolTip() == ""


@pytest.mark.asyncio
async def test_a_security_alert_says_which_contact_it_is_about(
    session: GuiSession, friend: api.InitResult
) -> None:
    """Found quarantining a hostile contact with tools/fuzz/hostile_peer: the window
    showed the node's sentence alone, "A peer behaves unusually (detector score 1.00)
    and is quarantined ...", and for an equivocation "event #4 exists in 2 conflicting
    versions": the user could not tell which contact either was about."""
    window = window_of(session)
    service: Any = session.node
    bob = (await service.add_contact(api.AddContact(friend.whoami.invite))).contact
    await wait_for(lambda: window.contacts.row_of(bob.address) >= 0)
    detail = "A peer behaves unusually and is quarantined until 12:00:00"
    service.publish(api.SecurityAlert(bob.address, "anomaly", detail))
    await wait_for(lambda: detail in window.statusBar().currentMessage())
    assert window.statusBar().currentMessage() == f"Security alert about Bob: {detail}"
    assert window.toast.text() == window.statusBar().currentMessage()
    service.publish(api.SecurityAlert("dht:127.0.0.1:4000", "anomaly", detail))
    await wait_for(lambda: "DHT" in window.statusBar().currentMessage())
    assert window.statusBar().currentMessage() == (
        f"Security alert about a DHT node at 127.0.0.1:4000: {detail}"
    )


@pytest.mark.asyncio
async def test_a_shared_folder_says_what_it_left_out(
    session: GuiSession, friend: api.InitResult, tmp_path: Path
) -> None:
    """A folder dropped with a link and a pipe in it was shared without a word about
    them; the window now says what was not shared (links and pipes never are)."""
    bob = await add_bob(session, friend)
    bridge = session.bridge
    assert bridge is not None
    album = tmp_path / "album"
    album.mkdir()
    (album / "a.txt").write_text("a")
    (album / "link.txt").symlink_to(album / "a.txt")
    os.mkfifo(album / "pipe")
    notices: list[str] = []
    bridge.notice.connect(notices.append)
    bridge.share_paths(bob.address, [album])
    await wait_for(lambda: bool(notices))
    assert notices == [
        "Not shared: 2 items that are not regular files (links, pipes or devices are never "
        "shared from a folder): album/link.txt, album/pipe."
    ]
    shared = [t.name for t in await bridge.transfers()]
    assert shared == ["album/a.txt"]  # the regular file went, as before
