"""Noise_XX_25519_AESGCM_SHA256 over the identity keys, for the direct WebSocket path.

Two layers:

* `XXHandshake`, `CipherState`: the Noise Protocol Framework (revision 34) XX pattern with
  X25519, AES-256-GCM and SHA-256, written from the specification on `cryptography`
  primitives::

      -> e
      <- e, ee, s, es
      -> s, se

* `IdentityHandshake`: XX whose static keys are the identities' X25519 keys, and whose
  second and third messages carry an *identity proof*: the sender's Ed25519 public key and
  a signature (context `Domain.CONNECTION_BINDING`, purpose ``noise-static``) over its
  X25519 static key and the handshake hash at that point. The proof binds the Noise static
  key to the address and to this very session, so a dialler knows it reached the address
  it meant to (not merely *some* X25519 key), and a proof cannot be replayed elsewhere.

After the handshake `NoiseTransport` encrypts a byte stream as Noise transport messages of
at most 65535 bytes (larger writes are chunked); nonces count up from zero and the
connection must be dropped before they wrap.

Sans-I/O: ephemeral secrets are passed in, no clock, no sockets.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from dataclasses import dataclass

import cbor2
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from app.core.domains import Domain
from app.core.errors import InvalidSignature
from app.core.identity import KEY_SIZE, IdentityKeys, PublicIdentity, verify_signature
from app.core.transport_errors import HandshakeError, HandshakeStateError

PROTOCOL_NAME = b"Noise_XX_25519_AESGCM_SHA256"
PROLOGUE = b"scrambled-eggs/v1/noise-websocket"
DHLEN = 32
HASHLEN = 32
TAG_SIZE = 16
MAX_MESSAGE = 65535
MAX_PLAINTEXT = MAX_MESSAGE - TAG_SIZE
MAX_NONCE = 2**64 - 1
IDENTITY_PROOF_PURPOSE = "noise-static"
_EMPTY = b""


def _hash(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def _hmac(key: bytes, data: bytes) -> bytes:
    return hmac.new(key, data, hashlib.sha256).digest()


def hkdf(chaining_key: bytes, ikm: bytes, outputs: int) -> tuple[bytes, ...]:
    """Noise's HKDF (HMAC-SHA256), returning 2 or 3 outputs of 32 bytes."""
    temp = _hmac(chaining_key, ikm)
    out: list[bytes] = []
    prev = _EMPTY
    for i in range(1, outputs + 1):
        prev = _hmac(temp, prev + bytes([i]))
        out.append(prev)
    return tuple(out)


def _public(secret: bytes) -> bytes:
    key = X25519PrivateKey.from_private_bytes(secret).public_key()
    return key.public_bytes(Encoding.Raw, PublicFormat.Raw)


def _dh(secret: bytes, public: bytes) -> bytes:
    try:
        return X25519PrivateKey.from_private_bytes(secret).exchange(
            X25519PublicKey.from_public_bytes(public)
        )
    except ValueError:  # low-order point: all-zero shared secret
        raise HandshakeError("peer sent a degenerate X25519 key") from None


class CipherState:
    """A Noise CipherState: AES-256-GCM key plus a 64-bit message counter."""

    def __init__(self, key: bytes | None = None) -> None:
        self._aead = AESGCM(key) if key is not None else None
        self.nonce = 0

    @property
    def has_key(self) -> bool:
        """Whether a key is set (before the first MixKey, payloads travel in clear)."""
        return self._aead is not None

    def _next_nonce(self) -> bytes:
        if self.nonce >= MAX_NONCE:
            raise HandshakeStateError("Noise nonce exhausted: the connection must be rekeyed")
        nonce = b"\x00\x00\x00\x00" + self.nonce.to_bytes(8, "big")
        self.nonce += 1
        return nonce

    def encrypt_with_ad(self, ad: bytes, plaintext: bytes) -> bytes:
        """Encrypt (or pass through when no key is set yet)."""
        if self._aead is None:
            return plaintext
        return self._aead.encrypt(self._next_nonce(), plaintext, ad)

    def decrypt_with_ad(self, ad: bytes, ciphertext: bytes) -> bytes:
        """Decrypt; the nonce only advances on success. Raises `HandshakeError` on tamper."""
        if self._aead is None:
            return ciphertext
        if self.nonce >= MAX_NONCE:
            raise HandshakeStateError("Noise nonce exhausted: the connection must be rekeyed")
        nonce = b"\x00\x00\x00\x00" + self.nonce.to_bytes(8, "big")
        try:
            plaintext = self._aead.decrypt(nonce, ciphertext, ad)
        except InvalidTag:
            raise HandshakeError("Noise message failed authentication") from None
        self.nonce += 1
        return plaintext


class _SymmetricState:
    def __init__(self, protocol_name: bytes) -> None:
        if len(protocol_name) <= HASHLEN:
            self.h = protocol_name.ljust(HASHLEN, b"\x00")
        else:
            self.h = _hash(protocol_name)
        self.ck = self.h
        self.cipher = CipherState()

    def mix_key(self, ikm: bytes) -> None:
        self.ck, temp_k = hkdf(self.ck, ikm, 2)
        self.cipher = CipherState(temp_k)

    def mix_hash(self, data: bytes) -> None:
        self.h = _hash(self.h + data)

    def encrypt_and_hash(self, plaintext: bytes) -> bytes:
        ciphertext = self.cipher.encrypt_with_ad(self.h, plaintext)
        self.mix_hash(ciphertext)
        return ciphertext

    def decrypt_and_hash(self, ciphertext: bytes) -> bytes:
        plaintext = self.cipher.decrypt_with_ad(self.h, ciphertext)
        self.mix_hash(ciphertext)
        return plaintext

    def split(self) -> tuple[CipherState, CipherState]:
        k1, k2 = hkdf(self.ck, _EMPTY, 2)
        return CipherState(k1), CipherState(k2)


_XX = (("e",), ("e", "ee", "s", "es"), ("s", "se"))

PayloadSource = bytes | Callable[[bytes], bytes]
"""A handshake payload, or a function of the handshake hash just before the payload."""


class XXHandshake:
    """The Noise XX handshake state machine (one instance per side, per connection)."""

    def __init__(
        self,
        *,
        initiator: bool,
        static_secret: bytes,
        ephemeral_secret: bytes,
        prologue: bytes = _EMPTY,
    ) -> None:
        if len(static_secret) != DHLEN or len(ephemeral_secret) != DHLEN:
            raise HandshakeStateError("X25519 secrets are 32 bytes")
        self.initiator = initiator
        self._s = static_secret
        self._e = ephemeral_secret
        self.static_public = _public(static_secret)
        self.remote_static: bytes | None = None
        self._re: bytes | None = None
        self._ss = _SymmetricState(PROTOCOL_NAME)
        self._ss.mix_hash(prologue)
        self._step = 0
        self.payload_hash: bytes | None = None
        """The handshake hash just before the payload of the last message read/written."""

    @property
    def complete(self) -> bool:
        """True once all three messages have been processed."""
        return self._step == len(_XX)

    @property
    def messages_done(self) -> int:
        """How many handshake messages have been written or read so far (0..3)."""
        return self._step

    @property
    def handshake_hash(self) -> bytes:
        """The running transcript hash `h` (channel binding once complete)."""
        return self._ss.h

    def _our_turn(self) -> bool:
        return (self._step % 2 == 0) == self.initiator

    def _dh_token(self, token: str) -> None:
        re, rs = self._re, self.remote_static
        if token == "ee":
            assert re is not None
            self._ss.mix_key(_dh(self._e, re))
            return
        # "es": initiator's e with responder's s; "se": initiator's s with responder's e.
        initiator_part_ephemeral = token == "es"
        if self.initiator:
            secret = self._e if initiator_part_ephemeral else self._s
            public = rs if initiator_part_ephemeral else re
        else:
            secret = self._s if initiator_part_ephemeral else self._e
            public = re if initiator_part_ephemeral else rs
        assert public is not None
        self._ss.mix_key(_dh(secret, public))

    def write_message(self, payload: PayloadSource = _EMPTY) -> bytes:
        """Produce the next handshake message (raises `HandshakeStateError` if not our turn)."""
        if self.complete or not self._our_turn():
            raise HandshakeStateError("not our turn to write a handshake message")
        out = bytearray()
        for token in _XX[self._step]:
            if token == "e":
                e_pub = _public(self._e)
                out += e_pub
                self._ss.mix_hash(e_pub)
            elif token == "s":
                out += self._ss.encrypt_and_hash(self.static_public)
            else:
                self._dh_token(token)
        self.payload_hash = self._ss.h
        body = payload(self._ss.h) if callable(payload) else payload
        out += self._ss.encrypt_and_hash(body)
        if len(out) > MAX_MESSAGE:
            raise HandshakeStateError("handshake message exceeds 65535 bytes")
        self._step += 1
        return bytes(out)

    def read_message(self, message: bytes) -> bytes:
        """Consume the peer's next handshake message; return its payload."""
        if self.complete or self._our_turn():
            raise HandshakeStateError("not expecting a handshake message now")
        if len(message) > MAX_MESSAGE:
            raise HandshakeError("handshake message exceeds 65535 bytes")
        view = memoryview(message)
        for token in _XX[self._step]:
            if token == "e":
                if len(view) < DHLEN:
                    raise HandshakeError("handshake message truncated")
                self._re = bytes(view[:DHLEN])
                view = view[DHLEN:]
                self._ss.mix_hash(self._re)
            elif token == "s":
                size = DHLEN + (TAG_SIZE if self._ss.cipher.has_key else 0)
                if len(view) < size:
                    raise HandshakeError("handshake message truncated")
                self.remote_static = self._ss.decrypt_and_hash(bytes(view[:size]))
                view = view[size:]
            else:
                self._dh_token(token)
        self.payload_hash = self._ss.h
        payload = self._ss.decrypt_and_hash(bytes(view))
        self._step += 1
        return payload

    def split(self) -> tuple[CipherState, CipherState]:
        """(send, receive) transport cipher states for this side, after completion."""
        if not self.complete:
            raise HandshakeStateError("handshake not complete")
        c1, c2 = self._ss.split()
        return (c1, c2) if self.initiator else (c2, c1)


class NoiseTransport:
    """Encrypts/decrypts a byte stream as Noise transport messages (<= 65535 bytes each)."""

    def __init__(self, send: CipherState, receive: CipherState) -> None:
        self._send = send
        self._receive = receive

    def encrypt(self, data: bytes) -> list[bytes]:
        """Split `data` into chunks of <= 65519 bytes and seal each as one message."""
        return [
            self._send.encrypt_with_ad(_EMPTY, data[i : i + MAX_PLAINTEXT])
            for i in range(0, len(data), MAX_PLAINTEXT)
        ]

    def decrypt(self, message: bytes) -> bytes:
        """Open one transport message (raises `HandshakeError` on tamper, reorder, replay)."""
        if not TAG_SIZE <= len(message) <= MAX_MESSAGE:
            raise HandshakeError("Noise transport message has an invalid size")
        return self._receive.decrypt_with_ad(_EMPTY, message)


def _proof_message(static_public: bytes, handshake_hash: bytes) -> bytes:
    return bytes(
        cbor2.dumps(
            {"v": 1, "purpose": IDENTITY_PROOF_PURPOSE, "x25519": static_public,
             "h": handshake_hash},
            canonical=True,
        )
    )  # fmt: skip


@dataclass(frozen=True)
class IdentityProof:
    """Handshake payload tying a Noise static key to an Ed25519 identity for one session."""

    signing_key: bytes
    signature: bytes

    def encode(self) -> bytes:
        """Canonical CBOR."""
        return bytes(cbor2.dumps({"id": self.signing_key, "sig": self.signature}, canonical=True))

    @classmethod
    def decode(cls, data: bytes) -> IdentityProof:
        """Parse (types and sizes checked, signature not verified)."""
        try:
            fields = cbor2.loads(data, max_depth=2, allow_duplicate_keys=False)
        except Exception as exc:  # cbor2 raises several unrelated types on garbage
            raise HandshakeError(f"identity proof is not CBOR: {type(exc).__name__}") from None
        if not isinstance(fields, dict) or set(fields) != {"id", "sig"}:
            raise HandshakeError("identity proof has missing or unexpected fields")
        key, sig = fields["id"], fields["sig"]
        if not isinstance(key, bytes) or len(key) != KEY_SIZE:
            raise HandshakeError("identity proof key must be 32 bytes")
        if not isinstance(sig, bytes) or len(sig) != 64:
            raise HandshakeError("identity proof signature must be 64 bytes")
        return cls(key, sig)


class IdentityHandshake:
    """XX over identity keys with identity proofs in messages 2 and 3.

    The initiator calls write (msg 1), read (msg 2), write (msg 3); the responder read,
    write, read. `expected_peer` (an Ed25519 key) makes the handshake fail unless the peer
    proves that identity; when it is None (inbound), `peer` tells who connected.
    """

    def __init__(
        self,
        keys: IdentityKeys,
        *,
        initiator: bool,
        ephemeral_secret: bytes,
        expected_peer: bytes | None = None,
        prologue: bytes = PROLOGUE,
    ) -> None:
        self._keys = keys
        self._hs = XXHandshake(
            initiator=initiator,
            static_secret=keys.dh_secret,
            ephemeral_secret=ephemeral_secret,
            prologue=prologue,
        )
        self._expected = expected_peer
        self.peer: PublicIdentity | None = None

    @property
    def complete(self) -> bool:
        """True once the handshake finished and the peer's identity is verified."""
        return self._hs.complete and self.peer is not None

    def _proof(self, handshake_hash: bytes) -> bytes:
        message = _proof_message(self._hs.static_public, handshake_hash)
        signature = self._keys.sign(Domain.CONNECTION_BINDING, message)
        return IdentityProof(self._keys.public.signing_key, signature).encode()

    def write_message(self) -> bytes:
        """The next handshake message to send."""
        if self._hs.initiator and self._hs.messages_done == 0:
            return self._hs.write_message(_EMPTY)
        return self._hs.write_message(self._proof)

    def read_message(self, message: bytes) -> None:
        """Consume a handshake message from the peer; verifies its identity proof."""
        first = not self._hs.initiator and self._hs.messages_done == 0
        payload = self._hs.read_message(message)
        if first:
            if payload:
                raise HandshakeError("the first handshake message must have no payload")
            return
        proof = IdentityProof.decode(payload)
        rs, h = self._hs.remote_static, self._hs.payload_hash
        assert rs is not None and h is not None
        if self._expected is not None and proof.signing_key != self._expected:
            raise HandshakeError("the peer is not the identity we dialled")
        try:
            verify_signature(
                proof.signing_key, Domain.CONNECTION_BINDING, _proof_message(rs, h), proof.signature
            )
        except InvalidSignature:
            raise HandshakeError("the peer's identity proof does not verify") from None
        self.peer = PublicIdentity(proof.signing_key, rs)

    @property
    def handshake_hash(self) -> bytes:
        """The Noise transcript hash (a channel binding for higher layers)."""
        return self._hs.handshake_hash

    def transport(self) -> NoiseTransport:
        """Transport cipher states, once `complete`."""
        if not self.complete:
            raise HandshakeStateError("handshake not complete")
        return NoiseTransport(*self._hs.split())
