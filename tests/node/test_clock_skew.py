"""Two nodes whose wall clocks disagree (one runs ahead or behind by most of a day),
in one process on loopback: they still reach each other, and the times shown are
within what the receiver knows for sure (decision 0020)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from app.core.identity import IdentityKeys
from app.core.records import RecordKind, dht_key
from app.node.api import (
    AddContact,
    ClockAlert,
    ListMessages,
    Message,
    MessageStatus,
    NodeEvent,
    SendMessage,
)
from app.node.dht import DhtNode
from app.node.messenger import Messenger
from app.node.network import RECORD_TTL, NetworkStack
from app.node.profile import create_profile, open_store
from app.node.service import NodeService
from app.node.transport import TransportSettings

SETTINGS = TransportSettings(prefer_websocket=True, backoff_initial=0.2, backoff_max=1.0)
HOUR = 3600.0


@dataclass
class Node:
    name: str
    service: NodeService
    network: NetworkStack
    messenger: Messenger
    skew: list[float]
    """The wall clock's offset in seconds (`skew[0]`; a test may set it, as NTP would)."""
    alerts: list[ClockAlert] = field(default_factory=list)
    """Every `ClockAlert` the node published."""


async def start_node(root: Path, name: str, skew: float) -> Node:
    """A node whose every wall-clock read is `skew` seconds off."""
    box = [skew]
    alerts: list[ClockAlert] = []

    def clock() -> float:
        return time.time() + box[0]

    create_profile(root / name, name, None)
    store = open_store(root / name, None)
    service = NodeService(store, clock=clock)
    network = NetworkStack(store.identity, settings=SETTINGS, dht=DhtNode(clock=clock), clock=clock)
    await network.start("127.0.0.1", 0)

    def publish(event: NodeEvent) -> None:
        if isinstance(event, ClockAlert):
            alerts.append(event)
        service.publish(event)

    messenger = Messenger(store, network, publish, clock=clock)
    service.attach_network(network)
    await messenger.start()
    service.attach_delivery(messenger)
    await network.join([])
    return Node(name, service, network, messenger, box, alerts)


async def stop_node(node: Node) -> None:
    node.service.close()
    await node.messenger.stop()
    await node.network.stop()
    await asyncio.to_thread(node.service.store.close)


async def eventually(check: Callable[[], object], timeout: float = 20.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.05)


async def befriend(a: Node, b: Node) -> None:
    await b.network.join_via(a.network.endpoints())
    await a.service.add_contact(AddContact((await b.service.whoami()).invite))
    await b.service.add_contact(AddContact((await a.service.whoami()).invite))


@contextlib.asynccontextmanager
async def pair(root: Path, alice_skew: float) -> AsyncIterator[tuple[Node, Node]]:
    alice = await start_node(root, "Alice", alice_skew)
    bob = await start_node(root, "Bob", 0.0)
    try:
        await befriend(alice, bob)
        yield alice, bob
    finally:
        await stop_node(alice)
        await stop_node(bob)


async def messages(node: Node, contact: str) -> list[Message]:
    return await node.service.list_messages(ListMessages(contact))


async def received(node: Node, contact: str, text: str) -> Message | None:
    return next((m for m in await messages(node, contact) if m.text == text), None)


@pytest.mark.asyncio
async def test_a_contact_whose_clock_runs_most_of_a_day_ahead_is_reached_and_not_shown_ahead(
    tmp_path: Path,
) -> None:
    """Alice's clock is 20 h ahead: her prekey bundle is dated 20 h ahead (refused beyond
    an hour: Bob could not start a session), and her messages were shown to Bob as
    written 20 h from now (sorted above every contact, under tomorrow's date)."""
    async with pair(tmp_path, 20 * HOUR) as (alice, bob):
        await bob.service.send_message(SendMessage("Alice", "hello from Bob"))
        await eventually(lambda: received(alice, "Bob", "hello from Bob"))
        before = time.time()
        await alice.service.send_message(SendMessage("Bob", "hi from Alice"))
        await eventually(lambda: received(bob, "Alice", "hi from Alice"))
        shown = await received(bob, "Alice", "hi from Alice")
        assert shown is not None and before <= shown.time <= time.time()
        # the order is the history's, whatever the clocks say: Bob's first, on both sides
        for node, contact in ((alice, "Bob"), (bob, "Alice")):
            listed = await messages(node, contact)
            assert [m.text for m in listed] == ["hello from Bob", "hi from Alice"]
        await eventually(lambda: _status(alice, "Bob", "hi from Alice", MessageStatus.DELIVERED))


@pytest.mark.asyncio
async def test_a_reply_from_a_clock_running_behind_is_shown_after_what_it_answers(
    tmp_path: Path,
) -> None:
    """Alice's clock is 20 h behind: her answer to Bob's message was shown 20 h before it
    (under yesterday's date, in the middle of today's conversation), and so was what she
    wrote after it."""
    async with pair(tmp_path, -20 * HOUR) as (alice, bob):
        asked = await bob.service.send_message(SendMessage("Alice", "are you there?"))
        await eventually(lambda: received(alice, "Bob", "are you there?"))
        await alice.service.send_message(SendMessage("Bob", "yes"))
        await eventually(lambda: received(bob, "Alice", "yes"))
        await alice.service.send_message(SendMessage("Bob", "and more"))
        await eventually(lambda: received(bob, "Alice", "and more"))
        for text in ("yes", "and more"):  # the second's parent is the first, dated by Alice
            answer = await received(bob, "Alice", text)
            assert answer is not None
            assert int(asked.time * 1000) / 1000 <= answer.time <= time.time()


@pytest.mark.asyncio
@pytest.mark.parametrize("skew", [3 * 24 * HOUR, -365 * 24 * HOUR])
async def test_contacts_connected_chat_whatever_their_clocks(tmp_path: Path, skew: float) -> None:
    """Beyond a day of skew the DHT refuses what the skewed node dates, and the prekey
    bundle it hands over a live connection was refused too ("dated in the future",
    "too old"): connected contacts could not exchange a single message."""
    async with pair(tmp_path, skew) as (alice, bob):
        await bob.service.send_message(SendMessage("Alice", "hello from Bob"))
        await eventually(lambda: received(alice, "Bob", "hello from Bob"))
        await alice.service.send_message(SendMessage("Bob", "hi from Alice"))
        await eventually(lambda: received(bob, "Alice", "hi from Alice"))


async def _status(node: Node, contact: str, text: str, status: MessageStatus) -> bool:
    return any(m.text == text and m.status is status for m in await messages(node, contact))


@pytest.mark.asyncio
async def test_records_published_after_the_clock_was_corrected_replace_those_signed_ahead() -> None:
    """A record's sequence is the time in ms: after running a day ahead and restarting
    with the clock corrected, our presence was refused by every node (not newer than the
    one signed a day ahead), which they kept serving until it expired."""
    keys = IdentityKeys.from_seeds(os.urandom(32), os.urandom(32))
    ahead = NetworkStack(keys, settings=SETTINGS, clock=lambda: time.time() + 24 * HOUR)
    holder = NetworkStack(IdentityKeys.from_seeds(os.urandom(32), os.urandom(32)))
    await holder.start("127.0.0.1", 0)
    await ahead.start("127.0.0.1", 0)
    key = dht_key(RecordKind.PRESENCE, keys.public.signing_key)
    try:
        await ahead.join_via(holder.endpoints())
        assert await ahead.publish_presence() == 1
        await ahead.stop()
        corrected = NetworkStack(keys, settings=SETTINGS)
        await corrected.start("127.0.0.1", 0)
        try:
            await corrected.join_via(holder.endpoints())
            assert await corrected.publish_presence() == 1
            held = await holder.dht.get_record(key)
            assert held is not None and held.expires_at <= time.time() + RECORD_TTL + 1
        finally:
            await corrected.stop()
    finally:
        await ahead.stop()
        await holder.stop()


async def write(sender: Node, recipient: Node, text: str) -> None:
    await sender.service.send_message(SendMessage(recipient.name, text))
    await eventually(lambda: received(recipient, sender.name, text))


@pytest.mark.asyncio
async def test_a_clock_hours_ahead_is_told_once_two_contacts_agree_and_cleared_once_set_right(
    tmp_path: Path,
) -> None:
    """The user is told when the computer's clock looks wrong, judged from the clocks of
    two contacts or more (app.core.clock_check, app.node.clock_alarm); before, nothing
    said why messages to offline contacts stayed queued beyond a day of skew."""
    alice = await start_node(tmp_path, "Alice", 5 * HOUR)
    bob = await start_node(tmp_path, "Bob", 0.0)
    carol = await start_node(tmp_path, "Carol", 0.0)
    try:
        await befriend(alice, bob)
        await write(bob, alice, "hi Alice")
        await write(alice, bob, "hi Bob")
        # one contact alone can't say whose clock is wrong: not Alice's, not Bob's
        assert (await alice.service.status()).clock == ""
        assert (await bob.service.status()).clock == ""
        # a second contact: the exchange of heads on connecting is enough to tell
        await befriend(alice, carol)
        await eventually(lambda: alice.alerts)
        await write(carol, alice, "hello from Carol")
        status = await alice.service.status()
        assert "about 5 hours ahead" in status.clock and "2 of the 2" in status.clock
        assert alice.alerts == [ClockAlert(status.clock)]
        # Bob and Carol hear only from Alice: their clocks are not blamed
        assert (await bob.service.status()).clock == ""
        assert (await carol.service.status()).clock == ""

        alice.skew[0] = 0.0  # the user sets the clock right
        await write(bob, alice, "better now?")
        assert (await alice.service.status()).clock == ""
        assert alice.alerts[-1].resolved
    finally:
        for node in (alice, bob, carol):
            await stop_node(node)
