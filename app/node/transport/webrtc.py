"""WebRTC data-channel path (aiortc), authenticated with an RFC 8844-style binding.

Flow (initiator ``I``, responder ``R``; signalling is one request/response through the
`Signaller`, i.e. the DHT, which we do not trust)::

    I: createOffer (full ICE gathering, no trickle) -> OFFER{sid, from, to, sdp} -> R
    R: setRemoteDescription, createAnswer          <- ANSWER{sid, sdp}
    ICE + DTLS; aiortc checks the peer certificate against the SDP fingerprint
    both: on channel open, cross-check the SDP fingerprint against the certificate the
          DTLS transport actually saw, then send HELLO(32-byte fresh nonce)
    both: on HELLO, send BINDING(sign(both identity keys, both fingerprints, both nonces))
    both: on BINDING, verify it against our own view; open, or close on any mismatch

ICE servers are always passed explicitly (`RTCConfiguration(iceServers=[...])`): the
user's list, empty by default, because aiortc adds a public STUN server when given None.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import cbor2
from aiortc import (
    RTCConfiguration,
    RTCIceServer,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.rtcconfiguration import RTCIceTransportPolicy
from aiortc.rtcdtlstransport import certificate_digest
from aiortc.sdp import SessionDescription

from app.core.binding import NONCE_SIZE, make_binding, normalize_fingerprint, verify_binding
from app.core.errors import RemoteProtocolError
from app.core.identity import KEY_SIZE, IdentityKeys, decode_address
from app.core.wire import Frame, FrameType
from app.node.futures import retrieve

from .base import (
    AuthenticatedConnection,
    AuthenticationFailed,
    ConnectFailed,
    FrameHook,
    Signaller,
    TransportSettings,
)

log = logging.getLogger(__name__)

SIGNAL_VERSION = 1
CHANNEL_LABEL = "scrambled-eggs/1"
CHUNK_SIZE = 65536
"""Bytes per data-channel message: the default max-message-size every WebRTC stack takes."""
HIGH_WATER = 4 * 1024 * 1024
MAX_SIGNAL_BYTES = 16 * 1024
MAX_PENDING_OFFERS = 16
CLOSE_LINGER = 1.0
"""Seconds to wait after sending CLOSE for the peer to close the channel."""
PC_CLOSE_WAIT = 2.0
"""Seconds a close waits for aiortc to stop the peer connection; the rest goes on in the
background. Stopping a relayed connection deletes its TURN allocation, and with the TURN
server gone (or the network) aioice retries that for ~40 s per allocation: a node's stop
took 65 s."""

RandomBytes = Callable[[int], bytes]


def build_configuration(settings: TransportSettings) -> RTCConfiguration:
    """An explicit `RTCConfiguration`: the user's ICE servers (none by default), without
    a TURN server known not to work (`TransportSettings.relay_watch`)."""
    chosen = settings.ice_servers
    if settings.relay_watch is not None:
        chosen = settings.relay_watch.servers(chosen)
    servers = [
        RTCIceServer(urls=list(s.urls), username=s.username, credential=s.credential)
        for s in chosen
    ]
    policy = RTCIceTransportPolicy.RELAY if settings.relay_only else RTCIceTransportPolicy.ALL
    return RTCConfiguration(iceServers=servers, iceTransportPolicy=policy)


def _gathered(
    settings: TransportSettings, configuration: RTCConfiguration, pc: RTCPeerConnection
) -> None:
    """Tell the relay watch what the gathering got (no relay candidate: the TURN
    server in `configuration` did not work)."""
    if settings.relay_watch is not None and pc.localDescription is not None:
        settings.relay_watch.gathered(configuration, pc.localDescription.sdp)


# --------------------------------------------------------------------------- signalling


@dataclass(frozen=True)
class Offer:
    """An SDP offer from `sender` (claimed, proven later by the binding) to `recipient`."""

    session_id: bytes
    sender: bytes
    recipient: bytes
    sdp: str


def encode_offer(offer: Offer) -> bytes:
    """Canonical CBOR of an offer."""
    fields = {"v": SIGNAL_VERSION, "t": "offer", "sid": offer.session_id, "from": offer.sender,
              "to": offer.recipient, "sdp": offer.sdp}  # fmt: skip
    return bytes(cbor2.dumps(fields, canonical=True))


def _load(payload: bytes) -> dict[str, Any]:
    if len(payload) > MAX_SIGNAL_BYTES:
        raise RemoteProtocolError("signalling message too large")
    try:
        fields = cbor2.loads(payload, max_depth=2)
    except Exception as exc:  # cbor2 raises several unrelated types on garbage
        raise RemoteProtocolError(f"signalling message is not CBOR: {type(exc).__name__}") from None
    if not isinstance(fields, dict) or fields.get("v") != SIGNAL_VERSION:
        raise RemoteProtocolError("unsupported signalling message")
    return fields


def decode_offer(payload: bytes) -> Offer:
    """Parse an offer (raises `RemoteProtocolError`)."""
    f = _load(payload)
    ok = (
        f.get("t") == "offer"
        and isinstance(f.get("sid"), bytes)
        and len(f["sid"]) == 16
        and all(isinstance(f.get(k), bytes) and len(f[k]) == KEY_SIZE for k in ("from", "to"))
        and isinstance(f.get("sdp"), str)
    )
    if not ok:
        raise RemoteProtocolError("malformed offer")
    return Offer(f["sid"], f["from"], f["to"], f["sdp"])


def encode_answer(session_id: bytes, sdp: str | None, reason: str = "") -> bytes:
    """Canonical CBOR of an answer, or of a refusal when `sdp` is None."""
    fields: dict[str, Any] = {"v": SIGNAL_VERSION, "sid": session_id}
    if sdp is None:
        fields.update(t="reject", reason=reason[:200])
    else:
        fields.update(t="answer", sdp=sdp)
    return bytes(cbor2.dumps(fields, canonical=True))


def decode_answer(payload: bytes, session_id: bytes) -> str:
    """The SDP of an answer to `session_id` (raises `ConnectFailed` on a refusal)."""
    f = _load(payload)
    if f.get("sid") != session_id:
        raise RemoteProtocolError("answer for another session")
    if f.get("t") == "reject":
        raise ConnectFailed(f"peer refused the connection: {str(f.get('reason'))[:200]}")
    if f.get("t") != "answer" or not isinstance(f.get("sdp"), str):
        raise RemoteProtocolError("malformed answer")
    return str(f["sdp"])


# --------------------------------------------------------------------------- connection


def _sha256_fingerprint(fingerprints: Any) -> str:
    for fp in fingerprints:
        if fp.algorithm.lower() == "sha-256":
            return normalize_fingerprint(fp.algorithm, fp.value)
    raise RemoteProtocolError("no sha-256 DTLS fingerprint")


def dtls_fingerprints(pc: RTCPeerConnection) -> tuple[str, str]:
    """(local, remote) sha-256 fingerprints of an established peer connection.

    The remote one comes from the remote description and is cross-checked against the
    certificate the DTLS transport actually received; a difference raises.
    """
    if pc.sctp is None:
        raise RemoteProtocolError("no SCTP transport negotiated")
    dtls = pc.sctp.transport
    local = _sha256_fingerprint(dtls.getLocalParameters().fingerprints)
    description = SessionDescription.parse(pc.remoteDescription.sdp)
    remote_fps = [fp for media in description.media if media.dtls for fp in media.dtls.fingerprints]
    remote = _sha256_fingerprint(remote_fps)
    ssl = getattr(dtls, "_ssl", None)
    certificate = ssl.get_peer_certificate(as_cryptography=True) if ssl is not None else None
    if certificate is None:
        raise RemoteProtocolError("DTLS transport has no peer certificate")
    seen = normalize_fingerprint("sha-256", certificate_digest(certificate, "sha-256"))
    if seen != remote:
        raise RemoteProtocolError("peer certificate differs from the signalled fingerprint")
    return local, remote


def selected_path(pc: RTCPeerConnection) -> str:
    """ "turn" when the nominated ICE pair uses a relay candidate, else "webrtc"."""
    ice = pc.sctp.transport.transport if pc.sctp is not None else None
    connection = getattr(ice, "_connection", None)
    pair = getattr(connection, "_nominated", {}).get(1) if connection is not None else None
    if pair is None:
        return "webrtc"
    types = {pair.protocol.local_candidate.type, pair.remote_candidate.type}
    return "turn" if "relay" in types else "webrtc"


class WebRTCConnection(AuthenticatedConnection):
    """An `AuthenticatedConnection` over one ordered, reliable aiortc data channel."""

    def __init__(
        self,
        pc: RTCPeerConnection,
        keys: IdentityKeys,
        peer_key: bytes,
        *,
        initiator: bool,
        nonce: bytes,
        hook: FrameHook | None = None,
    ) -> None:
        super().__init__(
            local_key=keys.public.signing_key, peer_key=peer_key, initiator=initiator, hook=hook
        )
        self.path = "webrtc"
        self.pc = pc
        self.channel: Any = None
        self._keys = keys
        self._nonce = nonce
        self._remote_nonce: bytes | None = None
        self._fingerprints: tuple[str, str] | None = None
        self._low = asyncio.Event()
        self._channel_closed = asyncio.Event()
        pc.on("connectionstatechange", self._on_pc_state)

    def _on_pc_state(self) -> None:
        if self.pc.connectionState in ("failed", "closed"):
            self._fail(f"peer connection {self.pc.connectionState}", send_close=False)

    def attach_channel(self, channel: Any) -> None:
        """Use `channel` for this connection; authentication starts once it is open."""
        self.channel = channel
        channel.bufferedAmountLowThreshold = HIGH_WATER // 2
        channel.on("message", self._on_message)
        channel.on("close", self._on_channel_close)
        channel.on("bufferedamountlow", self._low.set)
        if channel.readyState == "open":
            self._start_auth()
        else:
            channel.on("open", self._start_auth)

    def _on_channel_close(self) -> None:
        self._channel_closed.set()
        self._fail("data channel closed", send_close=False)

    def _on_message(self, message: bytes | str) -> None:
        if isinstance(message, str):
            self._fail("text message on the data channel")
            return
        self._receive_bytes(message)

    def _auth_failed(self, reason: str) -> None:
        log.warning("refusing WebRTC connection to %s: %s", self.peer_address, reason)
        self._fail(f"authentication failed: {reason}", auth=True)

    def _start_auth(self) -> None:
        if self._fingerprints is not None or self.is_closed:
            return
        try:
            self._fingerprints = dtls_fingerprints(self.pc)
        except RemoteProtocolError as exc:
            self._auth_failed(str(exc))
            return
        self._send_frame_now(Frame(FrameType.HELLO, self._nonce))

    def _handle_auth_frame(self, frame: Frame) -> None:
        self._start_auth()
        if self._fingerprints is None or self.state != "authenticating":
            self._auth_failed(f"unexpected {frame.type.name} frame")
            return
        local_fp, remote_fp = self._fingerprints
        if frame.type == FrameType.HELLO:
            if self._remote_nonce is not None or len(frame.payload) != NONCE_SIZE:
                self._auth_failed("bad or repeated HELLO")
                return
            self._remote_nonce = frame.payload
            binding = make_binding(
                self._keys,
                peer_key=self.peer_key,
                local_fingerprint=local_fp,
                remote_fingerprint=remote_fp,
                local_nonce=self._nonce,
                remote_nonce=self._remote_nonce,
            )
            self._send_frame_now(Frame(FrameType.BINDING, binding))
            return
        if self._remote_nonce is None:
            self._auth_failed("BINDING before HELLO")
            return
        try:
            verify_binding(
                frame.payload,
                local_key=self.local_key,
                expected_peer_key=self.peer_key,
                local_fingerprint=local_fp,
                remote_fingerprint=remote_fp,
                local_nonce=self._nonce,
                remote_nonce=self._remote_nonce,
            )
        except RemoteProtocolError as exc:
            self._auth_failed(str(exc))
            return
        self.path = "turn" if selected_path(self.pc) == "turn" else "webrtc"
        self._mark_open()

    def _write_bytes(self, data: bytes) -> None:
        if self.channel is None or self.channel.readyState != "open":
            raise ConnectionError("data channel not open")
        try:
            for i in range(0, len(data), CHUNK_SIZE):
                self.channel.send(data[i : i + CHUNK_SIZE])
        except Exception as exc:  # aiortc raises InvalidStateError and friends
            raise ConnectionError(str(exc)) from exc

    async def _drain(self) -> None:
        while self.channel is not None and self.channel.bufferedAmount > HIGH_WATER:
            if self.is_closed:
                return
            self._low.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._low.wait(), 1.0)

    async def _shutdown_transport(self) -> None:
        if self._close_sent and self._linger:
            # Let the CLOSE frame arrive: the peer closes the channel when it reads it.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._channel_closed.wait(), CLOSE_LINGER)
        if self.channel is not None:
            with contextlib.suppress(Exception):
                self.channel.close()
        closing = asyncio.ensure_future(self.pc.close())
        closing.add_done_callback(retrieve)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(closing), PC_CLOSE_WAIT)


# --------------------------------------------------------------------------- dial / answer


async def dial_webrtc(
    keys: IdentityKeys,
    peer_address: str,
    signaller: Signaller,
    *,
    settings: TransportSettings | None = None,
    hook: FrameHook | None = None,
    random_bytes: RandomBytes = os.urandom,
) -> WebRTCConnection:
    """Open an authenticated WebRTC connection to `peer_address`.

    Raises `ConnectFailed` (signalling, ICE, DTLS or timeout) or `AuthenticationFailed`
    (the binding did not verify); the peer connection is closed in both cases.
    """
    settings = settings or TransportSettings()
    peer_key = decode_address(peer_address)
    configuration = build_configuration(settings)
    pc = RTCPeerConnection(configuration)
    conn = WebRTCConnection(
        pc, keys, peer_key, initiator=True, nonce=random_bytes(NONCE_SIZE), hook=hook
    )
    conn.attach_channel(pc.createDataChannel(CHANNEL_LABEL, ordered=True))
    session_id = random_bytes(16)
    try:
        async with asyncio.timeout(settings.webrtc_timeout):
            await pc.setLocalDescription(await pc.createOffer())
            _gathered(settings, configuration, pc)
            offer = Offer(session_id, conn.local_key, peer_key, pc.localDescription.sdp)
            try:
                reply = await signaller.send_signal(peer_address, encode_offer(offer))
            except (OSError, RuntimeError, ValueError) as exc:  # the DHT's failures
                raise ConnectFailed(f"signalling failed: {exc or type(exc).__name__}") from exc
            if reply is None:
                raise ConnectFailed("the peer could not be reached for signalling")
            sdp = decode_answer(reply, session_id)
            await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="answer"))
            await conn.wait_open()
    except AuthenticationFailed:
        await conn.close("authentication failed")
        raise
    except (TimeoutError, ConnectFailed, RemoteProtocolError, ValueError) as exc:
        reason = "timed out" if isinstance(exc, TimeoutError) else str(exc)
        await conn.close(f"WebRTC connect failed: {reason}")
        raise ConnectFailed(f"WebRTC connection to {peer_address} failed: {reason}") from exc
    except BaseException:
        await conn.close("WebRTC connect aborted")
        raise
    return conn


class WebRTCResponder:
    """Answers WebRTC offers arriving through signalling; hands out authenticated connections.

    Wire `handle_signal` to the DHT's signal handler. `accept(peer_key)` may refuse
    unknown peers before any ICE work; `on_connection` receives each connection once its
    binding has verified; `on_refused(claimed_key, reason)` hears about the others.
    """

    def __init__(
        self,
        keys: IdentityKeys,
        on_connection: Callable[[WebRTCConnection], object],
        *,
        settings: TransportSettings | None = None,
        hook: FrameHook | None = None,
        accept: Callable[[bytes], bool] | None = None,
        on_refused: Callable[[bytes, str], None] | None = None,
        random_bytes: RandomBytes = os.urandom,
    ) -> None:
        self._keys = keys
        self._on_refused = on_refused
        self._local_key = keys.public.signing_key
        self._on_connection = on_connection
        self._settings = settings or TransportSettings()
        self._hook = hook
        self._accept = accept
        self._random = random_bytes
        self._pending: set[WebRTCConnection] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    async def handle_signal(self, payload: bytes) -> bytes:
        """Answer one OFFER (or return a refusal). Never raises for bad input."""
        try:
            offer = decode_offer(payload)
        except RemoteProtocolError as exc:
            return encode_answer(b"", None, f"bad offer: {exc}")
        if offer.recipient != self._local_key:
            return encode_answer(offer.session_id, None, "wrong recipient")
        if self._accept is not None and not self._accept(offer.sender):
            return encode_answer(offer.session_id, None, "not accepted")
        if len(self._pending) >= MAX_PENDING_OFFERS:
            return encode_answer(offer.session_id, None, "busy")
        configuration = build_configuration(self._settings)
        pc = RTCPeerConnection(configuration)
        conn = WebRTCConnection(
            pc,
            self._keys,
            offer.sender,
            initiator=False,
            nonce=self._random(NONCE_SIZE),
            hook=self._hook,
        )
        pc.on("datachannel", conn.attach_channel)
        self._pending.add(conn)
        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=offer.sdp, type="offer"))
            await pc.setLocalDescription(await pc.createAnswer())
            _gathered(self._settings, configuration, pc)
        except Exception as exc:  # aiortc raises ValueError and friends on bad SDP
            self._pending.discard(conn)
            await conn.close(f"bad offer: {exc}")
            return encode_answer(offer.session_id, None, "bad offer")
        task = asyncio.get_running_loop().create_task(self._await_open(conn))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return encode_answer(offer.session_id, pc.localDescription.sdp)

    async def _await_open(self, conn: WebRTCConnection) -> None:
        try:
            async with asyncio.timeout(self._settings.webrtc_timeout):
                await conn.wait_open()
        except (TimeoutError, ConnectFailed):
            await conn.close("inbound WebRTC connection did not authenticate in time")
            log.debug("inbound WebRTC connection failed: %s", conn.close_reason)
            if conn.auth_refused and self._on_refused is not None:
                self._on_refused(conn.peer_key, conn.close_reason or "refused")
            return
        finally:
            self._pending.discard(conn)
        self._on_connection(conn)

    async def close(self) -> None:
        """Abort pending inbound connections."""
        for conn in list(self._pending):
            await conn.close("shutting down")
        for task in list(self._tasks):
            task.cancel()


__all__ = [
    "Offer",
    "WebRTCConnection",
    "WebRTCResponder",
    "build_configuration",
    "decode_answer",
    "decode_offer",
    "dial_webrtc",
    "dtls_fingerprints",
    "encode_answer",
    "encode_offer",
]
