"""Double Ratchet (Signal specification, revision 1) over X25519, HKDF-SHA256 and AES-256-GCM.

Rules of this module:

* Pure and functional: `encrypt(state, ...)` and `decrypt(state, ...)` return a *new*
  `RatchetState`; the state passed in is never modified. On any failure an exception is
  raised and the caller simply keeps its old state (nothing to roll back).
* No clock, no OS randomness: new ratchet key pairs come from the `random` callable the
  caller passes to `encrypt`. `decrypt` needs no randomness at all because the sending
  half of a DH ratchet step is deferred to the next `encrypt` (see below).
* Bounded: at most `MAX_SKIP` message keys skipped per chain per message, at most
  `MAX_SKIPPED_KEYS` stored overall across at most `MAX_SKIPPED_CHAINS` receiving chains
  (oldest evicted first), and a bounded list of retired receiving chains for replay checks.

Deferred sending step: the spec's ``DHRatchet`` derives the new receiving chain and then,
at once, a fresh key pair and the next sending chain. We derive the receiving chain on
receipt and the sending chain on the next `encrypt`. The two are equivalent (the fresh key
pair is first seen by the peer in the next message either way), and it means a forged
header that fails to authenticate costs us one X25519 operation, not two.

Wire format of a message (all integers big-endian)::

    version (1) = 1 | flags (1) | ratchet public key (32) | pn (4) | n (4) | AES-GCM ct+tag

The first 42 bytes are the header. The AEAD key and nonce come from HKDF over the message
key; the associated data is ``Domain.MESSAGE.tag() || len(ad) (2) || ad || header`` where
`ad` binds both identities (built by the session layer).
"""

from __future__ import annotations

import hmac
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import cbor2
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from app.core.domains import Domain
from app.core.e2e_errors import (
    CorruptState,
    DuplicateMessage,
    InvalidKeyAgreement,
    MalformedMessage,
    SkipLimitExceeded,
)
from app.core.errors import DecryptionFailed, LocalProtocolError

RandomSource = Callable[[int], bytes]
"""Returns n fresh, uniformly random bytes (the node passes `os.urandom`)."""

KEY_SIZE = 32
NONCE_SIZE = 12
TAG_SIZE = 16
MESSAGE_VERSION = 1
STATE_VERSION = 1
MAX_SKIP = 1000
MAX_SKIPPED_KEYS = 2 * MAX_SKIP
MAX_SKIPPED_CHAINS = 8
MAX_RETIRED_CHAINS = 64
MAX_COUNTER = 2**32 - 1
MAX_PLAINTEXT_BYTES = 1 << 20
FLAG_RATCHET_REQUEST = 0x01
_KNOWN_FLAGS = FLAG_RATCHET_REQUEST
_HEADER = struct.Struct(">BB32sII")
HEADER_SIZE = _HEADER.size
MAX_MESSAGE_BYTES = HEADER_SIZE + MAX_PLAINTEXT_BYTES + TAG_SIZE
_ROOT_INFO = b"scrambled-eggs/v1/ratchet-root"
_MESSAGE_KEY_INFO = b"scrambled-eggs/v1/ratchet-message-key"
_ZERO_KEY = bytes(KEY_SIZE)
_MESSAGE_TAG = Domain.MESSAGE.tag()
_MAX_AD_BYTES = 0xFFFF


# --- primitives (also exercised directly by the Wycheproof tests) -------------------------


def _hmac_sha256(key: bytes, message: bytes) -> bytes:
    return hmac.digest(key, message, "sha256")


def hkdf_sha256(ikm: bytes, salt: bytes, info: bytes, length: int) -> bytes:
    """HKDF-SHA256 (RFC 5869). An empty salt means 32 zero bytes, as the RFC says."""
    if not 0 < length <= 255 * 32:
        raise LocalProtocolError("HKDF-SHA256 output is 1..8160 bytes")
    prk = _hmac_sha256(salt or _ZERO_KEY, ikm)
    blocks: list[bytes] = []
    block = b""
    for counter in range(1, -(-length // 32) + 1):
        block = _hmac_sha256(prk, block + info + bytes([counter]))
        blocks.append(block)
    return b"".join(blocks)[:length]


def x25519_public_key(secret: bytes) -> bytes:
    """The X25519 public key of a 32-byte secret."""
    if len(secret) != KEY_SIZE:
        raise LocalProtocolError("an X25519 secret is 32 bytes")
    return X25519PrivateKey.from_private_bytes(secret).public_key().public_bytes_raw()


def x25519_shared_secret(secret: bytes | X25519PrivateKey, public: bytes) -> bytes:
    """X25519(secret, public); raise `InvalidKeyAgreement` for an all-zero result.

    RFC 7748 section 6.1: a low-order public key makes the output all-zero and
    independent of our secret, so an attacker could predict it; we refuse it.
    """
    if len(public) != KEY_SIZE:
        raise MalformedMessage("an X25519 public key is 32 bytes")
    key = secret if isinstance(secret, X25519PrivateKey) else _private_key(secret)
    try:
        shared = key.exchange(X25519PublicKey.from_public_bytes(public))
    except ValueError:  # OpenSSL already refuses all-zero outputs
        raise InvalidKeyAgreement("X25519 with a low-order public key") from None
    if hmac.compare_digest(shared, _ZERO_KEY):
        raise InvalidKeyAgreement("X25519 with a low-order public key")
    return shared


def aead_encrypt(key: bytes, nonce: bytes, plaintext: bytes, associated_data: bytes) -> bytes:
    """AES-256-GCM with a 12-byte nonce and a 16-byte tag appended to the ciphertext."""
    if len(key) != KEY_SIZE or len(nonce) != NONCE_SIZE:
        raise LocalProtocolError("AES-256-GCM needs a 32-byte key and a 12-byte nonce")
    return AESGCM(key).encrypt(nonce, plaintext, associated_data)


def aead_decrypt(key: bytes, nonce: bytes, ciphertext: bytes, associated_data: bytes) -> bytes:
    """Open an `aead_encrypt` ciphertext; raise `DecryptionFailed` if it does not verify."""
    if len(key) != KEY_SIZE or len(nonce) != NONCE_SIZE:
        raise LocalProtocolError("AES-256-GCM needs a 32-byte key and a 12-byte nonce")
    if len(ciphertext) < TAG_SIZE:
        raise DecryptionFailed("ciphertext shorter than the tag")
    try:
        return AESGCM(key).decrypt(nonce, ciphertext, associated_data)
    except InvalidTag:
        raise DecryptionFailed("message does not authenticate") from None


def kdf_root(root_key: bytes, dh_output: bytes) -> tuple[bytes, bytes]:
    """KDF_RK: HKDF-SHA256(salt=root key, ikm=DH output) -> (new root key, chain key)."""
    okm = hkdf_sha256(dh_output, root_key, _ROOT_INFO, 2 * KEY_SIZE)
    return okm[:KEY_SIZE], okm[KEY_SIZE:]


def kdf_chain(chain_key: bytes) -> tuple[bytes, bytes]:
    """KDF_CK: HMAC-SHA256(ck, 0x02) -> next chain key, HMAC-SHA256(ck, 0x01) -> message key."""
    return _hmac_sha256(chain_key, b"\x02"), _hmac_sha256(chain_key, b"\x01")


def _private_key(secret: bytes) -> X25519PrivateKey:
    if len(secret) != KEY_SIZE:
        raise LocalProtocolError("an X25519 secret is 32 bytes")
    return X25519PrivateKey.from_private_bytes(secret)


def _message_aad(associated_data: bytes, header: bytes) -> bytes:
    return _MESSAGE_TAG + struct.pack(">H", len(associated_data)) + associated_data + header


def _seal(message_key: bytes, aad: bytes, plaintext: bytes) -> bytes:
    okm = hkdf_sha256(message_key, _ZERO_KEY, _MESSAGE_KEY_INFO, KEY_SIZE + NONCE_SIZE)
    return aead_encrypt(okm[:KEY_SIZE], okm[KEY_SIZE:], plaintext, aad)


def _open(message_key: bytes, aad: bytes, ciphertext: bytes) -> bytes:
    okm = hkdf_sha256(message_key, _ZERO_KEY, _MESSAGE_KEY_INFO, KEY_SIZE + NONCE_SIZE)
    return aead_decrypt(okm[:KEY_SIZE], okm[KEY_SIZE:], ciphertext, aad)


# --- state ---------------------------------------------------------------------------------

SkippedKeys = Mapping[tuple[bytes, int], bytes]
"""(remote ratchet key, message number) -> message key, oldest first. Never mutated."""


@dataclass(frozen=True, repr=False)
class RatchetState:
    """One side of a Double Ratchet conversation. Immutable; secret, so it has no repr.

    `send_step_pending` means a new remote ratchet key was received and our next `encrypt`
    starts a new sending chain with a fresh key pair. `ratchet_requested` asks the peer (via
    a header flag) to reply soon so both sides step; `peer_requested_ratchet` tells the node
    the peer asked us to send something (an empty message will do).
    """

    associated_data: bytes
    root_key: bytes
    dh_secret: bytes | None
    dh_public: bytes | None
    remote_dh: bytes | None
    send_chain: bytes | None
    send_n: int
    prev_send_n: int
    recv_chain: bytes | None
    recv_n: int
    send_step_pending: bool
    skipped: SkippedKeys
    retired_remote_keys: tuple[bytes, ...]
    ratchet_requested: bool = False
    peer_requested_ratchet: bool = False
    dh_key_cache: X25519PrivateKey | None = field(default=None, compare=False)

    def __repr__(self) -> str:
        return f"RatchetState(<secret>, sent={self.send_n}, received={self.recv_n})"

    @property
    def skipped_key_count(self) -> int:
        """How many skipped message keys are stored (bounded by `MAX_SKIPPED_KEYS`)."""
        return len(self.skipped)

    def to_bytes(self) -> bytes:
        """Canonical CBOR of the whole state (secret: seal it before it touches disk)."""
        return cbor2.dumps(
            [
                STATE_VERSION,
                self.associated_data,
                self.root_key,
                self.dh_secret,
                self.dh_public,
                self.remote_dh,
                self.send_chain,
                self.send_n,
                self.prev_send_n,
                self.recv_chain,
                self.recv_n,
                self.send_step_pending,
                [[dh, n, mk] for (dh, n), mk in self.skipped.items()],
                list(self.retired_remote_keys),
                self.ratchet_requested,
                self.peer_requested_ratchet,
            ],
            canonical=True,
        )

    @classmethod
    def from_bytes(cls, raw: bytes) -> RatchetState:
        """Inverse of `to_bytes`; raise `CorruptState` for anything malformed."""
        try:
            items = cbor2.loads(raw)
        except Exception:  # cbor2 raises several unrelated types on garbage
            raise CorruptState("ratchet state is not valid CBOR") from None
        if not isinstance(items, list) or len(items) != 16 or items[0] != STATE_VERSION:
            raise CorruptState("ratchet state has an unknown layout or version")
        (_, ad, root, dh_secret, dh_public, remote, send_chain, send_n, prev_n) = items[:9]
        recv_chain, recv_n, pending, skipped_raw, retired_raw, requested, peer_req = items[9:]
        skipped: dict[tuple[bytes, int], bytes] = {}
        for entry in _list(skipped_raw):
            if not isinstance(entry, list) or len(entry) != 3:
                raise CorruptState("bad skipped-key entry")
            skipped[(_key(entry[0]), _count(entry[1]))] = _key(entry[2])
        state = cls(
            associated_data=_bytes(ad, _MAX_AD_BYTES),
            root_key=_key(root),
            dh_secret=_opt_key(dh_secret),
            dh_public=_opt_key(dh_public),
            remote_dh=_opt_key(remote),
            send_chain=_opt_key(send_chain),
            send_n=_count(send_n),
            prev_send_n=_count(prev_n),
            recv_chain=_opt_key(recv_chain),
            recv_n=_count(recv_n),
            send_step_pending=_flag(pending),
            skipped=skipped,
            retired_remote_keys=tuple(_key(k) for k in _list(retired_raw)),
            ratchet_requested=_flag(requested),
            peer_requested_ratchet=_flag(peer_req),
        )
        if (state.dh_secret is None) != (state.dh_public is None):
            raise CorruptState("ratchet key pair is incomplete")
        if len(skipped) > MAX_SKIPPED_KEYS or len(state.retired_remote_keys) > MAX_RETIRED_CHAINS:
            raise CorruptState("ratchet state exceeds its bounds")
        return state


def _bytes(value: Any, limit: int) -> bytes:
    if not isinstance(value, bytes) or len(value) > limit:
        raise CorruptState("expected a byte string")
    return value


def _key(value: Any) -> bytes:
    if not isinstance(value, bytes) or len(value) != KEY_SIZE:
        raise CorruptState("expected a 32-byte key")
    return value


def _opt_key(value: Any) -> bytes | None:
    return None if value is None else _key(value)


def _count(value: Any) -> int:
    if type(value) is not int or not 0 <= value <= MAX_COUNTER:
        raise CorruptState("expected a 32-bit counter")
    return value


def _flag(value: Any) -> bool:
    if not isinstance(value, bool):
        raise CorruptState("expected a boolean")
    return value


def _list(value: Any) -> list[Any]:
    if not isinstance(value, list) or len(value) > MAX_SKIPPED_KEYS:
        raise CorruptState("expected a bounded list")
    return value


# --- initialisation ------------------------------------------------------------------------


def init_initiator(
    shared_secret: bytes, remote_ratchet_key: bytes, associated_data: bytes
) -> RatchetState:
    """Alice's state after X3DH: she knows Bob's signed prekey; her first send steps."""
    if len(shared_secret) != KEY_SIZE or len(remote_ratchet_key) != KEY_SIZE:
        raise LocalProtocolError("ratchet init needs a 32-byte secret and key")
    if len(associated_data) > _MAX_AD_BYTES:
        raise LocalProtocolError("associated data too long")
    return RatchetState(
        associated_data=associated_data,
        root_key=shared_secret,
        dh_secret=None,
        dh_public=None,
        remote_dh=remote_ratchet_key,
        send_chain=None,
        send_n=0,
        prev_send_n=0,
        recv_chain=None,
        recv_n=0,
        send_step_pending=True,
        skipped={},
        retired_remote_keys=(),
    )


def init_responder(
    shared_secret: bytes, ratchet_secret: bytes, associated_data: bytes
) -> RatchetState:
    """Bob's state after X3DH: his signed prekey is his first ratchet key; he must receive
    before he can send."""
    if len(shared_secret) != KEY_SIZE:
        raise LocalProtocolError("ratchet init needs a 32-byte secret")
    if len(associated_data) > _MAX_AD_BYTES:
        raise LocalProtocolError("associated data too long")
    key = _private_key(ratchet_secret)
    return RatchetState(
        associated_data=associated_data,
        root_key=shared_secret,
        dh_secret=ratchet_secret,
        dh_public=key.public_key().public_bytes_raw(),
        remote_dh=None,
        send_chain=None,
        send_n=0,
        prev_send_n=0,
        recv_chain=None,
        recv_n=0,
        send_step_pending=False,
        skipped={},
        retired_remote_keys=(),
        dh_key_cache=key,
    )


def force_ratchet(state: RatchetState) -> RatchetState:
    """Ask for a DH ratchet step as soon as the protocol allows (used by key rotation).

    A side may start a new sending chain only after it has seen a new ratchet key from its
    peer (a unilateral step would fork the root chain). So: if a step is already pending,
    the next `encrypt` performs it; in any case the next message carries
    `FLAG_RATCHET_REQUEST`, asking the peer to answer (its answer carries a fresh key, and
    our following send then steps too). Both sides have stepped within one round trip.
    """
    return replace(state, ratchet_requested=True)


# --- encrypt / decrypt ---------------------------------------------------------------------


def _send_step(state: RatchetState, random: RandomSource) -> dict[str, Any]:
    """The field changes of a new sending chain with a fresh key pair (deferred half of
    the spec's DHRatchet)."""
    if state.remote_dh is None:
        raise LocalProtocolError("cannot start a sending chain before receiving a message")
    secret = random(KEY_SIZE)
    if len(secret) != KEY_SIZE:
        raise LocalProtocolError("the random source returned the wrong number of bytes")
    key = X25519PrivateKey.from_private_bytes(secret)
    root, chain = kdf_root(state.root_key, x25519_shared_secret(key, state.remote_dh))
    return {
        "root_key": root,
        "dh_secret": secret,
        "dh_public": key.public_key().public_bytes_raw(),
        "dh_key_cache": key,
        "send_chain": chain,
        "prev_send_n": state.send_n,
        "send_n": 0,
        "send_step_pending": False,
    }


def encrypt(
    state: RatchetState, plaintext: bytes, random: RandomSource
) -> tuple[RatchetState, bytes]:
    """Encrypt one message; return the new state (persist it first) and the wire bytes."""
    if len(plaintext) > MAX_PLAINTEXT_BYTES:
        raise LocalProtocolError(f"plaintext larger than {MAX_PLAINTEXT_BYTES} bytes")
    step = _send_step(state, random) if state.send_step_pending else {}
    send_chain = step.get("send_chain", state.send_chain)
    dh_public = step.get("dh_public", state.dh_public)
    send_n = step.get("send_n", state.send_n)
    prev_send_n = step.get("prev_send_n", state.prev_send_n)
    if send_chain is None or dh_public is None:
        raise LocalProtocolError("cannot send before the first message was received")
    if send_n >= MAX_COUNTER:
        raise LocalProtocolError("sending chain exhausted; a DH ratchet step is required")
    chain, message_key = kdf_chain(send_chain)
    flags = FLAG_RATCHET_REQUEST if state.ratchet_requested else 0
    header = _HEADER.pack(MESSAGE_VERSION, flags, dh_public, prev_send_n, send_n)
    ciphertext = _seal(message_key, _message_aad(state.associated_data, header), plaintext)
    step.update(
        send_chain=chain, send_n=send_n + 1, ratchet_requested=False, peer_requested_ratchet=False
    )
    return replace(state, **step), header + ciphertext


def _advance(chain_key: bytes, steps: int) -> bytes:
    """The chain key `steps` messages further on (chain keys only: cheap for forgeries)."""
    for _ in range(steps):
        chain_key = _hmac_sha256(chain_key, b"\x02")
    return chain_key


def _skip(
    skipped: SkippedKeys, remote: bytes, chain: bytes, start: int, until: int
) -> tuple[SkippedKeys, bytes]:
    """Derive and store the keys of messages start..until-1 of one receiving chain."""
    if until <= start:
        return skipped, chain
    if until - start > MAX_SKIP:
        raise SkipLimitExceeded(f"message would skip {until - start} keys (max {MAX_SKIP})")
    out = dict(skipped)
    for n in range(start, until):
        chain, message_key = kdf_chain(chain)
        out[(remote, n)] = message_key
    return out, chain


def _bounded(skipped: SkippedKeys) -> SkippedKeys:
    """Evict the oldest keys beyond `MAX_SKIPPED_KEYS`, and whole oldest chains beyond
    `MAX_SKIPPED_CHAINS` (dict order is insertion order, i.e. age)."""
    chains = {remote for remote, _ in skipped}
    if len(skipped) <= MAX_SKIPPED_KEYS and len(chains) <= MAX_SKIPPED_CHAINS:
        return skipped
    out = dict(skipped)
    while len(chains) > MAX_SKIPPED_CHAINS:
        oldest = next(iter(out))[0]
        out = {slot: mk for slot, mk in out.items() if slot[0] != oldest}
        chains.discard(oldest)
    while len(out) > MAX_SKIPPED_KEYS:
        del out[next(iter(out))]
    return out


def parse_header(message: bytes) -> tuple[int, bytes, int, int]:
    """(flags, ratchet key, pn, n) of a message; raise `MalformedMessage` if malformed."""
    if not HEADER_SIZE + TAG_SIZE <= len(message) <= MAX_MESSAGE_BYTES:
        raise MalformedMessage("ratchet message has an impossible length")
    version, flags, remote, pn, n = _HEADER.unpack_from(message)
    if version != MESSAGE_VERSION or flags & ~_KNOWN_FLAGS:
        raise MalformedMessage("unknown ratchet message version or flags")
    return flags, remote, pn, n


def decrypt(state: RatchetState, message: bytes) -> tuple[RatchetState, bytes]:
    """Decrypt one message; return the new state and the plaintext.

    Raises a `DecryptionFailed` subclass for anything forged, replayed, malformed or out
    of bounds; the caller's `state` is untouched in every case.
    """
    flags, remote, pn, n = parse_header(message)
    header, body = message[:HEADER_SIZE], message[HEADER_SIZE:]
    aad = _message_aad(state.associated_data, header)
    requested = state.peer_requested_ratchet or bool(flags & FLAG_RATCHET_REQUEST)

    message_key = state.skipped.get((remote, n))
    if message_key is not None:
        plaintext = _open(message_key, aad, body)
        remaining = dict(state.skipped)
        del remaining[(remote, n)]
        return replace(state, skipped=remaining, peer_requested_ratchet=requested), plaintext

    if remote == state.remote_dh:
        if state.recv_chain is None:
            raise DecryptionFailed("no receiving chain for this ratchet key")
        if n < state.recv_n:
            raise DuplicateMessage("message already received (or its key was evicted)")
        if n - state.recv_n > MAX_SKIP:
            raise SkipLimitExceeded(f"message would skip {n - state.recv_n} keys")
        _, message_key = kdf_chain(_advance(state.recv_chain, n - state.recv_n))
        plaintext = _open(message_key, aad, body)
        # Authentic: now store the keys of the messages we skipped over.
        skipped, chain = _skip(state.skipped, remote, state.recv_chain, state.recv_n, n)
        chain, _ = kdf_chain(chain)
        new_state = replace(
            state,
            recv_chain=chain,
            recv_n=n + 1,
            skipped=skipped if skipped is state.skipped else _bounded(skipped),
            peer_requested_ratchet=requested,
        )
        return new_state, plaintext

    if remote in state.retired_remote_keys:
        raise DuplicateMessage("message from a retired chain whose key was not kept")
    if remote == state.dh_public:
        raise MalformedMessage("message carries our own ratchet key (reflected)")
    if state.dh_secret is None:
        raise DecryptionFailed("no ratchet key to answer a new chain with yet")
    # Cheap bound checks before any public-key operation (DoS guard).
    if n > MAX_SKIP:
        raise SkipLimitExceeded(f"new chain starts at message {n} (max skip {MAX_SKIP})")
    if state.recv_chain is not None and pn - state.recv_n > MAX_SKIP:
        raise SkipLimitExceeded("previous chain length exceeds the skip bound")
    key = state.dh_key_cache or _private_key(state.dh_secret)
    root, first_chain = kdf_root(state.root_key, x25519_shared_secret(key, remote))
    _, message_key = kdf_chain(_advance(first_chain, n))
    plaintext = _open(message_key, aad, body)
    # Authentic: store the keys skipped in the old chain (up to pn) and in the new one.
    skipped = state.skipped
    if state.recv_chain is not None and state.remote_dh is not None:
        skipped, _ = _skip(skipped, state.remote_dh, state.recv_chain, state.recv_n, pn)
    skipped, chain = _skip(skipped, remote, first_chain, 0, n)
    chain, _ = kdf_chain(chain)
    retired = state.retired_remote_keys
    if state.remote_dh is not None:
        retired = (*retired, state.remote_dh)[-MAX_RETIRED_CHAINS:]
    new_state = replace(
        state,
        root_key=root,
        remote_dh=remote,
        recv_chain=chain,
        recv_n=n + 1,
        skipped=skipped if skipped is state.skipped else _bounded(skipped),
        retired_remote_keys=retired,
        send_step_pending=True,
        peer_requested_ratchet=requested,
        dh_key_cache=key,
    )
    return new_state, plaintext
