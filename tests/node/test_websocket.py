"""Direct path: two peers over the Noise-secured WebSocket; wrong identities refused."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed as WebSocketClosed

from app.core.identity import IdentityKeys
from app.core.wire import Frame, FrameType
from app.node.transport.base import AuthenticationFailed, ConnectFailed, ConnectionClosed
from app.node.transport.websocket import WebSocketConnection, WebSocketListener, dial_websocket


class Server:
    def __init__(self, keys: IdentityKeys, **kwargs: object) -> None:
        self.connections: asyncio.Queue[WebSocketConnection] = asyncio.Queue()
        self.refused: list[tuple[bytes, str]] = []
        self.listener = WebSocketListener(
            keys,
            self.connections.put_nowait,
            on_refused=lambda key, reason: self.refused.append((key, reason)),
            **kwargs,  # type: ignore[arg-type]
        )


@pytest.mark.asyncio
async def test_two_peers_frames_both_ways(identity_factory: Callable[[], IdentityKeys]) -> None:
    alice, bob = identity_factory(), identity_factory()
    server = Server(bob)
    await server.listener.start("127.0.0.1", 0)
    try:
        conn = await dial_websocket(alice, bob.public.address, server.listener.endpoint)
        bob_conn = await asyncio.wait_for(server.connections.get(), 5)
        assert conn.path == bob_conn.path == "websocket"
        assert conn.peer_address == bob.public.address
        assert bob_conn.peer_address == alice.public.address
        big = bytes(range(256)) * 4096  # 1 MiB: chunked into Noise messages
        await conn.send(b"hi")
        await conn.send(big)
        await bob_conn.send(b"hello")
        assert await asyncio.wait_for(bob_conn.recv(), 5) == b"hi"
        assert await asyncio.wait_for(bob_conn.recv(), 5) == big
        assert await asyncio.wait_for(conn.recv(), 5) == b"hello"
        assert await conn.ping() > 0 and conn.rtt_ms is not None
        await conn.close("bye")
        await asyncio.wait_for(bob_conn.wait_closed(), 5)
        assert bob_conn.close_reason == "peer closed: bye"
        with pytest.raises(ConnectionClosed):
            await bob_conn.send(b"late")
    finally:
        await server.listener.close()


@pytest.mark.asyncio
async def test_wrong_identity_refused(identity_factory: Callable[[], IdentityKeys]) -> None:
    alice, bob, mallory = identity_factory(), identity_factory(), identity_factory()
    server = Server(mallory)  # Mallory answers at the endpoint Alice thinks is Bob's
    await server.listener.start("127.0.0.1", 0)
    try:
        with pytest.raises(AuthenticationFailed, match="not the identity"):
            await dial_websocket(alice, bob.public.address, server.listener.endpoint)
        await asyncio.sleep(0.1)
        assert server.connections.empty()
    finally:
        await server.listener.close()


@pytest.mark.asyncio
async def test_listener_refuses_unaccepted_peer(
    identity_factory: Callable[[], IdentityKeys],
) -> None:
    alice, bob = identity_factory(), identity_factory()
    server = Server(bob, accept=lambda key: False)
    await server.listener.start("127.0.0.1", 0)
    try:
        conn = await dial_websocket(alice, bob.public.address, server.listener.endpoint)
        await asyncio.wait_for(conn.wait_closed(), 5)
        assert server.refused == [(alice.public.signing_key, "not accepted")]
    finally:
        await server.listener.close()


@pytest.mark.asyncio
async def test_garbage_handshake_refused(identity_factory: Callable[[], IdentityKeys]) -> None:
    bob = identity_factory()
    server = Server(bob)
    await server.listener.start("127.0.0.1", 0)
    try:
        async with connect(f"ws://{server.listener.endpoint}/", proxy=None) as ws:
            await ws.send(b"\x00" * 31)  # too short for an ephemeral key
            with pytest.raises(WebSocketClosed):
                await asyncio.wait_for(ws.recv(), 5)
        assert server.refused and "handshake failed" in server.refused[0][1]
        assert server.connections.empty()
    finally:
        await server.listener.close()


@pytest.mark.asyncio
async def test_unreachable_endpoint(identity_factory: Callable[[], IdentityKeys]) -> None:
    alice, bob = identity_factory(), identity_factory()
    server = Server(bob)
    host, port = await server.listener.start("127.0.0.1", 0)
    await server.listener.close()  # the port is now closed
    with pytest.raises(ConnectFailed):
        await dial_websocket(alice, bob.public.address, f"{host}:{port}")
    with pytest.raises(ConnectFailed, match="bad endpoint"):
        await dial_websocket(alice, bob.public.address, "not an endpoint")


class CountingShaper:
    """A FrameHook that follows every DATA frame with a COVER frame and records calls."""

    def __init__(self) -> None:
        self.outbound_calls: list[tuple[str, FrameType, int]] = []
        self.inbound_calls: list[tuple[str, FrameType]] = []

    async def outbound(self, peer: str, frame: Frame) -> Sequence[Frame]:
        self.outbound_calls.append((peer, frame.type, len(frame.payload)))
        return (frame, Frame(FrameType.COVER, b"\x00" * 100))

    def inbound(self, peer: str, frame: Frame) -> Frame | None:
        self.inbound_calls.append((peer, frame.type))
        return frame


@pytest.mark.asyncio
async def test_frame_hook_sees_every_data_frame_and_cover_is_dropped(
    identity_factory: Callable[[], IdentityKeys],
) -> None:
    alice, bob = identity_factory(), identity_factory()
    alice_hook, bob_hook = CountingShaper(), CountingShaper()
    server = Server(bob, hook=bob_hook)
    await server.listener.start("127.0.0.1", 0)
    try:
        conn = await dial_websocket(
            alice, bob.public.address, server.listener.endpoint, hook=alice_hook
        )
        bob_conn = await asyncio.wait_for(server.connections.get(), 5)
        await conn.send(b"one")
        await conn.send(b"two")
        assert await asyncio.wait_for(bob_conn.recv(), 5) == b"one"
        assert await asyncio.wait_for(bob_conn.recv(), 5) == b"two"
        await conn.ping()  # control frames bypass the hook
        assert alice_hook.outbound_calls == [
            (bob.public.address, FrameType.DATA, 3),
            (bob.public.address, FrameType.DATA, 3),
        ]
        assert [t for _, t in bob_hook.inbound_calls] == [
            FrameType.DATA, FrameType.COVER, FrameType.DATA, FrameType.COVER,
        ]  # fmt: skip
        assert {p for p, _ in bob_hook.inbound_calls} == {alice.public.address}
        await conn.close()
    finally:
        await server.listener.close()


@pytest.mark.asyncio
async def test_a_dead_link_is_torn_down_without_lingering(
    identity_factory: Callable[[], IdentityKeys], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A link found dead (`linger=False`) is dropped at once: waiting for the CLOSE to
    leave (the linger, an hour here; websockets' own closing handshake gives up after
    10 s) only delayed the redial (by up to 2 s with the node's 1 s linger)."""
    from app.node.transport import websocket

    monkeypatch.setattr(websocket, "CLOSE_LINGER", 3600.0)
    alice, bob = identity_factory(), identity_factory()
    server = Server(bob)
    await server.listener.start("127.0.0.1", 0)
    try:
        conn = await dial_websocket(alice, bob.public.address, server.listener.endpoint)
        bob_conn = await asyncio.wait_for(server.connections.get(), 5)
        bob_conn._ws.transport.pause_reading()  # the peer hears nothing more
        await conn.send(b"x" * 1_000_000)  # and a megabyte waits to leave
        await asyncio.wait_for(conn.close("keepalive timeout", send_close=False, linger=False), 5)
        assert conn.is_closed and conn.close_reason == "keepalive timeout"
        bob_conn._ws.transport.resume_reading()  # the peer sees the reset
        await asyncio.wait_for(bob_conn.wait_closed(), 5)
    finally:
        await server.listener.close()
