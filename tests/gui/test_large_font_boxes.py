"""Sizes in pixels that must follow a large desktop font (13-18 pt, low vision): text
boxes sized in lines, icons and check marks beside the text, the composer's hint."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from gui_helpers import wait_for
from PySide6.QtCore import QRect, Qt
from PySide6.QtGui import QFont, QFontMetrics, QIcon, QPixmap
from PySide6.QtWidgets import (
    QApplication,
    QHBoxLayout,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QStyle,
    QStyleOptionButton,
    QStyleOptionSpinBox,
    QStyleOptionViewItem,
    QToolButton,
    QWidget,
)
from pytestqt.qtbot import QtBot

from app.gui.app import GuiSession
from app.gui.bridge import NodeBridge
from app.gui.dialogs.add_contact import INVITE_LINES, AddContactDialog
from app.gui.dialogs.settings import SettingsDialog
from app.gui.models.contacts import ContactModel
from app.gui.theme import ThemeManager
from app.gui.views.contact_delegate import ContactDelegate, row_fonts
from app.gui.widgets.composer import Composer
from app.node import api

DESKTOPS = [(13.0, "light"), (15.0, "dark"), (18.0, "light")]


def set_desktop_font(app: QApplication, points: float) -> None:
    font = QFont(app.font())
    font.setPointSizeF(points)
    app.setFont(font)


@pytest.fixture(params=DESKTOPS, ids=[f"{p:g}pt-{t}" for p, t in DESKTOPS])
def desktop(request: pytest.FixtureRequest, qapp: QApplication) -> Iterator[float]:
    """The desktop font size and theme of the parameter (put back by conftest.py)."""
    points, theme = request.param
    set_desktop_font(qapp, points)
    ThemeManager(qapp).apply(theme)
    yield points


async def settle() -> None:
    """Let Qt lay out what was just shown or changed (posted events run on the loop)."""
    await asyncio.sleep(0.1)


def shown(qtbot: QtBot, window: QWidget) -> QWidget:
    qtbot.addWidget(window)
    window.show()
    return window


async def hidden_lines(edit: QPlainTextEdit, lines: int) -> int:
    """How many of `lines` short lines typed into `edit` do not fit its box (each
    line of the scroll range is one hidden line). Awaits the layout: spinning Qt's
    loop inside a qasync task can leave a later test waiting (test_large_font_layouts)."""
    edit.setPlainText("\n".join(f"127.0.0.{n}:4000{n}" for n in range(lines)))
    await settle()
    return edit.verticalScrollBar().maximum()


def whole_lines(edit: QPlainTextEdit) -> int:
    """The whole lines of `edit`'s font its text area has room for."""
    room = edit.viewport().height() - 2 * edit.document().documentMargin()
    return int(room // QFontMetrics(edit.font()).lineSpacing())


@pytest.mark.asyncio
async def test_the_invite_box_holds_its_lines_at_any_font(
    qtbot: QtBot, desktop: float, node: api.NodeApi
) -> None:
    dialog = shown(qtbot, AddContactDialog(NodeBridge(node)))
    assert isinstance(dialog, AddContactDialog)
    await settle()
    # 96 pixels: five lines at 10 pt, three at 15 pt, two and a half at 18 pt
    assert whole_lines(dialog.invite) >= INVITE_LINES
    assert await hidden_lines(dialog.invite, INVITE_LINES) == 0


@pytest.mark.asyncio
async def test_the_invite_box_follows_a_font_change_while_open(
    qtbot: QtBot, node: api.NodeApi, qapp: QApplication
) -> None:
    set_desktop_font(qapp, 10)
    ThemeManager(qapp).apply("light")
    dialog = shown(qtbot, AddContactDialog(NodeBridge(node)))
    assert isinstance(dialog, AddContactDialog)
    await settle()
    set_desktop_font(qapp, 18)  # the desktop's font grows while the dialog is open
    await settle()
    assert QFontMetrics(dialog.invite.font()).height() > 20
    assert whole_lines(dialog.invite) >= INVITE_LINES


async def network_page(qtbot: QtBot, node: api.NodeApi) -> SettingsDialog:
    """The settings dialog, shown at its Network page, laid out."""
    bridge = NodeBridge(node)
    dialog = SettingsDialog(bridge, await bridge.settings())
    shown(qtbot, dialog)
    dialog.tabs.setCurrentIndex(1)
    await settle()
    return dialog


@pytest.mark.asyncio
async def test_the_network_boxes_hold_three_lines_at_any_font(
    qtbot: QtBot, desktop: float, node: api.NodeApi
) -> None:
    dialog = await network_page(qtbot, node)
    for box in (dialog.bootstrap, dialog.ice):
        # 70 pixels: three lines at 10 pt, two and a half at 15 pt (the third cut)
        assert whole_lines(box) >= 3, box.accessibleName()
        assert await hidden_lines(box, 3) == 0, box.accessibleName()


@pytest.mark.asyncio
async def test_the_add_contact_dialog_is_as_wide_as_its_text(
    qtbot: QtBot, desktop: float, node: api.NodeApi
) -> None:
    dialog = shown(qtbot, AddContactDialog(NodeBridge(node)))
    assert isinstance(dialog, AddContactDialog)
    await settle()
    name = dialog.name
    hint = QFontMetrics(name.font()).horizontalAdvance(name.placeholderText())
    # 520 pixels at any font: at 15 pt the Name field's hint ended in "…"
    assert hint + 2 * 12 <= name.width()  # the field's padding, border and margin


@pytest.mark.asyncio
async def test_the_tool_button_icons_grow_with_the_text(
    qtbot: QtBot, desktop: float, session: GuiSession
) -> None:
    window = session.window
    assert window is not None
    await settle()
    buttons = [
        b
        for b in window.findChildren(QToolButton)
        # ours: not Qt's own (the menu bar's, a line edit's clear button)
        if not b.icon().isNull()
        and not b.objectName().startswith("qt_")
        and not isinstance(b.parent(), QLineEdit)
    ]
    assert len(buttons) >= 6  # the sidebar's four, the conversation's verify and attach
    for button in buttons:
        line = QFontMetrics(button.font()).height()
        # 22 pixels at any font: beside 18 pt text (a 28-pixel line) they looked tiny
        assert button.iconSize().height() >= line, button.accessibleName()
        drawn = button.icon().actualSize(button.iconSize())
        assert drawn == button.iconSize(), button.accessibleName()  # not a smaller picture


@pytest.mark.asyncio
async def test_the_marks_beside_the_text_grow_with_it(
    qtbot: QtBot, desktop: float, node: api.NodeApi
) -> None:
    dialog = await network_page(qtbot, node)
    box = dialog.lan
    option = QStyleOptionButton()
    box.initStyleOption(option)
    mark = box.style().subElementRect(QStyle.SubElement.SE_CheckBoxIndicator, option, box)
    # Fusion's 14 pixels at any font, under the text's capitals at 13 pt and more
    assert mark.height() >= 0.9 * QFontMetrics(box.font()).ascent()
    cancel = QPushButton(QIcon(QPixmap(64, 64)), "Cancel")
    shown(qtbot, cancel)
    await settle()
    assert cancel.iconSize().height() >= 0.9 * QFontMetrics(cancel.font()).ascent()
    dialog.tabs.setCurrentIndex(3)
    await settle()
    spin = dialog.auto_accept
    spin_option = QStyleOptionSpinBox()
    spin.initStyleOption(spin_option)
    up = spin.style().subControlRect(
        QStyle.ComplexControl.CC_SpinBox, spin_option, QStyle.SubControl.SC_SpinBoxUp, spin
    )
    assert up.width() >= QFontMetrics(spin.font()).height()  # its arrows were 10 pixels


def test_the_composer_shows_its_whole_wrapped_placeholder(qtbot: QtBot, desktop: float) -> None:
    holder = QWidget()
    row = QHBoxLayout(holder)
    composer = Composer()
    row.addWidget(composer)
    composer.setPlaceholderText("Message Bartholomew Fitzgerald-Montgomery")
    holder.resize(900, 200)
    shown(qtbot, holder)
    qtbot.wait(50)
    one_line = composer.height()
    holder.resize(260, 200)  # a narrow window: the name wraps onto a second line
    qtbot.wait(50)

    def room_needed() -> int:
        margin = int(composer.document().documentMargin())
        room = QRect(0, 0, composer.viewport().width() - margin, 100_000)
        wrapped = composer.fontMetrics().boundingRect(
            room, Qt.TextFlag.TextWordWrap, composer.placeholderText()
        )
        return margin + wrapped.height()

    assert room_needed() > margin_and_lines(composer, 1)  # it does wrap here
    # the box stayed one line high and cut the placeholder's second line in half
    assert composer.viewport().height() >= room_needed()
    composer.setPlainText("Hi")  # typed text: one line again
    qtbot.wait(50)
    assert composer.height() == one_line
    composer.clear()
    qtbot.wait(50)
    assert composer.viewport().height() >= room_needed()


def margin_and_lines(composer: Composer, lines: int) -> int:
    margin = int(composer.document().documentMargin())
    return margin + lines * composer.fontMetrics().lineSpacing()


def test_a_contact_row_holds_its_two_lines(qtbot: QtBot, desktop: float) -> None:
    model = ContactModel()
    model.set_contacts([api.Contact("Bartholomew Fitzgerald-Montgomery", "b" * 52, verified=False)])
    option = QStyleOptionViewItem()
    font = QFont(QApplication.font())
    font.setPointSizeF(desktop)  # the list's font, as the style sheet sets it
    option.font = font
    name_font, small = row_fonts(option.font)
    lines = QFontMetrics(name_font).height() + QFontMetrics(small).height()
    height = ContactDelegate().sizeHint(option, model.index(0)).height()
    # 64 pixels at any font: at 18 pt the name's line and the last message's were cut
    assert height >= lines + 2 * 2 + 10 + 8  # the card's margins, the space above, below


@pytest.mark.asyncio
async def test_a_notice_stays_above_the_composer(
    qtbot: QtBot, desktop: float, session: GuiSession, friend: api.InitResult
) -> None:
    assert session.node is not None
    added = await session.node.add_contact(api.AddContact(friend.whoami.invite))
    window = session.window
    assert window is not None
    await window.open_conversation(added.contact.address)
    pane = window.conversation
    pane.composer.setPlainText("\n".join(["a line"] * 4))  # a message of a few lines
    await settle()
    pane.toast.show_message("Copied to the clipboard.")
    await settle()
    bar = pane.composer.parentWidget()
    assert bar is not None
    bar_top = bar.mapTo(pane, bar.rect().topLeft()).y()
    # 96 pixels above the pane's bottom: over a composer grown by its lines or its font
    assert pane.toast.geometry().bottom() < bar_top


@pytest.mark.asyncio
async def test_the_window_follows_a_font_change_while_running(
    qtbot: QtBot, qapp: QApplication, session: GuiSession, friend: api.InitResult
) -> None:
    set_desktop_font(qapp, 10)
    ThemeManager(qapp).apply("light")
    assert session.node is not None
    await session.node.add_contact(api.AddContact(friend.whoami.invite))
    window = session.window
    assert window is not None
    await settle()
    icon_before = window.add_button.iconSize().height()
    row = window.contact_list.model().index(0, 0)
    await wait_for(lambda: window.contact_list.visualRect(row).height() > 0)
    row_before = window.contact_list.visualRect(row).height()
    set_desktop_font(qapp, 18)  # the desktop's font grows while the app runs
    await settle()
    assert window.add_button.iconSize().height() >= 1.7 * icon_before
    name_font, small = row_fonts(window.contact_list.font())
    lines = QFontMetrics(name_font).height() + QFontMetrics(small).height()
    assert window.contact_list.visualRect(row).height() >= max(row_before, lines + 22)
