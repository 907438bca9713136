"""A long status-bar message at 18 pt ends in "…" before the "Listening on …" text,
with the whole of it on hover: Qt cut it off mid-letter under that text (the message is
kept whole in `currentMessage()`, which the other tests read)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from gui_helpers import wait_for
from PySide6.QtGui import QFont
from PySide6.QtWidgets import QApplication
from pytestqt.qtbot import QtBot

from app.gui.app import GuiSession
from app.gui.main_window import MainWindow
from app.gui.theme import ThemeManager
from app.node import api

LONG = (
    "What your contacts send can't be stored: the disk is full (/home/alice/.local/share/"
    "scrambled-eggs). It waits on their side until there is room again."
)


@pytest.fixture
def font_18(qapp: QApplication) -> Iterator[QApplication]:
    large = QFont(qapp.font())
    large.setPointSizeF(18)
    qapp.setFont(large)
    ThemeManager(qapp).apply("dark")
    yield qapp  # the font, sheet and theme are put back by tests/gui/conftest.py


@pytest.mark.asyncio
async def test_a_long_message_is_elided_before_the_endpoints(
    qtbot: QtBot, font_18: QApplication, session: GuiSession
) -> None:
    window = session.window
    assert isinstance(window, MainWindow)
    window.resize(1100, 720)
    await wait_for(lambda: window.endpoints_label.text().startswith("Listening on"))
    window.bridge._dispatch(api.StorageAlert(LONG))
    bar = window.statusBar()
    assert bar.currentMessage() == LONG  # whole, as before
    assert bar.toolTip() == LONG  # the whole text on hover
    shown = bar.shown_message()  # type: ignore[attr-defined]
    assert shown.endswith("…") and LONG.startswith(shown[:-1])
    end = 6 + bar.fontMetrics().horizontalAdvance(shown)
    assert end <= window.endpoints_label.x()  # was drawn on to 1018 px, under the label at 574

    bar.showMessage("Saved.", 8000)  # fits: drawn whole, no tip
    assert bar.shown_message() == "Saved."  # type: ignore[attr-defined]
    assert bar.toolTip() == ""
