"""Drawing helpers shared by the delegates: wrapped text, ticks, avatars, badges."""

from __future__ import annotations

import datetime as dt
import hashlib
import re

from PySide6.QtCore import (
    QCoreApplication,
    QDate,
    QLocale,
    QPointF,
    QRectF,
    QSizeF,
    Qt,
    QTextBoundaryFinder,
    QTime,
)
from PySide6.QtGui import QColor, QFont, QPainter, QPainterPath, QPen, QTextLayout, QTextOption

from app.node.api import MessageStatus

AVATAR_COLORS = (
    "#c62828",
    "#ad1457",
    "#7b1fa2",
    "#3949ab",
    "#0277bd",
    "#00796b",
    "#2e7d32",
    "#b45309",
    "#6d4c41",
    "#546e7a",
)
"""Avatar discs, each 4.5:1 or more against their white initials (WCAG text contrast):
the lighter shades used before held them at 1.7-3.6:1 (white on orange or green was
hard to read in either theme)."""
AVATAR_TEXT = "#ffffff"


LINE_SEPARATOR = "\u2028"


def with_line_separators(text: str) -> str:
    """`text` with each line break ("\\n", "\\r\\n", "\\r") as U+2028, the one QTextLayout
    breaks a line at (it ignores "\\n")."""
    return text.replace("\r\n", "\n").replace("\r", "\n").replace("\n", LINE_SEPARATOR)


READ_WEIGHT = 1.6  # stroke of the read ticks relative to the others


ZERO_WIDTH_SPACE = "\u200b"
LONG_WORD = 200
"""A word longer than this many characters gets a break opportunity between each of its
graphemes before it is laid out (see `with_break_opportunities`). More than the widest
bubble holds: a shorter word still moves to the next line whole when it fits there."""
_LONG_WORD = re.compile(rf"\S{{{LONG_WORD + 1},}}")


def with_break_opportunities(text: str) -> str:
    """`text` with a zero-width space between the graphemes of each word longer than
    `LONG_WORD` (which starts a line). It wraps where it did and looks the same,
    but QTextLayout finds each line's end in a word of n characters at a cost that grows
    with n: 64 KiB without a space took 0.7 s to lay out, at every repaint. Never inside a
    grapheme (an accent and its letter, an emoji ZWJ sequence stay whole)."""
    return _LONG_WORD.sub(lambda match: _long_word(match, text), text)


def _long_word(match: re.Match[str], text: str) -> str:
    # it starts a line, as it did (it never fits beside other words): U+2028 before it
    # unless it starts the text or a line already
    start = match.start()
    fresh = start == 0 or text[start - 1] == LINE_SEPARATOR
    return ("" if fresh else LINE_SEPARATOR) + between_graphemes(match.group())


def chars_before(text: str, utf16_offset: int) -> int:
    """How many of `text`'s characters come before `utf16_offset`, a position as Qt
    counts (in UTF-16 units: an emoji outside the BMP is two). Sliced with Qt's count,
    a text of 6,000 emoji lines was cut half again as far as meant."""
    if text.isascii():
        return min(utf16_offset, len(text))
    return len(text.encode("utf-16-le")[: 2 * utf16_offset].decode("utf-16-le", "ignore"))


def utf16_length(text: str) -> int:
    """`text`'s length as Qt counts it (UTF-16 units: an emoji outside the BMP is two)."""
    return len(text) if text.isascii() else len(text.encode("utf-16-le")) // 2


def grapheme_prefix(text: str, limit: int) -> str:
    """The longest start of `text` of at most `limit` characters that ends between two
    graphemes: cut at a character count, a family emoji (four people joined by three
    zero-width joiners) lost its last members and showed as another family."""
    if len(text) <= limit or text.isascii():
        return text[:limit]
    head = text[: limit + 1]  # a boundary at `limit` depends on the characters around it
    bounds = _grapheme_bounds(head)
    kept = 0
    offset = 0
    for index, char in enumerate(head):
        if offset in bounds:
            kept = index
        offset += 2 if ord(char) > 0xFFFF else 1
    return text[:kept]


def _grapheme_bounds(text: str) -> set[int]:
    """The grapheme boundaries after the start of `text`, in UTF-16 code units (as Qt
    counts them)."""
    finder = QTextBoundaryFinder(QTextBoundaryFinder.BoundaryType.Grapheme, text)
    bounds: set[int] = set()
    position = finder.toNextBoundary()
    while position > 0:
        bounds.add(position)
        position = finder.toNextBoundary()
    return bounds


def between_graphemes(word: str) -> str:
    """`word` with a zero-width space between its graphemes (where it may wrap)."""
    if word.isascii():  # each character is a grapheme (ASCII has no combining marks)
        return ZERO_WIDTH_SPACE.join(word)
    bounds = _grapheme_bounds(word)
    parts: list[str] = []
    offset = 0
    for char in word:
        if offset in bounds:
            parts.append(ZERO_WIDTH_SPACE)
        parts.append(char)
        offset += 2 if ord(char) > 0xFFFF else 1
    return "".join(parts)


def text_layout(text: str, font: QFont, width: float) -> tuple[QTextLayout, QSizeF]:
    """`text` laid out in lines at most `width` wide (long words break anywhere, line
    breaks are kept)."""
    return lay_out(with_break_opportunities(with_line_separators(text)), font, width)


def lay_out(text: str, font: QFont, width: float) -> tuple[QTextLayout, QSizeF]:
    """`text` as given (see `text_layout`) in lines at most `width` wide."""
    layout = QTextLayout(text, font)
    option = QTextOption()
    option.setWrapMode(QTextOption.WrapMode.WrapAtWordBoundaryOrAnywhere)
    layout.setTextOption(option)
    layout.beginLayout()
    height = 0.0
    widest = 0.0
    while True:
        line = layout.createLine()
        if not line.isValid():
            break
        line.setLineWidth(width)
        line.setPosition(QPointF(0, height))
        height += line.height()
        widest = max(widest, line.naturalTextWidth())
    layout.endLayout()
    return layout, QSizeF(widest, height)


def short_time(timestamp: float) -> str:
    """Hours and minutes in the user's locale."""
    moment = dt.datetime.fromtimestamp(timestamp)
    return QLocale().toString(QTime(moment.hour, moment.minute), QLocale.FormatType.ShortFormat)


def day_label(day: dt.date, today: dt.date | None = None) -> str:
    """ "Today", "Yesterday", or the date in the user's locale."""
    today = today or dt.date.today()
    if day == today:
        return QCoreApplication.translate("MessageDelegate", "Today")
    if day == today - dt.timedelta(days=1):
        return QCoreApplication.translate("MessageDelegate", "Yesterday")
    fmt = "dddd, d MMMM" if day.year == today.year else "d MMMM yyyy"
    return QLocale().toString(QDate(day.year, day.month, day.day), fmt)


def avatar_color(address: str) -> QColor:
    """A stable colour per contact."""
    index = hashlib.sha256(address.encode()).digest()[0] % len(AVATAR_COLORS)
    return QColor(AVATAR_COLORS[index])


def _first_alnum(word: str) -> str:
    return next((ch for ch in word if ch.isalnum()), "")


def initials(name: str) -> str:
    """Up to two initials of a display name: the first letter or digit of its first and
    last words ("Bobby (re-added)" is "BR"); words without any are skipped."""
    words = name.replace("…", " ").split()
    letters = [ch for ch in (_first_alnum(w) for w in words) if ch]
    if not letters:
        return "?"
    if len(letters) == 1:
        return letters[0].upper()
    return (letters[0] + letters[-1]).upper()


def draw_avatar(painter: QPainter, rect: QRectF, name: str, address: str) -> None:
    """A coloured disc with the contact's initials."""
    painter.setPen(Qt.PenStyle.NoPen)
    painter.setBrush(avatar_color(address))
    painter.drawEllipse(rect)
    font = QFont(painter.font())
    font.setPixelSize(int(rect.height() * 0.4))
    font.setBold(True)
    painter.setFont(font)
    painter.setPen(QColor(AVATAR_TEXT))
    painter.drawText(rect, Qt.AlignmentFlag.AlignCenter, initials(name))


def draw_check(
    painter: QPainter, x: float, y: float, size: float, color: QColor, weight: float = 1.0
) -> None:
    """One tick mark whose box starts at (x, y); `weight` scales the stroke."""
    path = QPainterPath()
    path.moveTo(x, y + size * 0.55)
    path.lineTo(x + size * 0.35, y + size * 0.9)
    path.lineTo(x + size, y + size * 0.15)
    pen = QPen(color, max(1.4, size / 7) * weight)
    pen.setCapStyle(Qt.PenCapStyle.RoundCap)
    pen.setJoinStyle(Qt.PenJoinStyle.RoundJoin)
    painter.setPen(pen)
    painter.setBrush(Qt.BrushStyle.NoBrush)
    painter.drawPath(path)


def tick_width(size: float) -> float:
    """Width taken by the delivery mark."""
    return size * 1.55


def draw_ticks(
    painter: QPainter,
    x: float,
    y: float,
    size: float,
    status: MessageStatus,
    color: QColor,
    read_color: QColor,
) -> None:
    """The delivery mark: clock (queued), one tick (sent), two (delivered), two bolder
    ones in `read_color` (read: told apart by shape as well as colour)."""
    if status == MessageStatus.QUEUED:
        pen = QPen(color, max(1.2, size / 8))
        painter.setPen(pen)
        painter.setBrush(Qt.BrushStyle.NoBrush)
        box = QRectF(x + size * 0.2, y + size * 0.05, size * 0.9, size * 0.9)
        painter.drawEllipse(box)
        center = box.center()
        painter.drawLine(center, QPointF(center.x(), box.top() + size * 0.22))
        painter.drawLine(center, QPointF(box.right() - size * 0.25, center.y()))
    elif status == MessageStatus.SENT:
        draw_check(painter, x + size * 0.3, y, size * 0.9, color)
    elif status in (MessageStatus.DELIVERED, MessageStatus.READ):
        read = status == MessageStatus.READ
        mark, weight = (read_color, READ_WEIGHT) if read else (color, 1.0)
        draw_check(painter, x, y, size * 0.9, mark, weight)
        draw_check(painter, x + size * 0.55, y, size * 0.9, mark, weight)


def status_text(status: MessageStatus) -> str:
    """Words for a delivery state (accessibility and tooltips)."""
    words = {
        MessageStatus.QUEUED: "Waiting to be sent",
        MessageStatus.SENT: "Sent",
        MessageStatus.DELIVERED: "Delivered",
        MessageStatus.READ: "Read",
        MessageStatus.RECEIVED: "Received",
    }
    return QCoreApplication.translate("MessageDelegate", words[status])


def draw_verified_badge(painter: QPainter, rect: QRectF, color: QColor) -> None:
    """A filled disc with a white tick: the contact's safety number was verified."""
    painter.setPen(Qt.PenStyle.NoPen)
    painter.setBrush(color)
    painter.drawEllipse(rect)
    inset = rect.width() * 0.25
    draw_check(
        painter,
        rect.left() + inset,
        rect.top() + inset,
        rect.width() - 2 * inset,
        QColor("#ffffff"),
    )
