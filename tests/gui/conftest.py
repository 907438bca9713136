"""GUI test setup: offscreen Qt, no real keyring, qasync as the asyncio loop, temporary
profiles, and a node hosted in-process on loopback."""

from __future__ import annotations

import gc
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

os.environ["QT_QPA_PLATFORM"] = "offscreen"
os.environ["PYTHON_KEYRING_BACKEND"] = "keyring.backends.fail.Keyring"
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
os.environ.pop("SCRAMBLED_EGGS_PASSPHRASE", None)

import pytest
import pytest_asyncio
import qasync
from gui_helpers import PASSPHRASE, options
from PySide6.QtWidgets import QApplication

from app.node import api

_LOOPS: list[qasync.QEventLoop] = []
"""Every test's loop, kept until the session ends. A closed qasync loop still has Qt
timers registered for callbacks that had not fired (its `_SimpleTimer` only kills them
when they fire). If the loop were garbage-collected by the cyclic GC running in a worker
thread (the node's executor threads allocate too), Qt could not unregister those timers
from that thread and the next activation would hit a deleted object (a segfault in
`QTimerInfoList::activateTimers`, seen under load). Kept alive, its timers fire, find the
loop stopped, and are killed on the GUI thread."""


def _qt_loop() -> qasync.QEventLoop:
    app = QApplication.instance() or QApplication([])
    # as in the app: closing the last dialog must not stop the event loop under a test
    QApplication.setQuitOnLastWindowClosed(False)
    loop = qasync.QEventLoop(app)
    _LOOPS.append(loop)
    return loop


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_teardown(item: pytest.Item) -> Iterator[None]:
    """Free each test's garbage on the GUI thread, where Qt objects may be destroyed."""
    yield
    gc.collect()


def pytest_asyncio_loop_factories(config: pytest.Config, item: pytest.Item) -> dict[str, object]:
    return {"qasync": _qt_loop}


@pytest.fixture
def profile(tmp_path: Path) -> Path:
    """A passphrase-protected profile named Alice."""
    path = tmp_path / "alice"
    api.init_profile(path, "Alice", PASSPHRASE)
    return path


@pytest.fixture
def friend(tmp_path: Path) -> api.InitResult:
    """A second identity (never running) whose invite we can add."""
    return api.init_profile(tmp_path / "bob", "Bob", PASSPHRASE)


@pytest_asyncio.fixture
async def node(profile: Path) -> AsyncIterator[api.NodeApi]:
    """The real node hosted in this process on loopback."""
    async with api.host_node(options(profile), lambda: PASSPHRASE) as running:
        yield running


@pytest_asyncio.fixture
async def session(profile: Path, qtbot: object) -> AsyncIterator[object]:
    """A running GuiSession (real node, real bridge) with its main window shown."""
    from app.gui.app import GuiSession

    running = GuiSession(options(profile))
    assert await running.attempt_unlock(PASSPHRASE) is None
    await running.start_window()
    try:
        yield running
    finally:
        await running.shutdown()


@pytest.fixture(autouse=True)
def _themes_stay_with_their_test(qapp: QApplication) -> Iterator[None]:
    """Every ThemeManager follows the application font (a desktop font change re-applies
    its theme). The application outlives the tests, so a manager made by one test (a
    session's, a dark one) re-applied its theme at a later test's font change: after
    each test its managers stop following, and the font, sheet, palette and theme
    colours are put back."""
    import contextlib

    from PySide6.QtGui import QFont, QPalette

    from app.gui import theme

    font, sheet, palette = QFont(qapp.font()), qapp.styleSheet(), QPalette(qapp.palette())
    active = theme._active
    made: list[theme.ThemeManager] = []
    original_init = theme.ThemeManager.__init__

    def recording_init(self: theme.ThemeManager, app: QApplication) -> None:
        original_init(self, app)
        made.append(self)

    theme.ThemeManager.__init__ = recording_init  # type: ignore[method-assign]
    try:
        yield
    finally:
        theme.ThemeManager.__init__ = original_init  # type: ignore[method-assign]
        for manager in made:
            with contextlib.suppress(RuntimeError, TypeError):  # disconnected already
                qapp.fontChanged.disconnect(manager._on_font)
        if qapp.font() != font:
            qapp.setFont(font)
        if qapp.styleSheet() != sheet:
            qapp.setStyleSheet(sheet)
        qapp.setPalette(palette)
        theme._active = active
