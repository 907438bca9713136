"""A rate-limited DHT sender's requests are answered at the policy's rate, not in full.

A real `DhtNode` on loopback with the node's `AnomalyMonitor` as its observer and gate
(as `app.node.guard` installs them), its clock in the test's hands; raw UDP senders
flood it with requests. Before the change every request of a rate-limited sender was
answered until it was quarantined (decision 0012).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import numpy as np
import pytest
import pytest_asyncio
import umsgpack  # type: ignore[import-untyped]

from app.core.peer_features import FEATURE_NAMES
from app.core.peer_policy import Standing
from app.core.records import RecordKind
from app.node.anomaly import AnomalyMonitor, Detector, dht_peer
from app.node.dht import DhtNode
from tools.fuzz.record_flood import made_up_record

HOST = "127.0.0.1"
REQUEST, RESPONSE = b"\x00", b"\x01"


class Clock:
    """The monitor's monotonic clock, moved by the test."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Sender(asyncio.DatagramProtocol):
    """A raw DHT client on a port of its own: sends requests, counts their answers."""

    def __init__(self) -> None:
        self.node_id = os.urandom(20)
        self.sent: set[bytes] = set()
        self.answers: dict[bytes, Any] = {}
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # a datagram endpoint's

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        msg_id = data[1:21]
        if data[:1] == RESPONSE and msg_id in self.sent:
            self.answers[msg_id] = umsgpack.unpackb(data[21:])

    @property
    def address(self) -> tuple[str, int]:
        assert self.transport is not None
        host, port = self.transport.get_extra_info("sockname")[:2]
        return host, port

    async def send(self, port: int, requests: list[tuple[str, list[Any]]]) -> int:
        """Send `requests` to `port`; how many of them were answered once answers stop."""
        assert self.transport is not None
        before = len(self.answers)
        for name, args in requests:
            msg_id = os.urandom(20)
            self.sent.add(msg_id)
            self.transport.sendto(REQUEST + msg_id + umsgpack.packb([name, args]), (HOST, port))
            await asyncio.sleep(0)
        count, quiet = -1, 0
        while quiet < 10:  # answers stopped for 0.5 s (no bound on the time it takes)
            await asyncio.sleep(0.05)
            quiet = quiet + 1 if len(self.answers) == count else 0
            count = len(self.answers)
        return count - before


def lookups(sender: Sender, count: int) -> list[tuple[str, list[Any]]]:
    """Every kind of read request, in turn (each key made up)."""
    kinds = [
        ("ping", lambda: [sender.node_id]),
        ("find_node", lambda: [sender.node_id, os.urandom(20)]),
        ("find_value", lambda: [sender.node_id, os.urandom(20)]),
        ("stun", lambda: []),
        ("signal", lambda: [b"hello"]),
    ]
    return [(kinds[i % len(kinds)][0], kinds[i % len(kinds)][1]()) for i in range(count)]


def stores(sender: Sender, count: int) -> tuple[list[tuple[str, list[Any]]], list[bytes]]:
    records = [made_up_record(RecordKind.MAILBOX, 6 * 24 * 3600.0, 200) for _ in range(count)]
    requests = [("store", [sender.node_id, r.key, r.encode()]) for r in records]
    return requests, [r.key for r in records]


@pytest_asyncio.fixture
async def guarded() -> AsyncIterator[tuple[DhtNode, AnomalyMonitor, Clock]]:
    """A node whose DHT is watched and gated by the anomaly monitor (not started: the
    test sets standings itself, no evaluation round changes them)."""
    clock = Clock()
    monitor = AnomalyMonitor(Detector.load(), lambda event: None, clock=clock)
    node = DhtNode()
    node.set_observer(monitor.on_dht, monitor.dht_blocked)
    await node.start(HOST, 0)

    async def echo(sender: tuple[str, int], payload: bytes) -> bytes:
        return payload

    node.set_signal_handler(echo)
    yield node, monitor, clock
    node.stop()


@pytest_asyncio.fixture
async def sender() -> AsyncIterator[Callable[[], Awaitable[Sender]]]:
    """Makes raw UDP senders on loopback; each is closed after the test."""
    made: list[Sender] = []

    async def make() -> Sender:
        loop = asyncio.get_running_loop()
        _, protocol = await loop.create_datagram_endpoint(Sender, local_addr=(HOST, 0))
        made.append(protocol)
        return protocol

    yield make
    for protocol in made:
        if protocol.transport is not None:
            protocol.transport.close()


def rate_limit(monitor: AnomalyMonitor, who: Sender, now: float) -> None:
    detector = monitor.detector
    score = (detector.limit_for("dht") + detector.quarantine) / 2
    monitor.policy.assess(dht_peer(who.address), score, now)
    assert monitor.policy.standing(dht_peer(who.address)) is Standing.RATE_LIMITED


async def flooder_and_honest(
    monitor: AnomalyMonitor, clock: Clock, sender: Callable[[], Awaitable[Sender]]
) -> tuple[Sender, Sender]:
    """Two senders: the first rate-limited by the monitor, the second of normal standing."""
    flooder, honest = await sender(), await sender()
    rate_limit(monitor, flooder, clock.now)
    return flooder, honest


@pytest.mark.asyncio
async def test_a_rate_limited_senders_flood_gets_the_policys_rate_a_normal_one_everything(
    guarded: tuple[DhtNode, AnomalyMonitor, Clock],
    sender: Callable[[], Awaitable[Sender]],
) -> None:
    node, monitor, clock = guarded
    settings = monitor.policy.settings
    flooder, honest = await flooder_and_honest(monitor, clock, sender)
    # At one instant: the burst, and not one answer more.
    assert await flooder.send(node.port, lookups(flooder, 100)) == settings.burst
    assert await honest.send(node.port, lookups(honest, 100)) == 100
    # Two seconds later: two seconds' worth of the rate.
    clock.now += 2.0
    assert await flooder.send(node.port, lookups(flooder, 100)) == 2 * settings.rate
    assert await honest.send(node.port, lookups(honest, 100)) == 100
    assert monitor.stats["dht_unanswered"] == 200 - settings.burst - 2 * settings.rate
    # The detector still sees every request the flooder made (its quarantine follows).
    counts = monitor.features.row(dht_peer(flooder.address), clock.now)
    assert counts is not None
    row = dict(zip(FEATURE_NAMES, counts.values, strict=True))
    assert round(float(np.expm1(row["dht_request_60s"]))) == 200


@pytest.mark.asyncio
async def test_a_rate_limited_senders_stores_are_kept_at_the_rate_an_honest_ones_all(
    guarded: tuple[DhtNode, AnomalyMonitor, Clock],
    sender: Callable[[], Awaitable[Sender]],
) -> None:
    node, monitor, clock = guarded
    settings = monitor.policy.settings
    flooder, honest = await flooder_and_honest(monitor, clock, sender)
    requests, flooded = stores(flooder, 60)
    assert await flooder.send(node.port, requests) == settings.burst
    held = [key for key in flooded if node._server.storage.get(key) is not None]
    assert len(held) == settings.burst
    requests, mailbox = stores(honest, 60)
    assert await honest.send(node.port, requests) == 60
    assert all(node._server.storage.get(key) is not None for key in mailbox)
    assert all(answer is True for answer in honest.answers.values())


@pytest.mark.asyncio
async def test_honest_lookups_through_the_node_work_while_a_flooder_is_held_back(
    guarded: tuple[DhtNode, AnomalyMonitor, Clock],
    sender: Callable[[], Awaitable[Sender]],
) -> None:
    node, monitor, clock = guarded
    flooder = await sender()
    writer, reader = DhtNode(), DhtNode()
    try:
        rate_limit(monitor, flooder, clock.now)
        await flooder.send(node.port, lookups(flooder, 200))
        for peer in (writer, reader):
            await peer.start(HOST, 0)
            assert await peer.bootstrap([(HOST, node.port)]) >= 1
        record = made_up_record(RecordKind.MAILBOX, 6 * 24 * 3600.0, 200)
        assert await writer.put_record(record) >= 1
        found = await reader.get_record(record.key)
        assert found is not None and found.encode() == record.encode()
        for peer in (writer, reader):
            assert monitor.policy.standing(dht_peer((HOST, peer.port))) is Standing.NORMAL
    finally:
        writer.stop()
        reader.stop()
