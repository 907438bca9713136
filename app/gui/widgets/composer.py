"""The message composer: Enter sends, Shift+Enter starts a new line, grows with the text
(its wrapped lines, or the placeholder's while empty, up to `MAX_LINES`)."""

from __future__ import annotations

import math

from PySide6.QtCore import QRect, QSize, QSizeF, Qt, Signal
from PySide6.QtGui import QKeyEvent, QResizeEvent
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

    def setPlaceholderText(self, text: str) -> None:
        super().setPlaceholderText(text)
        self.updateGeometry()

    def placeholder_lines(self) -> int:
        """Lines the placeholder takes at the current width while the box is empty (0
        otherwise): Qt wraps it at the box's width, as a name at a large font does in
        a narrow window, and its second line was cut in half."""
        text = self.placeholderText()
        if not text or not self.document().isEmpty():
            return 0
        margin = int(self.document().documentMargin())  # Qt draws it this far in
        room = QRect(0, 0, max(1, self.viewport().width() - margin), 100_000)
        metrics = self.fontMetrics()
        height = metrics.boundingRect(room, Qt.TextFlag.TextWordWrap, text).height()
        return math.ceil(height / metrics.lineSpacing())

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        if event.oldSize().width() != event.size().width() and self.placeholder_lines():
            self.updateGeometry()  # the placeholder may wrap differently at this width

    def sizeHint(self) -> QSize:
        lines = max(1, min(MAX_LINES, max(self.visual_lines(), self.placeholder_lines())))
        height = self.fontMetrics().lineSpacing() * lines
        margins = self.contentsMargins()
        frame = int(self.document().documentMargin() * 2) + margins.top() + margins.bottom()
        return QSize(super().sizeHint().width(), height + frame + 14)

    def minimumSizeHint(self) -> QSize:
        return self.sizeHint()
