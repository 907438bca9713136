"""The file card both the conversation (inside a bubble) and the transfers list paint:
a file glyph, the name, size and state, a progress bar with speed and time left, and the
buttons that fit the state (Accept/Decline, Pause/Resume, Cancel, Retry, Open/Show in
folder).

The card has one fixed height whatever the state, so a transfer that changes state never
changes the height of its row (list views do not re-measure rows on `dataChanged`).
Buttons are painted; `action_at` maps a click position back to the action.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from pathlib import PurePath

from PySide6.QtCore import QCoreApplication, QPointF, QRectF, Qt
from PySide6.QtGui import QColor, QFont, QFontMetricsF, QPainter, QPainterPath, QPen

from app.gui.theme import colors as theme_colors
from app.gui.views.transfer_text import fraction_done, progress_text, state_text, summary_text
from app.node.api import Transfer, TransferState

PAD = 12.0
ICON_W = 34.0
ICON_H = 42.0
BAR_H = 6.0
GAP = 8.0
BUTTON_PAD_X = 12.0
BUTTON_PAD_X_MIN = 7.0  # compact buttons, when the full ones do not fit
BUTTON_GAP = 6.0


def _tr(text: str) -> str:
    return QCoreApplication.translate("Transfers", text)


class TransferAction(Enum):
    """What a card's button asks for."""

    ACCEPT = "accept"
    DECLINE = "decline"
    CANCEL = "cancel"
    PAUSE = "pause"
    RESUME = "resume"
    RETRY = "retry"
    OPEN = "open"
    SHOW_IN_FOLDER = "show-in-folder"


def action_label(action: TransferAction) -> str:
    """The button's text."""
    labels = {
        TransferAction.ACCEPT: "Accept",
        TransferAction.DECLINE: "Decline",
        TransferAction.CANCEL: "Cancel",
        TransferAction.PAUSE: "Pause",
        TransferAction.RESUME: "Resume",
        TransferAction.RETRY: "Retry",
        TransferAction.OPEN: "Open",
        TransferAction.SHOW_IN_FOLDER: "Show in folder",
    }
    return _tr(labels[action])


def actions_for(transfer: Transfer | None) -> list[TransferAction]:
    """The buttons a transfer offers in its current state."""
    if transfer is None:
        return []
    state = transfer.state
    if state == TransferState.OFFERED:
        if transfer.outgoing:
            return [TransferAction.CANCEL]
        return [TransferAction.ACCEPT, TransferAction.DECLINE]
    if state == TransferState.RUNNING:
        if transfer.outgoing:
            return [TransferAction.CANCEL]
        return [TransferAction.PAUSE, TransferAction.CANCEL]
    if state in (TransferState.PAUSED, TransferState.FAILED) and transfer.outgoing:
        return [TransferAction.CANCEL]  # paused or failed on their side: theirs to resume
    if state == TransferState.PAUSED:
        return [TransferAction.RESUME, TransferAction.CANCEL]
    if state == TransferState.FAILED:
        return [TransferAction.RETRY, TransferAction.CANCEL]
    if state == TransferState.DONE and transfer.path:
        return [TransferAction.OPEN, TransferAction.SHOW_IN_FOLDER]
    return []


@dataclass(frozen=True)
class CardFonts:
    """The three fonts of a card."""

    name: QFont
    detail: QFont
    button: QFont

    @staticmethod
    def from_base(base: QFont) -> CardFonts:
        """Fonts derived from the view's font (as the message bubbles do)."""
        name = QFont(base)
        name.setPointSizeF(max(base.pointSizeF(), 10.5))
        name.setBold(True)
        detail = QFont(base)
        detail.setPointSizeF(name.pointSizeF() * 0.82)
        button = QFont(detail)
        button.setBold(True)
        return CardFonts(name, detail, button)


@dataclass(frozen=True)
class CardColors:
    """Colours of a card on its background (a bubble or a list row)."""

    ink: QColor
    muted: QColor
    bar: QColor
    track: QColor
    button: QColor
    button_text: QColor
    primary: QColor
    primary_text: QColor
    danger: QColor


def _alpha(color: str, alpha: float) -> QColor:
    result = QColor(color)
    result.setAlphaF(alpha)
    return result


def card_colors(on_accent: bool) -> CardColors:
    """Card colours for the current theme: on an accent-coloured bubble (our messages) or
    on a neutral background (their bubbles, the transfers list)."""
    c = theme_colors()
    if on_accent:
        return CardColors(
            ink=QColor(c.bubble_out_text),
            muted=_alpha(c.bubble_out_text, 0.78),
            bar=QColor(c.bubble_out_text),
            track=_alpha(c.bubble_out_text, 0.3),
            button=_alpha(c.bubble_out_text, 0.2),
            button_text=QColor(c.bubble_out_text),
            primary=QColor(c.bubble_out_text),
            primary_text=QColor(c.bubble_out),
            danger=QColor("#ffd7d2"),
        )
    return CardColors(
        ink=QColor(c.bubble_in_text),
        muted=QColor(c.muted),
        bar=QColor(c.accent),
        track=_alpha(c.bubble_in_text, 0.12),
        button=_alpha(c.bubble_in_text, 0.09),
        button_text=QColor(c.bubble_in_text),
        primary=QColor(c.accent),
        primary_text=QColor(c.accent_text),
        danger=QColor("#ff8a80" if c.dark else "#b42318"),
    )


def _line(font: QFont) -> float:
    return QFontMetricsF(font).height()


def button_height(fonts: CardFonts) -> float:
    """Height of a card's buttons."""
    return _line(fonts.button) + 10


def card_height(fonts: CardFonts) -> float:
    """The fixed height of a card (padding included)."""
    head = max(ICON_H, _line(fonts.name) + 2 + _line(fonts.detail))
    return PAD + head + GAP + BAR_H + 4 + _line(fonts.detail) + GAP + button_height(fonts) + PAD


@dataclass(frozen=True)
class CardLayout:
    """Where each part of a card goes."""

    icon: QRectF
    name: QRectF
    summary: QRectF
    bar: QRectF
    progress: QRectF
    footer: QRectF  # the button row
    meta: QRectF  # the caller's text (time and ticks, direction), right-aligned in it
    buttons: tuple[tuple[TransferAction, QRectF], ...]


def _button_widths(
    fonts: CardFonts, actions: list[TransferAction], room: float
) -> list[float] | None:
    """The buttons' widths with full padding, else compact; None if neither fits `room`."""
    metrics = QFontMetricsF(fonts.button)
    labels = [metrics.horizontalAdvance(action_label(a)) for a in actions]
    gaps = BUTTON_GAP * max(0, len(actions) - 1)
    for pad in (BUTTON_PAD_X, BUTTON_PAD_X_MIN):
        widths = [label + 2 * pad for label in labels]
        if sum(widths) + gaps <= room:
            return widths
    return None


def _squeezed_widths(fonts: CardFonts, actions: list[TransferAction], room: float) -> list[float]:
    """Compact widths scaled down to share `room` (their labels are then elided)."""
    metrics = QFontMetricsF(fonts.button)
    widths = [metrics.horizontalAdvance(action_label(a)) + 2 * BUTTON_PAD_X_MIN for a in actions]
    free = max(0.0, room - BUTTON_GAP * max(0, len(actions) - 1))
    scale = min(1.0, free / sum(widths)) if widths else 1.0
    return [w * scale for w in widths]


def _place_buttons(
    actions: list[TransferAction], widths: list[float], footer: QRectF
) -> tuple[tuple[TransferAction, QRectF], ...]:
    buttons: list[tuple[TransferAction, QRectF]] = []
    x = footer.left()
    for action, width in zip(actions, widths, strict=True):
        buttons.append((action, QRectF(x, footer.top(), width, footer.height())))
        x += width + BUTTON_GAP
    return tuple(buttons)


def layout_card(
    rect: QRectF, fonts: CardFonts, actions: list[TransferAction], meta_width: float = 0.0
) -> CardLayout:
    """Place a card's parts inside `rect` (whose height should be `card_height`).

    `meta_width` is the width of the caller's text (time and ticks, direction). It goes
    on the right of the button row when the buttons leave room for it, else on the right
    of the progress line (whose text is then shortened); the buttons never cover it."""
    inner = rect.adjusted(PAD, PAD, -PAD, -PAD)
    name_h, detail_h = _line(fonts.name), _line(fonts.detail)
    head = max(ICON_H, name_h + 2 + detail_h)
    icon = QRectF(inner.left(), inner.top() + (head - ICON_H) / 2, ICON_W, ICON_H)
    text_left = icon.right() + 10
    text_w = max(10.0, inner.right() - text_left)
    text_top = inner.top() + (head - name_h - 2 - detail_h) / 2
    name = QRectF(text_left, text_top, text_w, name_h)
    summary = QRectF(text_left, name.bottom() + 2, text_w, detail_h)
    bar = QRectF(inner.left(), inner.top() + head + GAP, inner.width(), BAR_H)
    progress = QRectF(inner.left(), bar.bottom() + 4, inner.width(), detail_h)
    footer = QRectF(inner.left(), progress.bottom() + GAP, inner.width(), button_height(fonts))
    beside = footer.width() - (meta_width + GAP if meta_width > 0 else 0.0)
    widths = _button_widths(fonts, actions, beside)
    if widths is not None:
        meta = QRectF(footer.right() - meta_width, footer.top(), meta_width, footer.height())
    else:  # the text moves up to the progress line, the buttons get the whole row
        meta = QRectF(progress.right() - meta_width, progress.top(), meta_width, detail_h)
        if meta_width > 0:
            progress.setRight(meta.left() - GAP)
        widths = _button_widths(fonts, actions, footer.width())
        if widths is None:
            widths = _squeezed_widths(fonts, actions, footer.width())
    buttons = _place_buttons(actions, widths, footer)
    return CardLayout(icon, name, summary, bar, progress, footer, meta, buttons)


def card_width(fonts: CardFonts, actions: list[TransferAction], footer_text: str) -> float:
    """The narrowest card that fits its buttons and footer text without overlap."""
    metrics = QFontMetricsF(fonts.button)
    buttons = sum(
        metrics.horizontalAdvance(action_label(a)) + 2 * BUTTON_PAD_X + BUTTON_GAP for a in actions
    )
    footer = QFontMetricsF(fonts.detail).horizontalAdvance(footer_text)
    return 2 * PAD + buttons + footer + 12


def action_at(layout: CardLayout, position: QPointF) -> TransferAction | None:
    """The button under `position`, if any."""
    for action, rect in layout.buttons:
        if rect.contains(position):
            return action
    return None


def extension_label(name: str) -> str:
    """Up to four letters of the file's extension, upper case ("" if none)."""
    suffix = PurePath(name.replace("\\", "/")).suffix.lstrip(".")
    return suffix[:4].upper()


def _paint_glyph(painter: QPainter, rect: QRectF, name: str, colors: CardColors) -> None:
    fold = 10.0
    path = QPainterPath()
    path.moveTo(rect.left(), rect.top() + 3)
    path.quadTo(rect.left(), rect.top(), rect.left() + 3, rect.top())
    path.lineTo(rect.right() - fold, rect.top())
    path.lineTo(rect.right(), rect.top() + fold)
    path.lineTo(rect.right(), rect.bottom() - 3)
    path.quadTo(rect.right(), rect.bottom(), rect.right() - 3, rect.bottom())
    path.lineTo(rect.left() + 3, rect.bottom())
    path.quadTo(rect.left(), rect.bottom(), rect.left(), rect.bottom() - 3)
    path.closeSubpath()
    fill = QColor(colors.ink)
    fill.setAlphaF(0.12)
    painter.setPen(QPen(colors.muted, 1.4))
    painter.setBrush(fill)
    painter.drawPath(path)
    corner = QPainterPath()
    corner.moveTo(rect.right() - fold, rect.top())
    corner.lineTo(rect.right() - fold, rect.top() + fold)
    corner.lineTo(rect.right(), rect.top() + fold)
    painter.drawPath(corner)
    label = extension_label(name)
    if label:
        font = QFont(painter.font())
        font.setPixelSize(9 if len(label) <= 3 else 8)
        font.setBold(True)
        painter.setFont(font)
        painter.setPen(colors.ink)
        text_rect = QRectF(rect.left(), rect.top() + fold + 2, rect.width(), rect.height() - fold)
        painter.drawText(text_rect, int(Qt.AlignmentFlag.AlignCenter), label)


def _elided(text: str, font: QFont, width: float) -> str:
    return QFontMetricsF(font).elidedText(text, Qt.TextElideMode.ElideMiddle, width)


def summary_line(transfer: Transfer, font: QFont, width: float) -> str:
    """The size-and-state line that fits `width`: the state alone when both do not fit
    (the state says what happens, the size is in the tooltip and, while the file moves,
    on the progress line), elided only if even the state is too long."""
    line = summary_text(transfer)
    if QFontMetricsF(font).horizontalAdvance(line) > width:
        line = state_text(transfer)
    return _elided(line, font, width)


def _progress_line(
    transfer: Transfer, font: QFont, width: float, delivered: bool, starting: bool
) -> str:
    """The progress line that fits `width`: without the file's size (shown above it) when
    the whole line does not fit, so that a narrow card still shows the speed and the time
    left instead of eliding them; elided only if even that is too long."""
    line = progress_text(transfer, delivered=delivered, starting=starting)
    if QFontMetricsF(font).horizontalAdvance(line) > width:
        line = progress_text(transfer, delivered=delivered, starting=starting, compact=True)
    return _elided(line, font, width)


def paint_card(
    painter: QPainter,
    layout: CardLayout,
    transfer: Transfer | None,
    name: str,
    fonts: CardFonts,
    colors: CardColors,
    footer_text: str = "",
    *,
    delivered: bool = True,
    starting: bool = False,
) -> None:
    """Paint a card; `transfer` None means the node has not described the file yet;
    `delivered` false: our offer has not reached the contact yet; `starting` true: it
    has just begun and has no speed yet (see `progress_text`)."""
    _paint_glyph(painter, layout.icon, name, colors)
    left = Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter
    painter.setFont(fonts.name)
    painter.setPen(colors.ink)
    painter.drawText(layout.name, int(left), _elided(name, fonts.name, layout.name.width()))
    painter.setFont(fonts.detail)
    painter.setPen(colors.muted)
    width = layout.summary.width()
    if transfer is not None:
        summary = summary_line(transfer, fonts.detail, width)
    else:
        summary = _elided(_tr("Preparing…"), fonts.detail, width)
    painter.drawText(layout.summary, int(left), summary)
    if transfer is not None and transfer.state in (
        TransferState.RUNNING,
        TransferState.PAUSED,
        TransferState.FAILED,
        TransferState.DONE,
    ):
        _paint_bar(painter, layout.bar, fraction_done(transfer), transfer.state, colors)
    if transfer is not None:
        failed = transfer.state == TransferState.FAILED
        painter.setFont(fonts.detail)
        painter.setPen(colors.danger if failed else colors.muted)
        width = layout.progress.width()
        text = _progress_line(transfer, fonts.detail, width, delivered, starting)
        painter.drawText(layout.progress, int(left), text)
    for action, rect in layout.buttons:
        _paint_button(painter, rect, action, fonts, colors)
    if footer_text:
        painter.setFont(fonts.detail)
        painter.setPen(colors.muted)
        right = Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter
        painter.drawText(layout.meta, int(right), footer_text)


def _paint_bar(
    painter: QPainter, rect: QRectF, fraction: float, state: TransferState, colors: CardColors
) -> None:
    radius = rect.height() / 2
    painter.setPen(Qt.PenStyle.NoPen)
    painter.setBrush(colors.track)
    painter.drawRoundedRect(rect, radius, radius)
    if fraction <= 0:
        return
    filled = QRectF(
        rect.left(), rect.top(), max(rect.height(), rect.width() * fraction), rect.height()
    )
    fill = QColor(colors.danger if state == TransferState.FAILED else colors.bar)
    if state == TransferState.PAUSED:
        fill.setAlphaF(0.55)
    painter.setBrush(fill)
    painter.drawRoundedRect(filled, radius, radius)


def _paint_button(
    painter: QPainter, rect: QRectF, action: TransferAction, fonts: CardFonts, colors: CardColors
) -> None:
    primary = action in (
        TransferAction.ACCEPT,
        TransferAction.OPEN,
        TransferAction.RESUME,
        TransferAction.RETRY,
    )
    painter.setPen(Qt.PenStyle.NoPen)
    painter.setBrush(colors.primary if primary else colors.button)
    painter.drawRoundedRect(rect, rect.height() / 2, rect.height() / 2)
    painter.setFont(fonts.button)
    painter.setPen(colors.primary_text if primary else colors.button_text)
    room = max(0.0, rect.width() - 2 * BUTTON_PAD_X_MIN)
    label = QFontMetricsF(fonts.button).elidedText(
        action_label(action), Qt.TextElideMode.ElideRight, room
    )
    painter.drawText(rect, int(Qt.AlignmentFlag.AlignCenter), label)
