"""Paints one row of the transfers list: a file card (name, size, state, progress with
speed and time left, buttons) and, on the right of its buttons, who it goes to or comes
from and when. Button clicks are reported through `transferActionRequested`."""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import (
    QAbstractItemModel,
    QCoreApplication,
    QEvent,
    QModelIndex,
    QObject,
    QPersistentModelIndex,
    QPointF,
    QRectF,
    QSize,
    Qt,
    Signal,
)
from PySide6.QtGui import QColor, QFontMetricsF, QMouseEvent, QPainter
from PySide6.QtWidgets import (
    QAbstractItemView,
    QStyle,
    QStyledItemDelegate,
    QStyleOptionViewItem,
)

from app.gui.models.transfers import TransferRole
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
from app.gui.views.painting import short_time
from app.gui.views.peer_text import isolated
from app.node.api import Transfer

MARGIN = 10.0
AnyIndex = QModelIndex | QPersistentModelIndex
ContactName = Callable[[str], str]


def _tr(text: str) -> str:
    return QCoreApplication.translate("Transfers", text)


def direction_text(transfer: Transfer, name: str) -> str:
    """ "To Bob · 14:05" or "From Bob · 14:05"."""
    words = _tr("To {0}") if transfer.outgoing else _tr("From {0}")
    return f"{words.format(isolated(name))} · {short_time(transfer.time)}"


class TransferDelegate(QStyledItemDelegate):
    """Row painter of the transfers list (`TransferModel`)."""

    transferActionRequested = Signal(str, object)  # transfer id, TransferAction

    def __init__(
        self, view: QAbstractItemView, contact_name: ContactName, parent: QObject | None = None
    ) -> None:
        super().__init__(parent)
        self._view = view
        self._contact_name = contact_name

    def _fonts(self) -> CardFonts:
        return CardFonts.from_base(self._view.font())

    def sizeHint(self, option: QStyleOptionViewItem, index: AnyIndex) -> QSize:
        return QSize(0, int(card_height(self._fonts()) + 2 * MARGIN + 0.999))

    def _footer(self, transfer: Transfer) -> str:
        return direction_text(transfer, self._contact_name(transfer.contact))

    def card_layout(self, rect: QRectF, transfer: Transfer) -> CardLayout:
        """Where the card of a row at `rect` puts its parts (buttons included)."""
        fonts = self._fonts()
        card = rect.adjusted(MARGIN, MARGIN, -MARGIN, -MARGIN)
        card.setHeight(card_height(fonts))
        footer_width = QFontMetricsF(fonts.detail).horizontalAdvance(self._footer(transfer))
        return layout_card(card, fonts, actions_for(transfer), footer_width)

    def paint(self, painter: QPainter, option: QStyleOptionViewItem, index: AnyIndex) -> None:
        transfer: Transfer | None = index.data(TransferRole.TRANSFER)
        if transfer is None:
            return
        c = colors()
        painter.save()
        # nothing a peer writes (stacked combining marks) draws over the rows around
        painter.setClipRect(option.rect, Qt.ClipOperation.IntersectClip)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        painter.setRenderHint(QPainter.RenderHint.TextAntialiasing)
        rect = QRectF(option.rect)
        selected = bool(option.state & QStyle.StateFlag.State_Selected)
        painter.fillRect(rect, QColor(c.selection if selected else c.base))
        painter.setPen(QColor(c.separator))
        painter.drawLine(
            QPointF(rect.left() + MARGIN, rect.bottom()),
            QPointF(rect.right() - MARGIN, rect.bottom()),
        )
        layout = self.card_layout(rect, transfer)
        footer = self._footer(transfer)
        paint_card(
            painter,
            layout,
            transfer,
            transfer.name,
            self._fonts(),
            card_colors(on_accent=False),
            footer,
            delivered=bool(index.data(TransferRole.REACHED)),
            starting=bool(index.data(TransferRole.STARTING)),
        )
        painter.restore()

    def editorEvent(
        self,
        event: QEvent,
        model: QAbstractItemModel,
        option: QStyleOptionViewItem,
        index: AnyIndex,
    ) -> bool:
        if event.type() not in (QEvent.Type.MouseButtonPress, QEvent.Type.MouseButtonRelease):
            return super().editorEvent(event, model, option, index)
        transfer: Transfer | None = index.data(TransferRole.TRANSFER)
        if transfer is None or not isinstance(event, QMouseEvent):
            return super().editorEvent(event, model, option, index)
        if event.button() != Qt.MouseButton.LeftButton:
            return False
        action = action_at(self.card_layout(QRectF(option.rect), transfer), event.position())
        if action is None:
            return False
        if event.type() == QEvent.Type.MouseButtonRelease:
            self.transferActionRequested.emit(transfer.id, action)
        return True
