"""Typing indicators and read receipts between two real in-process nodes (loopback,
real DHT, real sessions): ephemeral signals inside the E2E session, never stored."""

from __future__ import annotations

import asyncio
import os
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import cbor2
import pytest
import pytest_asyncio
from test_messenger import Node, eventually, start_node, stop_node

from app.core.cid import Cid
from app.core.identity import IdentityKeys
from app.core.ledger import Ledger
from app.core.ledger_event import EventBody
from app.node.api import (
    AddContact,
    ListMessages,
    MarkRead,
    MessageStatus,
    MessageStatusChanged,
    SendMessage,
    SetTyping,
    ShareFiles,
    StorageFailed,
    TypingChanged,
    VerifyHistory,
)
from app.node.control import ControlServer, connect_control
from app.node.paths import ProfilePaths
from app.node.state_message import (
    ReadUpTo,
    StateMessage,
    TransferStatus,
    Typing,
    decode_plaintext,
)


@pytest_asyncio.fixture
async def linked(tmp_path: Path) -> AsyncIterator[tuple[Node, Node]]:
    """Alice and Bob, contacts of each other, connected with a session (one message)."""
    alice = await start_node(tmp_path, "Alice")
    bob = await start_node(tmp_path, "Bob")
    await bob.network.join_via(alice.network.endpoints())
    await bob.network.publish_presence()
    await alice.network.publish_presence()
    await bob.service.add_contact(AddContact((await alice.service.whoami()).invite))
    await alice.service.add_contact(AddContact((await bob.service.whoami()).invite))
    await alice.service.send_message(SendMessage("Bob", "hello"))
    await eventually(lambda: _statuses(alice, "Bob", {MessageStatus.DELIVERED}))
    yield alice, bob
    await stop_node(alice)
    await stop_node(bob)


async def _statuses(node: Node, contact: str, expected: set[MessageStatus]) -> bool:
    got = await node.service.list_messages(ListMessages(contact))
    return bool(got) and {m.status for m in got} == expected


def _typing(node: Node) -> list[tuple[str, bool]]:
    return [(e.contact, e.typing) for e in node.events if isinstance(e, TypingChanged)]


def _row_counts(node: Node) -> tuple[int, int]:
    """Rows in the messages and history tables, read straight from the database file."""
    conn = sqlite3.connect(node.service.store.paths.database)
    try:
        messages = conn.execute("SELECT COUNT(*) FROM messages").fetchone()[0]
        events = conn.execute("SELECT COUNT(*) FROM history_events").fetchone()[0]
    finally:
        conn.close()
    return int(messages), int(events)


@pytest.mark.asyncio
async def test_typing_reaches_the_contact_and_expires(linked: tuple[Node, Node]) -> None:
    alice, bob = linked
    bob.messenger.ephemeral.typing_expiry = 0.6
    sent_before = alice.messenger.stats["signals_sent"]
    await alice.service.set_typing(SetTyping("Bob", True))
    await eventually(lambda: _typing(bob) == [(alice.address, True)], timeout=5)
    # throttled: a second typing=True within 3 s is not sent
    await alice.service.set_typing(SetTyping("Bob", True))
    assert alice.messenger.stats["signals_sent"] == sent_before + 1
    # no refresh: it expires on Bob's side
    await eventually(lambda: _typing(bob) == [(alice.address, True), (alice.address, False)], 5)

    bob.messenger.ephemeral.typing_expiry = 60.0
    alice.messenger.ephemeral.typing_throttle = 0.0
    await alice.service.set_typing(SetTyping("Bob", True))
    await eventually(lambda: len(_typing(bob)) == 3, timeout=5)
    await alice.service.set_typing(SetTyping("Bob", False))  # the composer was cleared
    await eventually(lambda: _typing(bob)[-1] == (alice.address, False), timeout=5)

    await alice.service.set_typing(SetTyping("Bob", True))
    await eventually(lambda: _typing(bob)[-1] == (alice.address, True), timeout=5)
    await alice.service.send_message(SendMessage("Bob", "done typing"))  # sending stops it
    await eventually(lambda: _typing(bob)[-1] == (alice.address, False), timeout=5)
    await eventually(lambda: _statuses(alice, "Bob", {MessageStatus.DELIVERED}))
    assert bob.messenger.stats["malformed"] == 0


@pytest.mark.asyncio
async def test_a_typing_stop_the_full_disk_refuses_is_dropped_quietly(
    linked: tuple[Node, Node], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Sending a message ends "typing" in the background; when the session state that
    encrypts that signal can't be stored (the disk filled just then), the task failed
    with an error nobody awaited. It is dropped, like any ephemeral signal."""
    alice, bob = linked
    ephemeral = alice.messenger.ephemeral
    await alice.service.set_typing(SetTyping("Bob", True))
    spawned: list[Any] = []
    monkeypatch.setattr(ephemeral, "_spawn", spawned.append)

    async def disk_full(address: str, session: object) -> None:
        raise StorageFailed("Couldn't save to the profile database: the disk is full.")

    monkeypatch.setattr(ephemeral.sessions, "save", disk_full)
    ephemeral.message_sent(bob.address)
    [stop] = spawned
    await stop  # ends without an error


@pytest.mark.asyncio
async def test_typing_is_never_stored_nor_sent_without_a_connection(
    linked: tuple[Node, Node],
) -> None:
    alice, bob = linked
    before = (_row_counts(alice), _row_counts(bob))
    events_before = (await bob.service.verify_history(VerifyHistory("Alice"))).events
    alice.messenger.ephemeral.typing_throttle = 0.0
    for typing in (True, False, True, False):
        await alice.service.set_typing(SetTyping("Bob", typing))
    await eventually(lambda: len(_typing(bob)) == 4, timeout=5)
    assert (_row_counts(alice), _row_counts(bob)) == before
    assert (await bob.service.verify_history(VerifyHistory("Alice"))).events == events_before
    assert [m.text for m in await bob.service.list_messages(ListMessages("Alice"))] == ["hello"]
    # a contact with no live connection gets nothing: no queue, no retry, no mailbox
    stranger = IdentityKeys.from_seeds(os.urandom(32), os.urandom(32)).public.address
    sent = alice.messenger.stats["signals_sent"]
    await alice.messenger.set_typing(stranger, True)
    assert alice.messenger.stats["signals_sent"] == sent


@pytest.mark.asyncio
async def test_a_receipt_for_a_backlog_is_one_status_event_in_process_and_over_the_socket(
    linked: tuple[Node, Node],
) -> None:
    """A read receipt covering N messages published N events (a contact catching up on
    a long backlog flooded the event stream and the window): it is one now, naming all
    N, and a control-socket subscriber gets the same one."""
    alice, bob = linked
    path = ProfilePaths(alice.service.store.paths.root)
    server = ControlServer(alice.service, path)
    await server.start()
    client = await connect_control(path)
    try:
        assert client is not None
        stream = client.events().__aiter__()
        first = asyncio.ensure_future(stream.__anext__())
        await asyncio.sleep(0.2)  # subscribed before the messages go
        sent = [await alice.service.send_message(SendMessage("Bob", f"n{i}")) for i in range(12)]
        await eventually(lambda: _statuses(alice, "Bob", {MessageStatus.DELIVERED}))
        before = len(alice.events)
        await bob.service.mark_read(MarkRead("Alice"))
        await eventually(lambda: _statuses(alice, "Bob", {MessageStatus.READ}))
        read = [
            e
            for e in alice.events[before:]
            if isinstance(e, MessageStatusChanged) and e.status is MessageStatus.READ
        ]
        assert len(read) == 1
        assert set(read[0].ids) >= {m.id for m in sent}
        got = await asyncio.wait_for(first, 5)
        while not (isinstance(got, MessageStatusChanged) and got.status is MessageStatus.READ):
            got = await asyncio.wait_for(stream.__anext__(), 5)
        assert got == read[0]  # `more` travels in the JSON event
    finally:
        if client is not None:
            await client.close()
        await server.stop()


@pytest.mark.asyncio
async def test_mark_read_turns_the_senders_copies_read(linked: tuple[Node, Node]) -> None:
    alice, bob = linked
    for i in range(2):
        await alice.service.send_message(SendMessage("Bob", f"more {i}"))
    await eventually(lambda: _statuses(alice, "Bob", {MessageStatus.DELIVERED}))
    await bob.service.mark_read(MarkRead("Alice"))
    await eventually(lambda: _statuses(alice, "Bob", {MessageStatus.READ}))
    read = [e for e in alice.events if isinstance(e, MessageStatusChanged)]
    assert sum(len(e.ids) for e in read if e.status is MessageStatus.READ) == 3
    # the reader's own copies stay "received"
    assert await _statuses(bob, "Alice", {MessageStatus.RECEIVED})

    # never downgraded: a later delivery acknowledgement leaves READ alone
    later = await alice.service.send_message(SendMessage("Bob", "unread yet"))

    async def later_delivered() -> bool:
        got = {m.id: m.status for m in await alice.service.list_messages(ListMessages("Bob"))}
        return got.get(later.id) is MessageStatus.DELIVERED

    await eventually(later_delivered)
    got = await alice.service.list_messages(ListMessages("Bob"))
    assert [m.status for m in got] == [MessageStatus.READ] * 3 + [MessageStatus.DELIVERED]
    store = alice.service.store
    ids = [m.id for m in got]
    downgraded = await store.call(
        store.messages.advance_status, ids, MessageStatus.DELIVERED, (MessageStatus.SENT,)
    )
    assert downgraded == []


@pytest.mark.asyncio
async def test_a_file_read_last_turns_it_and_what_came_before_read(
    linked: tuple[Node, Node], tmp_path: Path
) -> None:
    alice, bob = linked
    for node in linked:  # as the daemon wires it: files travel as file events
        node.messenger.files = node.service.files
    (photo := tmp_path / "photo.jpg").write_bytes(os.urandom(5000))
    await alice.service.send_message(SendMessage("Bob", "look at this"))
    await alice.service.share_files(ShareFiles("Bob", [str(photo)]))

    async def bob_has_the_file() -> bool:
        return [m.text for m in await bob.service.list_messages(ListMessages("Alice"))][-1:] == [
            "photo.jpg"
        ]

    await eventually(bob_has_the_file)
    await bob.service.mark_read(MarkRead("Alice"))  # the newest thing Bob read is the file
    await eventually(lambda: _statuses(alice, "Bob", {MessageStatus.READ}))


@pytest.mark.asyncio
async def test_read_position_moves_forward_only_and_is_resent_on_greeting(
    linked: tuple[Node, Node],
) -> None:
    alice, bob = linked
    sent = bob.messenger.stats["signals_sent"]
    await bob.service.mark_read(MarkRead("Alice"))
    await eventually(lambda: _statuses(alice, "Bob", {MessageStatus.READ}))
    await bob.service.mark_read(MarkRead("Alice"))  # nothing new: no second receipt
    assert bob.messenger.stats["signals_sent"] == sent + 1

    newer = await alice.service.send_message(SendMessage("Bob", "second"))
    await eventually(lambda: _has_text(bob, "second"))
    # marked read with no network (an offline CLI), then the peers greet again
    await bob.service.store.call(bob.service.store.messages.mark_seen, alice.address)
    await bob.messenger._greet(alice.address)

    async def newer_read() -> bool:
        got = {m.id: m.status for m in await alice.service.list_messages(ListMessages("Bob"))}
        return got.get(newer.id) is MessageStatus.READ

    await eventually(newer_read)
    # a receipt for an event that is not Alice's is ignored
    ignored = alice.messenger.stats["read_ignored"]
    await alice.messenger.ephemeral.receive(bob.address, ReadUpTo(Cid.for_block(b"nothing")))
    assert alice.messenger.stats["read_ignored"] == ignored + 1


@pytest.mark.asyncio
async def test_typing_and_read_through_the_control_socket(linked: tuple[Node, Node]) -> None:
    alice, bob = linked
    paths = [ProfilePaths(n.service.store.paths.root) for n in (alice, bob)]
    servers = [ControlServer(n.service, p) for n, p in zip((alice, bob), paths, strict=True)]
    for server in servers:
        await server.start()
    clients = [await connect_control(p) for p in paths]
    try:
        alice_ctl, bob_ctl = clients
        assert alice_ctl is not None and bob_ctl is not None
        events = bob_ctl.events().__aiter__()
        first = asyncio.ensure_future(events.__anext__())
        await asyncio.sleep(0.2)  # subscribed before Alice types
        await alice_ctl.set_typing(SetTyping("Bob", True))
        got = await asyncio.wait_for(first, 5)
        while not isinstance(got, TypingChanged):
            got = await asyncio.wait_for(events.__anext__(), 5)
        assert got == TypingChanged(alice.address, True)
        await bob_ctl.mark_read(MarkRead("Alice"))
        await eventually(lambda: _statuses(alice, "Bob", {MessageStatus.READ}))
    finally:
        for client in clients:
            if client is not None:
                await client.close()
        for server in servers:
            await server.stop()


async def _has_text(node: Node, text: str) -> bool:
    return text in [m.text for m in await node.service.list_messages(ListMessages("Alice"))]


def test_plaintext_kinds_round_trip_and_old_state_messages_still_decode() -> None:
    keys = IdentityKeys.from_seeds(os.urandom(32), os.urandom(32))
    other = IdentityKeys.from_seeds(os.urandom(32), os.urandom(32))
    ledger = Ledger(keys.public.signing_key, other.public.signing_key)
    event = ledger.append(keys, EventBody.of("text", id="x", text="t"), 5)
    state = StateMessage([event.to_bytes()], list(ledger.heads()), True)
    assert decode_plaintext(state.encode()) == state
    assert decode_plaintext(Typing(True).encode()) == Typing(True)
    assert decode_plaintext(Typing(False).encode()) == Typing(False)
    assert decode_plaintext(ReadUpTo(event.cid).encode()) == ReadUpTo(event.cid)
    # {"t": "typing", "y": 1}, {"t": "read", "r": "x"}, {"t": "read", "r": b"\0"}
    for bad in (b"\xa2atftypingay\x01", b"\xa2atdreadaraax", b"\xa2atdreadar\x41\x00", b"\xff"):
        with pytest.raises(ValueError):
            decode_plaintext(bad)
    status = TransferStatus("ab" * 16, "failed", "disk_full")
    assert decode_plaintext(status.encode()) == status
    for fields in (
        {"t": "xfer", "i": "a" * 65, "s": "paused", "r": ""},  # id too long
        {"t": "xfer", "i": "", "s": "paused", "r": ""},
        {"t": "xfer", "i": 7, "s": "paused", "r": ""},
        {"t": "xfer", "i": "x", "s": "done", "r": ""},  # done is told by a history event
        {"t": "xfer", "i": "x", "s": "failed", "r": "\x1b]0;owned\x07"},  # free text
        {"t": "xfer", "i": "x", "s": "failed"},
        {"t": "xfer", "i": "x", "s": "paused", "r": "", "d": -1},
        {"t": "xfer", "i": "x", "s": "paused", "r": "", "d": "lots"},
    ):
        with pytest.raises(ValueError):
            decode_plaintext(cbor2.dumps(fields))
