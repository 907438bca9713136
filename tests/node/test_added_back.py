"""A contact who has not added us back: their node says so, ours shows it, and it goes
once they add us (and what waited is delivered). Real nodes on loopback."""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path

import pytest
from test_file_endings import Node, eventually, start_node, stop_node

from app import cli
from app.node.api import (
    AddContact,
    AddedBackChanged,
    ListMessages,
    MessageStatus,
    NodeEvent,
    RemoveContact,
    SendMessage,
)
from app.node.block_exchange import BlockExchange
from app.node.network import NOT_A_CONTACT


async def _not_added_back(node: Node, name: str) -> bool:
    [contact] = [c for c in await node.service.list_contacts() if c.name == name]
    return contact.not_added_back


async def _statuses(node: Node, name: str) -> set[MessageStatus]:
    return {m.status for m in await node.service.list_messages(ListMessages(name))}


@pytest.mark.asyncio
async def test_a_contact_who_has_not_added_us_is_shown_so_until_they_do(tmp_path: Path) -> None:
    alice = await start_node(tmp_path / "alice")
    bob = await start_node(tmp_path / "bob", join=alice.network)
    seen: list[object] = []
    marks = alice.messenger.added_back
    published = marks._publish

    def observed(event: NodeEvent) -> None:
        seen.append(event)
        published(event)

    marks._publish = observed
    try:
        await alice.service.add_contact(AddContact((await bob.service.whoami()).invite))
        await alice.service.send_message(SendMessage("bob", "do you know me?"))
        await eventually(lambda: _not_added_back(alice, "bob"))
        bob_address = (await bob.service.whoami()).address
        assert seen == [AddedBackChanged(bob_address, True)]
        [peer] = [p for p in await alice.service.peers() if p.address == bob_address]
        assert peer.not_added_back and peer.state == "connected"
        assert (await alice.service.status()).not_added_back == ["bob"]
        assert MessageStatus.DELIVERED not in await _statuses(alice, "bob")
        # Bob kept the stranger's connection, told it once, and learnt nothing more
        assert bob.messenger.added_back.stats["told"] == 1
        assert await bob.service.list_contacts() == []
        # Bob adds Alice: the mark goes and the waiting message is delivered
        await bob.service.add_contact(AddContact((await alice.service.whoami()).invite))

        async def delivered() -> bool:
            return await _statuses(alice, "bob") == {MessageStatus.DELIVERED}

        await eventually(delivered)
        assert not await _not_added_back(alice, "bob")
        assert seen[-1] == AddedBackChanged(bob_address, False)
        assert (await alice.service.status()).not_added_back == []
        assert [m.text for m in await bob.service.list_messages(ListMessages("alice"))] == [
            "do you know me?"
        ]
    finally:
        await stop_node(alice)
        await stop_node(bob)


@pytest.mark.asyncio
async def test_what_waits_for_a_contact_who_has_not_added_us_has_one_status(
    tmp_path: Path,
) -> None:
    """A message written before the connection to a contact who has not added us stayed
    "queued" (it waited for an answer to our greeting, which such a node never sends),
    one written once connected went out at once and said "sent". Both leave now: what
    never left goes with the greeting (docs/protocol.md, section 7)."""
    alice = await start_node(tmp_path / "alice")
    bob = await start_node(tmp_path / "bob", join=alice.network)
    try:
        await alice.service.add_contact(AddContact((await bob.service.whoami()).invite))
        await alice.service.send_message(SendMessage("bob", "before the connection"))
        await eventually(lambda: _not_added_back(alice, "bob"))
        await alice.service.send_message(SendMessage("bob", "once connected"))

        async def statuses() -> list[tuple[str, MessageStatus]]:
            found = await alice.service.list_messages(ListMessages("bob"))
            return [(m.text, m.status) for m in found]

        async def both_sent() -> bool:
            return {s for _, s in await statuses()} == {MessageStatus.SENT}

        await eventually(both_sent)
        assert bob.messenger.stats["stranger"] >= 2  # both reached Bob's node, unread
        # Bob adds Alice: both are delivered
        await bob.service.add_contact(AddContact((await alice.service.whoami()).invite))

        async def delivered() -> bool:
            return await _statuses(alice, "bob") == {MessageStatus.DELIVERED}

        await eventually(delivered)
        texts = [m.text for m in await bob.service.list_messages(ListMessages("alice"))]
        assert texts == ["before the connection", "once connected"]
    finally:
        await stop_node(alice)
        await stop_node(bob)


@pytest.mark.asyncio
async def test_a_contact_who_removed_us_is_shown_so(tmp_path: Path) -> None:
    alice = await start_node(tmp_path / "alice")
    bob = await start_node(tmp_path / "bob", join=alice.network)
    try:
        await bob.service.add_contact(AddContact((await alice.service.whoami()).invite))
        await alice.service.add_contact(AddContact((await bob.service.whoami()).invite))
        await alice.service.send_message(SendMessage("bob", "hi"))

        async def delivered() -> bool:
            return await _statuses(alice, "bob") == {MessageStatus.DELIVERED}

        await eventually(delivered)
        assert not await _not_added_back(alice, "bob")
        await bob.service.remove_contact(RemoveContact("alice"))
        await alice.service.send_message(SendMessage("bob", "still there?"))
        await eventually(lambda: _not_added_back(alice, "bob"))
    finally:
        await stop_node(alice)
        await stop_node(bob)


@pytest.mark.asyncio
async def test_silence_is_not_taken_for_not_added_back(tmp_path: Path) -> None:
    """A node that says nothing (an older one, or one that is off) is never marked."""
    alice = await start_node(tmp_path / "alice")
    bob = await start_node(tmp_path / "bob", join=alice.network)
    try:

        async def tells_nothing(conn: object) -> None:
            return None

        bob.messenger.added_back.tell_stranger = tells_nothing  # type: ignore[method-assign]
        await alice.service.add_contact(AddContact((await bob.service.whoami()).invite))
        await alice.service.send_message(SendMessage("bob", "hello?"))
        await eventually(lambda: bob.messenger.stats["stranger"] >= 1)
        await asyncio.sleep(1.0)  # room for a notice that must not come
        assert not await _not_added_back(alice, "bob")
    finally:
        await stop_node(alice)
        await stop_node(bob)


@pytest.mark.asyncio
async def test_an_older_node_drops_the_notice_unread() -> None:
    """A node before this one hands 0xb4 payloads to its block exchange, whose DONT_HAVE
    handler ignores one without a request id: nothing pending is touched."""

    class Recorder:
        def __init__(self) -> None:
            self.tagged: dict[int, object] = {}

        def on_tagged(self, tag: int, handler: object) -> None:
            self.tagged[tag] = handler

    network = Recorder()
    exchange = BlockExchange(network, None, None)  # type: ignore[arg-type]
    exchange.start()
    waiting: asyncio.Future[bytes | None] = asyncio.get_running_loop().create_future()
    exchange._pending[("egg", 0)] = (0xB3, waiting)
    await exchange._on_payload("egg", NOT_A_CONTACT)
    assert not waiting.done()
    assert exchange.stats == {"served": 0, "refused": 0, "received": 0}


@pytest.mark.asyncio
async def test_a_contact_whose_node_refuses_us_as_a_stranger_is_shown_so(tmp_path: Path) -> None:
    """Bob's node holds as many strangers' connections as it takes: it closes Alice's
    at once, saying why (a CLOSE reason every version sends): she is not his contact."""
    alice = await start_node(tmp_path / "alice")
    bob = await start_node(tmp_path / "bob", join=alice.network)
    try:
        bob.network.manager.max_strangers = 0
        await alice.service.add_contact(AddContact((await bob.service.whoami()).invite))
        await alice.service.send_message(SendMessage("bob", "let me in"))
        await eventually(lambda: _not_added_back(alice, "bob"))
        assert bob.messenger.stats["stranger"] == 0  # nothing reached Bob's messenger
    finally:
        await stop_node(alice)
        await stop_node(bob)


@pytest.mark.asyncio
async def test_the_cli_says_who_has_not_added_us_yet(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`contacts list`, `peers` and `status` on Alice's real node, before and after Bob
    adds her."""
    alice = await start_node(tmp_path / "alice")
    bob = await start_node(tmp_path / "bob", join=alice.network)
    words = "has not added you yet: messages wait until they do (share your invite)"
    text = argparse.Namespace(json=False, contacts_command="list")
    try:
        await alice.service.add_contact(AddContact((await bob.service.whoami()).invite))
        await alice.service.send_message(SendMessage("bob", "hello"))
        await eventually(lambda: _not_added_back(alice, "bob"))
        capsys.readouterr()
        await cli.cmd_contacts(text, alice.service)
        assert capsys.readouterr().out.rstrip("\n").endswith(f"\t{words}")
        await cli.cmd_peers(text, alice.service)
        assert "\tconnected\t" in (out := capsys.readouterr().out) and out.rstrip().endswith(words)
        await cli._print_status(text, alice.service)
        assert capsys.readouterr().out.splitlines()[-1] == f"bob {words}"
        await cli._print_status(argparse.Namespace(json=True), alice.service)
        assert json.loads(capsys.readouterr().out)["not_added_back"] == ["bob"]
        await bob.service.add_contact(AddContact((await alice.service.whoami()).invite))

        async def cleared() -> bool:
            return not await _not_added_back(alice, "bob")

        await eventually(cleared)
        for show in (cli.cmd_contacts, cli.cmd_peers, cli._print_status):
            await show(text, alice.service)
            assert words not in capsys.readouterr().out
    finally:
        await stop_node(alice)
        await stop_node(bob)
