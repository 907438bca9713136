"""The Send button looks off while there is nothing to send, in both themes. Found under
Xvfb: in the dark theme the disabled button's white text stood out more than the enabled
one's (contrast 8.1 against 3.2), so an empty message field seemed ready to send, and the
enabled button's label was below the 4.5 contrast normal text needs."""

from __future__ import annotations

from collections import Counter

import pytest
from gui_helpers import contrast, luminance
from PySide6.QtGui import QColor
from PySide6.QtWidgets import QApplication, QPushButton
from pytestqt.qtbot import QtBot

from app.gui.theme import ThemeManager


def _label_contrast(qtbot: QtBot, enabled: bool) -> float:
    """The contrast between the Send button's face and its label, as drawn."""
    button = QPushButton("Send")
    button.setObjectName("SendButton")
    button.setEnabled(enabled)
    qtbot.addWidget(button)
    button.resize(90, 36)
    image = button.grab().toImage()
    counts = Counter(
        image.pixelColor(x, y).rgb() for x in range(image.width()) for y in range(image.height())
    )
    face = QColor.fromRgb(counts.most_common(1)[0][0])
    colors = [QColor.fromRgb(rgb) for rgb, _ in counts.most_common(40)]
    label = max(colors, key=lambda c: abs(luminance(c) - luminance(face)))
    return contrast(face, label)


@pytest.mark.parametrize("theme", ["light", "dark"])
def test_a_disabled_send_button_stands_out_less_than_an_enabled_one(
    qtbot: QtBot, theme: str
) -> None:
    app = QApplication.instance()
    assert isinstance(app, QApplication)
    themes = ThemeManager(app)
    try:
        themes.apply(theme)
        enabled = _label_contrast(qtbot, True)
        disabled = _label_contrast(qtbot, False)
    finally:
        themes.apply("light")  # as the other tests that switch themes leave it
    assert enabled >= 4.5
    assert disabled < enabled
