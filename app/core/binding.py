"""RFC 8844-style connection binding for WebRTC data channels.

DTLS alone proves only that the peer holds the certificate whose fingerprint came through
signalling, and signalling (the DHT) is untrusted. So once the data channel is open, each
side signs, with its Ed25519 identity key (context `Domain.CONNECTION_BINDING`):

* both identity public keys (signer's, then the peer it believes it talks to),
* both DTLS certificate fingerprints (its own, and the one it saw for the peer),
* both fresh 32-byte nonces (its own, and the one the peer sent on this channel).

The receiver checks every field against what *it* observed. A man in the middle who
terminates DTLS on both sides shows each victim a different fingerprint than the one the
other victim signed; a binding replayed from an earlier session carries stale nonces; a
binding from someone else names the wrong identity. Any of these raises `BindingError`
(or `InvalidSignature`), and the transport closes the connection.

Encoding: canonical CBOR (`cbor2`, canonical=True). Sans-I/O; nonces are passed in.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import cbor2

from app.core.domains import Domain
from app.core.errors import LocalProtocolError
from app.core.identity import KEY_SIZE, IdentityKeys, verify_signature
from app.core.transport_errors import BindingError

BINDING_VERSION = 1
NONCE_SIZE = 32
SIGNATURE_SIZE = 64
MAX_BINDING_BYTES = 1024
PURPOSE = "webrtc-dtls-binding"
_FINGERPRINT_RE = re.compile(r"(sha-256|sha-384|sha-512) ([0-9A-F]{2}(:[0-9A-F]{2}){31,63})")


def normalize_fingerprint(algorithm: str, value: str) -> str:
    """A DTLS fingerprint as ``"sha-256 AB:CD:..."`` (algorithm lower, hex upper).

    `algorithm`/`value` are what aiortc reports (`RTCDtlsFingerprint`) or the SDP carries.
    """
    text = f"{algorithm.strip().lower()} {value.strip().upper()}"
    if not _FINGERPRINT_RE.fullmatch(text):
        raise BindingError("malformed DTLS fingerprint")
    return text


@dataclass(frozen=True)
class ConnectionBinding:
    """A decoded binding message (what one side claims about this connection)."""

    signer_key: bytes
    peer_key: bytes
    signer_fingerprint: str
    peer_fingerprint: str
    signer_nonce: bytes
    peer_nonce: bytes
    signature: bytes

    def signed_bytes(self) -> bytes:
        """The canonical CBOR that the signature covers."""
        return _signed_bytes(
            self.signer_key,
            self.peer_key,
            self.signer_fingerprint,
            self.peer_fingerprint,
            self.signer_nonce,
            self.peer_nonce,
        )

    def encode(self) -> bytes:
        """Canonical CBOR of every field including the signature."""
        fields = cbor2.loads(self.signed_bytes())
        fields["sig"] = self.signature
        return bytes(cbor2.dumps(fields, canonical=True))

    @classmethod
    def decode(cls, data: bytes) -> ConnectionBinding:
        """Parse a binding (types and sizes checked; the signature is *not* verified)."""
        if len(data) > MAX_BINDING_BYTES:
            raise BindingError("binding message too large")
        try:
            fields = cbor2.loads(data, max_depth=2, allow_duplicate_keys=False)
        except Exception as exc:  # cbor2 raises several unrelated types on garbage
            raise BindingError(f"binding is not valid CBOR: {type(exc).__name__}") from None
        if not isinstance(fields, dict) or set(fields) != {
            "v", "purpose", "sk", "pk", "sfp", "pfp", "sn", "pn", "sig",
        }:  # fmt: skip
            raise BindingError("binding has missing or unexpected fields")
        if fields["v"] != BINDING_VERSION or fields["purpose"] != PURPOSE:
            raise BindingError("binding version or purpose not supported")
        binding = cls(
            signer_key=_bytes(fields, "sk", KEY_SIZE),
            peer_key=_bytes(fields, "pk", KEY_SIZE),
            signer_fingerprint=_fingerprint(fields, "sfp"),
            peer_fingerprint=_fingerprint(fields, "pfp"),
            signer_nonce=_bytes(fields, "sn", NONCE_SIZE),
            peer_nonce=_bytes(fields, "pn", NONCE_SIZE),
            signature=_bytes(fields, "sig", SIGNATURE_SIZE),
        )
        if binding.encode() != data:
            raise BindingError("binding is not canonically encoded")
        return binding


def _bytes(fields: dict[str, Any], key: str, size: int) -> bytes:
    value = fields[key]
    if not isinstance(value, bytes) or len(value) != size:
        raise BindingError(f"binding field '{key}' must be {size} bytes")
    return value


def _fingerprint(fields: dict[str, Any], key: str) -> str:
    value = fields[key]
    if not isinstance(value, str) or not _FINGERPRINT_RE.fullmatch(value):
        raise BindingError(f"binding field '{key}' is not a normalised fingerprint")
    return value


def _signed_bytes(
    signer_key: bytes,
    peer_key: bytes,
    signer_fingerprint: str,
    peer_fingerprint: str,
    signer_nonce: bytes,
    peer_nonce: bytes,
) -> bytes:
    return bytes(
        cbor2.dumps(
            {
                "v": BINDING_VERSION,
                "purpose": PURPOSE,
                "sk": signer_key,
                "pk": peer_key,
                "sfp": signer_fingerprint,
                "pfp": peer_fingerprint,
                "sn": signer_nonce,
                "pn": peer_nonce,
            },
            canonical=True,
        )
    )


def make_binding(
    keys: IdentityKeys,
    *,
    peer_key: bytes,
    local_fingerprint: str,
    remote_fingerprint: str,
    local_nonce: bytes,
    remote_nonce: bytes,
) -> bytes:
    """Our signed binding for this connection, encoded for a BINDING frame.

    Fingerprints must be normalised (`normalize_fingerprint`); `local_nonce` is the fresh
    nonce we sent on this channel, `remote_nonce` the one the peer sent.
    """
    if len(peer_key) != KEY_SIZE:
        raise LocalProtocolError("peer key must be a 32-byte Ed25519 public key")
    if len(local_nonce) != NONCE_SIZE or len(remote_nonce) != NONCE_SIZE:
        raise LocalProtocolError(f"binding nonces are {NONCE_SIZE} bytes")
    for fp in (local_fingerprint, remote_fingerprint):
        if not _FINGERPRINT_RE.fullmatch(fp):
            raise LocalProtocolError("fingerprints must be normalised first")
    signer_key = keys.public.signing_key
    message = _signed_bytes(
        signer_key, peer_key, local_fingerprint, remote_fingerprint, local_nonce, remote_nonce
    )
    signature = keys.sign(Domain.CONNECTION_BINDING, message)
    return ConnectionBinding(
        signer_key,
        peer_key,
        local_fingerprint,
        remote_fingerprint,
        local_nonce,
        remote_nonce,
        signature,
    ).encode()


def verify_binding(
    data: bytes,
    *,
    local_key: bytes,
    expected_peer_key: bytes,
    local_fingerprint: str,
    remote_fingerprint: str,
    local_nonce: bytes,
    remote_nonce: bytes,
) -> ConnectionBinding:
    """Check the peer's binding against what we observed on this connection.

    Raises `BindingError` on any field mismatch and `InvalidSignature` on a bad signature.
    All arguments are *our* view: our key, the identity we expect, our fingerprint, the
    fingerprint the DTLS transport saw for the peer, our nonce, the peer's nonce.
    """
    binding = ConnectionBinding.decode(data)
    if binding.signer_key != expected_peer_key:
        raise BindingError("binding signed by a different identity than expected")
    if binding.peer_key != local_key:
        raise BindingError("binding names a different identity than ours")
    if binding.signer_fingerprint != remote_fingerprint:
        raise BindingError("peer's DTLS fingerprint differs from the one on this connection")
    if binding.peer_fingerprint != local_fingerprint:
        raise BindingError("peer saw a different DTLS fingerprint than ours (man in the middle)")
    if binding.peer_nonce != local_nonce or binding.signer_nonce != remote_nonce:
        raise BindingError("binding nonces do not belong to this session (replay)")
    verify_signature(
        binding.signer_key, Domain.CONNECTION_BINDING, binding.signed_bytes(), binding.signature
    )
    return binding
