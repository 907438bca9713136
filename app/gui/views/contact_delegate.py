"""Paints one contact: avatar (with a green dot while connected and the verified badge),
name, last message, time, unread count."""

from __future__ import annotations

import datetime as dt
import math

from PySide6.QtCore import QCoreApplication, QModelIndex, QPersistentModelIndex, QRectF, QSize, Qt
from PySide6.QtGui import QColor, QFont, QFontMetricsF, QPainter, QPen
from PySide6.QtWidgets import QStyle, QStyledItemDelegate, QStyleOptionViewItem

from app.gui.models.contacts import ContactRole
from app.gui.theme import colors
from app.gui.views.painting import day_label, draw_avatar, draw_verified_badge, short_time
from app.gui.views.peer_text import one_line_name
from app.node.api import Contact, Message

ROW_HEIGHT = 64
AVATAR = 42.0
DOT = 12.0  # the online dot on the avatar's lower right
BADGE = 16.0
"""The verified badge on the avatar's lower left: on the avatar, where the name (which
the peer chooses) is never drawn, so a name ending in "✅" can't pass for it."""
NAME_LINE = 22.0
PREVIEW_LINE = 20.0
"""The heights of the name's line and the last message's line at a 10 pt font; a row
grows with a larger font (`row_height`): at 18 pt both were cut at the bottom."""
AnyIndex = QModelIndex | QPersistentModelIndex


def row_fonts(base: QFont) -> tuple[QFont, QFont]:
    """The fonts of a row's name and of its smaller lines, from the list's font."""
    name_font = QFont(base)
    name_font.setBold(True)
    name_font.setPointSizeF(base.pointSizeF() * 1.05)
    small = QFont(base)
    small.setPointSizeF(base.pointSizeF() * 0.9)
    return name_font, small


def line_heights(base: QFont) -> tuple[float, float]:
    """The heights of the name's line and of the last message's line in `base`."""
    name_font, small = row_fonts(base)
    return (
        max(NAME_LINE, QFontMetricsF(name_font).height()),
        max(PREVIEW_LINE, QFontMetricsF(small).height()),
    )


def row_height(base: QFont) -> int:
    """A row's height for the list's font `base`: 64 pixels, or more for larger text."""
    name_h, preview_h = line_heights(base)
    return max(ROW_HEIGHT, math.ceil(ROW_HEIGHT - NAME_LINE - PREVIEW_LINE + name_h + preview_h))


def _when(message: Message) -> str:
    day = dt.datetime.fromtimestamp(message.time).date()
    return short_time(message.time) if day == dt.date.today() else day_label(day)


class ContactDelegate(QStyledItemDelegate):
    """Row painter for `ContactModel`."""

    def sizeHint(self, option: QStyleOptionViewItem, index: AnyIndex) -> QSize:
        return QSize(200, row_height(option.font))

    def paint(self, painter: QPainter, option: QStyleOptionViewItem, index: AnyIndex) -> None:
        contact: Contact | None = index.data(ContactRole.CONTACT)
        if contact is None:
            return
        c = colors()
        unread = int(index.data(ContactRole.UNREAD) or 0)
        last: Message | None = index.data(ContactRole.LAST_MESSAGE)
        rect = QRectF(option.rect)
        state = option.state
        painter.save()
        # nothing a peer writes (stacked combining marks) draws over the rows around
        painter.setClipRect(option.rect, Qt.ClipOperation.IntersectClip)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        card = rect.adjusted(6, 2, -6, -2)
        if state & QStyle.StateFlag.State_Selected:
            painter.setPen(Qt.PenStyle.NoPen)
            painter.setBrush(QColor(c.selection))
            painter.drawRoundedRect(card, 10, 10)
        elif state & QStyle.StateFlag.State_MouseOver:
            hover = QColor(c.selection)
            hover.setAlphaF(0.45)
            painter.setPen(Qt.PenStyle.NoPen)
            painter.setBrush(hover)
            painter.drawRoundedRect(card, 10, 10)
        name_h, preview_h = line_heights(option.font)
        scale = row_height(option.font) / ROW_HEIGHT  # the avatar grows with the text
        size, dot_size, badge_size = AVATAR * scale, DOT * scale, BADGE * scale
        avatar = QRectF(card.left() + 10, card.center().y() - size / 2, size, size)
        draw_avatar(painter, avatar, contact.name, contact.address)
        if index.data(ContactRole.ONLINE):
            dot = QRectF(
                avatar.right() - dot_size + 1, avatar.bottom() - dot_size + 1, dot_size, dot_size
            )
            ring = QColor(c.selection if state & QStyle.StateFlag.State_Selected else c.base)
            painter.setPen(QPen(ring, 2.0))
            painter.setBrush(QColor(c.online))
            painter.drawEllipse(dot)
        if contact.verified:
            ring = QColor(c.selection if state & QStyle.StateFlag.State_Selected else c.base)
            badge = QRectF(
                avatar.left() - 3, avatar.bottom() - badge_size + 3, badge_size, badge_size
            )
            painter.setPen(QPen(ring, 2.0))
            painter.setBrush(Qt.BrushStyle.NoBrush)
            painter.drawEllipse(badge.adjusted(-1, -1, 1, 1))
            draw_verified_badge(painter, badge, QColor(c.verified))

        name_font, small = row_fonts(option.font)
        text_left = avatar.right() + 12
        right = card.right() - 12

        # right column: time of the last message and the unread badge
        when = _when(last) if last else ""
        small_metrics = QFontMetricsF(small)
        when_w = small_metrics.horizontalAdvance(when)
        top_line = QRectF(text_left, card.top() + 10, right - text_left, name_h)
        painter.setFont(small)
        painter.setPen(QColor(c.accent if unread else c.muted))
        painter.drawText(
            top_line, int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter), when
        )

        name_metrics = QFontMetricsF(name_font)
        # a name that reads like another contact's is followed by the end of the address,
        # which its owner can't choose (the name they can)
        tail = f"…{contact.address[-6:]}" if index.data(ContactRole.LOOKALIKE) else ""
        tail_w = small_metrics.horizontalAdvance(tail) + 6 if tail else 0.0
        # room for the name: beside the time and the address's end
        name_room = top_line.width() - when_w - 12 - tail_w
        name = name_metrics.elidedText(contact.name, Qt.TextElideMode.ElideRight, name_room)
        painter.setFont(name_font)
        painter.setPen(QColor(c.text))
        painter.save()  # the name stays right of the avatar and its badge, whatever it holds
        painter.setClipRect(
            QRectF(text_left, card.top(), card.right() - text_left, card.height()),
            Qt.ClipOperation.IntersectClip,
        )
        painter.drawText(
            top_line, int(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter), name
        )
        painter.restore()
        x = text_left + name_metrics.horizontalAdvance(name) + 6
        if tail:
            painter.setFont(small)
            painter.setPen(QColor(c.muted))
            tail_rect = QRectF(x, top_line.top(), tail_w, top_line.height())
            painter.drawText(
                tail_rect, int(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter), tail
            )

        bottom_line = QRectF(text_left, top_line.bottom(), right - text_left, preview_h)
        badge_w = 0.0
        if unread:
            label = str(unread) if unread < 1000 else "999+"
            pill_h = max(20.0, small_metrics.height() + 4)
            badge_w = max(pill_h, small_metrics.horizontalAdvance(label) + 12)
            pill = QRectF(right - badge_w, bottom_line.center().y() - pill_h / 2, badge_w, pill_h)
            painter.setPen(Qt.PenStyle.NoPen)
            painter.setBrush(QColor(c.badge))
            painter.drawRoundedRect(pill, pill_h / 2, pill_h / 2)
            bold = QFont(small)
            bold.setBold(True)
            painter.setFont(bold)
            painter.setPen(QColor(c.badge_text))
            painter.drawText(pill, int(Qt.AlignmentFlag.AlignCenter), label)
        # the app's own words ("You:", "File:") in the text colour, what was written
        # muted: a contact's message that starts "You: " can't pass for one of ours
        prefix, preview = preview_parts(last)
        if contact.not_added_back:  # says why what we wrote stays at one tick
            prefix, preview = not_added_back_text() + " ", ""
        room = bottom_line.width() - badge_w - (8 if badge_w else 0)
        painter.setFont(small)
        left = Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter
        if prefix:
            prefix = small_metrics.elidedText(prefix, Qt.TextElideMode.ElideRight, room)
            painter.setPen(QColor(c.text))
            painter.drawText(bottom_line, int(left), prefix)
            used = small_metrics.horizontalAdvance(prefix)
            bottom_line.setLeft(bottom_line.left() + used)
            room -= used
        painter.setPen(QColor(c.muted))
        preview = small_metrics.elidedText(preview, Qt.TextElideMode.ElideRight, max(0.0, room))
        painter.drawText(bottom_line, int(left), preview)
        painter.restore()


def not_added_back_text() -> str:
    """What a contact's row says when their node told ours they have not added us."""
    return QCoreApplication.translate("ContactDelegate", "Has not added you yet")


def preview_parts(last: Message | None) -> tuple[str, str]:
    """The line under a contact's name, in two parts: the app's words ("You: ", "File: ")
    and the text of their conversation's newest message (a file's name on one line)."""
    if last is None:
        return "", ""
    words = []
    if last.outgoing:
        words.append(QCoreApplication.translate("ContactDelegate", "You:"))
    if last.transfer is not None:
        words.append(QCoreApplication.translate("ContactDelegate", "File:"))
        text = one_line_name(last.text)
    else:
        text = " ".join(last.text.split())
    return "".join(f"{word} " for word in words), text


def preview_text(last: Message | None) -> str:
    """The line under a contact's name, as one string."""
    return "".join(preview_parts(last))
