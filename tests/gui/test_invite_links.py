"""An invite link clicked outside the app opens the Add contact dialog filled with it:
who it is from is shown, nothing is added before Add, a link that can't be added says
why inline; a second `scrambled-eggs eggs:...` hands it to the running window."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest
from gui_helpers import PASSPHRASE, options, wait_for
from PySide6.QtCore import Qt, QUrl
from PySide6.QtGui import QFileOpenEvent, QGuiApplication
from PySide6.QtWidgets import QApplication, QWidget
from pytestqt.qtbot import QtBot

from app.gui.app import GuiSession, LinkOpenEvents
from app.gui.bridge import NodeBridge
from app.gui.dialogs.add_contact import AddContactDialog
from app.gui.dialogs.first_run import FirstRunDialog
from app.gui.dialogs.unlock import UnlockDialog
from app.gui.main_window import MainWindow
from app.node import api

ROOT = Path(__file__).resolve().parents[2]


def altered(invite: str) -> str:
    """`invite` with its name changed after it was signed."""
    assert "n=Bob&" in invite
    return invite.replace("n=Bob&", "n=Bot&")


@pytest.mark.asyncio
async def test_a_link_fills_the_dialog_shows_who_it_is_and_adds_only_on_add(
    qtbot: QtBot, node: api.NodeApi, friend: api.InitResult
) -> None:
    invite = friend.whoami.invite
    QGuiApplication.clipboard().setText("eggs:something-else-copied-earlier")
    dialog = AddContactDialog(NodeBridge(node), link=invite)
    qtbot.addWidget(dialog)
    dialog.show()
    await wait_for(dialog.isVisible)
    assert dialog.invite.toPlainText() == invite  # the link, not the clipboard
    assert not dialog.error.isVisible()
    fingerprint = api.read_invite(invite).fingerprint
    assert dialog.preview.isVisible()
    assert dialog.preview.text() == f"Invite from Bob\nFingerprint {fingerprint}"
    await asyncio.sleep(0.3)
    assert await node.list_contacts() == []  # shown, not added
    await wait_for(dialog.add_button.isEnabled)  # a moment after the link came
    qtbot.mouseClick(dialog.add_button, Qt.MouseButton.LeftButton)
    await wait_for(lambda: dialog.result() == AddContactDialog.DialogCode.Accepted)
    assert [c.name for c in await node.list_contacts()] == ["Bob"]


@pytest.mark.asyncio
async def test_links_that_cant_be_added_say_why_inline_and_add_nothing(
    qtbot: QtBot, node: api.NodeApi, friend: api.InitResult
) -> None:
    invite = friend.whoami.invite
    QGuiApplication.clipboard().setText("")
    cases = [
        ("eggs:" + "a" * 100_000, "", "too long to be an invite"),
        ("https://example.invalid/add?eggs:", "", "not an invite link"),
        (invite[:30] + "\x1b[2J\r" + invite[30:], "", "control characters"),
        (altered(invite), altered(invite), "changed after it was made"),
    ]
    for link, kept, words in cases:
        dialog = AddContactDialog(NodeBridge(node), link=link)
        qtbot.addWidget(dialog)
        dialog.show()
        await wait_for(dialog.isVisible)
        assert dialog.error.isVisible() and words in dialog.error.text(), dialog.error.text()
        assert len(dialog.error.text()) < 200
        assert dialog.invite.toPlainText() == kept  # only a link that could be one is shown
        assert not dialog.preview.isVisible()
        await wait_for(dialog.add_button.isEnabled)
        qtbot.mouseClick(dialog.add_button, Qt.MouseButton.LeftButton)
        await asyncio.sleep(0.3)
        assert dialog.error.isVisible()
        assert dialog.result() != AddContactDialog.DialogCode.Accepted
        dialog.reject()
    assert await node.list_contacts() == []
    # the preview follows what is typed: a whole invite shows who, a damaged one nothing
    dialog = AddContactDialog(NodeBridge(node))
    qtbot.addWidget(dialog)
    dialog.show()
    dialog.invite.setPlainText(invite)
    assert dialog.preview.isVisible() and "Bob" in dialog.preview.text()
    dialog.invite.setPlainText(invite[:-4])
    assert not dialog.preview.isVisible()


async def dialog_with(window: MainWindow, link: str) -> AddContactDialog:
    await wait_for(lambda: window._add_dialog is not None and window._add_dialog.isVisible())
    dialog = window._add_dialog
    assert dialog is not None
    await wait_for(lambda: dialog.invite.toPlainText() == link)
    return dialog


@pytest.mark.asyncio
async def test_a_link_given_at_start_waits_for_the_unlocked_window(
    qtbot: QtBot, profile: Path, friend: api.InitResult
) -> None:
    invite = friend.whoami.invite
    session = GuiSession(options(profile), link=invite)
    try:
        session.open_link(invite)  # before the profile is open: kept, nothing shown
        assert session.window is None
        assert await session.attempt_unlock(PASSPHRASE) is None
        window = await session.start_window()
        dialog = await dialog_with(window, invite)
        assert dialog.preview.isVisible()
        assert session.node is not None and await session.node.list_contacts() == []
        dialog.reject()
    finally:
        await session.shutdown()


def second_start(profile: Path, link: str) -> subprocess.CompletedProcess[str]:
    """`scrambled-eggs --profile PROFILE LINK` as a desktop runs it for a clicked link."""
    env = {k: v for k, v in os.environ.items() if k != api.PASSPHRASE_ENV}
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.run(
        [sys.executable, "-m", "app", "--profile", str(profile), link],
        capture_output=True,
        text=True,
        env=env,
        stdin=subprocess.DEVNULL,
        timeout=60,
    )


@pytest.mark.asyncio
async def test_a_second_start_with_a_link_hands_it_to_the_running_window(
    qtbot: QtBot, profile: Path, friend: api.InitResult, monkeypatch: pytest.MonkeyPatch
) -> None:
    invite = friend.whoami.invite
    monkeypatch.setenv(api.PASSPHRASE_ENV, PASSPHRASE)  # no unlock dialog in the test
    session = GuiSession(options(profile))
    running = asyncio.ensure_future(session.run())
    try:
        await wait_for(lambda: session._window_ready, timeout=30)
        window = session.window
        assert window is not None
        window.hide()  # in the tray
        done = await asyncio.to_thread(second_start, profile, invite)
        assert done.returncode == 0, done.stderr
        assert "open in the Scrambled Eggs window" in done.stdout
        dialog = await dialog_with(window, invite)
        assert window.isVisible()  # brought back from the tray
        assert session.node is not None and await session.node.list_contacts() == []
        # another link while the dialog is open: the same dialog shows it
        done = await asyncio.to_thread(second_start, profile, altered(invite))
        assert done.returncode == 0, done.stderr
        await wait_for(lambda: dialog.invite.toPlainText() == altered(invite))
        assert window._add_dialog is dialog and dialog.error.isVisible()
        # garbage never reaches the window
        done = await asyncio.to_thread(second_start, profile, "eggs:" + "x" * 50_000)
        assert done.returncode == 1 and "too long" in done.stderr
        assert dialog.invite.toPlainText() == altered(invite)
        dialog.reject()
        assert await session.node.list_contacts() == []
    finally:
        if session.window is not None:
            session.window.request_quit()
        assert await asyncio.wait_for(running, 30) == 0


@pytest.mark.asyncio
async def test_macos_hands_a_clicked_link_to_the_app_as_a_file_open_event(
    qtbot: QtBot, session: GuiSession, friend: api.InitResult
) -> None:
    invite = friend.whoami.invite
    app = QApplication.instance()
    assert app is not None
    events = LinkOpenEvents(session)
    app.installEventFilter(events)
    try:
        QApplication.sendEvent(app, QFileOpenEvent(QUrl.fromLocalFile("/tmp/a-file.txt")))
        await asyncio.sleep(0.2)
        assert session.window is not None and session.window._add_dialog is None  # not a link
        QApplication.sendEvent(app, QFileOpenEvent(QUrl(invite)))
        dialog = await dialog_with(session.window, invite)  # percent-encoding kept as sent
        assert "Bob" in dialog.preview.text()
        dialog.reject()
    finally:
        app.removeEventFilter(events)


@pytest.mark.asyncio
async def test_a_link_swapped_in_under_the_users_click_is_not_added(
    qtbot: QtBot, node: api.NodeApi, friend: api.InitResult, tmp_path: Path
) -> None:
    """A page can open links one after another: the one the user reads can be replaced
    just as they press Add. Add waits a moment after each link from outside."""
    mallory = api.init_profile(tmp_path / "mallory", "Mallory", PASSPHRASE).whoami.invite
    dialog = AddContactDialog(NodeBridge(node), link=friend.whoami.invite)
    qtbot.addWidget(dialog)
    dialog.show()
    await wait_for(dialog.add_button.isEnabled)  # read, about to press Add...
    dialog.use_link(mallory)  # ...when another link arrives
    qtbot.mouseClick(dialog.add_button, Qt.MouseButton.LeftButton)
    qtbot.keyClick(dialog.name, Qt.Key.Key_Return)
    await asyncio.sleep(0.3)
    assert await node.list_contacts() == []
    assert "Mallory" in dialog.preview.text()
    await wait_for(dialog.add_button.isEnabled)  # seen for a moment: Add works again
    qtbot.mouseClick(dialog.add_button, Qt.MouseButton.LeftButton)
    await wait_for(lambda: dialog.result() == AddContactDialog.DialogCode.Accepted)
    assert [c.name for c in await node.list_contacts()] == ["Mallory"]


def shown(kind: type[QWidget]) -> list[QWidget]:
    return [w for w in QApplication.topLevelWidgets() if isinstance(w, kind) and w.isVisible()]


async def opened_after(session: GuiSession, invite: str) -> None:
    """The session's window, once up, shows the Add contact dialog with `invite`; the
    app then quits."""
    await wait_for(lambda: session._window_ready, timeout=30)
    assert session.window is not None
    dialog = await dialog_with(session.window, invite)
    assert "Bob" in dialog.preview.text()
    assert session.node is not None and await session.node.list_contacts() == []
    dialog.reject()


@pytest.mark.asyncio
async def test_a_link_on_the_first_start_opens_once_the_profile_is_created(
    qtbot: QtBot, tmp_path: Path, friend: api.InitResult
) -> None:
    invite = friend.whoami.invite
    session = GuiSession(options(tmp_path / "new"), link=invite)
    running = asyncio.ensure_future(session.run())
    try:
        await wait_for(lambda: shown(FirstRunDialog), timeout=20)
        [first_run] = shown(FirstRunDialog)
        assert isinstance(first_run, FirstRunDialog)
        assert not shown(AddContactDialog)  # no profile yet: the link waits
        qtbot.keyClicks(first_run.name, "Dora")
        qtbot.keyClicks(first_run.passphrase_edit, PASSPHRASE)
        qtbot.keyClicks(first_run.repeat_edit, PASSPHRASE)
        qtbot.mouseClick(first_run.create_button, Qt.MouseButton.LeftButton)
        await opened_after(session, invite)
    finally:
        if session.window is not None:
            session.window.request_quit()
        assert await asyncio.wait_for(running, 30) == 0


@pytest.mark.asyncio
async def test_a_link_to_a_locked_profile_opens_once_it_is_unlocked(
    qtbot: QtBot, profile: Path, friend: api.InitResult
) -> None:
    invite = friend.whoami.invite
    session = GuiSession(options(profile), link=invite)
    running = asyncio.ensure_future(session.run())
    try:
        await wait_for(lambda: shown(UnlockDialog), timeout=20)
        [unlock] = shown(UnlockDialog)
        assert isinstance(unlock, UnlockDialog)
        assert not shown(AddContactDialog)
        qtbot.keyClicks(unlock.passphrase, PASSPHRASE)
        qtbot.mouseClick(unlock.unlock_button, Qt.MouseButton.LeftButton)
        await opened_after(session, invite)
    finally:
        if session.window is not None:
            session.window.request_quit()
        assert await asyncio.wait_for(running, 30) == 0
