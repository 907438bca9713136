"""What is typed in the message field belongs to the conversation it was typed in.
Found by a tester: half a message typed to Bob, a click on Carol, and the text was still
in the field, now under "Message Carol": Enter sent Bob's words to Carol."""

from __future__ import annotations

from pathlib import Path

import pytest
from gui_helpers import PASSPHRASE, options, wait_for
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


async def _restart(session: GuiSession, profile: Path) -> GuiSession:
    """Quit the app as Ctrl+Q does and start it again on the same profile."""
    await session.shutdown()
    again = GuiSession(options(profile))
    assert await again.attempt_unlock(PASSPHRASE) is None
    await again.start_window()
    return again


@pytest.mark.asyncio
async def test_drafts_survive_quitting_the_app(
    qtbot: QtBot, session: GuiSession, friend: api.InitResult, tmp_path: Path, profile: Path
) -> None:
    """Text typed and not sent is still there after the app is quit and started again:
    in the conversation left for another (stored at the switch) and in the one shown at
    quit (typed less than a second before: stored on the way out). They were lost."""
    bob = await add_bob(session, friend)
    carol = await _add_carol(session, tmp_path)
    window = await open_chat(session, bob.address)
    qtbot.keyClicks(window.conversation.composer, "the surprise party is on Friday")
    window = await open_chat(session, carol.address)
    qtbot.keyClicks(window.conversation.composer, "hi Carol, about Bob")

    again = await _restart(session, profile)
    try:
        window = await open_chat(again, carol.address)
        assert window.conversation.composer.toPlainText() == "hi Carol, about Bob"
        window = await open_chat(again, bob.address)
        assert window.conversation.composer.toPlainText() == "the surprise party is on Friday"
        # sent: no draft any more (the field emptied is stored at once)
        qtbot.keyClick(window.conversation.composer, Qt.Key.Key_Return)
        assert window.conversation.composer.toPlainText() == ""
        assert again.bridge is not None
        await again.bridge.drafts_kept()
        kept = {d.contact: d.text for d in await node_of(again).drafts()}
        assert kept == {carol.address: "hi Carol, about Bob"}
    finally:
        await again.shutdown()
