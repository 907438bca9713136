"""The message composer: Enter sends, Shift+Enter starts a new line, grows with the text."""

from __future__ import annotations

from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QKeyEvent
from PySide6.QtWidgets import QPlainTextEdit, QSizePolicy, QWidget

MAX_LINES = 6


class Composer(QPlainTextEdit):
    """A growing text box that emits `submitted(text)` on Enter."""

    submitted = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("Composer")
        self.setTabChangesFocus(True)
        self.setPlaceholderText(self.tr("Write a message…"))
        self.setAccessibleName(self.tr("Message"))
        self.setAccessibleDescription(self.tr("Enter sends, Shift+Enter starts a new line"))
        self.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAsNeeded)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.document().contentsChanged.connect(self.updateGeometry)

    def keyPressEvent(self, event: QKeyEvent) -> None:
        enter = event.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter)
        if enter and not event.modifiers() & Qt.KeyboardModifier.ShiftModifier:
            self.submit()
            return
        if enter:  # Shift+Enter: a plain new line, not a paragraph separator
            self.insertPlainText("\n")
            return
        super().keyPressEvent(event)

    def submit(self) -> None:
        """Emit the text (if any) and clear the box."""
        text = self.toPlainText()
        if not text.strip():
            return
        self.submitted.emit(text)
        self.clear()

    def sizeHint(self) -> QSize:
        lines = max(1, min(MAX_LINES, self.document().blockCount()))
        height = self.fontMetrics().lineSpacing() * lines
        margins = self.contentsMargins()
        frame = int(self.document().documentMargin() * 2) + margins.top() + margins.bottom()
        return QSize(super().sizeHint().width(), height + frame + 14)

    def minimumSizeHint(self) -> QSize:
        return self.sizeHint()
