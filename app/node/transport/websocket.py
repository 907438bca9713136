"""Direct path: a WebSocket (`websockets`) secured by a Noise XX handshake over identities.

The dialler connects to ``ws://host:port/`` (an endpoint from an invite or a presence
record), then both sides run `app.core.noise.IdentityHandshake`, one handshake message per
binary WebSocket message. Afterwards each WebSocket message is one Noise transport message
(<= 65535 bytes) carrying a slice of the frame stream (`app.core.wire`).

TLS is not used: Noise provides confidentiality, integrity, forward secrecy and mutual
authentication of the identities. No proxy is consulted (a proxy would be a third party the
user did not configure), no compression is negotiated, no software version is advertised.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable
from typing import Any

from websockets.asyncio.client import connect
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import WebSocketException

from app.core.errors import RemoteProtocolError
from app.core.identity import IdentityKeys, decode_address, validate_endpoint
from app.core.noise import MAX_MESSAGE, IdentityHandshake, NoiseTransport

from .base import (
    AuthenticatedConnection,
    AuthenticationFailed,
    ConnectFailed,
    FrameHook,
    TransportSettings,
)

log = logging.getLogger(__name__)

HIGH_WATER = 4 * 1024 * 1024
CLOSE_LINGER = 1.0
MAX_PENDING_HANDSHAKES = 32
MAX_PENDING_PER_HOST = 8
"""Handshakes in progress from one address, at most: silent connections from one host
(each may take `websocket_timeout` to time out) cannot keep out a contact on another."""
_WS_OPTIONS: dict[str, Any] = {
    "compression": None,
    "max_size": MAX_MESSAGE,
    "ping_interval": None,  # our PING frames do keepalive and RTT, inside the encryption
}

RandomBytes = Callable[[int], bytes]


def endpoint_uri(endpoint: str) -> str:
    """``ws://host:port/`` for a ``host:port`` endpoint (validated)."""
    try:
        return f"ws://{validate_endpoint(endpoint)}/"
    except RemoteProtocolError as exc:
        raise ConnectFailed(f"bad endpoint {endpoint[:80]!r}: {exc}") from None


class WebSocketConnection(AuthenticatedConnection):
    """An `AuthenticatedConnection` over a Noise-encrypted WebSocket."""

    def __init__(
        self,
        ws: Any,
        transport: NoiseTransport,
        *,
        local_key: bytes,
        peer_key: bytes,
        initiator: bool,
        hook: FrameHook | None = None,
    ) -> None:
        super().__init__(local_key=local_key, peer_key=peer_key, initiator=initiator, hook=hook)
        self.path = "websocket"
        self._ws = ws
        with contextlib.suppress(Exception):  # a socket already gone has no address
            self.remote_host = str(ws.remote_address[0])
        self._noise = transport
        self._outbox: asyncio.Queue[bytes | None] = asyncio.Queue()
        self._queued = 0
        self._drained = asyncio.Event()
        self._drained.set()
        self._reader = self._loop.create_task(self._read_loop())
        self._writer = self._loop.create_task(self._write_loop())
        self._mark_open()

    def _write_bytes(self, data: bytes) -> None:
        if self._writer.done():
            raise ConnectionError("connection closed")
        # Encrypt now so that nonces follow the order of the calls.
        for message in self._noise.encrypt(data):
            self._queued += len(message)
            self._outbox.put_nowait(message)
        if self._queued > HIGH_WATER:
            self._drained.clear()

    async def _drain(self) -> None:
        while not self._drained.is_set() and not self.is_closed:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._drained.wait(), 1.0)

    async def _write_loop(self) -> None:
        try:
            while (message := await self._outbox.get()) is not None:
                await self._ws.send(message)
                self._queued -= len(message)
                if self._queued <= HIGH_WATER // 2:
                    self._drained.set()
        except (WebSocketException, OSError) as exc:
            self._fail(f"send failed: {exc}", send_close=False)
        finally:
            self._drained.set()

    async def _read_loop(self) -> None:
        try:
            async for message in self._ws:
                if isinstance(message, str):
                    self._fail("text message on the WebSocket")
                    return
                self._receive_bytes(self._noise.decrypt(message))
                if self.is_closed:
                    return
            self._fail("WebSocket closed by the peer", send_close=False)
        except RemoteProtocolError as exc:
            self._fail(f"protocol error: {exc}")
        except (WebSocketException, OSError) as exc:
            self._fail(f"WebSocket failed: {exc}", send_close=False)

    async def _shutdown_transport(self) -> None:
        if not self._linger:  # the link is dead: drop the socket, wait for nothing
            self._writer.cancel()
            if asyncio.current_task() is not self._reader:
                self._reader.cancel()
            with contextlib.suppress(Exception):
                self._ws.transport.abort()
            return
        self._outbox.put_nowait(None)
        with contextlib.suppress(TimeoutError, asyncio.CancelledError):
            await asyncio.wait_for(asyncio.shield(self._writer), CLOSE_LINGER)
        self._writer.cancel()
        if asyncio.current_task() is not self._reader:
            self._reader.cancel()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._ws.close(), CLOSE_LINGER)


async def _run_handshake(ws: Any, handshake: IdentityHandshake, *, initiator: bool) -> None:
    async def receive() -> None:
        message = await ws.recv()
        if isinstance(message, str):
            raise AuthenticationFailed("text message during the handshake")
        handshake.read_message(message)

    if initiator:
        await ws.send(handshake.write_message())
        await receive()
        await ws.send(handshake.write_message())
    else:
        await receive()
        await ws.send(handshake.write_message())
        await receive()


async def dial_websocket(
    keys: IdentityKeys,
    peer_address: str,
    endpoint: str,
    *,
    settings: TransportSettings | None = None,
    hook: FrameHook | None = None,
    random_bytes: RandomBytes = os.urandom,
) -> WebSocketConnection:
    """Connect to `endpoint` and prove that `peer_address` answers there.

    Raises `ConnectFailed` (unreachable, timeout) or `AuthenticationFailed` (someone else
    answered, or the handshake was tampered with).
    """
    settings = settings or TransportSettings()
    peer_key = decode_address(peer_address)
    uri = endpoint_uri(endpoint)
    handshake = IdentityHandshake(
        keys, initiator=True, ephemeral_secret=random_bytes(32), expected_peer=peer_key
    )
    ws: Any = None
    try:
        async with asyncio.timeout(settings.websocket_timeout):
            ws = await connect(uri, proxy=None, user_agent_header=None, **_WS_OPTIONS)
            await _run_handshake(ws, handshake, initiator=True)
    except RemoteProtocolError as exc:
        await _abort(ws)
        raise AuthenticationFailed(f"{peer_address} at {endpoint}: {exc}") from None
    except AuthenticationFailed:
        await _abort(ws)
        raise
    except (TimeoutError, OSError, WebSocketException) as exc:
        await _abort(ws)
        reason = "timed out" if isinstance(exc, TimeoutError) else str(exc) or type(exc).__name__
        raise ConnectFailed(f"WebSocket to {endpoint} failed: {reason}") from None
    return WebSocketConnection(
        ws,
        handshake.transport(),
        local_key=keys.public.signing_key,
        peer_key=peer_key,
        initiator=True,
        hook=hook,
    )


def _host_of(ws: ServerConnection) -> str:
    try:
        return str(ws.remote_address[0])
    except (TypeError, IndexError, OSError):  # a socket already gone has no address
        return ""


async def _abort(ws: Any) -> None:
    if ws is not None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(ws.close(), CLOSE_LINGER)


class WebSocketListener:
    """Accepts direct connections; each becomes a `WebSocketConnection` after the handshake.

    `accept(peer_key)` may refuse a proven identity (e.g. not a contact);
    `on_refused(claimed_key_or_empty, reason)` hears about refused attempts.
    """

    def __init__(
        self,
        keys: IdentityKeys,
        on_connection: Callable[[WebSocketConnection], object],
        *,
        settings: TransportSettings | None = None,
        hook: FrameHook | None = None,
        accept: Callable[[bytes], bool] | None = None,
        on_refused: Callable[[bytes, str], None] | None = None,
        random_bytes: RandomBytes = os.urandom,
    ) -> None:
        self._keys = keys
        self._on_connection = on_connection
        self._settings = settings or TransportSettings()
        self._hook = hook
        self._accept = accept
        self._on_refused = on_refused
        self._random = random_bytes
        self._server: Server | None = None
        self._pending: dict[str, int] = {}

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> tuple[str, int]:
        """Listen on `host:port` (port 0 picks one); return the bound address."""
        self._server = await serve(self._handle, host, port, server_header=None, **_WS_OPTIONS)
        sockname = next(iter(self._server.sockets)).getsockname()
        return str(sockname[0]), int(sockname[1])

    @property
    def endpoint(self) -> str:
        """The bound ``host:port`` (after `start`)."""
        if self._server is None:
            raise RuntimeError("listener not started")
        host, port = next(iter(self._server.sockets)).getsockname()[:2]
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    def _refuse(self, key: bytes, reason: str) -> None:
        log.info("refused direct connection: %s", reason)
        if self._on_refused is not None:
            self._on_refused(key, reason)

    async def _handle(self, ws: ServerConnection) -> None:
        host = _host_of(ws)
        if (
            self._pending.get(host, 0) >= MAX_PENDING_PER_HOST
            or sum(self._pending.values()) >= MAX_PENDING_HANDSHAKES
        ):
            self._refuse(b"", "busy: too many handshakes in progress")
            await ws.close(1013, "busy")
            return
        self._pending[host] = self._pending.get(host, 0) + 1
        handshake = IdentityHandshake(
            self._keys, initiator=False, ephemeral_secret=self._random(32)
        )
        try:
            async with asyncio.timeout(self._settings.websocket_timeout):
                await _run_handshake(ws, handshake, initiator=False)
        except (RemoteProtocolError, AuthenticationFailed) as exc:
            self._refuse(b"", f"handshake failed: {exc}")
            return
        except (TimeoutError, OSError, WebSocketException) as exc:
            self._refuse(b"", f"handshake aborted: {type(exc).__name__}")
            return
        finally:
            self._pending[host] -= 1
            if not self._pending[host]:
                del self._pending[host]
        peer = handshake.peer
        assert peer is not None
        if self._accept is not None and not self._accept(peer.signing_key):
            self._refuse(peer.signing_key, "not accepted")
            return
        conn = WebSocketConnection(
            ws,
            handshake.transport(),
            local_key=self._keys.public.signing_key,
            peer_key=peer.signing_key,
            initiator=False,
            hook=self._hook,
        )
        self._on_connection(conn)
        # websockets closes the socket when this handler returns: stay until closed.
        await conn.wait_closed()

    async def close(self) -> None:
        """Stop listening and close the server's connections."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
