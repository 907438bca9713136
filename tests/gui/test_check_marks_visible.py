"""Check boxes and radio buttons can be seen in both themes, at 10 and 18 pt: Fusion drew
an unchecked box's edge from the dark theme's window colour (1.1:1 against the Settings
page behind it), so there seemed to be no box to tick. WCAG's non-text contrast (3:1)
is computed from the colours the box is drawn with."""

from __future__ import annotations

from collections import Counter

import pytest
from gui_helpers import contrast
from PySide6.QtGui import QColor, QFont, QImage
from PySide6.QtWidgets import (
    QAbstractButton,
    QApplication,
    QCheckBox,
    QRadioButton,
    QStyle,
    QStyleOptionButton,
    QVBoxLayout,
    QWidget,
)
from pytestqt.qtbot import QtBot

from app.gui.theme import ThemeManager

NON_TEXT_CONTRAST = 3.0


def indicator_pixels(button: QAbstractButton) -> tuple[list[QColor], QColor, int]:
    """The colours of the button's indicator as drawn, the background beside its text,
    and the indicator's width."""
    option = QStyleOptionButton()
    option.initFrom(button)
    element = (
        QStyle.SubElement.SE_CheckBoxIndicator
        if isinstance(button, QCheckBox)
        else QStyle.SubElement.SE_RadioButtonIndicator
    )
    rect = button.style().subElementRect(element, option, button)
    image = button.grab().toImage().convertToFormat(QImage.Format.Format_RGB32)
    ratio = image.devicePixelRatio()
    pixels = [
        image.pixelColor(round(x * ratio), round(y * ratio))
        for x in range(rect.left(), rect.right() + 1)
        for y in range(rect.top(), rect.bottom() + 1)
    ]
    background = image.pixelColor(image.width() - 2, image.height() // 2)  # right of the text
    return pixels, background, rect.width()


def most_common(colours: list[QColor]) -> QColor:
    return QColor.fromRgb(Counter(c.rgb() for c in colours).most_common(1)[0][0])


@pytest.mark.parametrize("points", [10.0, 18.0])
@pytest.mark.parametrize("theme", ["light", "dark"])
@pytest.mark.parametrize("kind", [QCheckBox, QRadioButton])
def test_both_states_stand_out_from_the_background(
    qtbot: QtBot, qapp: QApplication, theme: str, points: float, kind: type[QAbstractButton]
) -> None:
    font = QFont(qapp.font())
    font.setPointSizeF(points)
    qapp.setFont(font)
    ThemeManager(qapp).apply(theme)
    page = QWidget()  # a Settings page: the dialog's background behind the boxes
    layout = QVBoxLayout(page)
    unchecked, checked = kind("Find peers on the local network"), kind("Show passwords")
    checked.setChecked(True)
    for button in (unchecked, checked):
        button.setAutoExclusive(False)
        layout.addWidget(button)
    qtbot.addWidget(page)
    page.resize(500, 200)
    page.show()
    QApplication.processEvents()

    pixels, background, width = indicator_pixels(unchecked)
    assert width >= 14 * points / 10 - 1  # grows with the text (theme.mark_sizes)
    edge = max(contrast(pixel, background) for pixel in pixels)
    assert edge >= NON_TEXT_CONTRAST  # was 1.1:1 (dark), 1.7-2.2:1 (light)

    pixels, background, width = indicator_pixels(checked)
    fill = most_common(pixels)
    assert contrast(fill, background) >= NON_TEXT_CONTRAST
    mark = [pixel for pixel in pixels if contrast(pixel, fill) >= NON_TEXT_CONTRAST]
    assert mark  # the tick or dot on the fill
    height = len(pixels) // width
    columns = {index // height for index, pixel in enumerate(pixels) if pixel in mark}
    assert len(columns) >= width / 3  # drawn at the indicator's size, not 12 pixels
