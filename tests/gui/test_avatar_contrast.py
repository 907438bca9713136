"""A contact's initials can be read on their avatar: white on the light shades used
before stood at 1.7-3.6:1 ("BF" faint on green in the contact list), under WCAG's 4.5:1
for text of that size (16 px bold at 10 pt). Computed from the colours drawn."""

from __future__ import annotations

from collections import Counter

from gui_helpers import contrast
from PySide6.QtCore import QRectF, Qt
from PySide6.QtGui import QColor, QImage, QPainter
from PySide6.QtWidgets import QApplication

from app.gui.views.painting import AVATAR_COLORS, avatar_color, draw_avatar

TEXT_CONTRAST = 4.5


def drawn(address: str) -> QImage:
    image = QImage(42, 42, QImage.Format.Format_RGB32)
    image.fill(Qt.GlobalColor.black)
    painter = QPainter(image)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    draw_avatar(painter, QRectF(0, 0, 42, 42), "Bartholomew Fitzgerald", address)
    painter.end()
    return image


def test_the_initials_stand_out_from_every_avatar_colour(qapp: QApplication) -> None:
    seen: dict[str, QImage] = {}
    number = 0
    while len(seen) < len(AVATAR_COLORS):  # an address for each colour
        address = f"egg{number}"
        seen.setdefault(avatar_color(address).name(), drawn(address))
        number += 1
    for name, image in seen.items():
        inside = [image.pixelColor(x, y) for x in range(10, 32) for y in range(10, 32)]
        disc = QColor.fromRgb(Counter(c.rgb() for c in inside).most_common(1)[0][0])
        assert disc.name() == name
        best = max(contrast(pixel, disc) for pixel in inside)  # the initials' own colour
        assert best >= TEXT_CONTRAST, (name, round(best, 2))
