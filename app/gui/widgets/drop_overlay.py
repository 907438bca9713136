"""The "drop files here" layer shown over a conversation while files are dragged onto it,
and the helper that turns dropped data into local file paths."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QEvent, QMimeData, QObject, QRectF, Qt
from PySide6.QtGui import QColor, QFont, QPainter, QPaintEvent, QPen
from PySide6.QtWidgets import QWidget

from app.gui.theme import colors


def local_paths(mime: QMimeData) -> list[Path]:
    """The local files and folders in dropped data (remote URLs are ignored), in order,
    without duplicates."""
    if not mime.hasUrls():
        return []
    seen: set[Path] = set()
    paths: list[Path] = []
    for url in mime.urls():
        if not url.isLocalFile():
            continue
        path = Path(url.toLocalFile())
        if path not in seen:
            seen.add(path)
            paths.append(path)
    return paths


class DropOverlay(QWidget):
    """A translucent panel with a dashed frame covering its parent; transparent to the mouse
    so the parent keeps receiving the drag events."""

    def __init__(self, parent: QWidget) -> None:
        super().__init__(parent)
        self.setObjectName("DropOverlay")
        self.setAttribute(Qt.WidgetAttribute.WA_TransparentForMouseEvents)
        self.setAccessibleName(self.tr("Drop files to share"))
        self._title = self.tr("Drop files to share")
        self._detail = ""
        self.hide()
        parent.installEventFilter(self)

    def set_target(self, name: str) -> None:
        """Name the contact the files would go to."""
        self._detail = self.tr("They will be offered to {0}").format(name) if name else ""

    def show_over_parent(self) -> None:
        """Cover the parent and show."""
        parent = self.parentWidget()
        if parent is not None:
            self.setGeometry(parent.rect())
        self.raise_()
        self.show()

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        parent = self.parentWidget()
        if parent is not None and watched is parent and event.type() == QEvent.Type.Resize:
            self.setGeometry(parent.rect())
        return False

    def paintEvent(self, event: QPaintEvent) -> None:
        c = colors()
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        veil = QColor(c.window)
        veil.setAlphaF(0.9)
        painter.fillRect(self.rect(), veil)
        frame = QRectF(self.rect()).adjusted(18, 18, -18, -18)
        pen = QPen(QColor(c.accent), 2.5, Qt.PenStyle.DashLine)
        painter.setPen(pen)
        tint = QColor(c.accent)
        tint.setAlphaF(0.08)
        painter.setBrush(tint)
        painter.drawRoundedRect(frame, 18, 18)
        title = QFont(self.font())
        title.setPointSizeF(title.pointSizeF() * 1.6)
        title.setBold(True)
        painter.setFont(title)
        painter.setPen(QColor(c.accent))
        upper = QRectF(frame.left(), frame.center().y() - 40, frame.width(), 40)
        painter.drawText(upper, int(Qt.AlignmentFlag.AlignCenter), self._title)
        painter.setFont(self.font())
        painter.setPen(QColor(c.muted))
        lower = QRectF(frame.left(), frame.center().y() + 4, frame.width(), 28)
        painter.drawText(lower, int(Qt.AlignmentFlag.AlignCenter), self._detail)
        painter.end()
