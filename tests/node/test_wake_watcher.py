"""Waking up: two real network stacks on loopback (DHT, WebRTC, direct path) and a
`WakeWatcher` whose clocks report a suspend (injected in-process, no real sleep)."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pytest

from app.core.identity import IdentityKeys
from app.core.wake import AddressesChanged, ClockReading, Resumed
from app.node.api import DaemonOptions, NetworkError
from app.node.mailbox import MailboxCourier
from app.node.network import NetworkStack
from app.node.transport import ConnectionStateChanged, PeerState, TransportEvent
from app.node.wake import WakeWatcher, read_clocks

pytestmark = [pytest.mark.usefixtures("loopback_ice"), pytest.mark.slow]


class SleepyClocks:
    """The real clocks, with the time the machine "slept" added to the clocks that count
    a suspend (CLOCK_BOOTTIME and the wall clock), as the kernel does on a wake."""

    def __init__(self) -> None:
        self.slept = 0.0

    def __call__(self) -> ClockReading:
        real = read_clocks()
        boot = None if real.since_boot is None else real.since_boot + self.slept
        return ClockReading(real.monotonic, boot, real.wall + self.slept)


async def wait_until(predicate: Callable[[], bool], timeout: float = 15.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.02)


def test_the_real_clocks_see_no_suspend_in_a_busy_loop() -> None:
    watcher = WakeWatcher(addresses=frozenset)
    assert watcher.tick() == []
    deadline = time.monotonic() + 0.3
    while time.monotonic() < deadline:  # a busy loop: no tick comes in time
        pass
    assert watcher.tick() == []


def test_an_address_change_is_reported_to_every_subscriber() -> None:
    clocks = SleepyClocks()
    addresses = [frozenset({"192.0.2.10"})]
    watcher = WakeWatcher(clocks=clocks, addresses=lambda: addresses[-1])
    seen: list[object] = []
    watcher.subscribe(lambda event: seen.append(("first", type(event))))

    def broken(event: object) -> None:
        raise RuntimeError("a broken part")

    watcher.subscribe(broken)
    watcher.subscribe(lambda event: seen.append(("last", type(event))))
    watcher.tick()
    addresses.append(frozenset({"198.51.100.7"}))
    clocks.slept = 40.0
    watcher.tick()
    assert seen == [
        ("first", Resumed),
        ("last", Resumed),
        ("first", AddressesChanged),
        ("last", AddressesChanged),
    ]


@pytest.mark.asyncio
async def test_a_peer_lost_long_ago_is_dialled_as_soon_as_the_machine_wakes(
    identity_factory: Callable[[], IdentityKeys],
) -> None:
    """Alice's redial of Bob is at the absent cap (60-120 s away: backoff that starts
    there stands for a peer retried for long). Bob comes back and Alice's machine wakes:
    she dials him within a second and is connected again in a moment, not minutes."""
    node_settings = NetworkStack(identity_factory()).settings  # what the node runs with
    settings = replace(node_settings, backoff_initial=node_settings.backoff_max_absent,
                       absent_after=0.0)  # fmt: skip
    alice = NetworkStack(identity_factory(), settings=settings)
    bob_keys = identity_factory()
    bob = NetworkStack(bob_keys, settings=node_settings)
    clocks = SleepyClocks()
    watcher = WakeWatcher(interval=0.05, clocks=clocks, addresses=frozenset)
    watcher.subscribe(alice.network_changed)
    events: list[TransportEvent] = []
    alice.manager.subscribe(events.append)

    def waits() -> list[float]:
        return [e.retry_in for e in events if isinstance(e, ConnectionStateChanged)
                and e.state is PeerState.WAITING_TO_RETRY and e.retry_in is not None]  # fmt: skip

    try:
        await alice.start("127.0.0.1", 0)
        await bob.start("127.0.0.1", 0)
        port = bob.dht.port
        await alice.join([("127.0.0.1", port)])
        await bob.publish_presence()
        await alice.manager.connect(bob.address, keep=True)
        watcher.start()
        await bob.stop()  # Bob's laptop goes away
        await wait_until(lambda: len(waits()) == 1)
        assert waits()[0] >= node_settings.backoff_max_absent / 2
        bob = NetworkStack(bob_keys, settings=node_settings)  # ... and is back
        for _ in range(50):  # the old socket closes on a later turn of the loop
            try:
                await bob.start("127.0.0.1", port)
                break
            except NetworkError:
                await asyncio.sleep(0.1)
        await asyncio.sleep(0.2)
        assert len(waits()) == 1 and alice.manager.connection(bob.address) is None
        clocks.slept = 3600.0  # Alice's machine slept an hour meanwhile
        await wait_until(lambda: len(waits()) == 2)
        assert waits()[1] <= 1.0
        await wait_until(lambda: alice.manager.connection(bob.address) is not None)
    finally:
        await watcher.stop()
        await alice.stop()
        await bob.stop()


@pytest.mark.asyncio
async def test_the_mailboxes_are_read_soon_after_a_wake_not_at_the_next_period(
    identity_factory: Callable[[], IdentityKeys], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Polling is hourly here: a wake brings the next round `first_poll_delay` later,
    reading all 7 days after a sleep of more than a day (a round reads two)."""
    store = SimpleNamespace(identity=identity_factory())
    courier = MailboxCourier(store, None, None, poll_interval=3600, first_poll_delay=0.05)  # type: ignore[arg-type]
    rounds: list[bool] = []

    async def poll(*, full: bool = True) -> int:
        rounds.append(full)
        return 0

    async def repost() -> None:
        return None

    monkeypatch.setattr(courier, "poll", poll)
    monkeypatch.setattr(courier, "_repost", repost)
    joined: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    joined.set_result(None)
    courier.start(joined)
    try:
        await wait_until(lambda: rounds == [True])
        courier.network_changed(Resumed(0.0, 3600.0))
        await wait_until(lambda: rounds == [True, False])
        courier.network_changed(Resumed(0.0, 2 * 86400.0))
        await wait_until(lambda: rounds == [True, False, True])
        courier.network_changed(AddressesChanged(0.0, frozenset(), frozenset()))
        await wait_until(lambda: rounds == [True, False, True, False])
    finally:
        await courier.stop()


@pytest.mark.asyncio
async def test_lan_discovery_starts_over_after_a_wake_and_finds_its_neighbour_again() -> None:
    """Nodes that announced themselves while we slept, or at addresses we had not
    joined, are found by asking the LAN again (zeroconf chose its interfaces at start)."""
    from app.node.lan import LanDiscovery

    peer = f"127.0.0.1:{40000 + os.getpid() % 20000}"  # only announced, never bound
    joins: list[str] = []  # nodes of other tests running now may be found too: not counted

    async def on_found(endpoints: list[str]) -> None:
        joins.extend(e for e in endpoints if e == peer)

    async def ignore(endpoints: list[str]) -> None:
        return None

    lans: list[LanDiscovery] = []
    try:
        for port, handler in ((int(peer.rpartition(":")[2]) + 1, on_found),
                              (int(peer.rpartition(":")[2]), ignore)):  # fmt: skip
            lan = LanDiscovery("127.0.0.1", port, handler)
            await lan.start()
            lans.append(lan)
        await wait_until(lambda: joins == [peer])
        lans[0].network_changed(Resumed(0.0, 3600.0))
        lans[0].network_changed(AddressesChanged(0.0, frozenset(), frozenset()))  # one restart
        await wait_until(lambda: joins == [peer, peer])
    finally:
        for lan in lans:
            await lan.stop()


@pytest.mark.asyncio
async def test_a_wake_publishes_our_records_again_and_forgets_the_presence_cache(
    identity_factory: Callable[[], IdentityKeys], monkeypatch: pytest.MonkeyPatch
) -> None:
    """After an hour asleep our records may be near expiry or their holders gone, and the
    presence cache (monotonic clock: it did not see the hour pass) is stale."""
    from app.node import network

    monkeypatch.setattr(network, "REPUBLISH_AFTER_CHANGE", 0.05)
    hub, alice = NetworkStack(identity_factory()), NetworkStack(identity_factory())
    republished: list[float] = []
    try:
        await hub.start("127.0.0.1", 0)
        await alice.start("127.0.0.1", 0)
        await alice.join([("127.0.0.1", hub.dht.port)])
        await hub.publish_presence()
        assert await alice.presence(hub.address) == tuple(hub.endpoints())
        real_republish = alice.dht.republish

        async def republish() -> None:
            republished.append(time.monotonic())
            await real_republish()

        monkeypatch.setattr(alice.dht, "republish", republish)
        alice.network_changed(Resumed(time.monotonic(), 3600.0))
        alice.network_changed(AddressesChanged(time.monotonic(), frozenset(), frozenset()))
        assert alice._presence_cache == {}
        await wait_until(lambda: len(republished) == 1)
        await asyncio.sleep(0.3)
        assert len(republished) == 1  # two changes in a row: one republish
    finally:
        await alice.stop()
        await hub.stop()


@pytest.mark.asyncio
async def test_a_running_node_hands_a_wake_to_its_network_messenger_and_mailboxes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The wiring in `hosted_node` (daemon and window alike), with the clocks injected."""
    from app.node import daemon, node_stack
    from app.node.profile import create_profile

    clocks = SleepyClocks()
    made: list[WakeWatcher] = []
    seen: list[str] = []

    def watcher() -> WakeWatcher:
        made.append(WakeWatcher(interval=0.05, clocks=clocks, addresses=frozenset))
        return made[-1]

    monkeypatch.setattr(node_stack, "WakeWatcher", watcher)
    create_profile(tmp_path / "p", "P", "a passphrase 123")
    options = DaemonOptions(tmp_path / "p", listen="127.0.0.1:0", lan=False)
    async with daemon.hosted_node(options, lambda: "a passphrase 123", log_to_profile=False):
        (running,) = made
        running.subscribe(lambda event: seen.append(type(event).__name__))
        for handler in running._handlers[:-1]:
            seen.append(type(getattr(handler, "__self__", None)).__name__)
        clocks.slept = 60.0
        await wait_until(lambda: "Resumed" in seen)
    assert seen == ["NetworkStack", "Messenger", "MailboxCourier", "Resumed"]
