"""A one-line label that shortens its text with "…" to the width it is given, instead of
widening its layout or being cut off mid-word."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QResizeEvent
from PySide6.QtWidgets import QLabel, QSizePolicy, QWidget


class ElidedLabel(QLabel):
    """`set_full_text` keeps the whole text (also the accessible description); the label
    shows as much of it as fits, and while shortened, the whole text as its tooltip
    (unless a tooltip of its own was set)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._full = ""
        self._tip = ""  # the tooltip this class set (the whole text), if any
        self.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)

    def full_text(self) -> str:
        """The text before shortening."""
        return self._full

    def set_full_text(self, text: str) -> None:
        """Show `text`, shortened to the current width."""
        self._full = text
        self.setAccessibleDescription(text)
        self._elide()

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        self._elide()

    def _elide(self) -> None:
        shown = self.fontMetrics().elidedText(self._full, Qt.TextElideMode.ElideRight, self.width())
        if shown != self.text():
            self.setText(shown)
        if self.toolTip() in ("", self._tip):  # not a tooltip set by the label's owner
            self._tip = self._full if shown != self._full else ""
            self.setToolTip(self._tip)
