"""Quitting while a dialog of the window is open closes the dialog first: the task that
awaits it ends, instead of being destroyed pending when the loop stops ("ERROR qasync:
Task was destroyed but it is pending!" at every such quit; Add contact was closed so
before, settings, invite and verify were not)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from gui_helpers import wait_for
from pytestqt.qtbot import QtBot

from app.gui.app import GuiSession
from app.gui.dialogs.invite import InviteDialog
from app.gui.dialogs.settings import SettingsDialog
from app.gui.dialogs.verify import VerifyDialog

pytestmark = pytest.mark.asyncio


def _opened(kind: type) -> Any:
    from PySide6.QtWidgets import QApplication

    shown = [w for w in QApplication.topLevelWidgets() if isinstance(w, kind) and w.isVisible()]
    return shown[0] if shown else None


@pytest.mark.parametrize("which", ["settings", "invite", "verify"])
async def test_quitting_with_a_dialog_open_ends_the_task_awaiting_it(
    qtbot: QtBot, session: GuiSession, which: str
) -> None:
    window = session.window
    assert window is not None and session.node is not None
    me = await session.node.whoami()
    opening: dict[str, tuple[Any, type]] = {
        "settings": (window.show_settings, SettingsDialog),
        "invite": (window.show_invite, InviteDialog),
        "verify": (lambda: window.show_verify(me.address), VerifyDialog),
    }
    open_it, kind = opening[which]
    task = open_it()
    assert isinstance(task, asyncio.Task)
    await wait_for(lambda: _opened(kind) is not None)
    window.dispose()
    await wait_for(task.done)
    assert task.exception() is None
    assert _opened(kind) is None
