"""Paints one message: a day separator when the day changes, then a bubble (ours on the
right, theirs on the left) with the text, the time and the delivery ticks. A file message
is a bubble holding a file card (name, size, state, progress, buttons); a click on one of
its buttons is reported through `transferActionRequested`."""

from __future__ import annotations

from collections import OrderedDict

from PySide6.QtCore import (
    QAbstractItemModel,
    QEvent,
    QModelIndex,
    QObject,
    QPersistentModelIndex,
    QPointF,
    QRectF,
    QSize,
    QSizeF,
    Qt,
    Signal,
)
from PySide6.QtGui import QColor, QFont, QFontMetricsF, QMouseEvent, QPainter, QPen, QTextLayout
from PySide6.QtWidgets import (
    QAbstractItemView,
    QStyle,
    QStyledItemDelegate,
    QStyleOptionViewItem,
)

from app.gui.models.messages import MessageRole, local_day
from app.gui.theme import colors
from app.gui.views.file_card import (
    CardFonts,
    CardLayout,
    action_at,
    actions_for,
    card_colors,
    card_height,
    layout_card,
    paint_card,
)
from app.gui.views.painting import (
    LINE_SEPARATOR,
    chars_before,
    day_label,
    draw_ticks,
    lay_out,
    short_time,
    text_layout,
    tick_width,
)
from app.gui.views.peer_text import one_line_name
from app.gui.views.transfer_text import reached_them
from app.node.api import Message, Transfer

SIDE_MARGIN = 16.0
ROW_GAP = 3.0
PAD_X = 12.0
PAD_Y = 8.0
RADIUS = 14.0
HEADER_HEIGHT = 40.0
UNREAD_MARK_HEIGHT = 32.0
"""The "New messages" line above the first message unread when the conversation opened."""
MAX_BUBBLE = 560.0
BUBBLE_SHARE = 0.7
FILE_BUBBLE = 380.0
MAX_TEXT_HEIGHT = 30_000.0
"""A bubble's text is cut after the lines that fit this many pixels (a list view shows a
row at most 32,767 pixels tall: 30,000 empty lines, which a peer may send in 32 KiB,
spilled over the messages after it); the last line says how many more there are."""
KEPT_LAYOUTS = 64
"""Laid-out texts kept (the most recently used): a repaint (a scroll step, a hover, a
transfer's progress) draws them again without laying them out again."""
AnyIndex = QModelIndex | QPersistentModelIndex


class MessageDelegate(QStyledItemDelegate):
    """Bubble painter for `MessageModel` rows; sizes are cached per message and width."""

    transferActionRequested = Signal(str, object)  # transfer id, TransferAction

    def __init__(self, view: QAbstractItemView, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._view = view
        self._cache: dict[tuple[str, int, bool, bool], QSize] = {}
        self._layouts: OrderedDict[tuple[str, float], tuple[QTextLayout, QSizeF]] = OrderedDict()
        self.highlighted: str | None = None
        """The id of a message shown with a band behind it (a search result opened)."""
        self.first_unread: str | None = None
        """The id of the first message that was unread when the conversation opened: a
        "New messages" line is drawn above it."""

    def _mark_height(self, message: Message) -> float:
        return UNREAD_MARK_HEIGHT if message.id == self.first_unread else 0.0

    def clear_cache(self) -> None:
        """Forget cached sizes and layouts (after a font or theme change)."""
        self._cache.clear()
        self._layouts.clear()

    def _text_layout(self, message: Message, width: float) -> tuple[QTextLayout, QSizeF]:
        """The message's text laid out `width` wide (kept for the next paint)."""
        key = (message.id, width)
        known = self._layouts.get(key)
        if known is not None:
            self._layouts.move_to_end(key)
            return known
        font = self._fonts()[0]
        laid_out = text_layout(message.text, font, width)
        limit = max(1, int(MAX_TEXT_HEIGHT / QFontMetricsF(font).lineSpacing()))
        layout = laid_out[0]
        if layout.lineCount() > limit:  # cut: the last line left says how much is hidden
            kept = limit - 1
            hidden = layout.lineCount() - kept
            note = self.tr("… {0} more lines (right-click, Copy text to read them all)")
            cut = chars_before(layout.text(), layout.lineAt(kept).textStart())
            shown = layout.text()[:cut]
            if not shown.endswith(LINE_SEPARATOR):  # cut inside a paragraph
                shown += LINE_SEPARATOR
            laid_out = lay_out(shown + note.format(hidden), font, width)
        self._layouts[key] = laid_out
        if len(self._layouts) > KEPT_LAYOUTS:
            self._layouts.popitem(last=False)
        return laid_out

    def _fonts(self) -> tuple[QFont, QFont]:
        body = QFont(self._view.font())
        body.setPointSizeF(max(body.pointSizeF(), 10.5))
        meta = QFont(body)
        meta.setPointSizeF(body.pointSizeF() * 0.78)
        return body, meta

    def _text_width(self, viewport_width: int) -> float:
        bubble = min(MAX_BUBBLE, max(160.0, (viewport_width - 2 * SIDE_MARGIN) * BUBBLE_SHARE))
        return bubble - 2 * PAD_X

    def _meta(self, message: Message, meta_font: QFont) -> tuple[str, float]:
        text = short_time(message.time)
        width = QFontMetricsF(meta_font).horizontalAdvance(text)
        if message.outgoing:
            width += 4 + tick_width(QFontMetricsF(meta_font).height() * 0.8)
        return text, width

    def sizeHint(self, option: QStyleOptionViewItem, index: AnyIndex) -> QSize:
        message: Message | None = index.data(MessageRole.MESSAGE)
        if message is None:
            return QSize(0, 0)
        header = bool(index.data(MessageRole.DAY_HEADER))
        width = self._view.viewport().width()
        marked = message.id == self.first_unread
        key = (message.id, width, header, marked)
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        _, meta = self._fonts()
        if message.transfer is not None:
            height = card_height(self._card_fonts()) + 2 * ROW_GAP
        else:
            _, text_size = self._text_layout(message, self._text_width(width))
            height = PAD_Y * 2 + text_size.height() + QFontMetricsF(meta).height() + 2 * ROW_GAP
        if header:
            height += HEADER_HEIGHT
        height += self._mark_height(message)
        size = QSize(width, int(height + 0.999))
        if len(self._cache) > 20_000:
            self._cache.clear()
        self._cache[key] = size
        return size

    def paint(self, painter: QPainter, option: QStyleOptionViewItem, index: AnyIndex) -> None:
        message: Message | None = index.data(MessageRole.MESSAGE)
        if message is None:
            return
        c = colors()
        painter.save()
        # nothing a peer writes (stacked combining marks) draws over the rows around
        painter.setClipRect(option.rect, Qt.ClipOperation.IntersectClip)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        painter.setRenderHint(QPainter.RenderHint.TextAntialiasing)
        rect = QRectF(option.rect)
        top = rect.top() + ROW_GAP
        _, meta = self._fonts()
        if message.id == self.highlighted:
            painter.fillRect(rect, QColor(c.selection))
        header = bool(index.data(MessageRole.DAY_HEADER))
        if header:
            self._paint_header(painter, rect, top, message)
            top += HEADER_HEIGHT
        if message.id == self.first_unread:
            self._paint_unread_mark(painter, rect, top)
            top += UNREAD_MARK_HEIGHT
        focused = self._focused(option)
        if message.transfer is not None:
            transfer = index.data(MessageRole.TRANSFER)
            starting = bool(index.data(MessageRole.STARTING))
            self._paint_file(painter, rect, message, transfer, starting, header)
            if focused:
                self._paint_focus(painter, self.file_geometry(rect, message, transfer, header)[0])
            painter.restore()
            return
        layout, text_size = self._text_layout(message, self._text_width(int(rect.width())))
        meta_text, meta_width = self._meta(message, meta)
        meta_height = QFontMetricsF(meta).height()
        inner_w = max(text_size.width(), meta_width)
        bubble_w = inner_w + 2 * PAD_X
        bubble_h = text_size.height() + meta_height + 2 * PAD_Y
        left = (
            rect.right() - SIDE_MARGIN - bubble_w if message.outgoing else rect.left() + SIDE_MARGIN
        )
        bubble = QRectF(left, top, bubble_w, bubble_h)
        fill = QColor(c.bubble_out if message.outgoing else c.bubble_in)
        ink = QColor(c.bubble_out_text if message.outgoing else c.bubble_in_text)
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(fill)
        painter.drawRoundedRect(bubble, RADIUS, RADIUS)
        painter.setPen(ink)
        origin = QPointF(bubble.left() + PAD_X, bubble.top() + PAD_Y)
        # only the lines on screen (the clip, in the painter's coordinates: the row within
        # what is being repainted): a bubble of 30,000 lines drew them all at each repaint
        layout.draw(painter, origin, [], painter.clipBoundingRect())
        # time and ticks, bottom right inside the bubble
        muted = QColor(ink)
        muted.setAlphaF(0.72)
        painter.setFont(meta)
        painter.setPen(muted)
        meta_top = bubble.bottom() - PAD_Y - meta_height
        tick = meta_height * 0.8 if message.outgoing else 0.0
        time_right = bubble.right() - PAD_X - (tick_width(tick) + 4 if message.outgoing else 0)
        time_rect = QRectF(time_right - meta_width, meta_top, meta_width, meta_height)
        align = Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter
        painter.drawText(time_rect, int(align), meta_text)
        if message.outgoing:
            draw_ticks(
                painter,
                bubble.right() - PAD_X - tick_width(tick),
                meta_top + (meta_height - tick) / 2,
                tick,
                message.status,
                muted,
                QColor(c.tick_read),
            )
        if focused:
            self._paint_focus(painter, bubble)
        painter.restore()

    def _focused(self, option: QStyleOptionViewItem) -> bool:
        """Whether the row is the list's current one while the list has the keyboard focus
        (Ctrl+C and the Menu key act on it: it must show)."""
        return bool(option.state & QStyle.StateFlag.State_HasFocus) and self._view.hasFocus()

    def _paint_focus(self, painter: QPainter, bubble: QRectF) -> None:
        # in the text colour: it shows around our (accent) bubbles and theirs alike
        painter.setPen(QPen(QColor(colors().text), 2.0))
        painter.setBrush(Qt.BrushStyle.NoBrush)
        painter.drawRoundedRect(bubble.adjusted(-2, -2, 2, 2), RADIUS + 2, RADIUS + 2)

    # ------------------------------------------------------------------ file messages

    def _card_fonts(self) -> CardFonts:
        return CardFonts.from_base(self._view.font())

    def file_geometry(
        self, rect: QRectF, message: Message, transfer: Transfer | None, header: bool
    ) -> tuple[QRectF, CardLayout]:
        """The bubble of a file message in a row at `rect`, and its card's layout."""
        fonts = self._card_fonts()
        top = rect.top() + ROW_GAP + (HEADER_HEIGHT if header else 0.0)
        top += self._mark_height(message)
        width = min(FILE_BUBBLE, max(220.0, (rect.width() - 2 * SIDE_MARGIN) * BUBBLE_SHARE))
        left = rect.right() - SIDE_MARGIN - width if message.outgoing else rect.left() + SIDE_MARGIN
        bubble = QRectF(left, top, width, card_height(fonts))
        _, meta_width = self._meta(message, self._fonts()[1])
        return bubble, layout_card(bubble, fonts, actions_for(transfer), meta_width)

    def _paint_file(
        self,
        painter: QPainter,
        rect: QRectF,
        message: Message,
        transfer: Transfer | None,
        starting: bool,
        header: bool,
    ) -> None:
        c = colors()
        bubble, layout = self.file_geometry(rect, message, transfer, header)
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(QColor(c.bubble_out if message.outgoing else c.bubble_in))
        painter.drawRoundedRect(bubble, RADIUS, RADIUS)
        palette = card_colors(on_accent=message.outgoing)
        name = transfer.name if transfer is not None else one_line_name(message.text)
        fonts = self._card_fonts()
        delivered = reached_them(message)
        paint_card(
            painter, layout, transfer, name, fonts, palette, delivered=delivered, starting=starting
        )
        # time and ticks where the card kept room for them (beside the buttons if they fit)
        _, meta = self._fonts()
        meta_text, meta_width = self._meta(message, meta)
        painter.setFont(meta)
        painter.setPen(palette.muted)
        footer = layout.meta
        tick = QFontMetricsF(meta).height() * 0.8 if message.outgoing else 0.0
        time_right = footer.right() - (tick_width(tick) + 4 if message.outgoing else 0)
        time_rect = QRectF(time_right - meta_width, footer.top(), meta_width, footer.height())
        align = Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter
        painter.drawText(time_rect, int(align), meta_text)
        if message.outgoing:
            draw_ticks(
                painter,
                footer.right() - tick_width(tick),
                footer.center().y() - tick / 2,
                tick,
                message.status,
                palette.muted,
                QColor(c.tick_read),
            )

    def editorEvent(
        self,
        event: QEvent,
        model: QAbstractItemModel,
        option: QStyleOptionViewItem,
        index: AnyIndex,
    ) -> bool:
        if event.type() not in (QEvent.Type.MouseButtonPress, QEvent.Type.MouseButtonRelease):
            return super().editorEvent(event, model, option, index)
        message: Message | None = index.data(MessageRole.MESSAGE)
        if message is None or message.transfer is None or not isinstance(event, QMouseEvent):
            return super().editorEvent(event, model, option, index)
        if event.button() != Qt.MouseButton.LeftButton:
            return False
        transfer: Transfer | None = index.data(MessageRole.TRANSFER)
        header = bool(index.data(MessageRole.DAY_HEADER))
        _, layout = self.file_geometry(QRectF(option.rect), message, transfer, header)
        action = action_at(layout, event.position())
        if action is None:
            return False
        if event.type() == QEvent.Type.MouseButtonRelease:
            self.transferActionRequested.emit(message.transfer, action)
        return True

    def _paint_unread_mark(self, painter: QPainter, rect: QRectF, top: float) -> None:
        """An accent line across the row with "New messages" in its middle."""
        c = colors()
        _, meta = self._fonts()
        meta.setBold(True)
        label = self.tr("New messages")
        metrics = QFontMetricsF(meta)
        label_w = metrics.horizontalAdvance(label) + 16
        line_y = top + UNREAD_MARK_HEIGHT / 2
        box = QRectF(rect.center().x() - label_w / 2, top, label_w, UNREAD_MARK_HEIGHT)
        painter.setPen(QPen(QColor(c.accent), 1.2))
        painter.drawLine(QPointF(rect.left() + SIDE_MARGIN, line_y), QPointF(box.left(), line_y))
        painter.drawLine(QPointF(box.right(), line_y), QPointF(rect.right() - SIDE_MARGIN, line_y))
        painter.setFont(meta)
        painter.drawText(box, int(Qt.AlignmentFlag.AlignCenter), label)

    def _paint_header(self, painter: QPainter, rect: QRectF, top: float, message: Message) -> None:
        c = colors()
        _, meta = self._fonts()
        meta.setBold(True)
        label = day_label(local_day(message.time))
        metrics = QFontMetricsF(meta)
        pill_w = metrics.horizontalAdvance(label) + 24
        pill_h = metrics.height() + 8
        pill = QRectF(
            rect.center().x() - pill_w / 2, top + (HEADER_HEIGHT - pill_h) / 2, pill_w, pill_h
        )
        line_y = pill.center().y()
        painter.setPen(QColor(c.separator))
        painter.drawLine(
            QPointF(rect.left() + SIDE_MARGIN * 2, line_y), QPointF(pill.left() - 8, line_y)
        )
        painter.drawLine(
            QPointF(pill.right() + 8, line_y), QPointF(rect.right() - SIDE_MARGIN * 2, line_y)
        )
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(QColor(c.base))
        painter.drawRoundedRect(pill, pill_h / 2, pill_h / 2)
        painter.setFont(meta)
        painter.setPen(QColor(c.muted))
        painter.drawText(pill, int(Qt.AlignmentFlag.AlignCenter), label)
