"""A short message floating at the bottom of a pane, gone after a few seconds."""

from __future__ import annotations

from PySide6.QtCore import QEvent, QObject, QPoint, Qt, QTimer
from PySide6.QtWidgets import QLabel, QWidget

from app.gui.theme import colors

SHOW_MS = 6000


class Toast(QLabel):
    """Non-modal notice for results and errors (never a traceback)."""

    def __init__(self, parent: QWidget, above: QWidget | None = None) -> None:
        super().__init__(parent)
        self._above = above
        """What the notice floats above (the composer's bar), if not 96 pixels up; it
        is placed again when that grows."""
        if above is not None:
            above.installEventFilter(self)
        self.setObjectName("Toast")
        self.setWordWrap(True)
        self.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.setAttribute(Qt.WidgetAttribute.WA_TransparentForMouseEvents)
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.timeout.connect(self.hide)
        parent.installEventFilter(self)
        self.hide()

    def show_message(self, text: str, error: bool = False) -> None:
        """Show `text` for a few seconds."""
        c = colors()
        background = "#b42318" if error else ("#e8eaed" if c.dark else "#1f2228")
        ink = "#ffffff" if error or not c.dark else "#1b1d21"
        self.setStyleSheet(
            f"background: {background}; color: {ink}; border-radius: 12px; padding: 10px 16px;"
        )
        self.setText(text)
        self.setAccessibleName(text)
        self._place()
        self.raise_()
        self.show()
        self._timer.start(SHOW_MS)

    def _place(self) -> None:
        parent = self.parentWidget()
        if parent is None:
            return
        width = min(520, parent.width() - 40)
        self.setFixedWidth(max(200, width))
        self.adjustSize()
        x = (parent.width() - self.width()) // 2
        bottom = parent.height() - 76
        if self._above is not None and self._above.isVisible():
            # a composer grown by its lines or a large font reached over the 96 pixels
            bottom = self._above.mapTo(parent, QPoint(0, 0)).y()
        y = bottom - 20 - self.height()
        self.move(max(0, x), max(0, y))

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if event.type() in (QEvent.Type.Resize, QEvent.Type.Move) and self.isVisible():
            self._place()
        return False
