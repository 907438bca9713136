"""A node whose clock is wrong tells its user, judged from its contacts' clocks
(app.core.clock_check, app.node.clock_alarm): three real nodes in one process on
loopback, one clock set hours ahead, then set right."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from app.node.api import AddContact, ClockAlert, ListMessages, NodeEvent, SendMessage
from app.node.dht import DhtNode
from app.node.messenger import Messenger
from app.node.network import NetworkStack
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
    alerts: list[ClockAlert] = field(default_factory=list)


async def start_node(root: Path, name: str, skew: float) -> Node:
    """A node whose wall clock reads `skew` seconds off (`node.skew[0]`, changeable)."""
    box = [skew]

    def clock() -> float:
        return time.time() + box[0]

    create_profile(root / name, name, None)
    store = open_store(root / name, None)
    service = NodeService(store, clock=clock)
    network = NetworkStack(store.identity, settings=SETTINGS, dht=DhtNode(clock=clock), clock=clock)
    await network.start("127.0.0.1", 0)
    node = Node(name, service, network, None, box)  # type: ignore[arg-type]

    def publish(event: NodeEvent) -> None:
        if isinstance(event, ClockAlert):
            node.alerts.append(event)
        service.publish(event)

    node.messenger = Messenger(store, network, publish, clock=clock)
    service.attach_network(network)
    await node.messenger.start()
    service.attach_delivery(node.messenger)
    await network.join([])
    return node


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


async def write(sender: Node, recipient: Node, text: str) -> None:
    await sender.service.send_message(SendMessage(recipient.name, text))

    async def arrived() -> bool:
        listed = await recipient.service.list_messages(ListMessages(sender.name))
        return any(m.text == text for m in listed)

    await eventually(arrived)


@pytest.mark.asyncio
async def test_a_clock_hours_ahead_is_told_once_two_contacts_agree_and_cleared_once_set_right(
    tmp_path: Path,
) -> None:
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
