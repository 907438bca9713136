"""Session messages handled apart from the connection's reader, in order per peer
(`app.node.peer_inbox`, `NetworkStack`)."""

from __future__ import annotations

import asyncio
import os

import pytest

from app.core.identity import IdentityKeys
from app.node.network import NetworkStack
from app.node.peer_inbox import PeerInboxes
from app.node.transport import TransportSettings


def new_identity() -> IdentityKeys:
    return IdentityKeys.from_seeds(os.urandom(32), os.urandom(32))


@pytest.mark.asyncio
async def test_each_peers_messages_are_handled_in_order_one_at_a_time() -> None:
    handled: list[tuple[str, bytes]] = []
    release = {"alice": asyncio.Event(), "bob": asyncio.Event()}
    busy: set[str] = set()

    async def handle(address: str, payload: bytes) -> None:
        assert address not in busy  # one at a time per peer
        busy.add(address)
        try:
            await release[address].wait()
            handled.append((address, payload))
        finally:
            busy.discard(address)

    inboxes = PeerInboxes(handle)
    for i in range(5):
        await inboxes.put("alice", b"a%d" % i)  # returns at once: the handler is stuck
    await inboxes.put("bob", b"b0")
    assert inboxes.waiting("alice") == 5
    release["bob"].set()  # alice's stuck message does not hold bob's
    await asyncio.sleep(0)
    while inboxes.waiting("bob"):
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.01)
    assert handled == [("bob", b"b0")]
    release["alice"].set()
    while inboxes.waiting("alice") or "alice" in busy:
        await asyncio.sleep(0.01)
    assert [p for a, p in handled if a == "alice"] == [b"a%d" % i for i in range(5)]
    await inboxes.close()


@pytest.mark.asyncio
async def test_a_full_queue_makes_the_reader_wait_and_a_failing_message_stops_nothing() -> None:
    release = asyncio.Event()
    handled: list[bytes] = []

    async def handle(address: str, payload: bytes) -> None:
        await release.wait()
        if payload == b"bad":
            raise RuntimeError("a bug while handling one message")
        handled.append(payload)

    inboxes = PeerInboxes(handle, max_waiting=2)
    await inboxes.put("alice", b"bad")  # taken by the handler at once
    await inboxes.put("alice", b"1")
    await inboxes.put("alice", b"2")
    third = asyncio.ensure_future(inboxes.put("alice", b"3"))
    await asyncio.sleep(0.05)
    assert not third.done()  # no room: the reader waits, as before for every message
    release.set()
    await asyncio.wait_for(third, 10)
    while inboxes.waiting("alice"):
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.01)
    assert handled == [b"1", b"2", b"3"]
    await inboxes.close()
    await inboxes.put("alice", b"after close")  # dropped
    assert inboxes.waiting("alice") == 0


@pytest.mark.asyncio
async def test_block_exchange_payloads_do_not_wait_for_a_session_message_being_handled() -> None:
    """A connection's reader waited for each session message to be handled (a commit,
    the contact's lock, an answer waiting for a shaped slot) before reading the WANTs
    and BLOCKs behind it: in a folder of small files most of a block's round trip. The
    messenger's handling now runs apart, and its messages stay in order."""
    settings = TransportSettings(prefer_websocket=True)
    stacks = [NetworkStack(new_identity(), settings=settings) for _ in range(2)]
    alice, bob = stacks
    stuck = asyncio.Event()
    messages: list[bytes] = []
    tagged: asyncio.Queue[bytes] = asyncio.Queue()

    async def slow_messenger(address: str, payload: bytes) -> None:
        await stuck.wait()
        messages.append(payload)

    async def on_want(address: str, payload: bytes) -> None:
        await tagged.put(payload)

    bob.on_message(slow_messenger)
    bob.on_tagged(0xB2, on_want)
    try:
        for stack in stacks:
            await stack.start("127.0.0.1", 0)
        await alice.join_via(bob.endpoints())
        await bob.publish_presence()
        await asyncio.wait_for(alice.manager.send(bob.address, b"\x01first"), 60)
        await alice.manager.send(bob.address, b"\x01second")
        await alice.manager.send(bob.address, b"\xb2want")
        assert await asyncio.wait_for(tagged.get(), 10) == b"\xb2want"
        assert messages == []  # still being handled
        stuck.set()
        while len(messages) < 2:
            await asyncio.sleep(0.01)
        assert messages == [b"\x01first", b"\x01second"]
    finally:
        for stack in stacks:
            await stack.stop()
