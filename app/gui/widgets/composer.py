"""The message composer: Enter sends, Shift+Enter starts a new line, grows with the text
(its wrapped lines, up to `MAX_LINES`)."""

from __future__ import annotations

from PySide6.QtCore import QSize, QSizeF, Qt, Signal
from PySide6.QtGui import QKeyEvent
from PySide6.QtWidgets import QPlainTextEdit, QSizePolicy, QWidget

MAX_LINES = 6


class Composer(QPlainTextEdit):
    """A growing text box that emits `submitted(text)` on Enter."""

    submitted = Signal(str)
    pageRequested = Signal(int)  # -1: Page Up, 1: Page Down (the messages above scroll)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("Composer")
        self.setTabChangesFocus(True)
        self.setPlaceholderText(self.tr("Write a message…"))
        self.setAccessibleName(self.tr("Message"))
        self.setAccessibleDescription(self.tr("Enter sends, Shift+Enter starts a new line"))
        self.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAsNeeded)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        # the laid-out size changes with the text and with the width (wrapping)
        self.document().documentLayout().documentSizeChanged.connect(self._size_changed)

    def keyPressEvent(self, event: QKeyEvent) -> None:
        if event.key() in (Qt.Key.Key_PageUp, Qt.Key.Key_PageDown) and not event.modifiers():
            self.pageRequested.emit(-1 if event.key() == Qt.Key.Key_PageUp else 1)
            return
        enter = event.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter)
        if enter and not event.modifiers() & Qt.KeyboardModifier.ShiftModifier:
            self.submit()
            return
        if enter:  # Shift+Enter: a plain new line, not a paragraph separator
            self.insertPlainText("\n")
            return
        super().keyPressEvent(event)

    max_bytes: int | None = None
    """Text longer than this (UTF-8) is kept in the box, not submitted."""

    def too_long(self) -> bool:
        """Whether the text is over `max_bytes`."""
        limit = self.max_bytes
        return limit is not None and len(self.toPlainText().encode("utf-8", "replace")) > limit

    def submit(self) -> None:
        """Emit the text (if any, and not too long) and clear the box."""
        text = self.toPlainText()
        if not text.strip() or self.too_long():
            return
        self.submitted.emit(text)
        self.clear()

    def _size_changed(self, _size: QSizeF) -> None:
        self.updateGeometry()

    def visual_lines(self) -> int:
        """Lines the text takes at the current width: a wrapped paragraph counts each of
        its lines, not one."""
        count = 0
        block = self.document().begin()
        while block.isValid():
            count += max(1, block.lineCount())
            block = block.next()
        return count

    def sizeHint(self) -> QSize:
        lines = max(1, min(MAX_LINES, self.visual_lines()))
        height = self.fontMetrics().lineSpacing() * lines
        margins = self.contentsMargins()
        frame = int(self.document().documentMargin() * 2) + margins.top() + margins.bottom()
        return QSize(super().sizeHint().width(), height + frame + 14)

    def minimumSizeHint(self) -> QSize:
        return self.sizeHint()
