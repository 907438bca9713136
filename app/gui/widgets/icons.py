"""Line icons drawn with QPainter in the theme's text colour (no icon theme needed)."""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QColor, QIcon, QPainter, QPainterPath, QPen, QPixmap

from app.gui.theme import colors

SIZE = 48
"""The edge of the square the icons are drawn in (shown at 22 pixels at a 10 pt font)."""

ICON_PIXELS = 22
"""The edge of an icon beside 10 pt text; it grows with a larger font
(`text_sized.icon_for_text`)."""


def _plus(p: QPainter) -> None:
    p.drawLine(QPointF(24, 10), QPointF(24, 38))
    p.drawLine(QPointF(10, 24), QPointF(38, 24))


def _person_plus(p: QPainter) -> None:
    p.drawEllipse(QRectF(9, 8, 16, 16))
    path = QPainterPath()
    path.moveTo(3, 40)
    path.cubicTo(3, 28, 31, 28, 31, 40)
    p.drawPath(path)
    p.drawLine(QPointF(39, 14), QPointF(39, 30))
    p.drawLine(QPointF(31, 22), QPointF(47, 22))


def _sliders(p: QPainter) -> None:
    for y, knob in ((12, 30), (24, 16), (36, 26)):
        p.drawLine(QPointF(6, y), QPointF(42, y))
        p.setBrush(QColor(colors().base))
        p.drawEllipse(QPointF(knob, y), 4.5, 4.5)


def _qr(p: QPainter) -> None:
    for x, y in ((6, 6), (28, 6), (6, 28)):
        p.drawRect(QRectF(x, y, 14, 14))
    p.drawRect(QRectF(31, 31, 4, 4))
    p.drawRect(QRectF(39, 39, 3, 3))
    p.drawLine(QPointF(28, 42), QPointF(34, 42))


def _shield(p: QPainter) -> None:
    path = QPainterPath()
    path.moveTo(24, 5)
    path.lineTo(40, 11)
    path.cubicTo(40, 28, 34, 37, 24, 43)
    path.cubicTo(14, 37, 8, 28, 8, 11)
    path.closeSubpath()
    p.drawPath(path)
    tick = QPainterPath()
    tick.moveTo(17, 24)
    tick.lineTo(22, 29)
    tick.lineTo(31, 19)
    p.drawPath(tick)


def _send(p: QPainter) -> None:
    path = QPainterPath()
    path.moveTo(6, 8)
    path.lineTo(42, 24)
    path.lineTo(6, 40)
    path.lineTo(12, 24)
    path.closeSubpath()
    p.drawPath(path)
    p.drawLine(QPointF(12, 24), QPointF(26, 24))


def _arrows(p: QPainter) -> None:
    """Up and down arrows side by side: transfers."""
    p.drawLine(QPointF(16, 40), QPointF(16, 8))
    p.drawLine(QPointF(16, 8), QPointF(8, 16))
    p.drawLine(QPointF(16, 8), QPointF(24, 16))
    p.drawLine(QPointF(32, 8), QPointF(32, 40))
    p.drawLine(QPointF(32, 40), QPointF(24, 32))
    p.drawLine(QPointF(32, 40), QPointF(40, 32))


def _paperclip(p: QPainter) -> None:
    """A paper clip: share files (a middle leg, the top bend, the long right leg, the
    bottom bend, the left leg)."""
    path = QPainterPath()
    path.moveTo(20, 32)
    path.lineTo(20, 12)
    path.arcTo(QRectF(20, 5, 14, 14), 180, -180)
    path.lineTo(34, 34)
    path.arcTo(QRectF(14, 24, 20, 20), 0, -180)
    path.lineTo(14, 16)
    p.drawPath(path)


def _cross(p: QPainter) -> None:
    """A small cross: clear a field."""
    p.drawLine(QPointF(15, 15), QPointF(33, 33))
    p.drawLine(QPointF(33, 15), QPointF(15, 33))


DRAWINGS: dict[str, Callable[[QPainter], None]] = {
    "add": _plus,
    "add-contact": _person_plus,
    "settings": _sliders,
    "invite": _qr,
    "verify": _shield,
    "send": _send,
    "transfers": _arrows,
    "attach": _paperclip,
    "clear": _cross,
}


def line_icon(name: str, color: str | None = None) -> QIcon:
    """The named icon in `color` (default: the theme's text colour), drawn at 48 and 96
    pixels: shown beside an 18 pt font an icon is 40 pixels wide, 80 on a 2x screen."""
    icon = QIcon()
    for edge in (SIZE, 2 * SIZE):
        pixmap = QPixmap(edge, edge)
        pixmap.fill(Qt.GlobalColor.transparent)
        painter = QPainter(pixmap)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        painter.scale(edge / SIZE, edge / SIZE)
        pen = QPen(QColor(color or colors().text), 3.2)
        pen.setCapStyle(Qt.PenCapStyle.RoundCap)
        pen.setJoinStyle(Qt.PenJoinStyle.RoundJoin)
        painter.setPen(pen)
        painter.setBrush(Qt.BrushStyle.NoBrush)
        DRAWINGS[name](painter)
        painter.end()
        icon.addPixmap(pixmap)
    return icon
