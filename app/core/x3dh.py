"""X3DH key agreement (Signal specification, revision 1) over X25519 and HKDF-SHA256.

Our identity has separate Ed25519 (signing) and X25519 (DH) keys, so no XEdDSA is needed:
the responder's X25519 identity key is covered by its bundle signature, and the initiator
proves that its X25519 identity key belongs to its Ed25519 key with a static signature
in context `Domain.DH_KEY_BINDING` over ``ed25519_pub || x25519_pub`` (deniable: it says
nothing about this handshake).

    DH1 = DH(IK_A, SPK_B)   DH2 = DH(EK_A, IK_B)   DH3 = DH(EK_A, SPK_B)   [DH4 = DH(EK_A, OPK_B)]
    SK  = HKDF-SHA256(salt = 32 zero bytes, ikm = 0xFF*32 || DH1 || DH2 || DH3 [|| DH4],
                      info = "scrambled-eggs/v1/x3dh", 32 bytes)
    AD  = ed25519_A || x25519_A || ed25519_B || x25519_B || initial-message header

The header is part of the session's associated data because X25519 ignores the top bit
of a public key: without it, flipping that bit of EK_A would give a different header (and
replay tag) with the same SK, i.e. a replay that slips past the responder's record.

Initial-message header, 170 bytes, integers big-endian::

    version (1) = 1 | ed25519_A (32) | x25519_A (32) | binding signature (64) | EK_A (32)
    | signed prekey id (4) | has one-time prekey (1) = 0/1 | one-time prekey id (4, 0 if none)
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass

from app.core.domains import Domain
from app.core.e2e_errors import MalformedMessage
from app.core.errors import DecryptionFailed, InvalidSignature, LocalProtocolError
from app.core.identity import IdentityKeys, PublicIdentity
from app.core.prekeys import REPLAY_TAG_SIZE, PrekeyBundle, PrekeyStore
from app.core.ratchet import (
    KEY_SIZE,
    RandomSource,
    hkdf_sha256,
    x25519_public_key,
    x25519_shared_secret,
)

HEADER_VERSION = 1
_INITIAL = struct.Struct(">B32s32s64s32sIBI")
INITIAL_HEADER_SIZE = _INITIAL.size
_PAD = b"\xff" * KEY_SIZE
_SALT = bytes(KEY_SIZE)
_INFO = b"scrambled-eggs/v1/x3dh"
_REPLAY_TAG_PREFIX = b"scrambled-eggs/v1/x3dh-replay\x00"


def dh_binding_payload(identity: PublicIdentity) -> bytes:
    """What the `Domain.DH_KEY_BINDING` signature covers: both public identity keys."""
    return identity.signing_key + identity.dh_key


def sign_dh_binding(keys: IdentityKeys) -> bytes:
    """Our static proof that our X25519 identity key belongs to our Ed25519 key."""
    return keys.sign(Domain.DH_KEY_BINDING, dh_binding_payload(keys.public))


def associated_data(initiator: PublicIdentity, responder: PublicIdentity) -> bytes:
    """X3DH's AD proper: both identities, initiator first. The handshakes append the
    initial-message header; the result is bound into every ratchet message."""
    return dh_binding_payload(initiator) + dh_binding_payload(responder)


@dataclass(frozen=True)
class InitialHeader:
    """The X3DH part of an initial message: who the initiator is and which keys it used."""

    initiator: PublicIdentity
    binding_signature: bytes
    ephemeral_key: bytes
    signed_prekey_id: int
    one_time_prekey_id: int | None

    def to_bytes(self) -> bytes:
        """The fixed 170-byte wire form."""
        has_otpk = self.one_time_prekey_id is not None
        return _INITIAL.pack(
            HEADER_VERSION,
            self.initiator.signing_key,
            self.initiator.dh_key,
            self.binding_signature,
            self.ephemeral_key,
            self.signed_prekey_id,
            int(has_otpk),
            self.one_time_prekey_id or 0,
        )

    @classmethod
    def from_bytes(cls, raw: bytes) -> InitialHeader:
        """Parse the wire form; raise `MalformedMessage` if it is not exactly well formed."""
        if len(raw) != INITIAL_HEADER_SIZE:
            raise MalformedMessage("initial-message header has the wrong length")
        version, signing, dh, signature, ephemeral, spk_id, has_otpk, otpk_id = _INITIAL.unpack(raw)
        if version != HEADER_VERSION or has_otpk not in (0, 1) or (not has_otpk and otpk_id):
            raise MalformedMessage("initial-message header has an unknown version or layout")
        return cls(
            PublicIdentity(signing, dh),
            signature,
            ephemeral,
            spk_id,
            otpk_id if has_otpk else None,
        )

    @property
    def replay_tag(self) -> bytes:
        """16 bytes identifying this handshake, recorded by the responder's `PrekeyStore`."""
        digest = hashlib.sha256(_REPLAY_TAG_PREFIX + self.to_bytes()).digest()
        return digest[:REPLAY_TAG_SIZE]

    def verify_binding(self) -> None:
        """Check the initiator's key-binding signature; raise `DecryptionFailed` if bad."""
        try:
            self.initiator.verify(
                Domain.DH_KEY_BINDING, dh_binding_payload(self.initiator), self.binding_signature
            )
        except InvalidSignature:
            raise DecryptionFailed("initiator's identity key binding does not verify") from None


def derive_shared_secret(dh_outputs: list[bytes]) -> bytes:
    """SK = HKDF(0xFF*32 || DH1 || DH2 || DH3 [|| DH4]) (exposed for tests of the KDF)."""
    if len(dh_outputs) not in (3, 4) or any(len(d) != KEY_SIZE for d in dh_outputs):
        raise LocalProtocolError("X3DH combines three or four 32-byte DH outputs")
    return hkdf_sha256(_PAD + b"".join(dh_outputs), _SALT, _INFO, KEY_SIZE)


@dataclass(frozen=True, repr=False)
class InitiatorHandshake:
    """What the initiator gets from X3DH: header to send, SK, AD, Bob's first ratchet key."""

    header: InitialHeader
    shared_secret: bytes
    associated_data: bytes
    remote_ratchet_key: bytes


def initiate(
    identity: IdentityKeys, bundle: PrekeyBundle, now: float | None, random: RandomSource
) -> InitiatorHandshake:
    """Run X3DH as the initiator against a bundle (verified here, with freshness unless
    `now` is None: a bundle its owner just handed over an authenticated connection)."""
    bundle.verify(now)
    me = identity.public
    if bundle.identity == me:
        raise LocalProtocolError("cannot open a session with ourselves")
    ephemeral = random(KEY_SIZE)
    if len(ephemeral) != KEY_SIZE:
        raise LocalProtocolError("the random source returned the wrong number of bytes")
    outputs = [
        x25519_shared_secret(identity.dh_secret, bundle.signed_prekey),
        x25519_shared_secret(ephemeral, bundle.identity.dh_key),
        x25519_shared_secret(ephemeral, bundle.signed_prekey),
    ]
    otpk_id = None
    if bundle.one_time_prekeys:
        # A random pick makes two initiators holding the same bundle collide less often.
        index = int.from_bytes(random(4), "big") % len(bundle.one_time_prekeys)
        otpk = bundle.one_time_prekeys[index]
        outputs.append(x25519_shared_secret(ephemeral, otpk.public_key))
        otpk_id = otpk.key_id
    header = InitialHeader(
        me,
        sign_dh_binding(identity),
        x25519_public_key(ephemeral),
        bundle.signed_prekey_id,
        otpk_id,
    )
    return InitiatorHandshake(
        header,
        derive_shared_secret(outputs),
        associated_data(me, bundle.identity) + header.to_bytes(),
        bundle.signed_prekey,
    )


@dataclass(frozen=True, repr=False)
class ResponderHandshake:
    """What the responder gets: the store to commit *after* the first message decrypts,
    SK, AD and the signed prekey secret that starts its ratchet."""

    store: PrekeyStore
    shared_secret: bytes
    associated_data: bytes
    signed_prekey_secret: bytes


def respond(
    identity: IdentityKeys, store: PrekeyStore, header: InitialHeader
) -> ResponderHandshake:
    """Run X3DH as the responder. Raises a `DecryptionFailed` subclass for a bad binding,
    a replay, unknown prekeys or low-order keys; `store` itself is never modified."""
    me = identity.public
    if header.initiator == me or header.initiator.signing_key == me.signing_key:
        raise DecryptionFailed("initial message claims to come from ourselves")
    header.verify_binding()
    new_store, spk_secret, otpk_secret = store.consume(
        header.signed_prekey_id, header.one_time_prekey_id, header.replay_tag
    )
    outputs = [
        x25519_shared_secret(spk_secret, header.initiator.dh_key),
        x25519_shared_secret(identity.dh_secret, header.ephemeral_key),
        x25519_shared_secret(spk_secret, header.ephemeral_key),
    ]
    if otpk_secret is not None:
        outputs.append(x25519_shared_secret(otpk_secret, header.ephemeral_key))
    return ResponderHandshake(
        new_store,
        derive_shared_secret(outputs),
        associated_data(header.initiator, me) + header.to_bytes(),
        spk_secret,
    )
