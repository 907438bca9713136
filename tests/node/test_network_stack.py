"""NetworkStack on loopback: published records, lookups by address, signalled connections."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import ClassVar

import pytest
import pytest_asyncio

from app.core.identity import IdentityKeys
from app.core.prekeys import PrekeyStore, verify_bundle
from app.node import lan as lan_module
from app.node.lan import MAX_ADDRESSES, MAX_FOUND, MAX_RESOLVING, SERVICE_TYPE, LanDiscovery
from app.node.network import NetworkStack, ice_servers_of
from app.node.transport import IceServer, TransportSettings


def new_identity() -> IdentityKeys:
    return IdentityKeys.from_seeds(os.urandom(32), os.urandom(32))


def test_ice_servers_are_explicit_and_parse_credentials() -> None:
    assert ice_servers_of([]) == ()
    assert ice_servers_of(["stun:127.0.0.1:3478", "turn:u:p@127.0.0.1:3478"]) == (
        IceServer(("stun:127.0.0.1:3478",)),
        IceServer(("turn:127.0.0.1:3478",), "u", "p"),
    )
    stack = NetworkStack(new_identity())
    assert stack.settings.ice_servers == ()


@pytest_asyncio.fixture
async def stacks() -> AsyncIterator[list[NetworkStack]]:
    started: list[NetworkStack] = []
    settings = TransportSettings(prefer_websocket=True, backoff_initial=0.2, backoff_max=1.0)
    for _ in range(3):
        stack = NetworkStack(new_identity(), settings=settings)
        await stack.start("127.0.0.1", 0)
        started.append(stack)
    first = started[0].endpoints()
    for stack in started[1:]:
        await stack.join_via(first)
    for stack in started:
        await stack.publish_presence()
    yield started
    for stack in started:
        await stack.stop()


@pytest.mark.asyncio
async def test_presence_and_bundle_are_found_by_address(stacks: list[NetworkStack]) -> None:
    a, b, c = stacks
    # the TCP listener shares the DHT's port number: one endpoint serves both
    assert a.endpoints() == a.dht.endpoints()
    assert await c.presence(a.address) == tuple(a.endpoints())
    prekeys = PrekeyStore.create(0, os.urandom, one_time_target=5)
    bundle = prekeys.bundle(a.keys)
    assert await a.publish_bundle(bundle) >= 1
    raw = await b.fetch_bundle(a.address)
    assert raw is not None and verify_bundle(raw, bundle.created_at) == bundle
    assert await b.fetch_bundle(c.address) is None


@pytest.mark.asyncio
async def test_connect_by_address_and_exchange_payloads(stacks: list[NetworkStack]) -> None:
    a, b, c = stacks
    got: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue()

    async def inbox(address: str, payload: bytes) -> None:
        await got.put((address, payload))

    a.on_message(inbox)
    for stack in (b, c):
        await stack.manager.send(a.address, b"hello from " + stack.address.encode())
        sender, payload = await asyncio.wait_for(got.get(), 10)
        assert sender == stack.address and payload.endswith(stack.address.encode())
    for stack in (b, c):
        conn = stack.manager.connection(a.address)
        assert conn is not None
        await conn.ping()
        peers = {p.address: p for p in stack.peers()}
        peer = peers[a.address]
        assert peer.state == "connected" and peer.path == "websocket" and peer.rtt_ms
    assert {p.address for p in a.peers()} == {b.address, c.address}


@pytest.mark.asyncio
async def test_unknown_address_is_unreachable(stacks: list[NetworkStack]) -> None:
    a = stacks[0]
    stranger = new_identity().public.address
    assert await a.presence(stranger) == ()
    assert await a.send_signal(stranger, b"offer") is None


IN_NETNS = os.environ.get("SCRAMBLED_EGGS_TEST_NETNS") == "1"
UNSHARE = ["unshare", "--net", "--map-root-user"]


@pytest.mark.slow
def test_lan_discovery_in_a_private_network_namespace() -> None:
    """mDNS multicasts, so the LAN test runs in a network namespace holding only `lo`."""
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        pytest.skip("needs unshare and ip to make a private network namespace")
    if subprocess.run([*UNSHARE, "true"], capture_output=True).returncode != 0:
        pytest.skip("this machine doesn't allow private network namespaces")
    inner = f"{Path(__file__).resolve()}::test_lan_discovery_inside_the_namespace"
    script = f"ip link set lo up && exec {sys.executable} -m pytest -q -p no:cacheprovider {inner}"
    done = subprocess.run(
        [*UNSHARE, "sh", "-c", script],
        env={**os.environ, "SCRAMBLED_EGGS_TEST_NETNS": "1"},
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert done.returncode == 0 and "1 passed" in done.stdout, done.stdout + done.stderr


@pytest.mark.skipif(not IN_NETNS, reason="runs inside the namespace the test above makes")
@pytest.mark.asyncio
async def test_lan_discovery_inside_the_namespace() -> None:
    settings = TransportSettings(prefer_websocket=True)
    stacks = [NetworkStack(new_identity(), settings=settings) for _ in range(2)]
    lans = []
    try:
        for stack in stacks:  # no bootstrap peers at all
            await stack.start("127.0.0.1", 0)
            lan = LanDiscovery("127.0.0.1", stack.dht.port, stack.join_via)
            await lan.start()
            lans.append(lan)
        for _ in range(100):
            if all(s.peer_count() >= 1 for s in stacks):
                break
            await asyncio.sleep(0.1)
        assert all(s.peer_count() >= 1 for s in stacks)
        assert lans[0].found == set(stacks[1].endpoints())
        await stacks[1].publish_presence()
        assert await stacks[0].presence(stacks[1].address) == tuple(stacks[1].endpoints())
    finally:
        for lan in lans:
            await lan.stop()
        for stack in stacks:
            await stack.stop()


class _Announced:
    """Stands in for `AsyncServiceInfo`: every name resolves, after a moment, to the
    addresses `ADDRESSES` gives it (a hostile announcer can name as many as it likes)."""

    ADDRESSES: ClassVar[dict[str, list[str]]] = {}
    resolving = 0
    peak = 0

    def __init__(self, service_type: str, name: str) -> None:
        self.name = name
        self.port = 4000

    async def async_request(self, zeroconf: object, timeout_ms: int) -> bool:
        type(self).resolving += 1
        type(self).peak = max(type(self).peak, type(self).resolving)
        await asyncio.sleep(0.01)
        type(self).resolving -= 1
        return True

    def parsed_addresses(self, version: object) -> list[str]:
        return self.ADDRESSES[self.name]


@pytest.mark.asyncio
async def test_a_flood_of_lan_announcements_costs_a_bounded_amount(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Found with a hostile mDNS announcer in a private namespace: 300 services of 16
    addresses each made a node resolve 505 names at once and ping all 4,781 endpoints."""
    monkeypatch.setattr(lan_module, "AsyncServiceInfo", _Announced)
    joined: list[list[str]] = []

    async def on_found(endpoints: list[str]) -> None:
        joined.append(endpoints)

    lan = LanDiscovery("127.0.0.1", 9, on_found)
    lan._zeroconf = type("Zc", (), {"zeroconf": None})()  # type: ignore[assignment]
    added = lan_module.ServiceStateChange.Added
    _Announced.ADDRESSES["honest." + SERVICE_TYPE] = ["127.0.0.2"]
    lan._on_change(None, SERVICE_TYPE, "honest." + SERVICE_TYPE, added)  # type: ignore[arg-type]
    await asyncio.sleep(0.1)
    assert joined == [["127.0.0.2:4000"]]
    for i in range(300):
        name = f"evil{i}.{SERVICE_TYPE}"
        _Announced.ADDRESSES[name] = [f"127.{1 + i // 256}.{i % 256}.{j}" for j in range(16)]
        lan._on_change(None, SERVICE_TYPE, name, added)  # type: ignore[arg-type]
        await asyncio.sleep(0)
        if i % 20 == 0:
            await asyncio.sleep(0.02)
    while lan._tasks:
        await asyncio.sleep(0.01)
    assert _Announced.peak <= MAX_RESOLVING
    assert all(len(endpoints) <= MAX_ADDRESSES for endpoints in joined)
    assert sum(len(endpoints) for endpoints in joined) == len(lan.found) == MAX_FOUND


@pytest.mark.asyncio
async def test_a_join_that_reached_nobody_is_retried_until_it_does(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Regression (chaos test): a node whose first bootstrap datagrams were lost stayed
    alone in the DHT for the whole run, so nobody found its presence nor it theirs."""
    import socket

    from app.node import network

    monkeypatch.setattr(network, "REJOIN_FIRST", 0.2)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:  # a port nobody uses yet
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    late, lonely = NetworkStack(new_identity()), NetworkStack(new_identity())
    try:
        await lonely.start("127.0.0.1", 0)
        assert await lonely.join([("127.0.0.1", port)]) == 0  # the bootstrap node is down
        await late.start("127.0.0.1", port)  # ... and comes up a moment later
        for _ in range(100):
            if await late.presence(lonely.address):
                break
            await asyncio.sleep(0.1)
        assert lonely.peer_count() >= 1
        assert await late.presence(lonely.address) == tuple(lonely.endpoints())
    finally:
        await lonely.stop()
        await late.stop()


async def evict_all_then_rejoin(stack: NetworkStack) -> None:
    """Empty `stack`'s routing table; it must join again within 5 s."""
    router = stack.dht._server.protocol.router
    for node in [n for bucket in router.buckets for n in bucket.get_nodes()]:
        router.remove_contact(node)
    assert stack.peer_count() == 0
    for _ in range(100):
        if stack.peer_count() >= 1:
            break
        await asyncio.sleep(0.05)
    assert stack.peer_count() >= 1


@pytest.mark.asyncio
async def test_a_node_that_lost_every_neighbour_joins_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Regression (chaos test): a partition evicted every neighbour of a node that had
    joined fine; it stayed alone for good, its presence unfindable once the others
    looked for it again."""
    from app.node import network

    monkeypatch.setattr(network, "REJOIN_FIRST", 0.2)
    hub, lonely = NetworkStack(new_identity()), NetworkStack(new_identity())
    try:
        await hub.start("127.0.0.1", 0)
        await lonely.start("127.0.0.1", 0)
        assert await lonely.join([("127.0.0.1", hub.dht.port)]) == 1
        await evict_all_then_rejoin(lonely)  # evicted as unresponsive during a partition
        assert await hub.presence(lonely.address) == tuple(lonely.endpoints())
    finally:
        await lonely.stop()
        await hub.stop()


@pytest.mark.asyncio
async def test_a_node_joined_through_an_invite_only_joins_again_through_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Found with the GUI: a node with no bootstrap setting, joined through a contact's
    invite, lost every neighbour while its contact was stopped for 40 s and showed
    "Looking for peers" for good, although the contact was connected again."""
    from app.node import network

    monkeypatch.setattr(network, "REJOIN_FIRST", 0.2)
    hub, lonely = NetworkStack(new_identity()), NetworkStack(new_identity())
    try:
        await hub.start("127.0.0.1", 0)
        await lonely.start("127.0.0.1", 0)
        await lonely.join([])  # no bootstrap node configured
        assert await lonely.join_via(hub.endpoints()) == 1  # a contact's invite
        await evict_all_then_rejoin(lonely)
    finally:
        await lonely.stop()
        await hub.stop()


def count_lookups(stack: NetworkStack, monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """A list that grows by one for each DHT lookup `stack` makes."""
    lookups: list[bool] = []
    server = stack.dht._server
    real_lookup = server.lookup

    async def counting(*args: object, **kwargs: object) -> object:
        lookups.append(True)
        return await real_lookup(*args, **kwargs)

    monkeypatch.setattr(server, "lookup", counting)
    return lookups


@pytest.mark.asyncio
async def test_an_offline_contact_is_not_looked_up_again_until_the_dht_changes(
    stacks: list[NetworkStack], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each retry, redial and signal of an offline contact was a DHT lookup (two, for a
    miss): a few offline contacts made every node of a small network look like a
    request flood to the others' anomaly detectors."""
    c = stacks[2]
    lookups = count_lookups(c, monkeypatch)
    offline = NetworkStack(new_identity()).address
    assert await c.presence(offline) == ()
    assert len(lookups) == 1  # fewer nodes than the read width: one lookup asked them all
    assert await c.presence(offline) == ()
    assert await c.endpoints_of(offline) == []
    assert len(lookups) == 1  # the miss is remembered

    newcomer = NetworkStack(new_identity())
    await newcomer.start("127.0.0.1", 0)
    try:
        await c.join_via(newcomer.endpoints())  # a new neighbour may hold the record
        assert await c.presence(offline) == ()
        assert len(lookups) >= 2
    finally:
        await newcomer.stop()


@pytest.mark.asyncio
async def test_first_looks_beyond_the_burst_wait_for_the_next_try(
    stacks: list[NetworkStack], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Adding 30 contacts within 16 s made 30 lookups at once and a neighbour quarantined
    the node for a minute. A first look takes a pacer token if one is there; without
    one it returns nothing (the known endpoints are dialled) and looks at the next try."""
    a, c = stacks[0], stacks[2]
    lookups = count_lookups(c, monkeypatch)
    c.background._tokens = 0.0  # the burst is spent
    c.background._per_second = 0.0
    assert await c.presence(a.address) == ()
    assert lookups == []
    c.background._tokens = 1.0
    assert await c.presence(a.address) == tuple(a.endpoints())  # not cached as a miss
    assert len(lookups) == 1
