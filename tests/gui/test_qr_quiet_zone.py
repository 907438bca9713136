"""An invite's QR code keeps the light margin scanners need. It had 2 modules of light
around it, and in the dark theme the dialog's dark background came right after: ISO/IEC
18004 asks for 4, and phone scanners look for them to find the code."""

from __future__ import annotations

import segno
from PySide6.QtGui import QColor, QImage
from pytestqt.qtbot import QtBot

from app.gui.resources import qr_pixmap

INVITE = "eggs:egg" + "a" * 58 + "?v=1&n=Alice&x=" + "b" * 52 + "&e=127.0.0.1:4000&s=" + "c" * 103


def _dark_box(image: QImage) -> tuple[int, int, int, int]:
    """Left, top, right, bottom of the dark pixels."""
    xs, ys = [], []
    for y in range(image.height()):
        for x in range(image.width()):
            if QColor(image.pixel(x, y)).lightness() < 128:
                xs.append(x)
                ys.append(y)
    return min(xs), min(ys), max(xs), max(ys)


def test_the_code_has_four_light_modules_on_every_side(qtbot: QtBot) -> None:
    del qtbot  # a QApplication for the pixmap
    image = qr_pixmap(INVITE, 280).toImage()
    modules = segno.make(INVITE, error="m").symbol_size(border=0)[0]
    left, top, right, bottom = _dark_box(image)
    module = (right - left + 1) / modules
    assert module == int(module) and module >= 2
    margins = (left, top, image.width() - 1 - right, image.height() - 1 - bottom)
    assert all(margin == 4 * module for margin in margins), (margins, module)
