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
from app.gui.main_window import MainWindow
from app.node import api

EARLIER = 40  # enough to scroll


def bounded_read_requests(window: MainWindow) -> list[str | None]:
    """From now on, the `up_to` of every read request the window sends, or the id of a
    request bounded by a message the window did not have (recorded as "unknown")."""
    asked: list[str | None] = []
    send = window.bridge.mark_read

    def recording(address: str, up_to: str | None = None) -> None:
        held = up_to is not None and window.messages.row_of(up_to) >= 0
        asked.append(up_to if up_to is None or held else "unknown")
        send(address, up_to)

    window.bridge.mark_read = recording  # type: ignore[method-assign]
    return asked


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
        asked = bounded_read_requests(window)
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
        # every read request (opening at the newest, the button, an arrival in view)
        # named a message the window had: one coalesced while a message arrived out of
        # view could reach the node after it and mark it read (failed so in CI, loaded)
        assert asked and all(up_to is not None and up_to != "unknown" for up_to in asked)


@pytest.mark.asyncio
@pytest.mark.usefixtures("loopback_ice")
async def test_a_conversation_opens_at_its_first_unread_message(
    session: GuiSession, friend: api.InitResult, tmp_path: Path
) -> None:
    """Found by a tester: 30 messages came while the user was away; opening the
    conversation showed the newest few at the bottom and marked all 30 read (read
    receipts too), the first 25 never seen. Now it opens at the first of them, under a
    "New messages" line, and they are read once the user has scrolled down to the end;
    a few that fit on the screen are read at once."""
    window = window_of(session)
    alice = session.node
    assert alice is not None
    async with api.host_node(options(tmp_path / "bob"), lambda: PASSPHRASE) as bob:
        me = await alice.whoami()
        await bob.add_contact(api.AddContact(me.invite))
        contact = (await alice.add_contact(api.AddContact((await bob.whoami()).invite))).contact
        await wait_for(lambda: window.contacts.row_of(contact.address) >= 0)

        async def status_at_bob(message_id: str) -> api.MessageStatus | None:
            got = await bob.list_messages(api.ListMessages(me.address))
            return next((m.status for m in got if m.id == message_id), None)

        def leave() -> None:  # the user goes elsewhere (no conversation shown)
            window.messages.close()
            window.right.setCurrentWidget(window.empty)

        # read before: opened once (it fits on the screen), then left
        before = await bob.send_message(api.SendMessage(me.address, "from before"))
        await wait_for(lambda: window.contacts.unread(contact.address) == 1, timeout=30)
        window.show()
        window.open_conversation(contact.address)

        async def before_read() -> bool:
            return await status_at_bob(before.id) is api.MessageStatus.READ

        await eventually(before_read)
        leave()
        sent = [
            await bob.send_message(api.SendMessage(me.address, f"while away {i}\nline two"))
            for i in range(EARLIER)
        ]
        await wait_for(lambda: window.contacts.unread(contact.address) == EARLIER, timeout=30)
        window.open_conversation(contact.address)
        await wait_for(lambda: window.messages.row_of(sent[-1].id) >= 0)
        await asyncio.sleep(0.5)
        pane = window.conversation
        assert await status_at_bob(sent[-1].id) is api.MessageStatus.DELIVERED
        assert window.contacts.unread(contact.address) == EARLIER
        first = pane._proxy.mapFromSource(window.messages.index(window.messages.row_of(sent[0].id)))
        assert pane.list.visualRect(first).top() == 0  # at the top of the view
        assert pane.delegate.first_unread == sent[0].id
        assert not pane.following
        assert pane.newer_button.text() == f"↓ {EARLIER} new messages"
        assert await status_at_bob(before.id) is api.MessageStatus.READ

        bar = pane.list.verticalScrollBar()
        bar.setValue(bar.maximum())

        async def read() -> bool:
            return await status_at_bob(sent[-1].id) is api.MessageStatus.READ

        await eventually(read)
        assert window.contacts.unread(contact.address) == 0
        assert not pane.newer_button.isVisible()

        # a few unread messages fit on the screen: read at once, the line still shows
        # where they start
        leave()
        few = [await bob.send_message(api.SendMessage(me.address, f"hi {i}")) for i in range(2)]
        await wait_for(lambda: window.contacts.unread(contact.address) == 2, timeout=30)
        window.open_conversation(contact.address)

        async def few_read() -> bool:
            return await status_at_bob(few[-1].id) is api.MessageStatus.READ

        await eventually(few_read)
        assert pane.delegate.first_unread == few[0].id
        assert window.contacts.unread(contact.address) == 0
        row = pane._proxy.mapFromSource(window.messages.index(window.messages.row_of(few[0].id)))
        marked = pane.list.visualRect(row).height()
        # answered: the line goes (and its room)
        pane.composer.setPlainText("hello again")
        pane.composer.submit()
        assert pane.delegate.first_unread is None
        await wait_for(lambda: pane.list.visualRect(row).height() < marked)


@pytest.mark.asyncio
async def test_the_new_messages_button_stays_at_the_bottom_of_the_list(
    session: GuiSession, friend: api.InitResult
) -> None:
    """The banner going (the contact verified) makes the list taller without resizing
    the pane: the button stayed where the list's bottom had been, over the messages."""
    assert session.node is not None
    window = window_of(session)
    bob = (await session.node.add_contact(api.AddContact(friend.whoami.invite))).contact
    window.show()
    window.open_conversation(bob.address)
    await wait_for(lambda: window.messages.contact == bob.address)
    pane = window.conversation
    pane.note_unseen()  # as the window does for a message that came below the view
    button = pane.newer_button
    viewport = pane.list.viewport()

    def gap() -> int:  # from the button's bottom to the bottom of the list's viewport
        return viewport.geometry().bottom() - button.geometry().bottom()

    await wait_for(lambda: button.isVisible() and pane.banner.isVisible())
    before, height = gap(), viewport.height()
    pane.banner.hide()
    await wait_for(lambda: viewport.height() > height)  # the list took the banner's room
    await asyncio.sleep(0.05)
    assert gap() == before
    assert button.isVisible()
