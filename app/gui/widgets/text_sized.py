"""Pixel sizes that follow the text size: a text box's height in lines, a tool button's
icon. Each is set again whenever the widget's font changes (the theme's sheet applied
for a larger desktop font, or the desktop font changing while the app runs): sizes
fixed in pixels at 10 pt held under three lines of a 15 pt font, and left 22-pixel
icons beside 18 pt text."""

from __future__ import annotations

import math
from collections.abc import Callable

from PySide6.QtCore import QEvent, QObject, QSize
from PySide6.QtGui import QFontMetricsF
from PySide6.QtWidgets import QAbstractButton, QPlainTextEdit, QWidget

from app.gui.theme import text_scale

_REFIT_ON = (QEvent.Type.Polish, QEvent.Type.FontChange, QEvent.Type.StyleChange)


class _Refit(QObject):
    """Calls `fit` now and at each font or style change of `widget` (its child: it goes
    with the widget)."""

    def __init__(self, widget: QWidget, fit: Callable[[], None]) -> None:
        super().__init__(widget)
        self._fit = fit
        widget.installEventFilter(self)
        fit()

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if event.type() in _REFIT_ON:
            self._fit()
        return False


def height_of_lines(edit: QPlainTextEdit, lines: int) -> int:
    """The height of `edit` showing `lines` whole lines of its font with no scroll bar
    (a pixel height cut the last visible line in half, or held fewer lines at a larger
    font). Qt lays a plain text out in lines of whole pixels (the font's line spacing
    rounded up), with the document margin around them, and wants one pixel more before
    it says all of it is in view."""
    edit.ensurePolished()  # the style sheet's font and padding, not the ones before it
    margins = edit.contentsMargins()
    line = math.ceil(QFontMetricsF(edit.font()).lineSpacing())
    document = math.ceil(edit.document().documentMargin() * 2) + 1
    return line * lines + document + margins.top() + margins.bottom()


def show_lines(edit: QPlainTextEdit, lines: int) -> None:
    """Give `edit` the fixed height of `lines` lines of its text, at any font size."""
    _Refit(edit, lambda: edit.setFixedHeight(height_of_lines(edit, lines)))


def icon_for_text(button: QAbstractButton, pixels: int) -> None:
    """Show `button`'s icon `pixels` wide at a 10 pt font, grown with a larger one
    (`text_scale`)."""

    def fit() -> None:
        edge = round(pixels * text_scale(button))
        if button.iconSize() != QSize(edge, edge):
            button.setIconSize(QSize(edge, edge))

    _Refit(button, fit)
