"""The window by keyboard alone: Tab walks search, contacts, the message field and Send
before anything else of the conversation (found by a tester: Tab in the message field
went up to the banner's "Verify now", and Send came four stops later)."""

from __future__ import annotations

import asyncio

import pytest
from gui_helpers import wait_for
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication, QScrollBar, QWidget
from pytestqt.qtbot import QtBot
from test_presence import window_of

from app.gui.app import GuiSession
from app.gui.views.conversation import ConversationPane
from app.node import api


def _focused() -> QWidget:
    widget = QApplication.focusWidget()
    assert widget is not None
    return widget


@pytest.mark.asyncio
async def test_tab_goes_from_the_message_field_to_send(
    qtbot: QtBot, session: GuiSession, friend: api.InitResult
) -> None:
    assert session.node is not None
    window = window_of(session)
    bob = (await session.node.add_contact(api.AddContact(friend.whoami.invite))).contact
    window.show()
    window.activateWindow()
    await wait_for(window.isActiveWindow)
    window.open_conversation(bob.address)
    await wait_for(lambda: window.messages.contact == bob.address)
    pane = window.conversation
    pane.composer.setPlainText("ready to send")  # Send is enabled
    assert pane.banner_button.isVisible()  # not verified: "Verify now" is there too
    window.search.setFocus()
    await wait_for(lambda: QApplication.focusWidget() is window.search)
    expected = [
        window.contact_list,
        pane.composer,
        pane.send_button,
        pane.attach_button,
        pane.list,
        pane.banner_button,
        pane.verify_button,
        window.invite_button,
    ]
    for widget in expected:
        qtbot.keyClick(_focused(), Qt.Key.Key_Tab)
        await asyncio.sleep(0)
        assert _focused() is widget, (_focused().objectName(), widget.objectName())
    # and back: Shift+Tab from Send is the message field, from there the contacts
    pane.send_button.setFocus()
    await wait_for(lambda: QApplication.focusWidget() is pane.send_button)
    qtbot.keyClick(pane.send_button, Qt.Key.Key_Backtab, Qt.KeyboardModifier.ShiftModifier)
    assert _focused() is pane.composer
    qtbot.keyClick(pane.composer, Qt.Key.Key_Backtab, Qt.KeyboardModifier.ShiftModifier)
    assert _focused() is window.contact_list


@pytest.mark.asyncio
async def test_a_message_is_picked_with_the_arrow_keys_and_copied_with_ctrl_c(
    qtbot: QtBot, session: GuiSession, friend: api.InitResult
) -> None:
    """Found by a tester: a message's text could be copied only with the mouse (right
    click, Copy text). Tab reaches the list, the newest message is marked, the arrow keys
    move the mark, Ctrl+C copies its text; a click on a message leaves the focus in the
    message field."""
    assert session.node is not None
    window = window_of(session)
    bob = (await session.node.add_contact(api.AddContact(friend.whoami.invite))).contact
    for text in ("the first", "the address is 12 Main St", "the last"):
        await session.node.send_message(api.SendMessage(bob.address, text))
    window.show()
    window.activateWindow()
    await wait_for(window.isActiveWindow)
    window.open_conversation(bob.address)
    await wait_for(lambda: window.messages.rowCount() == 3)
    pane = window.conversation
    await wait_for(lambda: QApplication.focusWidget() is pane.composer)

    # a click on a message: the focus stays where the user types
    newest = pane._proxy.index(2, 0)
    qtbot.mouseClick(
        pane.list.viewport(), Qt.MouseButton.LeftButton, pos=pane.list.visualRect(newest).center()
    )
    assert _focused() is pane.composer
    unmarked = pane.list.viewport().grab().toImage()

    pane.list.setCurrentIndex(pane._proxy.index(-1, 0))  # nothing picked yet
    pane.list.setFocus(Qt.FocusReason.TabFocusReason)
    await wait_for(lambda: QApplication.focusWidget() is pane.list)
    assert pane.list.currentIndex().row() == 2  # the newest
    await asyncio.sleep(0.05)
    assert pane.list.viewport().grab().toImage() != unmarked  # and it shows
    qtbot.keyClick(pane.list, Qt.Key.Key_Up)
    QApplication.clipboard().clear()
    qtbot.keyClick(pane.list, Qt.Key.Key_C, Qt.KeyboardModifier.ControlModifier)
    assert QApplication.clipboard().text() == "the address is 12 Main St"


async def _forty_messages_at_the_bottom(
    session: GuiSession, friend: api.InitResult
) -> tuple[ConversationPane, QScrollBar]:
    """Bob's conversation open with 40 two-line messages, scrolled to the newest: its
    pane and the list's scroll bar."""
    assert session.node is not None
    window = window_of(session)
    bob = (await session.node.add_contact(api.AddContact(friend.whoami.invite))).contact
    for i in range(40):
        await session.node.send_message(api.SendMessage(bob.address, f"line {i}\nand more"))
    window.show()
    window.open_conversation(bob.address)
    await wait_for(lambda: window.messages.rowCount() == 40)
    pane = window.conversation
    bar = pane.list.verticalScrollBar()
    await wait_for(lambda: bar.maximum() > 0 and bar.value() == bar.maximum())
    return pane, bar


@pytest.mark.asyncio
async def test_reaching_the_messages_by_tab_does_not_move_them(
    qtbot: QtBot, session: GuiSession, friend: api.InitResult
) -> None:
    """A user reading further up who tabs into the list gets the lowest message in view
    marked, not the newest (which scrolled the list down to it)."""
    pane, bar = await _forty_messages_at_the_bottom(session, friend)
    bar.setValue(bar.maximum() // 2)
    where = bar.value()
    pane.list.setFocus(Qt.FocusReason.TabFocusReason)
    await wait_for(lambda: QApplication.focusWidget() is pane.list)
    await asyncio.sleep(0.05)
    assert bar.value() == where
    current = pane.list.visualRect(pane.list.currentIndex())
    assert pane.list.viewport().rect().intersects(current)
    assert 0 < pane.list.currentIndex().row() < 39


@pytest.mark.asyncio
async def test_page_up_in_the_message_field_scrolls_the_messages(
    qtbot: QtBot, session: GuiSession, friend: api.InitResult
) -> None:
    """A click on the messages leaves the focus in the message field: Page Up and Page
    Down there scroll the messages (they did nothing)."""
    pane, bar = await _forty_messages_at_the_bottom(session, friend)
    bottom = bar.value()
    qtbot.keyClick(pane.composer, Qt.Key.Key_PageUp)
    assert bar.value() == bottom - bar.pageStep()
    qtbot.keyClick(pane.composer, Qt.Key.Key_PageDown)
    assert bar.value() == bottom
