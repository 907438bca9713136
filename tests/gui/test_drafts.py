"""What is typed in the message field belongs to the conversation it was typed in.
Found by a tester: half a message typed to Bob, a click on Carol, and the text was still
in the field, now under "Message Carol": Enter sent Bob's words to Carol."""

from __future__ import annotations

from pathlib import Path

import pytest
from gui_helpers import wait_for
from PySide6.QtCore import Qt
from pytestqt.qtbot import QtBot
from test_main_window import add_bob, node_of, open_chat

from app.gui.app import GuiSession
from app.node import api


async def _add_carol(session: GuiSession, tmp_path: Path) -> api.Contact:
    invite = api.init_profile(tmp_path / "carol", "Carol", None).whoami.invite
    return (await node_of(session).add_contact(api.AddContact(invite))).contact


@pytest.mark.asyncio
async def test_a_draft_stays_with_its_conversation(
    qtbot: QtBot, session: GuiSession, friend: api.InitResult, tmp_path: Path
) -> None:
    bob = await add_bob(session, friend)
    carol = await _add_carol(session, tmp_path)
    window = await open_chat(session, bob.address)
    composer = window.conversation.composer
    qtbot.keyClicks(composer, "the surprise party is on Friday")

    window = await open_chat(session, carol.address)
    assert composer.toPlainText() == ""  # nothing of Bob's here
    qtbot.keyClick(composer, Qt.Key.Key_Return)
    qtbot.keyClicks(composer, "hi Carol")

    window = await open_chat(session, bob.address)
    assert composer.toPlainText() == "the surprise party is on Friday"
    qtbot.keyClick(composer, Qt.Key.Key_Return)
    window = await open_chat(session, carol.address)
    assert composer.toPlainText() == "hi Carol"

    async def sent_to(address: str) -> list[str]:
        found = await node_of(session).list_messages(api.ListMessages(address))
        return [m.text for m in found]

    assert await sent_to(carol.address) == []
    assert await sent_to(bob.address) == ["the surprise party is on Friday"]
    await wait_for(lambda: window.messages.contact == carol.address)


@pytest.mark.asyncio
async def test_an_unsent_message_comes_back_to_its_own_conversation(
    qtbot: QtBot, session: GuiSession, friend: api.InitResult, tmp_path: Path
) -> None:
    """A message that could not be sent goes back to the field it came from, also when
    the user has gone to another conversation meanwhile (it was dropped)."""
    bob = await add_bob(session, friend)
    carol = await _add_carol(session, tmp_path)
    window = await open_chat(session, carol.address)
    pane = window.conversation
    pane.restore_unsent(bob.address, "could not go")  # as the bridge's sendFailed does
    assert pane.composer.toPlainText() == ""
    await open_chat(session, bob.address)
    assert pane.composer.toPlainText() == "could not go"
