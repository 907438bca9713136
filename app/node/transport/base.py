"""What every transport path shares: settings, the signalling and shaping seams, and the
`AuthenticatedConnection` that the node uses once a peer's identity is proven.

A connection moves through ``authenticating -> open -> closed`` (never back). Frames are
`app.core.wire` frames carried as a byte stream that the path may chunk; the connection
decodes them, answers PINGs, measures RTT from PONGs, and hands DATA payloads to the
reader after the inbound hook. Every outbound frame goes through `FrameHook.outbound`
(where the traffic shaper will sit) before it is encoded.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, Protocol, runtime_checkable

from app.core.errors import RemoteProtocolError
from app.core.identity import encode_address
from app.core.liveness import AnswerAwaited, LinkLiveness, PingSent, PongReceived
from app.core.wire import Frame, FrameDecoder, FrameType
from app.node.futures import retrieve

if TYPE_CHECKING:
    from aiortc import RTCConfiguration

log = logging.getLogger(__name__)

PathName = Literal["webrtc", "turn", "websocket"]
ConnectionStateName = Literal["authenticating", "open", "closed"]

MAX_INBOUND_BUFFER = 32 * 1024 * 1024
"""Bytes of received, not yet consumed DATA after which the connection is dropped."""


class TransportError(Exception):
    """Base of the transport layer's errors (node side)."""


class ConnectFailed(TransportError):
    """No authenticated connection could be established on this path."""


class AuthenticationFailed(ConnectFailed):
    """The peer could not prove the identity we expected (binding/handshake refused)."""


class ConnectionClosed(TransportError):
    """The connection is closed; `reason` says why."""


@dataclass(frozen=True)
class IceServer:
    """A STUN or TURN server the user configured (none by default)."""

    urls: tuple[str, ...]
    username: str | None = None
    credential: str | None = None


class RelayHealth(Protocol):
    """Whether the configured TURN server works (`app.node.transport.relay_watch`)."""

    def servers(self, configured: tuple[IceServer, ...]) -> tuple[IceServer, ...]:
        """The ICE servers a new connection is given."""
        ...

    def gathered(self, configuration: RTCConfiguration, sdp: str) -> None:
        """A connection made with `configuration` gathered the candidates in `sdp`."""
        ...


@dataclass(frozen=True)
class TransportSettings:
    """User-facing transport settings. Defaults contact no third party at all."""

    ice_servers: tuple[IceServer, ...] = ()
    relay_watch: RelayHealth | None = field(default=None, compare=False)
    """Leaves a TURN server that does not work out of new connections, and hears what
    each connection's gathering got from it (`app.node.transport.relay_watch`)."""
    relay_only: bool = False
    """Force `iceTransportPolicy="relay"` (all traffic through the user's TURN server)."""
    webrtc_timeout: float = 15.0
    """Seconds for signalling + ICE + DTLS + binding before WebRTC counts as failed."""
    websocket_timeout: float = 10.0
    """Seconds for TCP connect + Noise handshake on the direct path."""
    prefer_websocket: bool = False
    """Try the direct WebSocket path first (e.g. for bulk transfers between LAN peers)."""
    backoff_initial: float = 1.0
    backoff_max: float = 60.0
    """Longest wait between redials of a wanted peer lost less than `absent_after` ago."""
    backoff_max_absent: float = 120.0
    """Longest wait for a peer not connected in this run, or lost longer ago: an absent
    peer dials us itself when it comes back, and a message to it dials at once, so a
    node with many absent contacts need not build a WebRTC offer for each every
    `backoff_max` (2,000 of them at 20 s took a quarter of a core)."""
    absent_after: float = 600.0
    keepalive_interval: float = 15.0
    """Seconds between PINGs on an idle-or-not connection (also refreshes `rtt_ms`)."""
    keepalive_timeout: float = 10.0
    """Seconds of silence (no frame at all) after a PING before the connection is closed."""
    probe_after: float = 2.0
    """Seconds of silence while an answer is awaited before an early PING (at least a few
    RTTs; see `app.core.liveness`)."""
    probe_timeout: float = 2.0
    """Further seconds of silence after that PING before the connection is closed (at
    least a few RTTs)."""


class Signaller(Protocol):
    """Request/response signalling to a peer (the node wires it to the DHT RPC).

    `peer` is the contact's text address; the adapter resolves it to the peer's DHT
    address. Returns the peer's answer, or None when the peer cannot be reached.
    """

    async def send_signal(self, peer: str, payload: bytes) -> bytes | None:
        """Deliver `payload` to `peer` and return its reply (None if unreachable)."""
        ...


class FrameHook(Protocol):
    """Per-frame hook on every connection: the traffic shaper's seat."""

    async def outbound(self, peer: str, frame: Frame) -> Sequence[Frame]:
        """Frames to actually send for `frame` (may pad, split, delay or add cover)."""
        ...

    def inbound(self, peer: str, frame: Frame) -> Frame | Sequence[Frame] | None:
        """The frame(s) to deliver for a received one, or None to drop it (cover traffic)."""
        ...


@runtime_checkable
class ConnectionBoundHook(FrameHook, Protocol):
    """A `FrameHook` that wants its own instance per connection (the traffic shaper).

    When a connection opens it calls `bind(connection)` and uses the returned hook for
    that connection from then on; the bound hook may write frames on its own schedule
    with `AuthenticatedConnection.write_frame` (cover traffic, paced slots) and follows
    the connection's lifetime through `on_close`. `inbound` may raise
    `RemoteProtocolError` for a malformed frame: the connection is then closed.
    """

    def bind(self, connection: AuthenticatedConnection) -> FrameHook:
        """The hook to use for `connection` from now on."""
        ...


class PassThroughHook:
    """The default `FrameHook`: sends and delivers frames unchanged, drops COVER frames."""

    async def outbound(self, peer: str, frame: Frame) -> Sequence[Frame]:
        """Send the frame as is."""
        return (frame,)

    def inbound(self, peer: str, frame: Frame) -> Frame | None:
        """Deliver the frame as is (COVER frames are dropped by the connection)."""
        return frame


@dataclass
class _PendingPing:
    sent_at: float
    future: asyncio.Future[float] = field(repr=False)


class AuthenticatedConnection:
    """A live connection whose peer identity has been proven (or is being proven).

    Subclasses implement `_write_bytes` (queue bytes for the peer, in order) and
    `_shutdown_transport` (release the path's resources), and call `_receive_bytes` with
    what arrives and `_mark_open` once the peer is authenticated.
    """

    path: PathName

    def __init__(
        self,
        *,
        local_key: bytes,
        peer_key: bytes,
        initiator: bool,
        hook: FrameHook | None = None,
    ) -> None:
        self.local_key = local_key
        self.peer_key = peer_key
        self.initiator = initiator
        self.peer_address = encode_address(peer_key)
        self._hook: FrameHook = hook or PassThroughHook()
        self._decoder = FrameDecoder()
        self._inbox: asyncio.Queue[bytes | None] = asyncio.Queue()
        self._inbox_bytes = 0
        self._pings: dict[bytes, _PendingPing] = {}
        self._ping_counter = 0
        self._loop = asyncio.get_running_loop()
        self._opened: asyncio.Future[None] = self._loop.create_future()
        self._closed = asyncio.Event()
        self._close_callbacks: list[Callable[[AuthenticatedConnection], None]] = []
        self.state: ConnectionStateName = "authenticating"
        self.close_reason: str | None = None
        self._auth_refused = False
        self._failing = False
        self._close_sent = False
        self._linger = True
        self.rtt_ms: float | None = None
        """Round-trip time of the last PING/PONG on this connection, in milliseconds."""
        self.last_received = self._loop.time()
        """Event-loop time of the last bytes from the peer (a crashed peer goes silent)."""
        self.remote_host: str | None = None
        """The peer's IP address on a direct path (None when relayed or over WebRTC)."""
        self.liveness: LinkLiveness | None = None
        """Told about awaited answers and PONGs (set by the connection manager)."""
        self.liveness_changed = asyncio.Event()
        """Set when an awaited answer may have moved the liveness deadline earlier."""

    # ------------------------------------------------------------------ for subclasses

    def _write_bytes(self, data: bytes) -> None:
        """Queue `data` for the peer, in order; raise `ConnectionError` if the path is gone."""
        raise NotImplementedError

    async def _drain(self) -> None:
        """Wait until the path's send buffer is below its high-water mark."""

    async def _shutdown_transport(self) -> None:
        raise NotImplementedError

    def _handle_auth_frame(self, frame: Frame) -> None:
        """Authentication frames (HELLO/BINDING): only meaningful to some paths."""
        self._fail(f"unexpected {frame.type.name} frame")

    def _send_frame_now(self, frame: Frame) -> None:
        """Encode and write a control frame, bypassing the hook (auth, PING/PONG)."""
        try:
            self._write_bytes(frame.encode())
        except ConnectionError as exc:
            self._fail(f"send failed: {exc}", send_close=False)

    def _mark_open(self) -> None:
        if self.state != "authenticating":
            return
        self.state = "open"
        if isinstance(self._hook, ConnectionBoundHook):
            self._hook = self._hook.bind(self)
        if not self._opened.done():
            self._opened.set_result(None)

    def _receive_bytes(self, data: bytes) -> None:
        """Feed bytes from the path; decodes and dispatches every complete frame."""
        if self.is_closed or self._failing:
            return
        self.last_received = self._loop.time()
        try:
            frames = self._decoder.feed(data)
        except RemoteProtocolError as exc:
            self._fail(f"protocol error: {exc}", auth=self.state == "authenticating")
            return
        for frame in frames:
            if self.is_closed or self._failing:
                return
            self._dispatch(frame)

    def _dispatch(self, frame: Frame) -> None:
        if frame.type in (FrameType.HELLO, FrameType.BINDING):
            self._handle_auth_frame(frame)
            return
        if frame.type == FrameType.CLOSE:
            reason = frame.payload[:200].decode("utf-8", "replace")
            self._fail(f"peer closed: {reason}" if reason else "peer closed", send_close=False)
            return
        if self.state != "open":
            self._fail(f"{frame.type.name} frame before authentication", auth=True)
            return
        if frame.type == FrameType.PING:
            self._send_frame_now(Frame(FrameType.PONG, frame.payload[:64]))
        elif frame.type == FrameType.PONG:
            pending = self._pings.pop(frame.payload, None)
            if pending is not None:
                now = self._loop.time()
                rtt = (now - pending.sent_at) * 1000.0
                self.rtt_ms = rtt
                if self.liveness is not None:
                    self.liveness.handle(PongReceived(now, pending.sent_at))
                if not pending.future.done():
                    pending.future.set_result(rtt)
        else:
            try:
                delivered = self._hook.inbound(self.peer_address, frame)
            except RemoteProtocolError as exc:
                self._fail(f"protocol error: {exc}")
                return
            if delivered is None:
                return
            for item in (delivered,) if isinstance(delivered, Frame) else delivered:
                if item.type != FrameType.DATA:
                    continue
                self._inbox_bytes += len(item.payload)
                if self._inbox_bytes > MAX_INBOUND_BUFFER:
                    self._fail("receive buffer overflow (reader too slow)")
                    return
                self._inbox.put_nowait(item.payload)

    def _fail(self, reason: str, *, send_close: bool = True, auth: bool = False) -> None:
        """Close because of `reason` (sync entry point for callbacks).

        `auth` marks a refused identity proof: `wait_open` then raises `AuthenticationFailed`
        rather than `ConnectFailed`.
        """
        if self.state == "closed" or self._failing:
            return
        self._failing = True
        self._auth_refused = auth
        self._loop.create_task(self.close(reason, send_close=send_close))

    # ------------------------------------------------------------------ public API

    async def wait_open(self) -> None:
        """Wait until the peer is authenticated; raise `AuthenticationFailed` if refused."""
        await self._opened

    @property
    def auth_refused(self) -> bool:
        """True when the connection closed because the peer's identity proof failed."""
        return self._auth_refused

    @property
    def is_closed(self) -> bool:
        """True once closed (for any reason)."""
        return self.state == "closed"

    @property
    def is_open(self) -> bool:
        """True while authenticated and not closed."""
        return self.state == "open"

    def on_close(self, callback: Callable[[AuthenticatedConnection], None]) -> None:
        """Call `callback(self)` once the connection closes (immediately if it is closed)."""
        if self.state == "closed":
            callback(self)
        else:
            self._close_callbacks.append(callback)

    async def send(self, payload: bytes, *, awaits_answer: bool = False) -> None:
        """Send one application message (<= 1 MiB) through the hook; raises if closed.

        `awaits_answer`: the peer is expected to answer it (a message waiting for its
        acknowledgement, a block request); if the link then goes silent, it is probed
        at once rather than at the next keepalive (`app.core.liveness`)."""
        if self.state != "open":
            raise ConnectionClosed(self.close_reason or "connection not open")
        for frame in await self._hook.outbound(self.peer_address, Frame(FrameType.DATA, payload)):
            if self.state != "open":
                raise ConnectionClosed(self.close_reason or "connection closed")
            try:
                self._write_bytes(frame.encode())
            except ConnectionError as exc:
                self._fail(f"send failed: {exc}", send_close=False)
                raise ConnectionClosed(f"send failed: {exc}") from None
        if awaits_answer and self.liveness is not None:
            self.liveness.handle(AnswerAwaited(self._loop.time()))
            self.liveness_changed.set()
        await self._drain()

    def write_frame(self, frame: Frame) -> None:
        """Write one frame now, bypassing the hook (for a bound hook's own schedule)."""
        if self.state != "open":
            raise ConnectionClosed(self.close_reason or "connection not open")
        try:
            self._write_bytes(frame.encode())
        except ConnectionError as exc:
            self._fail(f"send failed: {exc}", send_close=False)
            raise ConnectionClosed(f"send failed: {exc}") from None

    async def drain(self) -> None:
        """Wait until the path's send buffer is below its high-water mark."""
        await self._drain()

    async def recv(self) -> bytes:
        """The next application message; raises `ConnectionClosed` once closed and drained."""
        item = await self._inbox.get()
        if item is None:
            self._inbox.put_nowait(None)  # keep waking other readers
            raise ConnectionClosed(self.close_reason or "connection closed")
        self._inbox_bytes -= len(item)
        return item

    async def __aiter__(self) -> AsyncIterator[bytes]:
        """Iterate over received messages until the connection closes."""
        while True:
            try:
                yield await self.recv()
            except ConnectionClosed:
                return

    async def ping(self, timeout: float = 5.0) -> float:
        """Send a PING and return the round-trip time in ms (also stored in `rtt_ms`)."""
        token, pending = self._send_ping()
        try:
            return await asyncio.wait_for(pending.future, timeout)
        finally:
            self._pings.pop(token, None)

    def send_ping(self) -> None:
        """Send a PING whose PONG only feeds `rtt_ms` and `liveness` (nobody waits)."""
        _, pending = self._send_ping()
        pending.future.add_done_callback(retrieve)

    def _send_ping(self) -> tuple[bytes, _PendingPing]:
        if self.state != "open":
            raise ConnectionClosed(self.close_reason or "connection not open")
        self._ping_counter += 1
        token = struct.pack(">Q", self._ping_counter)
        now = self._loop.time()
        pending = _PendingPing(now, self._loop.create_future())
        self._pings[token] = pending
        if self.liveness is not None:
            self.liveness.handle(PingSent(now))
        self._send_frame_now(Frame(FrameType.PING, token))
        return token, pending

    async def close(
        self, reason: str = "closed locally", *, send_close: bool = True, linger: bool = True
    ) -> None:
        """Close the connection (idempotent); tells the peer why when possible.

        `linger`: give what is queued (the CLOSE frame) up to a second to leave;
        without it the path is torn down at once (a link found dead: nothing would
        leave, and the wait would only delay the redial)."""
        if self.state == "closed":
            await self._closed.wait()
            return
        was_open = self.state == "open"
        self.state = "closed"
        self.close_reason = reason
        self._linger = linger
        log.debug("connection to %s closed: %s", self.peer_address, reason)
        if send_close and was_open:
            with contextlib.suppress(Exception):
                self._write_bytes(Frame(FrameType.CLOSE, reason.encode()[:200]).encode())
                self._close_sent = True
        if not self._opened.done():
            failure = AuthenticationFailed if self._auth_refused else ConnectFailed
            self._opened.set_exception(failure(reason))
            self._opened.exception()  # mark retrieved: nobody may be waiting
        for pending in self._pings.values():
            if not pending.future.done():
                pending.future.set_exception(ConnectionClosed(reason))
        self._inbox.put_nowait(None)
        try:
            await self._shutdown_transport()
        except Exception:  # a failing teardown must not hide the close
            log.debug("transport teardown failed", exc_info=True)
        finally:
            self._closed.set()
            callbacks, self._close_callbacks = self._close_callbacks, []
            for callback in callbacks:
                callback(self)

    async def wait_closed(self) -> None:
        """Wait until the connection is closed."""
        await self._closed.wait()
