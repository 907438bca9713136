"""WebRTC path over loopback: binding verified, frames both ways, RTT; MITM refused."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Iterator
from types import SimpleNamespace
from typing import Any

import cbor2
import pytest
from aiortc import (
    RTCCertificate,
    RTCConfiguration,
    RTCDtlsParameters,
    RTCPeerConnection,
    RTCSessionDescription,
)

from app.core import binding
from app.core.binding import normalize_fingerprint
from app.core.errors import RemoteProtocolError
from app.core.identity import IdentityKeys
from app.core.wire import Frame, FrameDecoder, FrameType
from app.node.transport.base import (
    AuthenticationFailed,
    ConnectFailed,
    ConnectionClosed,
    IceServer,
    TransportSettings,
)
from app.node.transport.webrtc import (
    Offer,
    WebRTCConnection,
    WebRTCResponder,
    build_configuration,
    decode_answer,
    decode_offer,
    dial_webrtc,
    dtls_fingerprints,
    encode_answer,
    encode_offer,
)
from tests.conftest import TURN_PASSWORD, running_coturn
from tests.node.conftest import assert_relayed_through_turn

pytestmark = [pytest.mark.usefixtures("loopback_ice"), pytest.mark.slow]


class Bob:
    """A responder wired to the signaller, recording what it accepts and refuses."""

    def __init__(self, keys: IdentityKeys, signaller: Any) -> None:
        self.keys = keys
        self.connections: asyncio.Queue[WebRTCConnection] = asyncio.Queue()
        self.refused: list[tuple[bytes, str]] = []
        self.refused_event = asyncio.Event()
        self.responder = WebRTCResponder(
            keys, self.connections.put_nowait, on_refused=self._refused
        )
        signaller.register(keys.public.address, self.responder.handle_signal)

    def _refused(self, key: bytes, reason: str) -> None:
        self.refused.append((key, reason))
        self.refused_event.set()


@pytest.mark.asyncio
async def test_connect_frames_both_ways_and_rtt(
    signaller: Any, identity_factory: Callable[[], IdentityKeys]
) -> None:
    alice_keys, bob_keys = identity_factory(), identity_factory()
    bob = Bob(bob_keys, signaller)
    alice_conn = await dial_webrtc(alice_keys, bob_keys.public.address, signaller)
    bob_conn = await asyncio.wait_for(bob.connections.get(), 10)
    try:
        assert alice_conn.is_open and bob_conn.is_open
        assert alice_conn.peer_address == bob_keys.public.address
        assert bob_conn.peer_address == alice_keys.public.address
        assert alice_conn.path == bob_conn.path == "webrtc"
        assert alice_conn.initiator and not bob_conn.initiator

        big = bytes(range(256)) * 2000  # 512 KB: chunked over the data channel
        await alice_conn.send(b"hello bob")
        await alice_conn.send(big)
        await bob_conn.send(b"hello alice")
        assert await asyncio.wait_for(bob_conn.recv(), 10) == b"hello bob"
        assert await asyncio.wait_for(bob_conn.recv(), 10) == big
        assert await asyncio.wait_for(alice_conn.recv(), 10) == b"hello alice"

        rtt = await alice_conn.ping()
        assert rtt > 0 and alice_conn.rtt_ms == rtt
        assert await bob_conn.ping() > 0
    finally:
        await alice_conn.close("test done")
    await asyncio.wait_for(bob_conn.wait_closed(), 10)
    assert bob_conn.close_reason is not None and "test done" in bob_conn.close_reason
    with pytest.raises(ConnectionClosed):
        await bob_conn.recv()
    with pytest.raises(ConnectionClosed):
        await alice_conn.send(b"late")


@pytest.mark.asyncio
async def test_unreachable_and_refused_peer(
    signaller: Any, identity_factory: Callable[[], IdentityKeys]
) -> None:
    alice_keys, bob_keys = identity_factory(), identity_factory()
    with pytest.raises(ConnectFailed, match="could not be reached"):
        await dial_webrtc(alice_keys, bob_keys.public.address, signaller)
    responder = WebRTCResponder(bob_keys, lambda c: None, accept=lambda key: False)
    signaller.register(bob_keys.public.address, responder.handle_signal)
    with pytest.raises(ConnectFailed, match="not accepted"):
        await dial_webrtc(alice_keys, bob_keys.public.address, signaller)
    with pytest.raises(ConnectFailed, match="bad offer"):
        decode_answer(await responder.handle_signal(b"\xff\x00garbage"), b"")


class TamperingSignaller:
    """Signalling that replaces the sha-256 fingerprint in every answer (an active attacker
    on the DHT who cannot, however, terminate DTLS)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    async def send_signal(self, peer: str, payload: bytes) -> bytes | None:
        reply = await self.inner.send_signal(peer, payload)
        assert reply is not None
        fields_sdp = decode_answer(reply, decode_offer(payload).session_id)
        forged = "AB:" * 31 + "AB"
        tampered = re.sub(r"(a=fingerprint:sha-256 )[0-9A-F:]+", r"\g<1>" + forged, fields_sdp)
        assert tampered != fields_sdp
        return encode_answer(decode_offer(payload).session_id, tampered)


@pytest.mark.asyncio
async def test_altered_fingerprint_refused(
    signaller: Any, identity_factory: Callable[[], IdentityKeys]
) -> None:
    alice_keys, bob_keys = identity_factory(), identity_factory()
    bob = Bob(bob_keys, signaller)
    with pytest.raises(ConnectFailed):
        await dial_webrtc(
            alice_keys,
            bob_keys.public.address,
            TamperingSignaller(signaller),
            settings=TransportSettings(webrtc_timeout=8),
        )
    assert bob.connections.empty()


class MitmSignaller:
    """Mallory controls signalling: she answers Alice with her own peer connection, dials
    Bob with another one (claiming to be Alice), and relays the data channels byte for byte.
    DTLS succeeds on both legs, with Mallory's certificates: only the binding can tell."""

    def __init__(self, bob_handler: Any) -> None:
        self.bob_handler = bob_handler
        self.pcs: list[RTCPeerConnection] = []
        self.relayed = 0

    async def send_signal(self, peer: str, payload: bytes) -> bytes | None:
        offer = decode_offer(payload)
        config = RTCConfiguration(iceServers=[])
        to_bob = RTCPeerConnection(config)
        to_alice = RTCPeerConnection(config)
        self.pcs += [to_bob, to_alice]
        bob_channel = to_bob.createDataChannel("relay", ordered=True)
        alice_side: dict[str, Any] = {}
        backlog: list[bytes] = []

        def from_bob(message: bytes) -> None:
            self.relayed += 1
            if "channel" in alice_side:
                alice_side["channel"].send(message)
            else:
                backlog.append(message)

        def from_alice(message: bytes) -> None:
            self.relayed += 1
            bob_channel.send(message)

        bob_channel.on("message", from_bob)

        @to_alice.on("datachannel")
        def on_channel(channel: Any) -> None:
            alice_side["channel"] = channel
            channel.on("message", from_alice)
            for message in backlog:
                channel.send(message)

        await to_bob.setLocalDescription(await to_bob.createOffer())
        sid = b"m" * 16
        forwarded = Offer(sid, offer.sender, offer.recipient, to_bob.localDescription.sdp)
        bob_sdp = decode_answer(await self.bob_handler(encode_offer(forwarded)), sid)
        await to_bob.setRemoteDescription(RTCSessionDescription(sdp=bob_sdp, type="answer"))
        await to_alice.setRemoteDescription(RTCSessionDescription(sdp=offer.sdp, type="offer"))
        await to_alice.setLocalDescription(await to_alice.createAnswer())
        return encode_answer(offer.session_id, to_alice.localDescription.sdp)

    async def close(self) -> None:
        for pc in self.pcs:
            await pc.close()


@pytest.mark.asyncio
async def test_mitm_with_different_dtls_certificates_refused(
    signaller: Any, identity_factory: Callable[[], IdentityKeys]
) -> None:
    alice_keys, bob_keys = identity_factory(), identity_factory()
    bob = Bob(bob_keys, signaller)
    mitm = MitmSignaller(bob.responder.handle_signal)
    try:
        with pytest.raises(AuthenticationFailed, match=r"man in the middle|differs"):
            await dial_webrtc(alice_keys, bob_keys.public.address, mitm)
        await asyncio.wait_for(bob.refused_event.wait(), 15)
    finally:
        await mitm.close()
    assert mitm.relayed >= 2  # HELLO/BINDING frames did cross the relay
    assert bob.connections.empty()
    assert bob.refused[0][0] == alice_keys.public.signing_key
    assert "authentication failed" in bob.refused[0][1]


class RawPeer:
    """A hand-driven peer speaking our framing over raw aiortc (an attacker's tool)."""

    def __init__(self) -> None:
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.channel = self.pc.createDataChannel("raw", ordered=True)
        self.decoder = FrameDecoder()
        self.frames: asyncio.Queue[Frame] = asyncio.Queue()
        self.opened = asyncio.Event()
        self.closed = asyncio.Event()
        self.channel.on("open", self.opened.set)
        self.channel.on("close", self.closed.set)
        self.channel.on("message", self._message)
        self.pc.on("connectionstatechange", self._state)

    def _state(self) -> None:
        if self.pc.connectionState in ("closed", "failed"):
            self.closed.set()

    def _message(self, data: bytes) -> None:
        for frame in self.decoder.feed(data):
            self.frames.put_nowait(frame)

    async def dial(self, signaller: Any, claimed: bytes, target: IdentityKeys) -> None:
        await self.pc.setLocalDescription(await self.pc.createOffer())
        offer = Offer(b"r" * 16, claimed, target.public.signing_key, self.pc.localDescription.sdp)
        reply = await signaller.send_signal(target.public.address, encode_offer(offer))
        sdp = decode_answer(reply, offer.session_id)
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="answer"))
        await asyncio.wait_for(self.opened.wait(), 10)

    def send(self, frame: Frame) -> None:
        self.channel.send(frame.encode())


@pytest.mark.asyncio
async def test_binding_replayed_from_another_session_refused(
    signaller: Any,
    identity_factory: Callable[[], IdentityKeys],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    alice_keys, bob_keys = identity_factory(), identity_factory()
    bob = Bob(bob_keys, signaller)
    captured: list[bytes] = []
    real_make_binding = binding.make_binding

    def recording_make_binding(*args: Any, **kwargs: Any) -> bytes:
        data = real_make_binding(*args, **kwargs)
        captured.append(data)
        return data

    monkeypatch.setattr("app.node.transport.webrtc.make_binding", recording_make_binding)
    # Session 1: a genuine Alice <-> Bob connection; the attacker got Alice's binding.
    first = await dial_webrtc(alice_keys, bob_keys.public.address, signaller)
    bob_first = await asyncio.wait_for(bob.connections.get(), 10)
    # make_binding runs on both sides; Alice's is the one whose signer key ("sk") is hers.
    alice_binding = next(
        b for b in captured if cbor2.loads(b)["sk"] == alice_keys.public.signing_key
    )
    await first.close()
    await bob_first.wait_closed()

    # Session 2: Mallory claims to be Alice and replays that binding.
    mallory = RawPeer()
    try:
        await mallory.dial(signaller, alice_keys.public.signing_key, bob_keys)
        mallory.send(Frame(FrameType.HELLO, b"\x05" * 32))
        bob_hello = await asyncio.wait_for(mallory.frames.get(), 10)
        assert bob_hello.type == FrameType.HELLO and bob_hello.payload != b"\x05" * 32
        mallory.send(Frame(FrameType.BINDING, alice_binding))
        await asyncio.wait_for(bob.refused_event.wait(), 15)
        await asyncio.wait_for(mallory.closed.wait(), 15)
    finally:
        await mallory.pc.close()
    assert bob.connections.empty()
    assert "authentication failed" in bob.refused[0][1]


@pytest.mark.asyncio
async def test_data_before_binding_refused(
    signaller: Any, identity_factory: Callable[[], IdentityKeys]
) -> None:
    alice_keys, bob_keys = identity_factory(), identity_factory()
    bob = Bob(bob_keys, signaller)
    mallory = RawPeer()
    try:
        await mallory.dial(signaller, alice_keys.public.signing_key, bob_keys)
        mallory.send(Frame(FrameType.DATA, b"sneaky"))
        await asyncio.wait_for(bob.refused_event.wait(), 15)
    finally:
        await mallory.pc.close()
    assert bob.connections.empty()
    assert "before authentication" in bob.refused[0][1]


def test_configuration_is_always_explicit() -> None:
    """No ICE server unless configured: aiortc would add a public STUN server for None."""
    default = build_configuration(TransportSettings())
    assert default.iceServers == []
    assert default.iceTransportPolicy.value == "all"
    turn = IceServer(urls=("turn:127.0.0.1:3478",), username="u", credential="p")
    relay = build_configuration(TransportSettings(ice_servers=(turn,), relay_only=True))
    assert relay.iceTransportPolicy.value == "relay"
    servers = relay.iceServers
    assert servers is not None and [s.urls for s in servers] == [["turn:127.0.0.1:3478"]]
    assert servers[0].username == "u" and servers[0].credential == "p"


@pytest.fixture
def turn_server() -> Iterator[IceServer]:
    """coturn on loopback with a long-term credential (skipped when not installed)."""
    with running_coturn() as server:
        yield IceServer(
            urls=(f"turn:127.0.0.1:{server.port}",), username="u", credential=TURN_PASSWORD
        )


@pytest.mark.asyncio
async def test_relay_only_goes_through_turn(
    signaller: Any, identity_factory: Callable[[], IdentityKeys], turn_server: IceServer
) -> None:
    settings = TransportSettings(ice_servers=(turn_server,), relay_only=True, webrtc_timeout=10)
    await assert_relayed_through_turn(settings, signaller, identity_factory)


class _FakeSsl:
    def __init__(self, certificate: Any) -> None:
        self.certificate = certificate

    def get_peer_certificate(self, as_cryptography: bool = False) -> Any:
        return self.certificate


class _FakeDtls:
    def __init__(self, local: RTCCertificate, peer_certificate: Any) -> None:
        self.local = local
        self._ssl = _FakeSsl(peer_certificate)

    def getLocalParameters(self) -> RTCDtlsParameters:
        return RTCDtlsParameters(fingerprints=self.local.getFingerprints())


@pytest.mark.asyncio
async def test_fingerprint_cross_check_against_the_certificate_dtls_saw() -> None:
    """The SDP fingerprint must be the one of the certificate DTLS actually received."""
    remote = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    remote.createDataChannel("x")
    offer = await remote.createOffer()
    remote_cert = getattr(remote, "_RTCPeerConnection__certificates")[0]  # noqa: B009
    local_cert, other_cert = (
        RTCCertificate.generateCertificate(),
        RTCCertificate.generateCertificate(),
    )

    def fake_pc(peer_certificate: Any) -> Any:
        sctp = SimpleNamespace(transport=_FakeDtls(local_cert, peer_certificate))
        return SimpleNamespace(sctp=sctp, remoteDescription=offer)

    local_fp, remote_fp = dtls_fingerprints(fake_pc(remote_cert._cert))
    assert local_fp == normalize_fingerprint("sha-256", local_cert.getFingerprints()[0].value)
    assert remote_fp.startswith("sha-256 ") and remote_fp.split()[1] in offer.sdp
    with pytest.raises(RemoteProtocolError, match="differs"):
        dtls_fingerprints(fake_pc(other_cert._cert))
    with pytest.raises(RemoteProtocolError, match="no peer certificate"):
        dtls_fingerprints(fake_pc(None))
    await remote.close()
