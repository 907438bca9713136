"""Search results: one row per message found, with who wrote it ("You to Bob" for ours), when
(in the user's locale), and a two-line snippet around the first match, the match in bold.

The app's words in the first line ("You to") are drawn apart from the contact's name (not
bold, muted): a contact can choose the name "You to Bob", and drawn alike their messages
passed for ours.

`search_result_item` builds a `QListWidgetItem` for a result and `SearchResultDelegate`
paints it; other items (the "nothing found" line) are painted as padded muted text.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum

from PySide6.QtCore import (
    QCoreApplication,
    QDate,
    QDateTime,
    QLocale,
    QModelIndex,
    QPersistentModelIndex,
    QPointF,
    QRectF,
    QSize,
    Qt,
)
from PySide6.QtGui import (
    QColor,
    QFont,
    QFontMetricsF,
    QPainter,
    QTextCharFormat,
    QTextLayout,
    QTextOption,
)
from PySide6.QtWidgets import QListWidgetItem, QStyle, QStyledItemDelegate, QStyleOptionViewItem

from app.gui.theme import colors
from app.gui.views.painting import chars_before, grapheme_prefix, short_time, utf16_length
from app.gui.views.peer_text import isolated, one_line_name
from app.node.api import Message

SNIPPET_CHARS = 140  # at most this much text around the match
CONTEXT_BEFORE = 24  # characters kept before the match
PAD_X = 16.0
PAD_Y = 8.0
LINE_GAP = 2.0
SNIPPET_LINES = 2
ELLIPSIS = "…"
AnyIndex = QModelIndex | QPersistentModelIndex


def _tr(text: str) -> str:
    return QCoreApplication.translate("SearchResults", text)


class SearchRole(IntEnum):
    """Data roles of a search result item."""

    MESSAGE = Qt.ItemDataRole.UserRole  # the `Message` (the role the window reads back)
    SENDER = Qt.ItemDataRole.UserRole + 1  # str: the contact's name, or "You to" them
    WHEN = Qt.ItemDataRole.UserRole + 2  # str: the message's date or time
    SNIPPET = Qt.ItemDataRole.UserRole + 3  # the `Snippet`
    SENDER_WORDS = Qt.ItemDataRole.UserRole + 4  # str: the app's words before the name


@dataclass(frozen=True)
class Snippet:
    """A piece of a message's text and where the match is in it (`length` 0: none)."""

    text: str
    start: int
    length: int


def _one_line(text: str) -> str:
    return " ".join(text.split())


def snippet_around(text: str, query: str, limit: int = SNIPPET_CHARS) -> Snippet:
    """Up to `limit` characters of `text` (on one line) around the first match of `query`
    (case-insensitive), with "…" where text was cut."""
    flat, needle = _one_line(text), _one_line(query)
    found = re.search(re.escape(needle), flat, re.IGNORECASE) if needle else None
    if found is None:
        return _cut(flat, 0, limit, 0, 0)
    start = max(0, found.start() - CONTEXT_BEFORE)
    space = flat.find(" ", start, found.start())
    if start > 0 and space >= start:
        start = space + 1  # begin on a word
    return _cut(flat, start, limit, found.start(), found.end() - found.start())


def _cut(flat: str, start: int, limit: int, match: int, length: int) -> Snippet:
    end = start + len(grapheme_prefix(flat[start:], limit))  # an emoji is not split
    head = ELLIPSIS if start > 0 else ""
    tail = ELLIPSIS if end < len(flat) else ""
    text = head + flat[start:end] + tail
    if length == 0:
        return Snippet(text, 0, 0)
    offset = match - start + len(head)
    return Snippet(text, offset, max(0, min(length, end - match)))


def sender_label(message: Message, contact_name: str) -> str:
    """Who wrote the message: the contact's name, or for ours "You to" the contact (with
    several conversations, "You" alone did not say which one the result is in)."""
    words, name = sender_parts(message, contact_name)
    return words + name


def sender_parts(message: Message, contact_name: str) -> tuple[str, str]:
    """`sender_label` in two parts: the app's words ("You to ", or "" for theirs) and the
    contact's name."""
    name = isolated(contact_name)
    if not message.outgoing:
        return "", name
    before, _, after = _tr("You to {0}").partition("{0}")  # a translation places the name
    return before, name + after


def result_when(timestamp: float, today: dt.date | None = None) -> str:
    """The time for a message of today, "Yesterday", the day and month this year, else
    the date (all in the user's locale)."""
    today = today or dt.date.today()
    day = dt.datetime.fromtimestamp(timestamp).date()
    if day == today:
        return short_time(timestamp)
    if day == today - dt.timedelta(days=1):
        return _tr("Yesterday")
    date = QDate(day.year, day.month, day.day)
    if day.year == today.year:
        return QLocale().toString(date, "d MMM")
    return QLocale().toString(date, QLocale.FormatType.ShortFormat)


def search_result_item(message: Message, contact_name: str, query: str) -> QListWidgetItem:
    """The list item of one search result (painted by `SearchResultDelegate`)."""
    words, name = sender_parts(message, contact_name)
    who = words + name
    text = message.text
    if message.transfer is not None:
        text = _tr("File: {0}").format(one_line_name(text))
    snippet = snippet_around(text, query)
    when = result_when(message.time)
    item = QListWidgetItem(f"{who}, {when}: {snippet.text}")
    item.setData(SearchRole.MESSAGE, message)
    item.setData(SearchRole.SENDER, who)
    item.setData(SearchRole.SENDER_WORDS, words)
    item.setData(SearchRole.WHEN, when)
    item.setData(SearchRole.SNIPPET, snippet)
    moment = QDateTime.fromMSecsSinceEpoch(int(message.time * 1000))
    item.setToolTip(QLocale().toString(moment, QLocale.FormatType.LongFormat))
    return item


def _layout(
    text: str, font: QFont, width: float, formats: Sequence[QTextLayout.FormatRange] = ()
) -> QTextLayout:
    layout = QTextLayout(text, font)
    layout.setFormats(list(formats))  # before laying out: formats change the glyphs
    option = QTextOption()
    option.setWrapMode(QTextOption.WrapMode.WrapAtWordBoundaryOrAnywhere)
    layout.setTextOption(option)
    layout.beginLayout()
    y = 0.0
    while True:
        line = layout.createLine()
        if not line.isValid():
            break
        line.setLineWidth(width)
        line.setPosition(QPointF(0, y))
        y += line.height()
    layout.endLayout()
    return layout


def fit_lines(text: str, font: QFont, width: float, lines: int = SNIPPET_LINES) -> str:
    """`text`, cut and ended with "…" if it would take more than `lines` lines."""
    layout = _layout(text, font, width)
    if layout.lineCount() <= lines:
        return text
    last = layout.lineAt(lines - 1)
    cut = chars_before(text, last.textStart() + last.textLength())
    while cut > 0:
        shorter = text[:cut].rstrip() + ELLIPSIS
        if _layout(shorter, font, width).lineCount() <= lines:
            return shorter
        cut -= 1
    return ELLIPSIS


def match_format(snippet: Snippet, shown: str) -> list[QTextLayout.FormatRange]:
    """The match in bold and the text colour, if it is in the `shown` text (the snippet's,
    perhaps cut). Qt places it in UTF-16 units: given in characters, it was drawn one
    character further right for each emoji before it."""
    length = min(snippet.length, max(0, len(shown) - snippet.start))
    if length <= 0:
        return []
    match = QTextLayout.FormatRange()
    match.start = utf16_length(shown[: snippet.start])
    match.length = utf16_length(shown[snippet.start : snippet.start + length])
    bold = QTextCharFormat()
    bold.setFontWeight(QFont.Weight.Bold)
    bold.setForeground(QColor(colors().text))
    match.format = bold
    return [match]


class SearchResultDelegate(QStyledItemDelegate):
    """Row painter of the search results list."""

    def _fonts(self, option: QStyleOptionViewItem) -> tuple[QFont, QFont]:
        name = QFont(option.font)
        name.setBold(True)
        small = QFont(option.font)
        small.setPointSizeF(option.font.pointSizeF() * 0.9)
        return name, small

    def sizeHint(self, option: QStyleOptionViewItem, index: AnyIndex) -> QSize:
        name, small = self._fonts(option)
        if not isinstance(index.data(SearchRole.MESSAGE), Message):
            return QSize(0, int(QFontMetricsF(option.font).height() * 2 + 2 * PAD_Y))
        body = QFontMetricsF(small).height() * SNIPPET_LINES
        height = 2 * PAD_Y + QFontMetricsF(name).height() + LINE_GAP + body
        return QSize(0, int(height + 0.999))

    def paint(self, painter: QPainter, option: QStyleOptionViewItem, index: AnyIndex) -> None:
        painter.save()
        # nothing a peer writes (stacked combining marks) draws over the rows around
        painter.setClipRect(option.rect, Qt.ClipOperation.IntersectClip)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        painter.setRenderHint(QPainter.RenderHint.TextAntialiasing)
        rect = QRectF(option.rect)
        self._paint_background(painter, option, rect)
        inner = rect.adjusted(PAD_X, PAD_Y, -PAD_X, -PAD_Y)
        if isinstance(index.data(SearchRole.MESSAGE), Message):
            self._paint_result(painter, option, index, inner)
        else:
            painter.setPen(QColor(colors().muted))
            flags = Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter
            painter.drawText(inner, int(flags | Qt.TextFlag.TextWordWrap), str(index.data()))
        painter.restore()

    def _paint_background(
        self, painter: QPainter, option: QStyleOptionViewItem, rect: QRectF
    ) -> None:
        state = option.state
        selected = bool(state & QStyle.StateFlag.State_Selected)
        if not selected and not state & QStyle.StateFlag.State_MouseOver:
            return
        fill = QColor(colors().selection)
        if not selected:
            fill.setAlphaF(0.45)  # hover, as in the contact list
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(fill)
        painter.drawRoundedRect(rect.adjusted(6, 2, -6, -2), 10, 10)

    def _paint_result(
        self, painter: QPainter, option: QStyleOptionViewItem, index: AnyIndex, inner: QRectF
    ) -> None:
        c = colors()
        name_font, small = self._fonts(option)
        name_h = QFontMetricsF(name_font).height()
        top_line = QRectF(inner.left(), inner.top(), inner.width(), name_h)
        when = str(index.data(SearchRole.WHEN) or "")
        when_w = QFontMetricsF(small).horizontalAdvance(when)
        painter.setFont(small)
        painter.setPen(QColor(c.muted))
        right = Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter
        painter.drawText(top_line, int(right), when)
        who = str(index.data(SearchRole.SENDER) or "")
        words = str(index.data(SearchRole.SENDER_WORDS) or "")
        name = who[len(words) :] if who.startswith(words) else who
        room = max(0.0, top_line.width() - when_w - 12)
        left = Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter
        if words and name:
            # the app's words not bold and muted, the name bold: a contact named
            # "You to Bob" can't pass for one of our messages to Bob
            word_font = QFont(name_font)
            word_font.setBold(False)
            metrics = QFontMetricsF(word_font)
            words = metrics.elidedText(words, Qt.TextElideMode.ElideRight, room)
            painter.setFont(word_font)
            painter.setPen(QColor(c.muted))
            painter.drawText(top_line, int(left), words)
            used = metrics.horizontalAdvance(words)
            top_line = top_line.adjusted(used, 0, 0, 0)
            room = max(0.0, room - used)
            who = name
        who = QFontMetricsF(name_font).elidedText(who, Qt.TextElideMode.ElideRight, room)
        painter.setFont(name_font)
        painter.setPen(QColor(c.text))
        painter.drawText(top_line, int(left), who)
        snippet = index.data(SearchRole.SNIPPET)
        if isinstance(snippet, Snippet):
            origin = QPointF(inner.left(), top_line.bottom() + LINE_GAP)
            self._paint_snippet(painter, snippet, small, inner.width(), origin)

    def _paint_snippet(
        self, painter: QPainter, snippet: Snippet, font: QFont, width: float, origin: QPointF
    ) -> None:
        c = colors()
        text = fit_lines(snippet.text, font, width)
        layout = _layout(text, font, width, match_format(snippet, text))
        painter.setPen(QColor(c.muted))
        layout.draw(painter, origin)
