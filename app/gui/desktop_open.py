"""Opening a file or folder with the desktop's default application, and telling when no
application took it.

On Linux and the BSDs Qt hands the path to `xdg-open` and reports success as soon as that
script has started, so a desktop with no application for the file (xdg-open prints "no
method available" and exits 3) left the user clicking "Open" with nothing happening.
There `xdg-open` is run here and its exit status watched instead. It exits at once when it
hands the file over (GNOME's gio, KDE's kde-open) or fails; on a bare desktop it runs the
chosen application in the foreground, so an exit after `WATCH_SECONDS` is that
application closing, not a failure to open. Elsewhere (Windows, macOS), Qt's answer is
already the system's.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

from PySide6.QtCore import QObject, QUrl, Signal
from PySide6.QtGui import QDesktopServices

WATCH_SECONDS = 10.0
"""An `xdg-open` that fails later than this opened the file (its application exited)."""


class DesktopOpener(QObject):
    """Opens paths with the desktop's default application; `failed` carries each path
    that none opened (the signal comes from the GUI thread)."""

    failed = Signal(str)
    _exited = Signal(str, int, float)  # path, exit status, seconds it ran (from a thread)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._exited.connect(self._check_exit)

    def open(self, path: Path) -> None:
        """Open `path`; `failed` follows if no application takes it."""
        command = _xdg_open()
        if command is None:
            if not QDesktopServices.openUrl(QUrl.fromLocalFile(str(path))):
                self.failed.emit(str(path))
            return
        started = time.monotonic()
        try:
            process = subprocess.Popen(
                [command, str(path)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,  # the application outlives us, and our Ctrl+C
                env=system_environment(),
            )
        except OSError:
            self.failed.emit(str(path))
            return
        # waited for in a thread: a foreground application may run for hours, and the
        # process must be reaped whenever it ends (daemon: it never holds up quitting)
        watcher = threading.Thread(
            target=self._wait,
            args=(process, str(path), started),
            name="xdg-open watcher",
            daemon=True,
        )
        watcher.start()

    def _wait(self, process: subprocess.Popen[bytes], path: str, started: float) -> None:
        status = process.wait()
        with contextlib.suppress(RuntimeError):  # the window went away meanwhile
            self._exited.emit(path, status, time.monotonic() - started)

    def _check_exit(self, path: str, status: int, seconds: float) -> None:
        if status != 0 and seconds < WATCH_SECONDS:
            self.failed.emit(path)


def _xdg_open() -> str | None:
    """The `xdg-open` to run on a freedesktop system, else None."""
    if sys.platform in ("win32", "darwin"):
        return None
    return shutil.which("xdg-open")


def system_environment() -> dict[str, str]:
    """Our environment for a program of the system's: an installer's build (PyInstaller)
    points `LD_LIBRARY_PATH` at its own copies of libraries, which the desktop's
    applications must not load; the value from before it started is restored."""
    env = dict(os.environ)
    if getattr(sys, "frozen", False):
        original = env.pop("LD_LIBRARY_PATH_ORIG", None)
        if original is None:
            env.pop("LD_LIBRARY_PATH", None)
        else:
            env["LD_LIBRARY_PATH"] = original
    return env
