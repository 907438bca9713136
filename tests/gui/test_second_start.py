"""A second start of the app on a profile whose first start sits at its first-run or
unlock dialog: the second hands its link (or only "come to the front") to the first
and ends; the first shows the link on "Add a contact" once its window is up
(decision 0032). The first is a real `GuiSession.run()`, the second the real
`python -m app` in another process."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from gui_helpers import PASSPHRASE, options, wait_for
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication, QMessageBox, QWidget
from pytestqt.qtbot import QtBot

from app.gui.app import GuiSession
from app.gui.dialogs.add_contact import AddContactDialog
from app.gui.dialogs.first_run import FirstRunDialog
from app.gui.dialogs.unlock import UnlockDialog
from app.node import api

ROOT = Path(__file__).resolve().parents[2]


def visible(kind: type[QWidget]) -> list[QWidget]:
    return [w for w in QApplication.topLevelWidgets() if isinstance(w, kind) and w.isVisible()]


async def second_start(profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`scrambled-eggs --profile PROFILE [LINK]` as a desktop runs it, in another process
    (in a thread: the first app must go on answering meanwhile)."""
    env = {k: v for k, v in os.environ.items() if k != api.PASSPHRASE_ENV}
    env["PYTHONPATH"] = str(ROOT)
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "app", "--profile", str(profile), *args],
        capture_output=True,
        text=True,
        env=env,
        stdin=subprocess.DEVNULL,
        timeout=120,
    )


@contextlib.asynccontextmanager
async def app_running(profile: Path) -> AsyncIterator[tuple[GuiSession, asyncio.Task[int]]]:
    """The first start: a real `GuiSession.run()` on `profile`, stopped at the end."""
    session = GuiSession(options(profile))
    running = asyncio.ensure_future(session.run())
    try:
        yield session, running
    finally:
        if not running.done():
            running.cancel()
            await asyncio.gather(running, return_exceptions=True)
        await session.shutdown()


async def focus_elsewhere(qtbot: QtBot) -> None:
    """The user is in another window when the second start comes."""
    elsewhere = QWidget()
    qtbot.addWidget(elsewhere)
    elsewhere.show()
    elsewhere.activateWindow()
    await wait_for(lambda: QApplication.activeWindow() is elsewhere)


@pytest.mark.slow
@pytest.mark.asyncio
async def test_a_link_clicked_while_the_app_asks_for_its_passphrase_goes_to_it(
    qtbot: QtBot, profile: Path, friend: api.InitResult
) -> None:
    invite = friend.whoami.invite
    async with app_running(profile) as (session, running):
        await wait_for(lambda: len(visible(UnlockDialog)) == 1, timeout=30)
        clicked = await second_start(profile, invite)
        assert clicked.returncode == 0, clicked.stderr
        assert len(visible(UnlockDialog)) == 1  # no second dialog, in this process or that
        (unlock,) = visible(UnlockDialog)
        assert isinstance(unlock, UnlockDialog)
        unlock.passphrase.setText(PASSPHRASE)
        qtbot.mouseClick(unlock.unlock_button, Qt.MouseButton.LeftButton)
        await wait_for(lambda: session.window is not None and session.window.isVisible(), 30)
        window = session.window
        assert window is not None
        await wait_for(lambda: window._add_dialog is not None and window._add_dialog.isVisible())
        dialog = window._add_dialog
        assert isinstance(dialog, AddContactDialog)
        await wait_for(lambda: dialog.invite.toPlainText() == invite)
        assert session.node is not None and await session.node.list_contacts() == []
        dialog.reject()
        window.request_quit()
        assert await running == 0
    assert not api.inspect_profile(profile).in_use


@pytest.mark.slow
@pytest.mark.asyncio
async def test_a_second_start_at_the_first_run_dialog_brings_it_forward(
    qtbot: QtBot, tmp_path: Path
) -> None:
    """A double click on the app: one first-run dialog, come to the front, not two that
    each make an identity (before, the second one's Create failed with "in use by another
    process ... commands go through it", or made its own when it came first)."""
    profile = tmp_path / "new"
    async with app_running(profile) as (_, running):
        await wait_for(lambda: len(visible(FirstRunDialog)) == 1, timeout=30)
        (first_run,) = visible(FirstRunDialog)
        await focus_elsewhere(qtbot)
        again = await second_start(profile)
        assert again.returncode == 0, again.stderr
        assert again.stdout == "" and again.stderr == ""  # quietly
        await wait_for(lambda: QApplication.activeWindow() is first_run)
        assert len(visible(FirstRunDialog)) == 1
        assert not api.inspect_profile(profile).exists
        first_run.reject()  # Quit
        assert await running == 0
    assert not api.inspect_profile(profile).in_use


def message_box() -> QMessageBox | None:
    for widget in visible(QMessageBox):
        assert isinstance(widget, QMessageBox)
        return widget
    return None


@pytest.mark.slow
@pytest.mark.asyncio
async def test_a_second_start_brings_the_running_window_forward(
    qtbot: QtBot, profile: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before, a second start with the window up said "already running ... switch to
    that window" and left the user to find it."""
    monkeypatch.setenv(api.PASSPHRASE_ENV, PASSPHRASE)
    async with app_running(profile) as (session, running):
        await wait_for(lambda: session.window_ready, timeout=30)
        window = session.window
        assert window is not None
        await focus_elsewhere(qtbot)
        again = await second_start(profile)
        assert again.returncode == 0, again.stderr
        assert again.stdout == "" and again.stderr == ""
        await wait_for(lambda: QApplication.activeWindow() is window)
        assert message_box() is None
        window.request_quit()
        assert await running == 0


@pytest.mark.slow
@pytest.mark.asyncio
async def test_the_app_started_beside_a_headless_daemon_says_so(
    qtbot: QtBot, profile: Path
) -> None:
    """One node per profile: the daemon has no window to bring forward, so the app says
    that a daemon runs the profile and ends."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), **{api.PASSPHRASE_ENV: PASSPHRASE})
    base = [sys.executable, "-m", "app", "--profile", str(profile)]
    daemon = subprocess.Popen(
        [*base, "daemon", "--listen", "127.0.0.1:0", "--no-lan"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        while True:  # up once its control socket answers
            status = await asyncio.to_thread(
                subprocess.run, [*base, "status", "--json"], env=env, capture_output=True, text=True
            )
            assert daemon.poll() is None, daemon.stderr.read() if daemon.stderr else ""
            if status.returncode == 0 and json.loads(status.stdout)["running"]:
                break
            await asyncio.sleep(0.2)
        session = GuiSession(options(profile))
        running = asyncio.ensure_future(session.run())
        await wait_for(lambda: message_box() is not None, timeout=30)
        box = message_box()
        assert box is not None
        assert "daemon" in box.text() and f"(process {daemon.pid})" in box.text()
        box.accept()
        assert await running == 0
        assert session.node is None
    finally:
        daemon.terminate()
        daemon.wait(30)
