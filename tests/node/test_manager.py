"""ConnectionManager: path choice, fallback when ICE fails, reconnect, one connection per peer."""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import replace
from typing import Any

import pytest
import pytest_asyncio

from app.core.identity import IdentityKeys
from app.node.transport.base import ConnectFailed, TransportSettings
from app.node.transport.manager import (
    STALE_AFTER,
    ConnectionManager,
    ConnectionStateChanged,
    PeerState,
    TransportEvent,
    backoff_delay,
)
from app.node.transport.webrtc import (
    WebRTCConnection,
    decode_answer,
    decode_offer,
    encode_answer,
    encode_offer,
)

pytestmark = [pytest.mark.usefixtures("loopback_ice"), pytest.mark.slow]

FAST = TransportSettings(
    webrtc_timeout=5, websocket_timeout=5, backoff_initial=0.05, backoff_max=0.5
)


class StaticResolver:
    def __init__(self) -> None:
        self.table: dict[str, list[str]] = {}

    async def endpoints(self, address: str) -> Sequence[str]:
        return self.table.get(address, [])


class Node:
    def __init__(self, keys: IdentityKeys, manager: ConnectionManager) -> None:
        self.keys = keys
        self.address = keys.public.address
        self.manager = manager
        self.events: list[TransportEvent] = []
        manager.subscribe(self.events.append)

    def states(self) -> list[tuple[PeerState, str | None]]:
        return [(e.state, e.path) for e in self.events if isinstance(e, ConnectionStateChanged)]


async def wait_until(predicate: Callable[[], bool], timeout: float = 15.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.02)


@pytest_asyncio.fixture
async def pair(
    signaller: Any, identity_factory: Callable[[], IdentityKeys]
) -> AsyncIterator[Callable[..., Any]]:
    made: list[Node] = []

    async def make(signalling: Any = None, settings: TransportSettings = FAST) -> list[Node]:
        resolver = StaticResolver()
        nodes = []
        for _ in range(2):
            keys = identity_factory()
            manager = ConnectionManager(
                keys, signalling or signaller, settings=settings, resolver=resolver
            )
            endpoint = await manager.start_listening("127.0.0.1", 0)
            resolver.table[keys.public.address] = [endpoint]
            signaller.register(keys.public.address, manager.handle_signal)
            nodes.append(Node(keys, manager))
        made.extend(nodes)
        return nodes

    yield make
    for node in made:
        await node.manager.close()


@pytest.mark.asyncio
async def test_picks_webrtc_and_carries_messages(pair: Callable[..., Any]) -> None:
    alice, bob = await pair()
    conn = await alice.manager.connect(bob.address)
    assert conn.path == "webrtc"
    assert alice.manager.connection(bob.address) is conn
    await alice.manager.send(bob.address, b"ping from alice")
    assert await asyncio.wait_for(bob.manager.receive(), 10) == (alice.address, b"ping from alice")
    # Bob answers over the connection Alice opened: no second connection is dialled.
    await bob.manager.send(alice.address, b"pong from bob")
    assert await asyncio.wait_for(alice.manager.receive(), 10) == (bob.address, b"pong from bob")
    assert alice.states()[:2] == [(PeerState.CONNECTING, None), (PeerState.CONNECTED, "webrtc")]
    assert bob.states() == [(PeerState.CONNECTED, "webrtc")]
    assert await asyncio.wait_for(conn.ping(), 5) > 0


class IceBreakingSignaller:
    """Strips every ICE candidate from offers and answers: ICE fails on both sides."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.offers = 0

    @staticmethod
    def _strip(sdp: str) -> str:
        return re.sub(r"a=candidate:[^\r\n]*\r\n", "", sdp)

    async def send_signal(self, peer: str, payload: bytes) -> bytes | None:
        self.offers += 1
        offer = decode_offer(payload)
        stripped = type(offer)(offer.session_id, offer.sender, offer.recipient,
                               self._strip(offer.sdp))  # fmt: skip
        reply = await self.inner.send_signal(peer, encode_offer(stripped))
        assert reply is not None
        sdp = decode_answer(reply, offer.session_id)
        return encode_answer(offer.session_id, self._strip(sdp))


@pytest.mark.asyncio
async def test_falls_back_to_websocket_when_ice_fails(
    pair: Callable[..., Any], signaller: Any
) -> None:
    breaking = IceBreakingSignaller(signaller)
    alice, bob = await pair(signalling=breaking)
    conn = await alice.manager.connect(bob.address)
    assert breaking.offers == 1  # WebRTC was tried first...
    assert conn.path == "websocket"  # ...and the direct path took over
    await alice.manager.send(bob.address, b"over noise")
    assert await asyncio.wait_for(bob.manager.receive(), 10) == (alice.address, b"over noise")
    assert (PeerState.CONNECTED, "websocket") in alice.states()


@pytest.mark.asyncio
async def test_reconnects_after_a_drop(pair: Callable[..., Any]) -> None:
    alice, bob = await pair()
    first = await alice.manager.connect(bob.address, keep=True)
    assert isinstance(first, WebRTCConnection)
    await first.pc.close()  # the network drops under the connection, no CLOSE frame
    await wait_until(
        lambda: (c := alice.manager.connection(bob.address)) is not None and c is not first
    )
    second = alice.manager.connection(bob.address)
    assert second is not None and second.is_open
    states = [s for s, _ in alice.states()]
    assert states.count(PeerState.CONNECTED) == 2
    assert PeerState.DISCONNECTED in states and PeerState.WAITING_TO_RETRY in states
    await alice.manager.send(bob.address, b"after reconnect")
    assert await asyncio.wait_for(bob.manager.receive(), 10) == (alice.address, b"after reconnect")


@pytest.mark.asyncio
async def test_simultaneous_dials_keep_one_connection(pair: Callable[..., Any]) -> None:
    alice, bob = await pair()
    await asyncio.gather(
        alice.manager.connect(bob.address, keep=False),
        bob.manager.connect(alice.address, keep=False),
    )

    def settled() -> bool:
        a, b = alice.manager.connection(bob.address), bob.manager.connection(alice.address)
        return a is not None and b is not None and a.initiator != b.initiator

    await wait_until(settled)
    await asyncio.sleep(0.3)  # the losing duplicate has been closed by now
    assert settled()
    a = alice.manager.connection(bob.address)
    assert a is not None
    await a.send(b"still one")
    assert await asyncio.wait_for(bob.manager.receive(), 10) == (alice.address, b"still one")


async def _silent_old_connection(
    pair: Callable[..., Any], signaller: Any
) -> tuple[Node, Node, Any, ConnectionManager]:
    """Alice holds a direct-path connection to Bob (it outranks any WebRTC duplicate) that
    has been silent for longer than `STALE_AFTER`; a second manager with Bob's identity
    (Bob after a restart) is ready to dial her over WebRTC."""
    alice, bob = await pair(settings=replace(FAST, prefer_websocket=True))
    old = await alice.manager.connect(bob.address, keep=False)
    assert old.path == "websocket"
    await wait_until(lambda: bob.manager.connection(alice.address) is not None)
    reborn = ConnectionManager(bob.keys, signaller, settings=FAST)
    signaller.register(bob.address, reborn.handle_signal)
    await asyncio.sleep(STALE_AFTER + 0.2)
    return alice, bob, old, reborn


@pytest.mark.asyncio
async def test_a_restarted_peer_replaces_its_silent_old_connection(
    pair: Callable[..., Any], signaller: Any
) -> None:
    alice, bob, old, reborn = await _silent_old_connection(pair, signaller)
    gone = bob.manager.connection(alice.address)
    assert gone is not None
    gone._receive_bytes = lambda data: None  # type: ignore[method-assign]  # crashed: mute
    try:
        await reborn.connect(alice.address, keep=False)
        await wait_until(
            lambda: (c := alice.manager.connection(bob.address)) is not None and c is not old
        )
        assert old.is_closed and alice.manager.connection(bob.address).path == "webrtc"  # type: ignore[union-attr]
        new = reborn.connection(alice.address)
        assert new is not None and new.is_open
        await new.send(b"after the restart")
        assert await asyncio.wait_for(alice.manager.receive(), 10) == (
            bob.address,
            b"after the restart",
        )
    finally:
        await reborn.close()


@pytest.mark.asyncio
async def test_a_silent_but_live_connection_still_beats_a_duplicate(
    pair: Callable[..., Any], signaller: Any
) -> None:
    alice, bob, old, reborn = await _silent_old_connection(pair, signaller)
    try:
        with contextlib.suppress(ConnectFailed):
            await reborn.connect(alice.address, keep=False)
        await wait_until(lambda: reborn.connection(alice.address) is None)
        assert alice.manager.connection(bob.address) is old and old.is_open
        await old.send(b"old one lives")
        assert await asyncio.wait_for(bob.manager.receive(), 10) == (
            alice.address,
            b"old one lives",
        )
    finally:
        await reborn.close()


@pytest.mark.asyncio
async def test_disconnect_stops_retrying(pair: Callable[..., Any]) -> None:
    alice, bob = await pair()
    conn = await alice.manager.connect(bob.address, keep=True)
    await alice.manager.disconnect(bob.address)
    assert conn.is_closed and alice.manager.connection(bob.address) is None
    await asyncio.sleep(0.3)
    assert alice.manager.connection(bob.address) is None
    assert PeerState.WAITING_TO_RETRY not in [s for s, _ in alice.states()]


@pytest.mark.asyncio
async def test_a_peer_absent_since_the_start_is_redialled_less_often_than_one_just_lost(
    pair: Callable[..., Any], identity_factory: Callable[[], IdentityKeys]
) -> None:
    """2,000 absent contacts redialled every 20 s took a quarter of a core (a WebRTC
    offer each); a peer lost a moment ago is still redialled at the short cadence."""
    settings = replace(
        FAST, backoff_initial=0.02, backoff_max=0.05, backoff_max_absent=1.0, absent_after=30
    )
    alice, bob = await pair(settings=settings)

    def waits(peer: str) -> list[float]:
        return [
            e.retry_in
            for e in alice.events
            if isinstance(e, ConnectionStateChanged)
            and e.address == peer
            and e.state == PeerState.WAITING_TO_RETRY
            and e.retry_in is not None
        ]

    await alice.manager.connect(bob.address, keep=True)
    await bob.manager.close()  # lost now: redialled within backoff_max
    await wait_until(lambda: len(waits(bob.address)) >= 6)
    assert max(waits(bob.address)) <= 0.05
    absent = identity_factory().public.address  # never reached in this run
    with contextlib.suppress(ConnectFailed):
        await alice.manager.connect(absent, keep=True)
    await wait_until(lambda: len(waits(absent)) >= 5)
    assert max(waits(absent)) > 0.05
    await alice.manager.disconnect(absent)


def test_backoff_delay_grows_caps_and_jitters() -> None:
    assert backoff_delay(0, 1.0, 60.0, 0.0) == 0.5
    assert backoff_delay(0, 1.0, 60.0, 0.999) < 1.0
    assert backoff_delay(3, 1.0, 60.0, 0.0) == 4.0
    assert backoff_delay(50, 1.0, 60.0, 0.0) == 30.0
    assert backoff_delay(50, 1.0, 60.0, 0.5) == 45.0


QUICK_PROBE = replace(
    FAST,
    prefer_websocket=True,
    keepalive_interval=60,
    keepalive_timeout=60,
    probe_after=0.3,
    probe_timeout=0.3,
)


@pytest.mark.asyncio
async def test_a_silent_link_with_an_answer_awaited_is_probed_and_closed(
    pair: Callable[..., Any],
) -> None:
    """The keepalive is a minute away: only the probe can notice the dead link."""
    alice, bob = await pair(settings=QUICK_PROBE)
    conn = await alice.manager.connect(bob.address, keep=False)
    await wait_until(lambda: bob.manager.connection(alice.address) is not None)
    await asyncio.sleep(0.2)  # the first keepalive PING is answered
    bob_side = bob.manager.connection(alice.address)
    assert bob_side is not None and conn.liveness is not None
    await conn.send(b"no answer expected")
    await asyncio.sleep(1.0)
    assert conn.is_open and conn.liveness.probes == 0  # nothing awaited: no probe
    bob_side._receive_bytes = lambda data: None  # type: ignore[method-assign]  # the link dies
    started = asyncio.get_running_loop().time()
    await conn.send(b"a request", awaits_answer=True)
    await asyncio.wait_for(conn.wait_closed(), 5)
    took = asyncio.get_running_loop().time() - started
    assert conn.close_reason == "no answer: the link went silent"
    assert conn.liveness.probes == 1 and 0.5 <= took < 2.0
    assert alice.manager.connection(bob.address) is None


@pytest.mark.asyncio
async def test_a_live_peer_that_does_not_answer_costs_one_probe(
    pair: Callable[..., Any],
) -> None:
    alice, bob = await pair(settings=QUICK_PROBE)
    conn = await alice.manager.connect(bob.address, keep=False)
    await asyncio.sleep(0.2)
    assert conn.liveness is not None
    await conn.send(b"a request nobody answers", awaits_answer=True)
    await asyncio.sleep(2.0)
    assert conn.is_open and conn.liveness.probes == 1 and not conn.liveness.awaiting


# ---------------------------------------------------------------------- network changes


@pytest.mark.asyncio
async def test_a_network_change_closes_a_dead_link_within_the_probe_time_and_keeps_a_live_one(
    pair: Callable[..., Any],
) -> None:
    """The keepalive is a minute away: only the probe after the change notices."""
    alice, bob = await pair(settings=QUICK_PROBE)
    conn = await alice.manager.connect(bob.address, keep=False)
    await wait_until(lambda: bob.manager.connection(alice.address) is not None)
    await asyncio.sleep(0.2)  # the first keepalive PING is answered
    assert conn.liveness is not None
    alice.manager.network_changed()
    await asyncio.sleep(1.0)
    assert conn.is_open and conn.liveness.probes == 1 and not conn.liveness.suspected
    bob_side = bob.manager.connection(alice.address)
    assert bob_side is not None
    bob_side._receive_bytes = lambda data: None  # type: ignore[method-assign]  # died asleep
    alice.manager.network_changed()
    await asyncio.wait_for(conn.wait_closed(), 5)
    assert conn.close_reason == "no answer after the network changed"
    assert conn.liveness.probes == 2


@pytest.mark.asyncio
async def test_a_network_change_dials_a_peer_waiting_out_a_long_backoff_now(
    signaller: Any, identity_factory: Callable[[], IdentityKeys]
) -> None:
    """Bob left; Alice's next attempt is 10-20 s away. Bob is back and Alice's machine
    says its network changed: she dials within a second."""
    slow = replace(FAST, prefer_websocket=True, backoff_initial=20.0, backoff_max=20.0)
    resolver = StaticResolver()
    alice_keys, bob_keys = identity_factory(), identity_factory()
    alice = Node(alice_keys, ConnectionManager(alice_keys, signaller, settings=slow,
                                               resolver=resolver))  # fmt: skip
    managers = [alice.manager]

    async def start_bob() -> ConnectionManager:
        manager = ConnectionManager(bob_keys, signaller, settings=FAST, resolver=resolver)
        resolver.table[bob_keys.public.address] = [await manager.start_listening("127.0.0.1", 0)]
        signaller.register(bob_keys.public.address, manager.handle_signal)
        managers.append(manager)
        return manager

    def waits() -> list[float]:
        return [e.retry_in for e in alice.events if isinstance(e, ConnectionStateChanged)
                and e.state is PeerState.WAITING_TO_RETRY and e.retry_in is not None]  # fmt: skip

    try:
        bob = await start_bob()
        await alice.manager.connect(bob_keys.public.address, keep=True)
        await bob.close()
        await wait_until(lambda: len(waits()) == 1)
        assert waits()[0] >= 10.0  # the backoff after the drop
        await start_bob()
        assert alice.manager.network_changed() == 1
        await asyncio.sleep(0)  # the redial task starts
        assert len(waits()) == 2 and waits()[1] <= 1.0
        await wait_until(lambda: alice.manager.connection(bob_keys.public.address) is not None, 8)
    finally:
        for manager in managers:
            await manager.close()


@pytest.mark.asyncio
async def test_the_dials_after_a_network_change_are_paced_most_recently_lost_first(
    pair: Callable[..., Any], identity_factory: Callable[[], IdentityKeys]
) -> None:
    """500 wanted peers: spread over 5 s (100 a second), not one burst; the peer lost
    a moment ago (likely still online) goes first."""
    slow = replace(FAST, backoff_initial=600.0, backoff_max=600.0, backoff_max_absent=600.0)
    alice, bob = await pair(settings=slow)
    absent = [identity_factory().public.address for _ in range(499)]
    for address in absent:
        with contextlib.suppress(ConnectFailed):
            await alice.manager.connect(address, keep=True)
    await alice.manager.connect(bob.address, keep=True)
    await bob.manager.close()
    await wait_until(lambda: alice.manager.connection(bob.address) is None)
    await asyncio.sleep(0.1)
    before = len(alice.events)
    assert alice.manager.network_changed() == 500
    await asyncio.sleep(0)  # the redial tasks start
    planned = {
        e.address: e.retry_in
        for e in alice.events[before:]
        if isinstance(e, ConnectionStateChanged) and e.state is PeerState.WAITING_TO_RETRY
    }
    assert len(planned) == 500
    delays = sorted(d for d in planned.values() if d is not None)
    assert delays[-1] <= 5.0
    assert sum(1 for d in delays if d < 1.0) <= 101  # the rate, not a burst
    assert planned[bob.address] == delays[0] and delays[0] < 0.01


@pytest.mark.asyncio
async def test_callers_moving_to_the_direct_path_at_once_share_one_dial(
    pair: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each incoming transfer asks for the direct path before it fetches. 600 small files
    accepted at once made 600 WebSocket dials; each new connection replaced the one
    before and dropped what was in flight on it (the sender's session then diverged and
    its anomaly detector quarantined the receiver). Callers at the same time now share
    one dial, and the messages keep flowing."""
    alice, bob = await pair()
    conn = await alice.manager.connect(bob.address)
    assert conn.path == "webrtc"
    dials = 0
    real_dial = alice.manager._dial_websocket

    async def counting(address: str) -> Any:
        nonlocal dials
        dials += 1
        return await real_dial(address)

    monkeypatch.setattr(alice.manager, "_dial_websocket", counting)
    moved = await asyncio.gather(*(alice.manager.prefer_direct(bob.address) for _ in range(50)))
    assert moved == [True] * 50
    assert dials == 1
    direct = alice.manager.connection(bob.address)
    assert direct is not None and direct.path == "websocket"
    assert await alice.manager.prefer_direct(bob.address)  # already direct: no dial
    assert dials == 1
    await alice.manager.send(bob.address, b"over the direct path")
    assert await asyncio.wait_for(bob.manager.receive(), 10) == (
        alice.address,
        b"over the direct path",
    )
