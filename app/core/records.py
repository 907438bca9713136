"""Signed DHT records: what may be stored in the Kademlia DHT and how it is checked.

Every value in the DHT is a `SignedRecord`, encoded as canonical CBOR (RFC 8949 §4.2.1)::

    [version, kind, owner, slot, seq, expires_at, payload, signature]

* ``version`` is `RECORD_VERSION` (1); ``kind`` a `RecordKind` value (text).
* ``owner`` is the 32-byte Ed25519 public key that signs the record: the identity key for
  presence and prekey-bundle records, a key derived from a shared secret for mailboxes.
* ``slot`` (0..`MAX_SLOT_BYTES` bytes) tells apart several records of one owner and kind
  (e.g. a mailbox's day); presence and prekey bundles use the empty slot.
* ``seq`` (unsigned, < 2^63) orders versions: the highest valid sequence wins.
* ``expires_at`` (unsigned seconds since the Unix epoch) ends the record's life.
* ``signature`` is Ed25519 over `Domain.DHT_RECORD`'s tag followed by the canonical CBOR of
  the first seven fields, so a signature made for any other purpose never verifies here.

The DHT key of a record is `dht_key(kind, owner, slot)`: a domain-separated SHA-256
truncated to Kademlia's 160-bit id space. Because the key is derived from signed fields, a
record cannot be moved to another key. The encoded record is at most `MAX_RECORD_BYTES`
so it fits, with the RPC overhead, in one 8 KiB rpcudp datagram.

Sans-I/O: time is passed in (`now`, seconds), nothing here reads a clock or randomness.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import Enum
from typing import Any

import cbor2
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from app.core.domains import Domain
from app.core.errors import InvalidInvite, InvalidSignature, LocalProtocolError
from app.core.identity import KEY_SIZE, MAX_ENDPOINTS, validate_endpoint, verify_signature
from app.core.record_errors import (
    BadRecordSignature,
    ExpiredRecord,
    FutureRecord,
    MalformedRecord,
    OversizeRecord,
    StaleRecord,
    WrongRecordKey,
)

RECORD_VERSION = 1
DHT_KEY_BYTES = 20
"""Kademlia ids (and so DHT keys) are 160 bits."""
MAX_RECORD_BYTES = 7168
"""Largest encoded record. A store RPC carrying it packs to ~7.2 KiB and a find-value
answer carrying it plus 20 contacts to ~8.0 KiB, both under rpcudp's 8 KiB cap."""
MAX_SLOT_BYTES = 64
MAX_TTL_SECONDS = 7 * 24 * 3600
"""No record may claim to live longer than a week from now."""
MAX_CLOCK_SKEW_SECONDS = 24 * 3600
"""Tolerance added to `MAX_TTL_SECONDS` for clocks that run behind the publisher's: a
week-long record (a mailbox slot) from a publisher whose clock is up to a day ahead, or
read by a node whose clock is up to a day behind, is still valid (decision 0020; it was
10 minutes, and a clock an hour off lost every offline message)."""
MAX_UINT = (1 << 63) - 1
SIGNATURE_SIZE = 64
_KEY_TAG = b"scrambled-eggs/v1/dht-key\x00"
_RAW = Encoding.Raw, PublicFormat.Raw

Signer = Callable[[Domain, bytes], bytes]
"""Makes a domain-separated Ed25519 signature, e.g. `IdentityKeys.sign`."""


class RecordKind(Enum):
    """What a record announces. The value is part of the signed bytes and of the key."""

    PRESENCE = "presence"
    """Identity -> current endpoints (payload: `PresencePayload`)."""
    PREKEY_BUNDLE = "prekey-bundle"
    """Identity -> X3DH prekey bundle (payload owned by the session layer)."""
    MAILBOX = "mailbox"
    """Secret-derived mailbox key + slot -> sealed envelopes (payload opaque here)."""


def dht_key(kind: RecordKind, owner: bytes, slot: bytes = b"") -> bytes:
    """The 20-byte DHT key of `owner`'s record of `kind` in `slot`."""
    if len(owner) != KEY_SIZE:
        raise LocalProtocolError("a record owner is a 32-byte Ed25519 public key")
    if len(slot) > MAX_SLOT_BYTES:
        raise LocalProtocolError(f"a record slot has at most {MAX_SLOT_BYTES} bytes")
    kind_bytes = kind.value.encode("ascii")
    material = bytes([len(kind_bytes)]) + kind_bytes + owner + bytes([len(slot)]) + slot
    return hashlib.sha256(_KEY_TAG + material).digest()[:DHT_KEY_BYTES]


def _is_uint(value: object) -> bool:
    return type(value) is int and 0 <= value <= MAX_UINT


@dataclass(frozen=True)
class SignedRecord:
    """One DHT value. Build with `sign_record`; parse remote bytes with `validate`."""

    kind: RecordKind
    owner: bytes
    seq: int
    expires_at: int
    payload: bytes
    signature: bytes
    slot: bytes = b""

    def __post_init__(self) -> None:
        if not isinstance(self.kind, RecordKind):
            raise LocalProtocolError("a record kind is a RecordKind")
        if type(self.owner) is not bytes or len(self.owner) != KEY_SIZE:
            raise LocalProtocolError("a record owner is a 32-byte Ed25519 public key")
        if type(self.slot) is not bytes or len(self.slot) > MAX_SLOT_BYTES:
            raise LocalProtocolError(f"a record slot is at most {MAX_SLOT_BYTES} bytes")
        if not _is_uint(self.seq) or not _is_uint(self.expires_at):
            raise LocalProtocolError("seq and expires_at are integers in 0..2^63-1")
        if type(self.payload) is not bytes:
            raise LocalProtocolError("a record payload is bytes")
        if type(self.signature) is not bytes or len(self.signature) != SIGNATURE_SIZE:
            raise LocalProtocolError("a record signature is 64 bytes")

    @property
    def key(self) -> bytes:
        """The DHT key this record lives under."""
        return dht_key(self.kind, self.owner, self.slot)

    def signed_bytes(self) -> bytes:
        """The canonical CBOR the signature covers (without the domain tag)."""
        return _signed_body(
            self.kind, self.owner, self.slot, self.seq, self.expires_at, self.payload
        )

    def encode(self) -> bytes:
        """The canonical wire form (what is stored in and read from the DHT)."""
        return cbor2.dumps(
            [
                RECORD_VERSION,
                self.kind.value,
                self.owner,
                self.slot,
                self.seq,
                self.expires_at,
                self.payload,
                self.signature,
            ],
            canonical=True,
        )


def _signed_body(
    kind: RecordKind, owner: bytes, slot: bytes, seq: int, expires_at: int, payload: bytes
) -> bytes:
    return cbor2.dumps(
        [RECORD_VERSION, kind.value, owner, slot, seq, expires_at, payload], canonical=True
    )


def sign_record(
    sign: Signer,
    owner: bytes,
    kind: RecordKind,
    *,
    seq: int,
    expires_at: int,
    payload: bytes,
    slot: bytes = b"",
) -> SignedRecord:
    """Sign a record with `sign` (the private half of `owner`).

    Raises `LocalProtocolError` if `sign` is not `owner`'s key or the record is too big.
    """
    body = _signed_body(kind, owner, slot, seq, expires_at, payload)
    record = SignedRecord(
        kind, owner, seq, expires_at, payload, sign(Domain.DHT_RECORD, body), slot
    )
    try:
        verify_signature(owner, Domain.DHT_RECORD, body, record.signature)
    except InvalidSignature:
        raise LocalProtocolError("the signer does not hold the record owner's key") from None
    size = len(record.encode())
    if size > MAX_RECORD_BYTES:
        raise LocalProtocolError(f"the record is {size} bytes, over {MAX_RECORD_BYTES}")
    return record


def decode_record(data: object) -> SignedRecord:
    """Parse canonical record bytes without checking key, time or signature."""
    if type(data) is not bytes:
        raise MalformedRecord("a record is a byte string")
    if len(data) > MAX_RECORD_BYTES:
        raise OversizeRecord(f"the record is {len(data)} bytes, over {MAX_RECORD_BYTES}")
    try:
        fields: Any = cbor2.loads(data, max_depth=4)
    except Exception:  # cbor2 raises several types (and ValueError/TypeError) on garbage
        raise MalformedRecord("the record is not CBOR") from None
    if not isinstance(fields, list) or len(fields) != 8:
        raise MalformedRecord("a record is a CBOR array of 8 fields")
    version, kind_text, owner, slot, seq, expires_at, payload, signature = fields
    if type(version) is not int or version != RECORD_VERSION:
        raise MalformedRecord(f"unsupported record version {version!r:.20}")
    try:
        kind = RecordKind(kind_text)
        record = SignedRecord(kind, owner, seq, expires_at, payload, signature, slot)
    except (ValueError, TypeError, LocalProtocolError) as exc:
        raise MalformedRecord(f"the record's fields are malformed: {exc}") from None
    if record.encode() != data:
        raise MalformedRecord("the record is not in canonical form")
    return record


def validate(record_bytes: object, expected_key: bytes, now: float) -> SignedRecord:
    """Parse and fully check a record read from or offered to the DHT under `expected_key`.

    Refuses (raising an `app.core.record_errors.InvalidRecord`) garbage, oversize records,
    records of another key, expired records, records expiring too far ahead, bad
    signatures and, for presence records, a malformed payload.
    """
    record = decode_record(record_bytes)
    if record.key != expected_key:
        raise WrongRecordKey("the record does not belong under this DHT key")
    if record.expires_at <= now:
        raise ExpiredRecord("the record has expired")
    if record.expires_at > now + MAX_TTL_SECONDS + MAX_CLOCK_SKEW_SECONDS:
        raise FutureRecord("the record's expiry is too far in the future")
    try:
        verify_signature(record.owner, Domain.DHT_RECORD, record.signed_bytes(), record.signature)
    except InvalidSignature:
        raise BadRecordSignature("the record's signature does not verify") from None
    if record.kind is RecordKind.PRESENCE:
        decode_presence(record.payload)
    return record


def next_sequence(now: float, last: int) -> int:
    """The sequence for a record we sign at `now` (seconds) after one numbered `last`:
    milliseconds since the epoch, but always above `last`. A clock stepped back (a wrong
    date corrected) would otherwise number our new records below the ones it signed
    while ahead, and every node would keep those instead (decision 0020)."""
    return min(max(int(now * 1000), last + 1), MAX_UINT)


def _order(record: SignedRecord) -> tuple[int, int, bytes]:
    return record.seq, record.expires_at, record.encode()


def newer(a: SignedRecord, b: SignedRecord) -> bool:
    """True if `a` supersedes `b`: higher seq; on a tie, later expiry, then larger bytes.

    The tie-break only matters when an owner signs two records with one sequence number;
    it makes every node settle on the same one.
    """
    return _order(a) > _order(b)


def newest(records: Iterable[SignedRecord]) -> SignedRecord | None:
    """The record that supersedes all others (see `newer`), or None for no records."""
    return max(records, key=_order, default=None)


def check_supersedes(incoming: SignedRecord, held: SignedRecord | None) -> None:
    """Raise `StaleRecord` unless `incoming` may replace `held` (the same record may)."""
    if held is not None and incoming != held and not newer(incoming, held):
        raise StaleRecord(f"sequence {incoming.seq} is not newer than the held {held.seq}")


@dataclass(frozen=True)
class PresencePayload:
    """Where an identity can be reached now: canonical ``host:port`` endpoints, no name."""

    endpoints: tuple[str, ...]

    def __post_init__(self) -> None:
        if len(self.endpoints) > MAX_ENDPOINTS:
            raise LocalProtocolError(f"a presence lists at most {MAX_ENDPOINTS} endpoints")

    def encode(self) -> bytes:
        """Canonical CBOR ``{"e": [endpoint, ...]}`` with each endpoint canonicalised."""
        try:
            endpoints = [validate_endpoint(e) for e in self.endpoints]
        except InvalidInvite as exc:
            raise LocalProtocolError(str(exc)) from None
        return cbor2.dumps({"e": endpoints}, canonical=True)


def decode_presence(payload: bytes) -> PresencePayload:
    """Parse a presence payload; raise `MalformedRecord` if anything is off."""
    try:
        fields: Any = cbor2.loads(payload, max_depth=3)
    except Exception:  # cbor2 raises several types on garbage
        raise MalformedRecord("the presence payload is not CBOR") from None
    if not isinstance(fields, dict) or set(fields) != {"e"} or not isinstance(fields["e"], list):
        raise MalformedRecord("a presence payload is a map with an endpoint list")
    endpoints = fields["e"]
    if len(endpoints) > MAX_ENDPOINTS or not all(isinstance(e, str) for e in endpoints):
        raise MalformedRecord("a presence lists at most 8 text endpoints")
    try:
        presence = PresencePayload(tuple(validate_endpoint(e) for e in endpoints))
    except InvalidInvite as exc:
        raise MalformedRecord(f"the presence lists a bad endpoint: {exc}") from None
    if presence.encode() != payload:
        raise MalformedRecord("the presence payload is not in canonical form")
    return presence


@dataclass(frozen=True, repr=False)
class DerivedSigningKey:
    """An Ed25519 key made from a 32-byte seed the caller derived (e.g. a mailbox key).

    Mailbox records are signed by such a key: whoever knows the shared secret can derive
    it and write the mailbox, while the public key and DHT key reveal nothing about the
    identities behind it. Never logged (no repr).
    """

    seed: bytes

    def __post_init__(self) -> None:
        if len(self.seed) != KEY_SIZE:
            raise LocalProtocolError("a signing seed is 32 bytes")

    def __repr__(self) -> str:
        return "DerivedSigningKey(<secret>)"

    @property
    def public_key(self) -> bytes:
        """The 32-byte Ed25519 public key (a mailbox record's owner)."""
        return Ed25519PrivateKey.from_private_bytes(self.seed).public_key().public_bytes(*_RAW)

    def sign(self, domain: Domain, message: bytes) -> bytes:
        """A domain-separated Ed25519 signature over `message` (same scheme as identities)."""
        return Ed25519PrivateKey.from_private_bytes(self.seed).sign(domain.tag() + message)
