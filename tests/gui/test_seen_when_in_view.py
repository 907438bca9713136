"""A message that arrives while the user reads further up in its conversation is not
seen: no read receipt, it counts as unread, and a button at the bottom of the list says
how many came; scrolling down (or the button) reads them. Found by a tester: scrolled up
in a long conversation, Bob's new message was marked read on Bob's side (and its unread
count never showed) though it was below, out of view, and nothing said it was there."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from gui_helpers import PASSPHRASE, options, wait_for
from test_presence import eventually, loopback_ice, window_of  # noqa: F401 (a fixture)

from app.gui.app import GuiSession
from app.node import api

EARLIER = 40  # enough to scroll


@pytest.mark.asyncio
@pytest.mark.usefixtures("loopback_ice")
async def test_a_message_below_the_view_is_read_only_once_scrolled_to(
    session: GuiSession, friend: api.InitResult, tmp_path: Path
) -> None:
    window = window_of(session)
    alice = session.node
    assert alice is not None
    async with api.host_node(options(tmp_path / "bob"), lambda: PASSPHRASE) as bob:
        me = await alice.whoami()
        await bob.add_contact(api.AddContact(me.invite))
        contact = (await alice.add_contact(api.AddContact((await bob.whoami()).invite))).contact
        for i in range(EARLIER):
            await bob.send_message(api.SendMessage(me.address, f"earlier {i}\nsecond line"))

        async def status_at_bob(message_id: str) -> api.MessageStatus | None:
            got = await bob.list_messages(api.ListMessages(me.address))
            return next((m.status for m in got if m.id == message_id), None)

        window.show()
        window.activateWindow()
        await wait_for(window.isActiveWindow)
        await wait_for(lambda: window.contacts.row_of(contact.address) >= 0)
        window.open_conversation(contact.address)
        await wait_for(lambda: window.messages.rowCount() >= EARLIER, timeout=30)
        bar = window.conversation.list.verticalScrollBar()
        await wait_for(lambda: bar.maximum() > 0 and bar.value() == bar.maximum())

        # the user reads further up; Bob writes again
        bar.setValue(bar.maximum() // 2)
        assert not window.conversation.following
        late = await bob.send_message(api.SendMessage(me.address, "are you there?"))

        async def arrived() -> bool:
            got = await status_at_bob(late.id)
            return got in (api.MessageStatus.DELIVERED, api.MessageStatus.READ)

        await eventually(arrived)
        await wait_for(lambda: window.messages.row_of(late.id) >= 0)
        await asyncio.sleep(1.0)  # a read receipt, if one were sent, would be back by now
        assert await status_at_bob(late.id) is api.MessageStatus.DELIVERED
        assert window.contacts.unread(contact.address) == 1
        button = window.conversation.newer_button
        assert button.isVisible() and button.text() == "↓ 1 new message"
        assert bar.value() < bar.maximum()  # the view did not jump to it

        # the button takes the user down: now it is seen
        button.click()
        await wait_for(lambda: bar.value() == bar.maximum())

        async def read() -> bool:
            return await status_at_bob(late.id) is api.MessageStatus.READ

        await eventually(read)
        assert window.contacts.unread(contact.address) == 0
        assert not button.isVisible()

        # while the user follows the newest, what arrives is read at once
        newest = await bob.send_message(api.SendMessage(me.address, "good"))

        async def newest_read() -> bool:
            return await status_at_bob(newest.id) is api.MessageStatus.READ

        await eventually(newest_read)
        assert not button.isVisible()
