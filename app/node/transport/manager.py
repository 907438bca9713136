"""ConnectionManager: one live authenticated connection per contact, whatever the path.

* Path choice: WebRTC through the signaller first (or the direct WebSocket first when
  `TransportSettings.prefer_websocket`), then the other path; each attempt is bounded by
  its timeout, so a failing ICE falls back to the WebSocket path within
  `webrtc_timeout`.
* One connection per peer: when two live connections to the same peer exist (both sides
  dialled at once), both sides keep the one dialled by the smaller identity key and
  close the other, so they agree without talking about it. A peer that crashed can't
  close its old connection: when it dials again while the old one that would win has
  been silent, the old one is pinged first and replaced if it doesn't answer.
* Reconnect: addresses dialled with ``keep=True`` are redialled after a drop, with
  exponential backoff and jitter (`backoff_delay`), until `disconnect` or `close`.
* Liveness: keepalive PINGs, and an early PING when a frame that awaits an answer meets
  silence (`app.core.liveness`); a dead link is closed, so it is redialled at once.
* Network changes (`network_changed`: the machine woke up or its addresses changed):
  every open connection is probed at once, and every wanted peer without one is dialled
  now, whatever its backoff, spread over `WAKE_SPREAD` seconds (longer for many peers:
  at most `WAKE_DIALS_PER_SECOND`), peers lost most recently first.
* Events: `TransportEvent` values (frozen dataclasses) to subscribers, in order.
* Every frame passes the `FrameHook` given here (the traffic shaper's seat).
* Strangers: a connection a peer opened to us, when that peer is neither wanted (dialled
  with `keep`) nor `known` (the node's contacts), is a stranger's. At most
  `max_strangers` of those are open at once; one more is closed at once with a CLOSE
  saying why. Identities cost nothing to make, so without a cap anyone could hold
  thousands of handshaken connections, each with its keepalive and shaping.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import os
import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from app.core.identity import IdentityKeys, encode_address, normalize_address
from app.core.liveness import (
    Heard,
    LinkDead,
    LinkLiveness,
    LivenessSettings,
    SendPing,
    Suspected,
)
from app.node.futures import retrieve

from .base import (
    AuthenticatedConnection,
    AuthenticationFailed,
    ConnectFailed,
    ConnectionClosed,
    FrameHook,
    PathName,
    Signaller,
    TransportSettings,
)
from .webrtc import WebRTCResponder, dial_webrtc
from .websocket import WebSocketListener, dial_websocket

log = logging.getLogger(__name__)

MessageHandler = Callable[[str, bytes], Awaitable[None]]


class EndpointResolver(Protocol):
    """Where a peer's direct WebSocket path may be reached (invite, presence record, LAN)."""

    async def endpoints(self, address: str) -> Sequence[str]:
        """``host:port`` endpoints for `address`, best first (empty when none known)."""
        ...


class PeerState(enum.Enum):
    """Where the manager stands with one peer."""

    CONNECTING = "connecting"
    CONNECTED = "connected"
    DISCONNECTED = "disconnected"
    WAITING_TO_RETRY = "waiting-to-retry"


@dataclass(frozen=True)
class ConnectionStateChanged:
    """The state of the connection to `address` changed."""

    address: str
    state: PeerState
    path: PathName | None = None
    reason: str | None = None
    retry_in: float | None = None
    """Seconds until the next attempt (WAITING_TO_RETRY only)."""


@dataclass(frozen=True)
class AuthenticationRefused:
    """Someone failed to prove an identity on `path` (possible attack; feeds the detector).

    `address` is the identity that was claimed or expected, or None if unknown.
    """

    address: str | None
    path: PathName
    reason: str


TransportEvent = ConnectionStateChanged | AuthenticationRefused


def backoff_delay(attempt: int, initial: float, maximum: float, jitter: float) -> float:
    """Exponential backoff with "equal jitter": half fixed, half random (`jitter` in [0, 1))."""
    base = min(maximum, initial * float(1 << min(attempt, 30)))
    return base / 2 + base / 2 * jitter


STALE_AFTER = 1.0
"""Seconds of silence after which a connection that would beat a new duplicate is
pinged before the duplicate is refused (the peer may have restarted)."""
STALE_PROBE_TIMEOUT = 3.0
"""How long that ping may take before the old connection counts as dead."""
MAX_STRANGERS = 16
"""Open connections from peers neither wanted nor known, at most (see the docstring)."""
TOO_MANY_STRANGERS = "too many connections from unknown peers"
WAKE_SPREAD = 1.0
"""Seconds over which the dials after a network change are spread (at least)."""
WAKE_DIALS_PER_SECOND = 100.0
"""At most this many of those dials a second: 2,000 contacts are dialled over 20 s, not
in one burst of WebRTC offers that would hold the event loop for seconds."""


def _initiator_key(conn: AuthenticatedConnection) -> bytes:
    return conn.local_key if conn.initiator else conn.peer_key


def _rank(conn: AuthenticatedConnection) -> tuple[int, bytes]:
    """Of two live connections to one peer, both sides keep the smaller rank: the direct
    path (far faster for bulk data) before WebRTC, then the smaller initiator key."""
    return (0 if conn.path == "websocket" else 1, _initiator_key(conn))


class ConnectionManager:
    """Owns every authenticated connection of the node (see the module docstring)."""

    def __init__(
        self,
        keys: IdentityKeys,
        signaller: Signaller | None,
        *,
        settings: TransportSettings | None = None,
        resolver: EndpointResolver | None = None,
        hook: FrameHook | None = None,
        on_message: MessageHandler | None = None,
        accept: Callable[[str], bool] | None = None,
        known: Callable[[str], bool] | None = None,
        max_strangers: int = MAX_STRANGERS,
        prefer_websocket_for: Callable[[str], Awaitable[bool]] | None = None,
        random_bytes: Callable[[int], bytes] = os.urandom,
        rng: random.Random | None = None,
    ) -> None:
        self._keys = keys
        self.address = keys.public.address
        self._signaller = signaller
        self.settings = settings or TransportSettings()
        self._resolver = resolver
        self._hook = hook
        self._on_message = on_message
        self._accept = accept
        self.known = known
        """Whether an address is one of the node's contacts (no I/O); None: nobody is."""
        self.max_strangers = max_strangers
        self._prefer_websocket_for = prefer_websocket_for
        self._random_bytes = random_bytes
        self._rng = rng or random.SystemRandom()
        self._connections: dict[str, AuthenticatedConnection] = {}
        self._dials: dict[str, asyncio.Task[AuthenticatedConnection]] = {}
        self._upgrades: dict[str, asyncio.Future[bool]] = {}
        """`prefer_direct` moves in progress, one per peer, shared by every caller."""
        self._wanted: set[str] = set()
        self._retry_tasks: dict[str, asyncio.Task[None]] = {}
        self._lost_at: dict[str, float] = {}
        """Loop time at which each wanted peer's connection was last lost."""
        self._conn_tasks: dict[AuthenticatedConnection, list[asyncio.Task[None]]] = {}
        self._probes: set[asyncio.Task[None]] = set()
        """Pings of silent connections that a new duplicate may replace."""
        self._subscribers: list[Callable[[TransportEvent], None]] = []
        self._inbox: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue()
        self._closing = False
        self._responder = WebRTCResponder(
            keys,
            self._adopt,
            settings=self.settings,
            hook=hook,
            accept=self._accept_key,
            on_refused=self._refused_webrtc,
            random_bytes=random_bytes,
        )
        self._listener: WebSocketListener | None = None

    # ------------------------------------------------------------------ wiring

    async def start_listening(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Accept direct WebSocket connections on `host:port`; return the endpoint."""
        self._listener = WebSocketListener(
            self._keys,
            self._adopt,
            settings=self.settings,
            hook=self._hook,
            accept=self._accept_key,
            on_refused=self._refused_websocket,
            random_bytes=self._random_bytes,
        )
        await self._listener.start(host, port)
        return self._listener.endpoint

    async def handle_signal(self, payload: bytes) -> bytes:
        """Answer a signalling request from a peer (wire to the DHT's signal handler)."""
        return await self._responder.handle_signal(payload)

    def subscribe(self, callback: Callable[[TransportEvent], None]) -> Callable[[], None]:
        """Receive every `TransportEvent`; returns a function that unsubscribes."""
        self._subscribers.append(callback)
        return lambda: self._subscribers.remove(callback)

    def _emit(self, event: TransportEvent) -> None:
        for callback in list(self._subscribers):
            try:
                callback(event)
            except Exception:  # a broken subscriber must not break the transport
                log.exception("transport event subscriber failed")

    def _accept_key(self, key: bytes) -> bool:
        return not self._closing and (self._accept is None or self._accept(encode_address(key)))

    def _refused_webrtc(self, key: bytes, reason: str) -> None:
        self._emit(AuthenticationRefused(encode_address(key), "webrtc", reason))

    def _refused_websocket(self, key: bytes, reason: str) -> None:
        address = encode_address(key) if key else None
        self._emit(AuthenticationRefused(address, "websocket", reason))

    # ------------------------------------------------------------------ queries

    def connection(self, address: str) -> AuthenticatedConnection | None:
        """The live connection to `address`, if any."""
        conn = self._connections.get(normalize_address(address))
        return conn if conn is not None and conn.is_open else None

    @property
    def connected_peers(self) -> list[str]:
        """Addresses with a live connection."""
        return [a for a, c in self._connections.items() if c.is_open]

    # ------------------------------------------------------------------ commands

    async def connect(self, address: str, *, keep: bool = True) -> AuthenticatedConnection:
        """The live connection to `address`, dialling if needed.

        With `keep`, the manager also redials after drops (and after this attempt fails)
        until `disconnect`. Raises `ConnectFailed` when no path worked.
        """
        address = normalize_address(address)
        if address == self.address:
            raise ConnectFailed("cannot connect to ourselves")
        if keep:
            self._wanted.add(address)
        live = self.connection(address)
        if live is not None:
            return live
        try:
            return await self._dial_shared(address)
        except ConnectFailed:
            if keep and not self._closing:
                self._schedule_retry(address, attempt=0)
            raise

    async def send(self, address: str, payload: bytes, *, awaits_answer: bool = False) -> None:
        """Send one message to `address` (connecting first if needed); see
        `AuthenticatedConnection.send` for `awaits_answer`."""
        conn = await self.connect(address)
        await conn.send(payload, awaits_answer=awaits_answer)

    async def prefer_direct(self, address: str) -> bool:
        """Move a live WebRTC connection to the direct WebSocket path when the peer is
        reachable there (for bulk data: the data channel moves 10-20 MB/s, the direct
        path far more). The new connection replaces the old one on both sides (`_rank`).
        True if the connection now uses the direct path; failures keep the old one.

        Callers at the same time share one move: each incoming transfer asks before it
        fetches, and 600 small files accepted at once made 600 dials, each new connection
        replacing the one before and dropping what was in flight on it."""
        address = normalize_address(address)
        live = self.connection(address)
        if live is None or live.path == "websocket":
            return live is not None
        moving = self._upgrades.get(address)
        if moving is None:
            moving = self._upgrades[address] = asyncio.ensure_future(self._move_direct(address))
            moving.add_done_callback(retrieve)
            moving.add_done_callback(
                lambda done: (
                    self._upgrades.pop(address, None)
                    if self._upgrades.get(address) is done
                    else None
                )
            )
        return await asyncio.shield(moving)  # one caller giving up does not stop it

    async def _move_direct(self, address: str) -> bool:
        try:
            adopted = self._adopt(await self._dial_websocket(address))
        except (ConnectFailed, AuthenticationFailed) as exc:
            log.info("the direct path to a peer is not reachable (%s); keeping WebRTC", exc)
            return False
        return adopted.path == "websocket" and adopted.is_open

    async def receive(self) -> tuple[str, bytes]:
        """The next (address, message) received, when no `on_message` handler is set."""
        return await self._inbox.get()

    async def disconnect(self, address: str) -> None:
        """Stop wanting `address` and close its connection."""
        address = normalize_address(address)
        self._wanted.discard(address)
        self._lost_at.pop(address, None)
        task = self._retry_tasks.pop(address, None)
        if task is not None:
            task.cancel()
        conn = self._connections.get(address)
        if conn is not None:
            await conn.close("disconnected by the user")

    def network_changed(self) -> int:
        """The machine woke up or its addresses changed: probe every open connection
        now (a dead one closes within the probe timeout, and is redialled), and dial
        every wanted peer without a connection now rather than when its backoff says,
        spread over `WAKE_SPREAD` s (or `WAKE_DIALS_PER_SECOND`), most recently lost
        first. A dial already running is left to finish. Returns how many are dialled."""
        if self._closing:
            return 0
        now = asyncio.get_running_loop().time()
        for conn in list(self._connections.values()):
            if conn.is_open and conn.liveness is not None:
                conn.liveness.handle(Suspected(now))
                conn.liveness_changed.set()
        waiting = [a for a in self._wanted if self.connection(a) is None and a not in self._dials]
        waiting.sort(key=lambda a: self._lost_at.get(a, float("-inf")), reverse=True)
        spread = max(WAKE_SPREAD, len(waiting) / WAKE_DIALS_PER_SECOND)
        for index, address in enumerate(waiting):
            task = self._retry_tasks.pop(address, None)
            if task is not None:
                task.cancel()
            first = spread * (index + self._rng.random()) / len(waiting)
            self._schedule_retry(address, attempt=0, first_delay=first)
        if waiting:
            log.info("network changed: dialling %d peers within %.1f s", len(waiting), spread)
        return len(waiting)

    async def close(self) -> None:
        """Close every connection, stop listening and stop all retries."""
        self._closing = True
        self._wanted.clear()
        for task in [*self._retry_tasks.values(), *self._dials.values(), *self._probes]:
            task.cancel()
        for moving in self._upgrades.values():
            moving.cancel()
        await self._responder.close()
        if self._listener is not None:
            await self._listener.close()
        for conn in list(self._connections.values()):
            await conn.close("shutting down")
        for tasks in list(self._conn_tasks.values()):
            for task in tasks:
                task.cancel()

    # ------------------------------------------------------------------ dialling

    async def _dial_shared(self, address: str) -> AuthenticatedConnection:
        task = self._dials.get(address)
        if task is None:
            task = asyncio.get_running_loop().create_task(self._dial(address))
            self._dials[address] = task
            task.add_done_callback(lambda _t: self._dials.pop(address, None))
            # every caller may have given up (cancelled) by the time it fails: each one
            # still waiting gets the failure; nobody left is no error to log
            task.add_done_callback(retrieve)
        return await asyncio.shield(task)

    async def _dial(self, address: str) -> AuthenticatedConnection:
        self._emit(ConnectionStateChanged(address, PeerState.CONNECTING))
        paths: list[PathName] = ["webrtc", "websocket"]
        if self.settings.prefer_websocket or await self._direct_is_faster(address):
            paths.reverse()
        errors: list[str] = []
        for path in paths:
            try:
                conn = await (self._dial_webrtc(address) if path == "webrtc" else
                              self._dial_websocket(address))  # fmt: skip
            except AuthenticationFailed as exc:
                self._emit(AuthenticationRefused(address, path, str(exc)))
                errors.append(str(exc))
                continue
            except ConnectFailed as exc:
                errors.append(str(exc))
                continue
            adopted = self._adopt(conn)
            if adopted.is_open:
                return adopted
        live = self.connection(address)
        if live is not None:  # the peer dialled us meanwhile
            return live
        reason = "; ".join(errors) or "no path to the peer is configured"
        self._emit(ConnectionStateChanged(address, PeerState.DISCONNECTED, reason=reason))
        raise ConnectFailed(reason)

    async def _direct_is_faster(self, address: str) -> bool:
        """Whether to try the direct WebSocket path first for this peer (the node says so
        when the peer sits on a directly attached network; see `prefer_websocket_for`)."""
        if self._prefer_websocket_for is None:
            return False
        try:
            return await self._prefer_websocket_for(address)
        except Exception:  # a failed guess must not stop the dial: keep the default order
            log.debug("path preference for a peer failed", exc_info=True)
            return False

    async def _dial_webrtc(self, address: str) -> AuthenticatedConnection:
        if self._signaller is None:
            raise ConnectFailed("no signalling channel")
        return await dial_webrtc(
            self._keys,
            address,
            self._signaller,
            settings=self.settings,
            hook=self._hook,
            random_bytes=self._random_bytes,
        )

    async def _dial_websocket(self, address: str) -> AuthenticatedConnection:
        endpoints = await self._resolver.endpoints(address) if self._resolver else []
        if not endpoints:
            raise ConnectFailed("no direct endpoint known")
        errors: list[str] = []
        for endpoint in endpoints:
            try:
                return await dial_websocket(
                    self._keys,
                    address,
                    endpoint,
                    settings=self.settings,
                    hook=self._hook,
                    random_bytes=self._random_bytes,
                )
            except AuthenticationFailed:
                raise
            except ConnectFailed as exc:
                errors.append(str(exc))
        raise ConnectFailed("; ".join(errors))

    # ------------------------------------------------------------------ connection life

    def _is_stranger(self, address: str) -> bool:
        return address not in self._wanted and (self.known is None or not self.known(address))

    def _too_many_strangers(self, address: str) -> bool:
        """True if `address` is a stranger and `max_strangers` strangers are connected."""
        if not self._is_stranger(address):
            return False
        strangers = sum(1 for known in self._connections if self._is_stranger(known))
        return strangers >= self.max_strangers

    def _adopt(self, conn: AuthenticatedConnection) -> AuthenticatedConnection:
        """Make `conn` the connection to its peer, unless the existing one wins."""
        address = conn.peer_address
        if self._closing:
            asyncio.get_running_loop().create_task(conn.close("shutting down"))
            return conn
        existing = self._connections.get(address)
        if not conn.initiator and existing is None and self._too_many_strangers(address):
            log.info("refused a connection: %s", TOO_MANY_STRANGERS)
            asyncio.get_running_loop().create_task(conn.close(TOO_MANY_STRANGERS))
            return conn
        if existing is not None and existing.is_open and existing is not conn:
            keep_existing = _rank(existing) < _rank(conn)
            loop = asyncio.get_running_loop()
            if keep_existing and loop.time() - existing.last_received > STALE_AFTER:
                probe = loop.create_task(self._settle_duplicate(existing, conn))
                self._probes.add(probe)
                probe.add_done_callback(self._probes.discard)
                return existing
            loser = conn if keep_existing else existing
            asyncio.get_running_loop().create_task(loser.close("duplicate connection"))
            if keep_existing:
                return existing
        self._connections[address] = conn
        task = self._retry_tasks.pop(address, None)
        if task is not None and task is not asyncio.current_task():
            task.cancel()
        loop = asyncio.get_running_loop()
        conn.liveness = LinkLiveness(self._liveness_settings(), loop.time())
        self._conn_tasks[conn] = [
            loop.create_task(self._read_loop(conn)),
            loop.create_task(self._liveness_loop(conn)),
        ]
        conn.on_close(self._on_closed)
        self._emit(ConnectionStateChanged(address, PeerState.CONNECTED, path=conn.path))
        return conn

    async def _settle_duplicate(
        self, existing: AuthenticatedConnection, conn: AuthenticatedConnection
    ) -> None:
        """`conn` duplicates a silent `existing` that would win: keep `existing` if it
        answers a ping, else it is a dead peer's leftover (the peer restarted and dialled
        again) and `conn` replaces it. Frames on `conn` wait in its inbox meanwhile."""
        adopted = False
        try:
            try:
                await existing.ping(STALE_PROBE_TIMEOUT)
                return  # alive: `conn` is the duplicate after all
            except (TimeoutError, ConnectionClosed):
                pass
            if not conn.is_open or self._closing:
                return
            log.info("a peer connected again while its old connection was silent; replacing it")
            await existing.close("replaced: the peer connected again")
            adopted = self._adopt(conn) is conn
        finally:
            if not adopted and not conn.is_closed:
                asyncio.get_running_loop().create_task(conn.close("duplicate connection"))

    def _on_closed(self, conn: AuthenticatedConnection) -> None:
        for task in self._conn_tasks.pop(conn, []):
            if task is not asyncio.current_task():
                task.cancel()
        address = conn.peer_address
        if self._connections.get(address) is not conn:
            return  # a replaced duplicate: the peer still has its live connection
        del self._connections[address]
        self._emit(
            ConnectionStateChanged(
                address, PeerState.DISCONNECTED, path=conn.path, reason=conn.close_reason
            )
        )
        if address in self._wanted and not self._closing:
            self._lost_at[address] = asyncio.get_running_loop().time()
            self._schedule_retry(address, attempt=0)

    async def _read_loop(self, conn: AuthenticatedConnection) -> None:
        async for payload in conn:
            if self._on_message is None:
                self._inbox.put_nowait((conn.peer_address, payload))
                continue
            try:
                await self._on_message(conn.peer_address, payload)
            except Exception:  # the node's bug must not kill the connection's reader
                log.exception("message handler failed")

    def _liveness_settings(self) -> LivenessSettings:
        s = self.settings
        return LivenessSettings(
            keepalive_interval=s.keepalive_interval,
            keepalive_timeout=s.keepalive_timeout,
            probe_after=s.probe_after,
            probe_timeout_min=s.probe_timeout,
        )

    async def _liveness_loop(self, conn: AuthenticatedConnection) -> None:
        """Keepalive PINGs, and an early PING when an awaited answer meets silence;
        closes the connection when the link is dead (`app.core.liveness`)."""
        loop = asyncio.get_running_loop()
        liveness = conn.liveness
        if liveness is None:  # set by `_adopt`
            return
        with contextlib.suppress(ConnectionClosed):
            while conn.is_open:
                liveness.handle(Heard(conn.last_received))
                verdict = liveness.poll(loop.time())
                if isinstance(verdict, LinkDead):
                    log.info("link to a peer is dead (%s); closing it", verdict.reason)
                    await conn.close(verdict.reason, send_close=False, linger=False)
                    return
                if isinstance(verdict, SendPing):
                    conn.send_ping()
                    continue
                conn.liveness_changed.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout_at(verdict.until):
                        await conn.liveness_changed.wait()

    def _schedule_retry(self, address: str, attempt: int, first_delay: float | None = None) -> None:
        if address in self._retry_tasks:
            return
        loop = asyncio.get_running_loop()
        task = loop.create_task(self._retry_loop(address, attempt, first_delay))
        self._retry_tasks[address] = task
        task.add_done_callback(lambda t: self._retry_tasks.pop(address, None) if
                               self._retry_tasks.get(address) is t else None)  # fmt: skip

    def _backoff_cap(self, address: str) -> float:
        """`backoff_max` for a peer lost recently (a network blip), `backoff_max_absent`
        for one absent since this run began or for longer than `absent_after`."""
        lost_at = self._lost_at.get(address)
        now = asyncio.get_running_loop().time()
        if lost_at is not None and now - lost_at < self.settings.absent_after:
            return self.settings.backoff_max
        return max(self.settings.backoff_max, self.settings.backoff_max_absent)

    async def _retry_loop(self, address: str, attempt: int, first_delay: float | None) -> None:
        """Dial `address` until connected: after `first_delay` if given, else (and after
        each failure) after the backoff of the attempt."""
        while address in self._wanted and not self._closing:
            if self.connection(address) is not None:
                return
            if first_delay is not None:
                delay, first_delay = first_delay, None
            else:
                delay = backoff_delay(
                    attempt,
                    self.settings.backoff_initial,
                    self._backoff_cap(address),
                    self._rng.random(),
                )
            self._emit(ConnectionStateChanged(address, PeerState.WAITING_TO_RETRY, retry_in=delay))
            await asyncio.sleep(delay)
            if address not in self._wanted or self.connection(address) is not None:
                return
            try:
                await self._dial_shared(address)
                return
            except ConnectFailed:
                attempt += 1
