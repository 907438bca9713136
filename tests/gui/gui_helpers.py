"""Helpers shared by the GUI tests. A module with its own name (not `conftest`), so the
GUI tests import it correctly when pytest also loads another folder's conftest.py in the
same run (the `conftest` module name would then be taken by the last one loaded)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QMimeData, QPoint, QPointF, Qt, QUrl
from PySide6.QtGui import QColor, QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import QApplication, QWidget

from app.node import api

PASSPHRASE = "correct horse battery"


def luminance(colour: QColor) -> float:
    """WCAG 2 relative luminance of `colour`."""

    def channel(value: float) -> float:
        return value / 12.92 if value <= 0.03928 else ((value + 0.055) / 1.055) ** 2.4

    red, green, blue = (channel(c) for c in (colour.redF(), colour.greenF(), colour.blueF()))
    return 0.2126 * red + 0.7152 * green + 0.0722 * blue


def contrast(first: QColor, second: QColor) -> float:
    """WCAG 2 contrast ratio of two colours (1 to 21)."""
    light, dark = sorted((luminance(first), luminance(second)), reverse=True)
    return (light + 0.05) / (dark + 0.05)


def options(profile: Path) -> api.DaemonOptions:
    """Loopback only, no LAN discovery."""
    return api.DaemonOptions(profile=profile, listen="127.0.0.1:0", lan=False)


async def wait_for(predicate: Callable[[], object], timeout: float = 10.0) -> None:
    """Let the (qasync) loop run until `predicate()` is true."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


def drag_data(paths: list[Path]) -> QMimeData:
    """What a file manager puts on a drag of `paths` (plus a web link, to be ignored)."""
    mime = QMimeData()
    urls = [QUrl.fromLocalFile(str(p)) for p in paths]
    urls.append(QUrl("https://example.invalid/not-a-local-file.txt"))
    mime.setUrls(urls)
    return mime


def drop_files(target: QWidget, paths: list[Path]) -> tuple[QDragEnterEvent, QDropEvent]:
    """Drag `paths` onto `target` and drop them there (events sent as Qt would)."""
    mime = drag_data(paths)
    actions = Qt.DropAction.CopyAction
    enter = QDragEnterEvent(
        QPoint(50, 50), actions, mime, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier
    )
    QApplication.sendEvent(target, enter)
    drop = QDropEvent(
        QPointF(50, 50), actions, mime, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier
    )
    QApplication.sendEvent(target, drop)
    return enter, drop


class XdgOpen:
    """An `xdg-open` first on PATH, standing in for the desktop's file opener (a test
    machine has none, or a real one that would launch applications): it records each
    path it is given in `log` and exits with `status` (3: "no method available")."""

    def __init__(self, folder: Path, status: int = 0) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.log = folder / "opened.txt"
        script = folder / "xdg-open"
        script.write_text(f'#!/bin/sh\nprintf "%s\\n" "$1" >> "{self.log}"\nexit {status}\n')
        script.chmod(0o755)
        self.folder = folder

    def opened(self) -> list[str]:
        """The paths handed over so far."""
        return self.log.read_text().splitlines() if self.log.exists() else []
