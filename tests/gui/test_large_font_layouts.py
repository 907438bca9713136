"""The window and the dialogs with a large desktop font (15 pt, low vision): no text cut
off, no control outside its window, the window and the dialogs sized for the text (their
pixel sizes were chosen at 10 pt), dialogs that fit a 1280x800 screen."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from gui_helpers import wait_for
from PySide6.QtCore import QRect
from PySide6.QtGui import QFont, QFontMetrics
from PySide6.QtWidgets import QAbstractButton, QApplication, QLabel, QWidget
from pytestqt.qtbot import QtBot

from app.gui.app import GuiSession
from app.gui.dialogs.first_run import FirstRunDialog
from app.gui.dialogs.invite import InviteDialog
from app.gui.dialogs.settings import SettingsDialog
from app.gui.dialogs.unlock import UnlockDialog
from app.gui.dialogs.verify import VerifyDialog
from app.gui.main_window import MainWindow
from app.gui.theme import ThemeManager
from app.gui.widgets.elided import ElidedLabel
from app.node import api

LARGE = 15.0
LONG_NAME = "Bartholomew Fitzgerald-Montgomery"
SMALL_SCREEN_HEIGHT = 800 - 40  # a 1280x800 screen less a panel


@pytest.fixture
def large_font(qapp: QApplication) -> Iterator[QApplication]:
    """A 15 pt desktop font and the light theme; the font, sheet and theme as they were
    afterwards."""
    font, sheet = QFont(qapp.font()), qapp.styleSheet()
    large = QFont(font)
    large.setPointSizeF(LARGE)
    qapp.setFont(large)
    themes = ThemeManager(qapp)
    themes.apply("light")
    yield qapp
    # (its theme manager stops following the font: tests/gui/conftest.py)
    qapp.setFont(font)
    qapp.setStyleSheet(sheet)


def cut_off(window: QWidget) -> list[str]:
    """The labels and buttons of `window` whose text does not fit them, and the visible
    widgets reaching outside it (elided labels shorten their text on purpose). The
    caller lets pending layout happen first (`settle`): spinning Qt's loop from here,
    inside a qasync task, left a later test's node stop waiting forever."""
    found = []
    for widget in window.findChildren(QWidget):
        if not widget.isVisibleTo(window) or widget.window() is not window:
            continue
        place = QRect(widget.mapTo(window, widget.rect().topLeft()), widget.size())
        name = f"{type(widget).__name__} {widget.accessibleName() or widget.objectName()}"
        if not window.rect().contains(place):
            found.append(f"{name} outside the window")
        if isinstance(widget, QLabel) and widget.text() and not isinstance(widget, ElidedLabel):
            room = widget.contentsRect()
            if widget.wordWrap():
                if widget.heightForWidth(room.width()) > widget.height():
                    found.append(f"{name} {widget.text()!r} cut at the bottom")
            else:
                text = QFontMetrics(widget.font()).boundingRect(
                    QRect(0, 0, 100_000, 100_000), 0, widget.text()
                )
                if text.width() > room.width() or text.height() > room.height():
                    found.append(f"{name} {widget.text()!r} cut")
        if isinstance(widget, QAbstractButton) and widget.text():
            hint = widget.sizeHint()
            if hint.width() > widget.width() or hint.height() > widget.height():
                found.append(f"{name} {widget.text()!r} squeezed")
    return found


def shown(qtbot: QtBot, dialog: QWidget) -> QWidget:
    qtbot.addWidget(dialog)
    dialog.show()
    return dialog


async def settle() -> None:
    """Let Qt lay out what was just shown or changed (posted events run on the loop)."""
    await asyncio.sleep(0.1)


def test_the_first_run_dialog_fits_a_small_screen(
    qtbot: QtBot, large_font: QApplication, tmp_path: Path
) -> None:
    dialog = shown(qtbot, FirstRunDialog(tmp_path / "new"))
    qtbot.wait(100)  # laid out (no asyncio loop runs in this test)
    assert cut_off(dialog) == []
    # 520 pixels wide, its paragraphs wrapped so tall that Create fell off the screen
    assert dialog.frameGeometry().height() <= SMALL_SCREEN_HEIGHT


def test_the_unlock_dialog_holds_a_long_profile_folder(
    qtbot: QtBot, large_font: QApplication
) -> None:
    async def never(_: str) -> str | None:
        return "wrong"

    folder = "/home/someone/.local/share/scrambled-eggs/profiles/a-rather-long-profile"
    dialog = shown(qtbot, UnlockDialog(folder, never, first_error="That passphrase is wrong."))
    qtbot.wait(100)
    assert cut_off(dialog) == []


@pytest.mark.asyncio
async def test_the_dialogs_of_a_running_node_hold_a_large_font(
    qtbot: QtBot, large_font: QApplication, session: GuiSession
) -> None:
    bridge = session.bridge
    assert bridge is not None
    verify = shown(qtbot, VerifyDialog(bridge, "egg-not-loaded", session.window))
    number = " ".join(f"{n:05d}" for n in range(12))
    verify._show(api.Verification(LONG_NAME, "egg-not-loaded", number, verified=False))
    # the heading, set once the number arrived, was cut mid-name at the window's edge
    await settle()
    assert cut_off(verify) == []
    invite = shown(qtbot, InviteDialog(await bridge.whoami()))
    await settle()
    assert cut_off(invite) == []
    settings = SettingsDialog(bridge, await bridge.settings())
    shown(qtbot, settings)
    for page in range(settings.tabs.count()):
        settings.tabs.setCurrentIndex(page)
        await settle()
        assert cut_off(settings) == [], settings.tabs.tabText(page)


@pytest.mark.asyncio
async def test_the_window_at_its_minimum_size_holds_a_large_font(
    qtbot: QtBot, large_font: QApplication, session: GuiSession, friend: api.InitResult
) -> None:
    assert session.node is not None
    added = await session.node.add_contact(api.AddContact(friend.whoami.invite))
    window = session.window
    assert isinstance(window, MainWindow)
    window.open_conversation(added.contact.address)
    await wait_for(lambda: window.conversation.banner.isVisible())  # "Not verified yet: …"
    window.resize(window.minimumSize())
    await wait_for(lambda: window.size() == window.minimumSize())
    # 640x440, sized for 10 pt: the banner's last line was cut off
    await settle()
    assert cut_off(window) == []
    assert window.profile_name.text() == "Alice"  # not elided in a 10 pt-wide sidebar
