"""Signed DHT records: encoding, every rejection reason, ordering, size limit."""

from __future__ import annotations

import hashlib

import cbor2
import pytest

from app.core.domains import Domain
from app.core.errors import LocalProtocolError, RemoteProtocolError
from app.core.identity import IdentityKeys
from app.core.record_errors import (
    BadRecordSignature,
    ExpiredRecord,
    FutureRecord,
    InvalidRecord,
    MalformedRecord,
    OversizeRecord,
    StaleRecord,
    WrongRecordKey,
)
from app.core.records import (
    DHT_KEY_BYTES,
    MAX_CLOCK_SKEW_SECONDS,
    MAX_RECORD_BYTES,
    MAX_TTL_SECONDS,
    RECORD_VERSION,
    DerivedSigningKey,
    PresencePayload,
    RecordKind,
    SignedRecord,
    check_supersedes,
    decode_presence,
    dht_key,
    newer,
    newest,
    next_sequence,
    sign_record,
    validate,
)

NOW = 1_800_000_000


def _keys(tag: bytes) -> IdentityKeys:
    return IdentityKeys.from_seeds(
        hashlib.sha256(b"sign" + tag).digest(), hashlib.sha256(b"dh" + tag).digest()
    )


ALICE = _keys(b"alice")
BOB = _keys(b"bob")


def presence(
    keys: IdentityKeys = ALICE, seq: int = 1, expires_at: int = NOW + 3600
) -> SignedRecord:
    payload = PresencePayload(("127.0.0.1:4000", "[::1]:4001")).encode()
    return sign_record(
        keys.sign,
        keys.public.signing_key,
        RecordKind.PRESENCE,
        seq=seq,
        expires_at=expires_at,
        payload=payload,
    )


def test_round_trip() -> None:
    record = presence(seq=7)
    raw = record.encode()
    parsed = validate(raw, dht_key(RecordKind.PRESENCE, ALICE.public.signing_key), NOW)
    assert parsed == record
    assert parsed.encode() == raw
    assert decode_presence(parsed.payload).endpoints == ("127.0.0.1:4000", "[::1]:4001")


def test_dht_key_is_160_bits_and_separates_kind_owner_and_slot() -> None:
    owner = ALICE.public.signing_key
    keys = {
        dht_key(RecordKind.PRESENCE, owner),
        dht_key(RecordKind.PREKEY_BUNDLE, owner),
        dht_key(RecordKind.PRESENCE, BOB.public.signing_key),
        dht_key(RecordKind.MAILBOX, owner, b"day-1"),
        dht_key(RecordKind.MAILBOX, owner, b"day-2"),
        hashlib.sha1(owner).digest(),
    }
    assert len(keys) == 6
    assert all(len(k) == DHT_KEY_BYTES for k in keys)


def test_mailbox_record_signed_by_derived_key() -> None:
    mailbox = DerivedSigningKey(hashlib.sha256(b"pairwise secret, day 42").digest())
    record = sign_record(
        mailbox.sign,
        mailbox.public_key,
        RecordKind.MAILBOX,
        seq=3,
        expires_at=NOW + 86400,
        payload=b"\x01sealed envelope bytes",
        slot=b"day-42",
    )
    assert record.key == dht_key(RecordKind.MAILBOX, mailbox.public_key, b"day-42")
    assert validate(record.encode(), record.key, NOW) == record
    with pytest.raises(WrongRecordKey):
        validate(record.encode(), dht_key(RecordKind.MAILBOX, mailbox.public_key, b"day-43"), NOW)
    assert mailbox.seed.hex() not in repr(mailbox)


def test_wrong_key_is_refused() -> None:
    record = presence()
    with pytest.raises(WrongRecordKey):
        validate(record.encode(), dht_key(RecordKind.PRESENCE, BOB.public.signing_key), NOW)
    with pytest.raises(WrongRecordKey):
        validate(record.encode(), dht_key(RecordKind.PREKEY_BUNDLE, ALICE.public.signing_key), NOW)


def test_expired_and_far_future_are_refused() -> None:
    record = presence(expires_at=NOW + 10)
    validate(record.encode(), record.key, NOW + 9)
    with pytest.raises(ExpiredRecord):
        validate(record.encode(), record.key, NOW + 10)
    limit = NOW + MAX_TTL_SECONDS + MAX_CLOCK_SKEW_SECONDS
    validate(presence(expires_at=limit).encode(), record.key, NOW)
    with pytest.raises(FutureRecord):
        validate(presence(expires_at=limit + 1).encode(), record.key, NOW)


def test_a_week_long_record_survives_clocks_a_day_apart() -> None:
    """A mailbox slot lives a week: written by a clock a day ahead (or read by one a day
    behind) it was refused as too far in the future, and offline messages were lost."""
    day, week = 24 * 3600, 7 * 24 * 3600
    ahead = presence(expires_at=NOW + day + week)
    assert validate(ahead.encode(), ahead.key, NOW) == ahead
    written_on_time = presence(expires_at=NOW + week)
    assert validate(written_on_time.encode(), written_on_time.key, NOW - day) == written_on_time


def test_our_sequence_never_goes_back_with_the_clock() -> None:
    assert next_sequence(NOW, 0) == NOW * 1000
    ahead = next_sequence(NOW + 86400, 0)  # signed while the clock ran a day ahead
    assert next_sequence(NOW, ahead) == ahead + 1  # after the correction: still newer
    assert next_sequence(NOW + 1, next_sequence(NOW, 0)) == (NOW + 1) * 1000


def test_bad_signature_is_refused() -> None:
    record = presence()
    forged = SignedRecord(
        record.kind,
        record.owner,
        record.seq + 1,  # bump the sequence without re-signing
        record.expires_at,
        record.payload,
        record.signature,
    )
    with pytest.raises(BadRecordSignature):
        validate(forged.encode(), record.key, NOW)
    flipped = bytearray(record.encode())
    flipped[-1] ^= 0x01
    with pytest.raises(BadRecordSignature):
        validate(bytes(flipped), record.key, NOW)


def test_signature_from_another_domain_is_refused() -> None:
    record = presence()
    body = record.signed_bytes()
    for domain in Domain:
        if domain is Domain.DHT_RECORD:
            continue
        other = SignedRecord(
            record.kind,
            record.owner,
            record.seq,
            record.expires_at,
            record.payload,
            ALICE.sign(domain, body),
        )
        with pytest.raises(BadRecordSignature):
            validate(other.encode(), record.key, NOW)


def test_signature_by_another_key_is_refused() -> None:
    record = presence()
    stolen = SignedRecord(
        record.kind,
        record.owner,
        record.seq,
        record.expires_at,
        record.payload,
        BOB.sign(Domain.DHT_RECORD, record.signed_bytes()),
    )
    with pytest.raises(BadRecordSignature):
        validate(stolen.encode(), record.key, NOW)
    with pytest.raises(LocalProtocolError):
        sign_record(
            BOB.sign, ALICE.public.signing_key, RecordKind.PRESENCE, seq=1, expires_at=NOW + 1,
            payload=PresencePayload(()).encode(),
        )  # fmt: skip


def _fields(record: SignedRecord) -> list[object]:
    return [
        RECORD_VERSION,
        record.kind.value,
        record.owner,
        record.slot,
        record.seq,
        record.expires_at,
        record.payload,
        record.signature,
    ]


@pytest.mark.parametrize(
    "mutate",
    [
        lambda f: f[:7],
        lambda f: [*f, 0],
        lambda f: [2, *f[1:]],
        lambda f: [f[0], "contact-card", *f[2:]],
        lambda f: [*f[:2], f[2][:31], *f[3:]],
        lambda f: [*f[:4], -1, *f[5:]],
        lambda f: [*f[:4], True, *f[5:]],
        lambda f: [*f[:4], 1 << 64, *f[5:]],
        lambda f: [*f[:5], "soon", *f[6:]],
        lambda f: [*f[:6], "text payload", f[7]],
        lambda f: [*f[:7], f[7][:63]],
        lambda f: [*f[:3], b"s" * 65, *f[4:]],
        lambda f: dict(enumerate(f)),
    ],
)
def test_malformed_structures_are_refused(mutate: object) -> None:
    record = presence()
    raw = cbor2.dumps(mutate(_fields(record)), canonical=True)  # type: ignore[operator]
    with pytest.raises(MalformedRecord):
        validate(raw, record.key, NOW)


@pytest.mark.parametrize(
    "garbage",
    [b"", b"\xff", b"\x00" * 100, b"hello world", b"\x9f" * 50, b"\x81" * 5000, "text", None, 7],
)
def test_garbage_is_refused(garbage: object) -> None:
    with pytest.raises(MalformedRecord):
        validate(garbage, presence().key, NOW)


def test_non_canonical_encodings_are_refused() -> None:
    record = presence()
    raw = record.encode()
    with pytest.raises(MalformedRecord):
        validate(raw + b"\x00", record.key, NOW)  # trailing bytes
    longer_int = cbor2.dumps(_fields(record), canonical=False).replace(
        b"\x01", b"\x18\x01", 1
    )  # version 1 encoded in two bytes
    assert longer_int != raw
    with pytest.raises(MalformedRecord):
        validate(longer_int, record.key, NOW)
    indefinite = b"\x9f" + raw[1:] + b"\xff"  # indefinite-length array
    with pytest.raises(MalformedRecord):
        validate(indefinite, record.key, NOW)


def test_presence_payload_must_be_valid() -> None:
    owner = ALICE.public.signing_key
    for payload in [
        b"garbage",
        cbor2.dumps({"e": ["not an endpoint"]}, canonical=True),
        cbor2.dumps({"e": ["127.0.0.1:1"] * 9}, canonical=True),
        cbor2.dumps({"e": ["127.0.0.1:1"], "name": "Alice"}, canonical=True),
        cbor2.dumps({"e": ["Peer.Example:1"]}, canonical=True),  # not canonical
    ]:
        record = sign_record(
            ALICE.sign, owner, RecordKind.PRESENCE, seq=1, expires_at=NOW + 60, payload=payload
        )
        with pytest.raises(MalformedRecord):
            validate(record.encode(), record.key, NOW)


def test_size_limit() -> None:
    owner = ALICE.public.signing_key
    base = sign_record(
        ALICE.sign, owner, RecordKind.PREKEY_BUNDLE, seq=1, expires_at=NOW + 60, payload=b""
    )
    overhead = len(base.encode()) + 2  # payload length prefix grows from 1 to 3 bytes
    fits = sign_record(
        ALICE.sign,
        owner,
        RecordKind.PREKEY_BUNDLE,
        seq=1,
        expires_at=NOW + 60,
        payload=b"x" * (MAX_RECORD_BYTES - overhead),
    )
    assert len(fits.encode()) == MAX_RECORD_BYTES
    validate(fits.encode(), fits.key, NOW)
    with pytest.raises(LocalProtocolError):
        sign_record(
            ALICE.sign,
            owner,
            RecordKind.PREKEY_BUNDLE,
            seq=1,
            expires_at=NOW + 60,
            payload=b"x" * (MAX_RECORD_BYTES - overhead + 1),
        )
    too_big = SignedRecord(
        RecordKind.PREKEY_BUNDLE,
        owner,
        1,
        NOW + 60,
        b"x" * (MAX_RECORD_BYTES - overhead + 1),
        fits.signature,
    )
    with pytest.raises(OversizeRecord):
        validate(too_big.encode(), fits.key, NOW)
    with pytest.raises(OversizeRecord):
        validate(b"\x00" * (MAX_RECORD_BYTES + 1), fits.key, NOW)


def test_every_rejection_is_a_remote_protocol_error() -> None:
    for error in (
        MalformedRecord,
        OversizeRecord,
        WrongRecordKey,
        ExpiredRecord,
        FutureRecord,
        BadRecordSignature,
        StaleRecord,
    ):
        assert issubclass(error, InvalidRecord)
        assert issubclass(error, RemoteProtocolError)


def test_highest_sequence_wins_with_deterministic_tie_break() -> None:
    old, new = presence(seq=1), presence(seq=2, expires_at=NOW + 60)
    assert newer(new, old) and not newer(old, new)
    assert newest([old, new, old]) == new
    assert newest([]) is None
    twin_a = presence(seq=5, expires_at=NOW + 100)
    twin_b = presence(seq=5, expires_at=NOW + 200)
    assert newest([twin_a, twin_b]) == newest([twin_b, twin_a]) == twin_b
    payload = PresencePayload(("10.0.0.1:1",)).encode()
    twin_c = sign_record(
        ALICE.sign,
        ALICE.public.signing_key,
        RecordKind.PRESENCE,
        seq=5,
        expires_at=NOW + 200,
        payload=payload,
    )
    winner = newest([twin_b, twin_c])
    assert winner == newest([twin_c, twin_b])
    assert winner is not None and not newer(twin_b if winner == twin_c else twin_c, winner)
    check_supersedes(new, old)
    check_supersedes(new, new)
    check_supersedes(new, None)
    with pytest.raises(StaleRecord):
        check_supersedes(old, new)
