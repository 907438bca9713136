"""The app's life: pick the profile, create or unlock it, host the node in-process, show
the window, and shut everything down cleanly on quit.

`run_gui` is what `python -m app` calls without a subcommand.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from contextlib import AsyncExitStack
from pathlib import Path

import qasync
from PySide6.QtCore import QByteArray, QCoreApplication, QEvent, QObject, QSettings, QTimer
from PySide6.QtGui import QFileOpenEvent
from PySide6.QtWidgets import QApplication, QDialog, QMessageBox, QWidget

from app.gui.asyncqt import run_dialog, signal_future
from app.gui.bridge import NodeBridge, describe_error
from app.gui.dialogs.first_run import FirstRunDialog
from app.gui.dialogs.unlock import UnlockDialog
from app.gui.main_window import MainWindow
from app.gui.resources import app_icon
from app.gui.theme import ThemeManager
from app.gui.window_place import fit_on_screen
from app.node.api import (
    DaemonOptions,
    NodeApi,
    NodeError,
    NoWindow,
    Protection,
    WrongPassphrase,
    host_node,
    inspect_profile,
    one_app,
    opening_links,
    passphrase_from_env,
    resolve_profile,
)

log = logging.getLogger(__name__)
APP_NAME = "Scrambled Eggs"


def _tr(text: str) -> str:
    return QCoreApplication.translate("GuiSession", text)


class GuiSession(QObject):
    """One run of the desktop app over one profile."""

    def __init__(
        self, options: DaemonOptions, themes: ThemeManager | None = None, link: str | None = None
    ) -> None:
        super().__init__()
        self.options = options
        self.themes = themes
        self.node: NodeApi | None = None
        self.bridge: NodeBridge | None = None
        self.window: MainWindow | None = None
        self._stack = AsyncExitStack()
        self._link = link
        """An invite link to show in the Add contact dialog once the window is ready."""
        self._window_ready = False

    def open_link(self, link: str) -> bool:
        """An invite link clicked outside the app (given at start, sent by a second
        `scrambled-eggs eggs:...`, or by macOS): the window comes to the front with the
        Add contact dialog filled with it; kept until the window is ready (after the
        first-run or unlock dialog: then False). Nothing is added until the user presses
        Add."""
        self._link = link
        if self._window_ready:
            self._show_link()
            return True
        self.come_forward()
        return False

    def come_forward(self) -> None:
        """A second start of the app on this profile asked to see it (it exits): the
        window comes to the front, or, before it is up, the first-run or unlock dialog
        (or a message about it) the user has to answer first."""
        window = self.window
        if window is not None and (self._window_ready or window.isVisible()):
            if window.isMinimized():
                window.showNormal()
            window.show()  # from the tray too
            window.raise_()
            window.activateWindow()
        for widget in QApplication.topLevelWidgets():  # above it, what waits for an answer
            if isinstance(widget, QDialog) and widget.isVisible():
                widget.raise_()
                widget.activateWindow()

    @property
    def window_ready(self) -> bool:
        """Whether the window is up with the node's data (after `start_window`)."""
        return self._window_ready

    def _show_link(self) -> None:
        link, self._link = self._link, None
        if link is not None and self.window is not None:
            self.window.open_invite_link(link)

    # ------------------------------------------------------------------ steps

    async def attempt_unlock(self, passphrase: str | None) -> str | None:
        """Host the node with `passphrase` (None: keyring or key file). Returns None once
        the node runs, or a sentence saying why it didn't."""
        source = None if passphrase is None else (lambda: passphrase)
        try:
            self.node = await self._stack.enter_async_context(host_node(self.options, source))
        except WrongPassphrase:
            return _tr("That passphrase doesn't unlock this profile. Try again.")
        except Exception as exc:
            return describe_error(exc)
        return None

    async def hold_profile(self) -> bool:
        """Hold the profile for this app from now on, before any dialog (one app per
        profile, decision 0032). False: another process holds it; this start handed it
        its link (or asked it to come to the front) and is over, or was told why not."""
        try:
            return await self._stack.enter_async_context(one_app(self.options.profile, self._link))
        except NoWindow:
            await self.tell_in_use(inspect_profile(self.options.profile).holder)
        except NodeError as exc:
            await self.tell(str(exc), critical=True)
        return False

    async def tell_in_use(self, holder: str) -> None:
        """Say that another process runs the profile (a headless `daemon`, or an app
        that did not answer)."""
        # the holder may be a window or a headless `daemon`: "switch to that window"
        # alone sent someone who ran the daemon looking for a window that isn't there
        process = _tr(" (process {0})").format(holder) if holder else ""
        await self.tell(
            _tr(
                "Scrambled Eggs is already running with the profile in {0}{1}: in "
                "another window (look in the system tray too) or as a "
                "'scrambled-eggs daemon'. Switch to that window or stop the daemon, then "
                "try again."
            ).format(self.options.profile, process),
            critical=True,
        )

    async def open_profile(self, early_window: bool = False) -> bool:
        """Create (first run) or unlock the profile and start the node. False: the user
        gave up or something they must fix was shown to them. With `early_window`, a
        profile that needs no passphrase gets its window at once, in a "starting" state,
        while the node comes up."""
        profile = self.options.profile
        try:
            info = inspect_profile(profile)
        except NodeError as exc:
            await self.tell(str(exc), critical=True)
            return False
        if info.in_use:
            await self.tell_in_use(info.holder)
            return False
        if info.exists and self.themes is not None and self.themes.choice != info.theme:
            self.themes.apply(info.theme)  # the unlock dialog and early window look as chosen
        passphrase: str | None = None
        if not info.exists:
            first_run = FirstRunDialog(profile)
            if not await run_dialog(first_run) or first_run.result_info is None:
                return False
            if first_run.result_info.warning:
                await self.tell(
                    first_run.result_info.warning,
                    headline=QCoreApplication.translate(
                        "GuiSession", "Your profile has no passphrase"
                    ),
                )
            passphrase = first_run.passphrase
            info = inspect_profile(profile)
        if info.protection != Protection.PASSPHRASE:
            if early_window:
                self.show_window()
                await asyncio.sleep(0.02)  # let it paint before the node's start-up work
            problem = await self.attempt_unlock(None)
            if problem is not None:
                if self.window is not None:
                    self.window.hide()
                await self.tell(problem, critical=True)
                return False
            return True
        candidate = passphrase if passphrase is not None else passphrase_from_env()
        first_error = None
        if candidate is not None:
            first_error = await self.attempt_unlock(candidate)
            if first_error is None:
                return True
        unlock = UnlockDialog(str(profile), self.attempt_unlock, first_error)
        return bool(await run_dialog(unlock)) and self.node is not None

    def show_window(self) -> MainWindow:
        """Show the main window (in a "starting" state until `start_window`)."""
        if self.window is None:
            self.bridge = NodeBridge(self.node)
            self.window = MainWindow(self.bridge, self.themes)
            restore_geometry(self.window, self._geometry_file)
        self.window.set_ready(False)
        self.window.show()
        return self.window

    @property
    def _geometry_file(self) -> Path:
        """Where the window's size and place are kept: the profile folder, in the clear
        (nothing else: which conversation was open would tell who one talks to)."""
        return Path(self.options.profile) / WINDOW_FILE

    async def start_window(self) -> MainWindow:
        """Wire the bridge to the running node and show the window with its data."""
        assert self.node is not None, "open_profile first"
        window = self.show_window()
        assert self.bridge is not None
        self.bridge.attach(self.node)
        await self.bridge.start()
        await window.load()
        window.set_ready(True)
        self._window_ready = True
        self._show_link()
        return window

    async def shutdown(self) -> None:
        """Close the window and stop the node (idempotent)."""
        self._window_ready = False
        if self.window is not None:
            save_geometry(self.window, self._geometry_file)
            self.window.conversation.flush_draft()  # typed in the last second: kept too
            self.window.dispose()
            self.window.hide()
        if self.bridge is not None:
            await self.bridge.drafts_kept()
            await self.bridge.stop()
        await self._stack.aclose()
        self.node = None
        if self.window is not None:
            # let Qt delete the window from its own loop, not the garbage collector later
            self.window.deleteLater()
            self.window = None
            self.bridge = None

    async def run(self) -> int:
        """The whole life of the app; returns the process exit code."""
        try:
            with opening_links(self.options.profile, self.open_link, self.come_forward):
                if not await self.hold_profile():
                    return 0
                if not await self.open_profile(early_window=True):
                    return 0 if self.node is None else 1
                window = await self.start_window()
                await signal_future(window.quitRequested)
                return 0
        finally:
            await self.shutdown()

    async def tell(self, text: str, critical: bool = False, headline: str | None = None) -> None:
        """A message box for things that happen before the main window exists; with a
        `headline`, a warning that says it in a few words above `text`. Paths in `text`
        are not broken across lines."""
        if critical:
            icon = QMessageBox.Icon.Critical
        else:
            icon = QMessageBox.Icon.Warning if headline else QMessageBox.Icon.Information
        box = QMessageBox(icon, APP_NAME, headline or _unbroken_paths(text))
        if headline:
            box.setInformativeText(_unbroken_paths(text))
        box.setWindowIcon(app_icon())
        await run_dialog(box)


def _unbroken_paths(text: str) -> str:
    """`text` with a word joiner after each path separator: Qt wraps lines after "/",
    which split a file's path over two lines."""
    return text.replace("/", "/\u2060").replace("\\", "\\\u2060")


WINDOW_FILE = "window.ini"


def restore_geometry(window: QWidget, path: Path) -> None:
    """Give `window` the size and place saved at `path`, if any (a damaged or foreign
    file is ignored: Qt checks what it restores)."""
    settings = QSettings(str(path), QSettings.Format.IniFormat)
    saved = settings.value("window/geometry")
    if isinstance(saved, QByteArray | bytes):
        window.restoreGeometry(QByteArray(saved))
        window.ensurePolished()  # its minimum size for the font in use (MainWindow)
        fit_on_screen(window)


def save_geometry(window: QWidget, path: Path) -> None:
    """Keep `window`'s size and place at `path` for the next start (best effort)."""
    if not path.parent.is_dir():
        return
    settings = QSettings(str(path), QSettings.Format.IniFormat)
    settings.setValue("window/geometry", window.saveGeometry())
    settings.sync()


def make_application(argv: list[str] | None = None) -> QApplication:
    """The QApplication with the app's name and icon."""
    existing = QApplication.instance()
    app = existing if isinstance(existing, QApplication) else QApplication(argv or sys.argv)
    app.setApplicationName(APP_NAME)
    app.setApplicationDisplayName(APP_NAME)
    app.setDesktopFileName("scrambled-eggs")
    app.setWindowIcon(app_icon())
    app.setQuitOnLastWindowClosed(False)  # quitting is the session's job (tray, Ctrl+Q)
    return app


class LinkOpenEvents(QObject):
    """macOS hands a clicked `eggs:` link (CFBundleURLTypes in the bundle's Info.plist)
    to the running app as a `QFileOpenEvent` with a url(), not on the command line."""

    def __init__(self, session: GuiSession) -> None:
        super().__init__()
        self._session = session

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if event.type() == QEvent.Type.FileOpen and isinstance(event, QFileOpenEvent):
            url = event.url()
            if url.scheme().lower() == "eggs":
                # as the link was written: percent-encoded, as an invite carries its name
                self._session.open_link(bytes(url.toEncoded().data()).decode("ascii"))
                return True
        return super().eventFilter(watched, event)


def run_gui(profile_arg: str | None, link: str | None = None) -> int:
    """Open the desktop app on the chosen profile; returns the exit code. `link`: an
    invite link to show in the Add contact dialog once the window is up."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    app = make_application()
    themes = ThemeManager(app)
    themes.apply("system")
    loop = qasync.QEventLoop(app)
    asyncio.set_event_loop(loop)
    session = GuiSession(DaemonOptions(profile=resolve_profile(profile_arg)), themes, link)
    link_events = LinkOpenEvents(session)
    app.installEventFilter(link_events)

    wake = QTimer()  # lets Python run its signal handlers while Qt is waiting
    wake.start(300)
    wake.timeout.connect(lambda: None)
    with loop:
        running = loop.create_task(session.run())

        def stop(*_: object) -> None:
            if session.window is not None and session.window_ready:
                session.window.request_quit()
            else:
                # at a dialog, or while the node starts: end there, with what was
                # started stopped (stopping the loop left the app's socket behind and
                # logged its task "destroyed but it is pending")
                loop.call_soon_threadsafe(running.cancel)

        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(ValueError, OSError):
                signal.signal(sig, stop)
        try:
            return int(loop.run_until_complete(running))
        except asyncio.CancelledError:
            return 130


__all__ = ["GuiSession", "LinkOpenEvents", "make_application", "run_gui"]
