"""`MarkRead(contact, up_to)`: the window marks read what it showed, not a message that
arrived while its request was on the way. Found in CI: scrolled up, a message that came
meanwhile was marked read (with a read receipt to the sender) by the coalesced request
of the messages before it."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from app.core.identity import IdentityKeys
from app.node.api import ListMessages, MarkRead, Message, MessageStatus
from app.node.profile import create_profile, open_store
from app.node.service import NodeService
from app.node.storage.repositories import ContactRecord

BOB = IdentityKeys.from_seeds(b"\x07" * 32, b"\x17" * 32).public


def _received(i: int) -> Message:
    return Message(
        f"{i:032x}", BOB.address, BOB.address, False, f"line {i}", 100.0 + i, MessageStatus.RECEIVED
    )


@pytest.mark.asyncio
async def test_read_up_to_a_message_leaves_those_stored_after_it_unread(tmp_path: Path) -> None:
    root = tmp_path / "alice"
    create_profile(root, "Alice", None)
    store = open_store(root, None)
    store.contacts.add(ContactRecord(BOB.address, "Bob", BOB.signing_key, BOB.dh_key, (), False), 0)
    first = [_received(i) for i in range(3)]
    store.messages.add_many_if_absent(first, {m.id: (i + 1, f"{i}") for i, m in enumerate(first)})
    node = NodeService(store)
    try:
        late = _received(3)  # came while the window's request was on its way
        await node.store.call(node.store.messages.add_many_if_absent, [late], {late.id: (4, "3")})

        await node.mark_read(MarkRead("Bob", up_to=first[-1].id))
        assert await node.store.call(node.store.messages.unseen, [BOB.address]) == {BOB.address: 1}
        assert await node.store.call(node.store.messages.last_seen, BOB.address) == first[-1].id

        await node.mark_read(MarkRead("Bob", up_to="not a message of this conversation"))
        assert await node.store.call(node.store.messages.unseen, [BOB.address]) == {BOB.address: 1}

        await node.mark_read(MarkRead("Bob"))  # no bound: every one, as before
        assert await node.store.call(node.store.messages.unseen, [BOB.address]) == {BOB.address: 0}
        assert await node.store.call(node.store.messages.last_seen, BOB.address) == late.id
        assert len(await node.list_messages(ListMessages("Bob"))) == 4
    finally:
        node.close()
        await asyncio.to_thread(store.close)
