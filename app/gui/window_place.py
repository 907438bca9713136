"""Keep a top-level window on a screen that exists, whole: after its size and place are
restored from the last run (a smaller monitor, a laptop undocked, a new resolution), and
when a larger font raises its minimum size."""

from __future__ import annotations

from PySide6.QtCore import QMargins, QRect
from PySide6.QtGui import QGuiApplication, QScreen
from PySide6.QtWidgets import QWidget


def screen_for(window: QWidget) -> QScreen:
    """The screen under the window's centre; the primary one if it is on none (saved on a
    screen that is gone)."""
    found = QGuiApplication.screenAt(window.geometry().center())
    return found if found is not None else QGuiApplication.primaryScreen()


def room_for(window: QWidget, screen: QScreen | None = None) -> QRect:
    """Where the window's inside may go on `screen` (its own by default): the screen's
    available geometry less the window manager's frame around it (none known before the
    window is shown, or without a window manager)."""
    frame, inside = window.frameGeometry(), window.geometry()
    margins = QMargins(
        inside.left() - frame.left(),
        inside.top() - frame.top(),
        frame.right() - inside.right(),
        frame.bottom() - inside.bottom(),
    )
    return (screen or screen_for(window)).availableGeometry().marginsRemoved(margins)


def fit_on_screen(window: QWidget) -> None:
    """Shrink and move `window` so that it lies inside its screen's available geometry
    (Qt's restoreGeometry placed a window under a 25-pixel title bar it guessed, and a
    window at least as tall as the screen then ran past its bottom edge)."""
    room, inside = room_for(window), window.geometry()
    if room.contains(inside):
        return
    width = min(window.width(), room.width())
    height = min(window.height(), room.height())
    window.setMinimumSize(
        min(window.minimumWidth(), room.width()), min(window.minimumHeight(), room.height())
    )
    x = max(room.left(), min(inside.x(), room.right() + 1 - width))
    y = max(room.top(), min(inside.y(), room.bottom() + 1 - height))
    window.setGeometry(x, y, width, height)
