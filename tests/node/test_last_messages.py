"""Every contact's newest message in one read (`last_messages`, the control socket's
`messages.last`): the window's list of conversations asked for each one in a call of its
own (three store reads per contact; bench/bench_window_load.py)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from app.core.identity import IdentityKeys
from app.node.api import ListMessages, Message, MessageStatus, RemoveContact, ShareFiles
from app.node.control import ControlServer, connect_control
from app.node.profile import create_profile, open_store
from app.node.service import NodeService
from app.node.storage.repositories import ContactRecord

BOB = IdentityKeys.from_seeds(b"\x07" * 32, b"\x17" * 32).public
CAROL = IdentityKeys.from_seeds(b"\x08" * 32, b"\x18" * 32).public
DAVE = IdentityKeys.from_seeds(b"\x09" * 32, b"\x19" * 32).public
ERIN = IdentityKeys.from_seeds(b"\x0a" * 32, b"\x1a" * 32).public


def _received(i: int, sender: str, when: float) -> Message:
    return Message(f"{i:032x}", sender, sender, False, f"line {i}", when, MessageStatus.RECEIVED)


@pytest_asyncio.fixture
async def service(tmp_path: Path) -> AsyncIterator[NodeService]:
    """Bob: three messages whose history order is neither the order they were stored
    in nor that of their times; Carol: one in the history, then a shared file (queued:
    listed last); Dave: none; Erin: removed (her conversation is kept, not listed)."""
    root = tmp_path / "alice"
    create_profile(root, "Alice", None)
    store = open_store(root, None)
    for who, name in ((BOB, "Bob"), (CAROL, "Carol"), (DAVE, "Dave"), (ERIN, "Erin")):
        record = ContactRecord(who.address, name, who.signing_key, who.dh_key, (), False)
        store.contacts.add(record, 0)
    bob = [_received(i, BOB.address, 5000.0 - i) for i in range(3)]
    order = {bob[0].id: (1, "a"), bob[1].id: (3, "c"), bob[2].id: (2, "b")}
    store.messages.add_many_if_absent(bob, order)
    carol = _received(10, CAROL.address, 10.0)
    store.messages.add_many_if_absent([carol], {carol.id: (1, "a")})
    erin = _received(20, ERIN.address, 20.0)
    store.messages.add_many_if_absent([erin], {erin.id: (1, "a")})
    node = NodeService(store)
    try:
        (tmp_path / "notes.txt").write_bytes(b"some notes")
        await node.share_files(ShareFiles("Carol", [str(tmp_path / "notes.txt")]))
        await node.remove_contact(RemoveContact("Erin"))
        yield node
    finally:
        node.close()
        await asyncio.to_thread(store.close)


async def _one_by_one(node: NodeService) -> dict[str, Message]:
    """What the window read before: a page of one message per contact."""
    newest = {}
    for contact in await node.list_contacts():
        page = await node.list_messages(ListMessages(contact.address, limit=1))
        if page:
            newest[contact.address] = page[-1]
    return newest


@pytest.mark.asyncio
async def test_each_contacts_newest_message_by_the_history_order(service: NodeService) -> None:
    newest = await service.last_messages()
    by_contact = {m.contact: m for m in newest}
    assert len(by_contact) == len(newest) == 2  # Dave has none, Erin was removed
    assert by_contact[BOB.address].text == "line 1"  # last in the history, not by time
    shared = by_contact[CAROL.address]
    assert shared.text == "notes.txt" and shared.transfer == shared.id  # queued: last
    assert by_contact == await _one_by_one(service)


@pytest.mark.asyncio
async def test_the_control_socket_answers_the_same(service: NodeService) -> None:
    paths = service.store.paths
    server = ControlServer(service, paths)
    await server.start()
    try:
        client = await connect_control(paths)
        assert client is not None
        try:
            assert await client.last_messages() == await service.last_messages()
        finally:
            await client.close()
    finally:
        await server.stop()
