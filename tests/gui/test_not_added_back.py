"""A contact who has not added us back: Alice's window says so in the contact's row and
the conversation's banner, only once Bob's node told hers, and stops once he adds her.
Two real nodes in this process on loopback (Alice behind the GUI, Bob hosted beside)."""

from __future__ import annotations

from pathlib import Path

import pytest
from gui_helpers import PASSPHRASE, options, wait_for
from PySide6.QtCore import Qt
from test_presence import eventually, loopback_ice  # noqa: F401 (a fixture)

from app.gui.app import GuiSession
from app.node import api

ROW_WORDS = "has not added you yet"
BANNER_WORDS = "Bob has not added you yet: your messages wait until they do."


@pytest.mark.asyncio
@pytest.mark.usefixtures("loopback_ice")
async def test_the_window_says_bob_has_not_added_us_until_he_does(
    session: GuiSession, friend: api.InitResult, tmp_path: Path
) -> None:
    window, alice = session.window, session.node
    assert window is not None and alice is not None
    async with api.host_node(options(tmp_path / "bob"), lambda: PASSPHRASE) as bob:
        contact = (await alice.add_contact(api.AddContact((await bob.whoami()).invite))).contact
        await wait_for(lambda: window.contacts.row_of(contact.address) >= 0)
        window.open_conversation(contact.address)
        await wait_for(lambda: window.messages.contact == contact.address)

        def row_text() -> str:
            index = window.contacts.index(window.contacts.row_of(contact.address))
            return str(window.contacts.data(index, Qt.ItemDataRole.AccessibleTextRole))

        def banner() -> str:
            shown = window.conversation.banner.isVisibleTo(window)
            return window.conversation.banner_label.text() if shown else ""

        assert ROW_WORDS not in row_text() and BANNER_WORDS not in banner()
        sent = await alice.send_message(api.SendMessage(contact.address, "hello Bob"))

        async def told() -> bool:
            return ROW_WORDS in row_text() and BANNER_WORDS in banner()

        await eventually(told)
        index = window.contacts.index(window.contacts.row_of(contact.address))
        assert "share your invite" in str(window.contacts.data(index, Qt.ItemDataRole.ToolTipRole))
        await bob.add_contact(api.AddContact((await alice.whoami()).invite))

        async def delivered() -> bool:
            got = await alice.list_messages(api.ListMessages(contact.address))
            return [m.status for m in got if m.id == sent.id] == [api.MessageStatus.DELIVERED]

        await eventually(delivered)

        async def cleared() -> bool:
            return ROW_WORDS not in row_text() and BANNER_WORDS not in banner()

        await eventually(cleared)
