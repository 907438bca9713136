"""A configured TURN server that is down, against a real coturn on loopback that the test
stops and starts again: it is left out of new connections while it does not answer (a
dial no longer waits 5 s per side for its allocation, which made the answer miss the
DHT's signalling timeout: WebRTC never came up), `problem` says so without the password,
and when it is back it is used again (a relay-only pair connects through it)."""

from __future__ import annotations

import asyncio
import inspect
import shutil
from collections.abc import Callable

import pytest

from app.core.identity import IdentityKeys
from app.node.dht import DhtNode
from app.node.transport.base import TransportSettings
from app.node.transport.ice_urls import ice_servers_of
from app.node.transport.relay_watch import RelayWatch
from app.node.transport.webrtc import WebRTCResponder, build_configuration, dial_webrtc
from tests.conftest import TURN_PASSWORD as PASSWORD
from tests.conftest import Coturn, start_coturn
from tests.node.conftest import MemorySignaller, assert_relayed_through_turn

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("loopback_ice")]

SIGNAL_TIMEOUT = float(inspect.signature(DhtNode.send_signal).parameters["timeout"].default)


class DhtLikeSignaller(MemorySignaller):
    """Answers limited to the DHT's signalling timeout, as between two nodes."""

    async def send_signal(self, peer: str, payload: bytes) -> bytes | None:
        try:
            return await asyncio.wait_for(super().send_signal(peer, payload), SIGNAL_TIMEOUT)
        except TimeoutError:
            return None


async def _until(predicate: Callable[[], bool]) -> None:
    while not predicate():
        await asyncio.sleep(0.05)


def _side(entry: str, watch: RelayWatch, relay_only: bool = False) -> TransportSettings:
    return TransportSettings(
        ice_servers=ice_servers_of([entry]),
        relay_watch=watch,
        relay_only=relay_only,
    )


async def _dial(
    dialler: TransportSettings,
    answerer: TransportSettings,
    signaller: MemorySignaller,
    identity_factory: Callable[[], IdentityKeys],
) -> str:
    """Dial once; the path of the connection (closed again)."""
    alice, bob = identity_factory(), identity_factory()
    responder = WebRTCResponder(bob, lambda conn: None, settings=answerer)
    signaller.register(bob.public.address, responder.handle_signal)
    conn = await dial_webrtc(alice, bob.public.address, signaller, settings=dialler)
    path = conn.path
    await conn.close()
    await responder.close()
    return path


@pytest.mark.asyncio
async def test_a_turn_server_that_is_down_is_left_out_until_it_is_back(
    coturn_server: Coturn, identity_factory: Callable[[], IdentityKeys]
) -> None:
    entry = f"turn:u:{PASSWORD}@127.0.0.1:{coturn_server.port}"
    coturn_server.process.terminate()  # the TURN server goes away
    coturn_server.process.wait(5)
    watches = [RelayWatch([entry], retry_every=0.5) for _ in range(2)]
    backs: list[int] = []
    for number, watch in enumerate(watches):
        watch.on_back = lambda number=number: backs.append(number)
        watch.start()  # as the node does when it starts
    await asyncio.wait_for(_until(lambda: all(w.problem for w in watches)), 30)
    for watch in watches:
        assert "does not answer" in watch.problem and "u:•••@127.0.0.1" in watch.problem
        assert PASSWORD not in watch.problem
    a, b = (_side(entry, watch) for watch in watches)
    assert build_configuration(a).iceServers == []  # left out of new connections
    # between two nodes (signalling answers within the DHT's timeout) WebRTC comes up
    assert await _dial(a, b, DhtLikeSignaller(), identity_factory) == "webrtc"

    binary = shutil.which("turnserver")
    assert binary is not None
    back = start_coturn(binary, coturn_server.port)
    try:
        await asyncio.wait_for(_until(lambda: not any(w.problem for w in watches)), 30)
        assert sorted(backs) == [0, 1]  # the node then dials the peers it wants
        relay_a = _side(entry, watches[0], relay_only=True)
        assert len(build_configuration(relay_a).iceServers) == 1
        # a pair that needs the relay gets it again
        await assert_relayed_through_turn(relay_a, MemorySignaller(), identity_factory)
    finally:
        for watch in watches:
            await watch.stop()
        back.terminate()
        back.wait(5)


@pytest.mark.asyncio
async def test_a_dial_that_got_no_relay_address_leaves_the_turn_server_out(
    coturn_server: Coturn, identity_factory: Callable[[], IdentityKeys]
) -> None:
    """The server stops while the node runs (its check at start found it working): the
    next dial notices no relay candidate came, and the dials after it don't wait."""
    entry = f"turn:u:{PASSWORD}@127.0.0.1:{coturn_server.port}"
    watches = [RelayWatch([entry], retry_every=60) for _ in range(2)]
    a, b = (_side(entry, watch) for watch in watches)
    assert await _dial(a, b, MemorySignaller(), identity_factory) == "webrtc"
    assert not any(w.problem for w in watches)  # it worked: nothing said
    coturn_server.process.terminate()
    coturn_server.process.wait(5)
    try:
        assert await _dial(a, b, MemorySignaller(), identity_factory) == "webrtc"
        for watch in watches:
            assert watch.problem and PASSWORD not in watch.problem
        assert build_configuration(a).iceServers == build_configuration(b).iceServers == []
        assert await _dial(a, b, DhtLikeSignaller(), identity_factory) == "webrtc"
    finally:
        for watch in watches:
            await watch.stop()
