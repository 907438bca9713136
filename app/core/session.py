"""An end-to-end session with one peer: X3DH to start, Double Ratchet afterwards.

Functional, like the ratchet: every call returns a new `Session`; on failure it raises and
the caller keeps the old one. The node persists the returned session (sealed) *before*
the ciphertext leaves, and commits the returned `PrekeyStore` of `accept` together with
the new session.

Wire format of a session message::

    kind (1) = 0x01 | ratchet message                        (normal message)
    kind (1) = 0x02 | X3DH initial header (170) | ratchet message   (initial message)

The initiator keeps sending kind 0x02 (same header) until it has received any reply, so a
lost first message does not lose the session. The responder recognises a repeat of the
header that created its session and decrypts it with that session; any *other* initial
message must go to `accept` (the node decides which session wins).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import cbor2

from app.core.e2e_errors import CorruptState, MalformedMessage
from app.core.errors import DecryptionFailed
from app.core.identity import IdentityKeys, PublicIdentity
from app.core.prekeys import PrekeyBundle, PrekeyStore
from app.core.ratchet import RandomSource, RatchetState, init_initiator, init_responder
from app.core.ratchet import decrypt as ratchet_decrypt
from app.core.ratchet import encrypt as ratchet_encrypt
from app.core.ratchet import force_ratchet as ratchet_force
from app.core.x3dh import INITIAL_HEADER_SIZE, InitialHeader
from app.core.x3dh import initiate as x3dh_initiate
from app.core.x3dh import respond as x3dh_respond

KIND_MESSAGE = 0x01
KIND_INITIAL = 0x02
SESSION_VERSION = 1
_INITIAL_PREFIX = 1 + INITIAL_HEADER_SIZE


@dataclass(frozen=True, repr=False)
class Session:
    """Our end of an encrypted conversation with `remote`. Immutable; secret (no repr).

    `pending_header` (initiator only) is the X3DH header attached to outgoing messages
    until the first reply; `accepted_header` (responder only) is the header that created
    the session, to recognise the initiator's repeats of it.
    """

    local: PublicIdentity
    remote: PublicIdentity
    ratchet: RatchetState
    pending_header: bytes | None = None
    accepted_header: bytes | None = None

    def __repr__(self) -> str:
        return f"Session(<secret>, remote={self.remote.address})"

    @property
    def peer_requested_ratchet(self) -> bool:
        """The peer asked for a DH ratchet step: send it something (an empty message)."""
        return self.ratchet.peer_requested_ratchet

    def to_bytes(self) -> bytes:
        """Canonical CBOR of the session (secret: seal it before it touches disk)."""
        return cbor2.dumps(
            [
                SESSION_VERSION,
                self.local.signing_key,
                self.local.dh_key,
                self.remote.signing_key,
                self.remote.dh_key,
                self.ratchet.to_bytes(),
                self.pending_header,
                self.accepted_header,
            ],
            canonical=True,
        )

    @classmethod
    def from_bytes(cls, raw: bytes) -> Session:
        """Inverse of `to_bytes`; raise `CorruptState` for anything malformed."""
        try:
            items = cbor2.loads(raw)
        except Exception:  # cbor2 raises several unrelated types on garbage
            raise CorruptState("session is not valid CBOR") from None
        if not isinstance(items, list) or len(items) != 8 or items[0] != SESSION_VERSION:
            raise CorruptState("session has an unknown layout or version")
        _, local_sign, local_dh, remote_sign, remote_dh, ratchet, pending, accepted = items
        try:
            local = PublicIdentity(local_sign, local_dh)
            remote = PublicIdentity(remote_sign, remote_dh)
        except Exception:
            raise CorruptState("session identities are malformed") from None
        if not isinstance(ratchet, bytes):
            raise CorruptState("session ratchet state is malformed")
        return cls(
            local,
            remote,
            RatchetState.from_bytes(ratchet),
            _optional_header(pending),
            _optional_header(accepted),
        )


def _optional_header(value: Any) -> bytes | None:
    if value is not None and (not isinstance(value, bytes) or len(value) != INITIAL_HEADER_SIZE):
        raise CorruptState("session initial header is malformed")
    return value


def initiate(
    identity: IdentityKeys, bundle: PrekeyBundle, now: float | None, random: RandomSource
) -> Session:
    """Start a session from the peer's bundle (verified here; its dates too unless `now`
    is None, see `x3dh.initiate`). Send with `encrypt`."""
    handshake = x3dh_initiate(identity, bundle, now, random)
    state = init_initiator(
        handshake.shared_secret, handshake.remote_ratchet_key, handshake.associated_data
    )
    return Session(identity.public, bundle.identity, state, handshake.header.to_bytes(), None)


def encrypt(session: Session, plaintext: bytes, random: RandomSource) -> tuple[Session, bytes]:
    """Encrypt for the peer; return the new session (persist it first) and the wire bytes."""
    state, body = ratchet_encrypt(session.ratchet, plaintext, random)
    if session.pending_header is not None:
        wire = bytes([KIND_INITIAL]) + session.pending_header + body
    else:
        wire = bytes([KIND_MESSAGE]) + body
    return replace(session, ratchet=state), wire


def is_initial_message(message: bytes) -> bool:
    """Whether `message` starts a session (route it to `accept` unless it is a repeat)."""
    return len(message) > _INITIAL_PREFIX and message[0] == KIND_INITIAL


def initial_header(message: bytes) -> InitialHeader:
    """The X3DH header of an initial message, with the initiator's key binding verified
    (lets the node look up the claimed sender before calling `accept`)."""
    if not is_initial_message(message):
        raise MalformedMessage("not an initial message")
    header = InitialHeader.from_bytes(message[1:_INITIAL_PREFIX])
    header.verify_binding()
    return header


def decrypt(session: Session, message: bytes) -> tuple[Session, bytes]:
    """Decrypt a message of this session; raise a `DecryptionFailed` subclass otherwise
    (the caller's session is unchanged)."""
    if not message:
        raise MalformedMessage("empty message")
    if message[0] == KIND_MESSAGE:
        body = message[1:]
    elif message[0] == KIND_INITIAL and len(message) > _INITIAL_PREFIX:
        if session.accepted_header != message[1:_INITIAL_PREFIX]:
            raise DecryptionFailed("initial message of another session: use accept()")
        body = message[_INITIAL_PREFIX:]
    else:
        raise MalformedMessage("unknown session message kind")
    state, plaintext = ratchet_decrypt(session.ratchet, body)
    # Any authentic message from the peer proves it holds the session: stop repeating
    # the X3DH header.
    return replace(session, ratchet=state, pending_header=None), plaintext


def accept(
    identity: IdentityKeys, store: PrekeyStore, message: bytes
) -> tuple[PrekeyStore, Session, bytes]:
    """Create the responder's session from an initial message and decrypt it.

    Returns (store to commit, new session, plaintext). Raises a `DecryptionFailed`
    subclass (replay, unknown prekey, forgery...) with `store` untouched.
    """
    if not is_initial_message(message):
        raise MalformedMessage("not an initial message")
    header = InitialHeader.from_bytes(message[1:_INITIAL_PREFIX])
    handshake = x3dh_respond(identity, store, header)
    state = init_responder(
        handshake.shared_secret, handshake.signed_prekey_secret, handshake.associated_data
    )
    state, plaintext = ratchet_decrypt(state, message[_INITIAL_PREFIX:])
    session = Session(identity.public, header.initiator, state, None, header.to_bytes())
    return handshake.store, session, plaintext


def force_ratchet(session: Session) -> Session:
    """Request a DH ratchet step (key rotation); see `app.core.ratchet.force_ratchet`."""
    return replace(session, ratchet=ratchet_force(session.ratchet))
