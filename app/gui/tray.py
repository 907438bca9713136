"""The system tray icon: unread count on the icon and in the tooltip, show/hide, quit."""

from __future__ import annotations

from PySide6.QtCore import QObject, QRectF, Qt, Signal
from PySide6.QtGui import QAction, QColor, QFont, QIcon, QPainter
from PySide6.QtWidgets import QMenu, QSystemTrayIcon

from app.gui.resources import app_icon

ICON_EDGE = 64


def badged_icon(unread: int) -> QIcon:
    """The app icon with a red unread count in its corner (plain icon when 0)."""
    if unread <= 0:
        return app_icon()
    pixmap = app_icon().pixmap(ICON_EDGE, ICON_EDGE)
    painter = QPainter(pixmap)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    badge = QRectF(ICON_EDGE * 0.42, 0, ICON_EDGE * 0.58, ICON_EDGE * 0.58)
    painter.setPen(Qt.PenStyle.NoPen)
    painter.setBrush(QColor("#e5484d"))
    painter.drawEllipse(badge)
    font = QFont()
    font.setBold(True)
    font.setPixelSize(int(badge.height() * (0.55 if unread < 10 else 0.42)))
    painter.setFont(font)
    painter.setPen(QColor("#ffffff"))
    painter.drawText(
        badge, int(Qt.AlignmentFlag.AlignCenter), str(unread) if unread < 100 else "99+"
    )
    painter.end()
    return QIcon(pixmap)


class TrayIcon(QSystemTrayIcon):
    """Tray entry with Show/Hide and Quit; activating it toggles the window."""

    toggleRequested = Signal()
    quitRequested = Signal()

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(app_icon(), parent)
        self.unread = 0
        menu = QMenu()
        self._menu = menu
        self.show_action = QAction(self.tr("Show Scrambled Eggs"), menu)
        self.show_action.triggered.connect(self.toggleRequested)
        quit_action = QAction(self.tr("Quit"), menu)
        quit_action.triggered.connect(self.quitRequested)
        menu.addAction(self.show_action)
        menu.addSeparator()
        menu.addAction(quit_action)
        self.setContextMenu(menu)
        self.activated.connect(self._activated)
        self.set_unread(0)

    def _activated(self, reason: QSystemTrayIcon.ActivationReason) -> None:
        if reason == QSystemTrayIcon.ActivationReason.Trigger:
            self.toggleRequested.emit()

    def set_unread(self, unread: int) -> None:
        """Show the unread count on the icon and in the tooltip."""
        self.unread = unread
        self.setIcon(badged_icon(unread))
        if unread:
            self.setToolTip(self.tr("Scrambled Eggs — {0} unread").format(unread))
        else:
            self.setToolTip(self.tr("Scrambled Eggs"))
