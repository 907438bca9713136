"""A larger desktop font (low vision: 13-16 pt where the default is 9-10 pt) reaches the
app: Qt hands it over as the application font, and the theme's style sheet must not pin
every widget back to the 10 pt it was written for."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from PySide6.QtGui import QFont
from PySide6.QtWidgets import QApplication, QLabel
from pytestqt.qtbot import QtBot

from app.gui.dialogs.common import title_label
from app.gui.theme import DESIGN_POINT_SIZE, ThemeManager, scale_font_sizes


@pytest.fixture
def app_font(qapp: QApplication) -> Iterator[QApplication]:
    """The application font and style sheet as they were, put back after the test."""
    font, sheet = QFont(qapp.font()), qapp.styleSheet()
    yield qapp
    qapp.setFont(font)
    qapp.setStyleSheet(sheet)


def desktop_font(app: QApplication, points: float) -> None:
    font = QFont(app.font())
    font.setPointSizeF(points)
    app.setFont(font)


def shown_points(qtbot: QtBot, label: QLabel) -> float:
    qtbot.addWidget(label)
    label.show()
    QApplication.processEvents()
    return label.font().pointSizeF()


def test_a_large_desktop_font_sizes_the_text(qtbot: QtBot, app_font: QApplication) -> None:
    desktop_font(app_font, 15)
    ThemeManager(app_font).apply("light")
    body = shown_points(qtbot, QLabel("Body text"))
    heading = shown_points(qtbot, title_label("A heading"))
    assert body == pytest.approx(15, abs=0.1)  # was 10: the sheet's size for every widget
    assert heading > body  # headings keep their proportion to the body text


def test_a_desktop_font_change_while_running_resizes_the_text(
    qtbot: QtBot, app_font: QApplication
) -> None:
    desktop_font(app_font, 9)
    ThemeManager(app_font).apply("dark")
    assert shown_points(qtbot, QLabel("Before")) == pytest.approx(DESIGN_POINT_SIZE)
    desktop_font(app_font, 16)
    assert shown_points(qtbot, QLabel("After")) == pytest.approx(16, abs=0.1)


def test_a_small_desktop_font_keeps_the_design_sizes() -> None:
    sheet = "QWidget { font-size: 10pt; }\n#DialogTitle { font-size: 15pt; }"
    assert scale_font_sizes(sheet, 9) == sheet
    grown = scale_font_sizes(sheet, 14)
    assert "font-size: 14.0pt" in grown and "font-size: 21.0pt" in grown
