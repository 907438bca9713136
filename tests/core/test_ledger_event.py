"""One history event: canonical encoding, signature, CID and the strict decoder."""

from typing import Any

import cbor2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.core.cid import CODEC_RAW, Cid
from app.core.domains import Domain
from app.core.errors import LocalProtocolError, RemoteProtocolError
from app.core.identity import IdentityKeys
from app.core.ledger_errors import (
    BadEventSignature,
    EventTooLarge,
    MalformedEvent,
    NonCanonicalEvent,
)
from app.core.ledger_event import (
    MAX_BODY_KEYS,
    MAX_BODY_VALUE_BYTES,
    MAX_EVENT_BYTES,
    MAX_PARENTS,
    Event,
    EventBody,
    conversation_id,
    decode_event,
    decode_strict_cbor,
    sign_event,
)

ALICE = IdentityKeys.from_seeds(b"\x01" * 32, b"\x11" * 32)
BOB = IdentityKeys.from_seeds(b"\x02" * 32, b"\x12" * 32)
CONV = conversation_id(ALICE.public.signing_key, BOB.public.signing_key)
PARENTS = tuple(sorted(Cid.for_block(bytes([i])) for i in range(3)))


def make_event(body: EventBody | None = None, parents: tuple[Cid, ...] = PARENTS) -> Event:
    body = body or EventBody.of("text", text="hello", n=-3, blob=b"\x00\x01")
    return sign_event(ALICE, CONV, 4, parents, 9, 1_700_000_000_000, body)


def edit(data: bytes, **changes: Any) -> bytes:
    """Decode with cbor2, change fields, re-encode canonically (no re-signing)."""
    value = cbor2.loads(data)
    value.update(changes)
    return cbor2.dumps(value, canonical=True)


def link(cid: Cid) -> cbor2.CBORTag:
    return cbor2.CBORTag(42, b"\x00" + cid.raw)


def test_round_trip_signature_and_cid() -> None:
    event = make_event()
    data = event.to_bytes()
    decoded = decode_event(data)
    assert decoded == event
    assert decoded.cid == event.cid == Cid.for_block(data)
    assert str(decoded.cid).startswith("bafyrei")
    decoded.verify_signature()
    assert decoded.body.kind == "text"
    assert decoded.body.get("text") == "hello"
    assert decoded.body.get("absent") is None
    assert decoded.body.as_dict() == {"kind": "text", "text": "hello", "n": -3, "blob": b"\x00\x01"}


def test_signed_bytes_bind_domain_and_conversation() -> None:
    event = make_event()
    unsigned = event.unsigned_bytes()
    assert CONV in unsigned
    ALICE.public.verify(Domain.HISTORY_EVENT, unsigned, event.signature)
    with pytest.raises(RemoteProtocolError):
        ALICE.public.verify(Domain.MESSAGE, unsigned, event.signature)


def test_encoding_is_dag_cbor_with_links() -> None:
    value = cbor2.loads(make_event().to_bytes())
    assert set(value) == {"v", "conv", "author", "seq", "parents", "lamport", "time", "body", "sig"}
    assert value["parents"] == [link(p) for p in PARENTS]


@settings(max_examples=40)
@given(
    text=st.text(max_size=200),
    number=st.integers(min_value=-(2**63), max_value=2**63 - 1),
    blob=st.binary(max_size=100),
    parent_seeds=st.sets(st.binary(max_size=4), max_size=MAX_PARENTS),
)
def test_round_trip_property(text: str, number: int, blob: bytes, parent_seeds: set[bytes]) -> None:
    parents = tuple(Cid.for_block(s) for s in parent_seeds)
    body = EventBody.of("text", text=text, number=number, blob=blob)
    event = sign_event(BOB, CONV, 1, parents, 1, 0, body)
    assert event.parents == tuple(sorted(parents))
    decoded = decode_event(event.to_bytes())
    assert decoded == event
    decoded.verify_signature()


def test_conversation_id_is_symmetric_and_distinct() -> None:
    a, b = ALICE.public.signing_key, BOB.public.signing_key
    carol = IdentityKeys.from_seeds(b"\x03" * 32, b"\x13" * 32).public.signing_key
    assert conversation_id(a, b) == conversation_id(b, a)
    assert len(conversation_id(a, b)) == 32
    assert conversation_id(a, carol) != conversation_id(a, b)
    with pytest.raises(LocalProtocolError):
        conversation_id(a, a)
    with pytest.raises(LocalProtocolError):
        conversation_id(a, b[:31])


@pytest.mark.parametrize(
    "mapping",
    [
        {"text": "no kind"},
        {"kind": "Text"},
        {"kind": 5},
        {"kind": "text", "Bad-Key": "x"},
        {"kind": "text", "x" * 33: "x"},
        {"kind": "text", "big": 2**63},
        {"kind": "text", "small": -(2**63) - 1},
        {"kind": "text", "long": "x" * (MAX_BODY_VALUE_BYTES + 1)},
        {"kind": "text", "long": b"x" * (MAX_BODY_VALUE_BYTES + 1)},
        {"kind": "text", "flag": True},
        {"kind": "text", "ratio": 0.5},
        {"kind": "text", **{f"k{i}": i for i in range(MAX_BODY_KEYS)}},
    ],
)
def test_body_limits(mapping: dict[str, Any]) -> None:
    with pytest.raises(MalformedEvent):
        EventBody.from_mapping(mapping)


def test_body_items_must_be_sorted_and_unique() -> None:
    with pytest.raises(MalformedEvent):
        EventBody((("text", "a"), ("kind", "text")))
    with pytest.raises(MalformedEvent):
        EventBody((("kind", "text"), ("kind", "text")))


def test_sign_event_refuses_bad_fields() -> None:
    body = EventBody.of("text", text="x")
    with pytest.raises(LocalProtocolError):
        sign_event(ALICE, CONV, 0, (), 1, 0, body)
    with pytest.raises(LocalProtocolError):
        sign_event(ALICE, CONV[:5], 1, (), 1, 0, body)
    too_many = [Cid.for_block(bytes([i])) for i in range(MAX_PARENTS + 1)]
    with pytest.raises(LocalProtocolError):
        sign_event(ALICE, CONV, 1, too_many, 1, 0, body)
    big = EventBody.of("text", **{f"f{i}": "x" * MAX_BODY_VALUE_BYTES for i in range(3)})
    with pytest.raises(LocalProtocolError):
        sign_event(ALICE, CONV, 1, (), 1, 0, big)


def test_altered_text_fails_signature_naming_the_event() -> None:
    data = make_event().to_bytes()
    body = cbor2.loads(data)["body"]
    tampered = edit(data, body={**body, "text": "hellO"})
    event = decode_event(tampered)
    with pytest.raises(BadEventSignature) as info:
        event.verify_signature()
    assert info.value.cid == Cid.for_block(tampered)
    assert str(Cid.for_block(tampered)) in str(info.value)


def test_flipped_signature_bit_fails() -> None:
    event = make_event()
    sig = bytearray(event.signature)
    sig[0] ^= 1
    tampered = edit(event.to_bytes(), sig=bytes(sig))
    with pytest.raises(BadEventSignature):
        decode_event(tampered).verify_signature()


def expect_malformed(data: bytes, error: type[MalformedEvent] = MalformedEvent) -> None:
    with pytest.raises(error) as info:
        decode_event(data)
    assert isinstance(info.value, RemoteProtocolError)
    if len(data) <= MAX_EVENT_BYTES:
        assert info.value.cid == Cid.for_block(data)


def test_rejects_oversize_without_hashing() -> None:
    with pytest.raises(EventTooLarge) as info:
        decode_event(b"\x00" * (MAX_EVENT_BYTES + 1))
    assert info.value.cid is None


@pytest.mark.parametrize(
    "garbage",
    [b"", b"\xff", b"\x00", b"hello world", b"\xa1", bytes(range(256)), b"\x5a\xff\xff\xff\xff"],
)
def test_rejects_garbage(garbage: bytes) -> None:
    expect_malformed(garbage)


def test_rejects_trailing_bytes() -> None:
    expect_malformed(make_event().to_bytes() + b"\x00")


def test_rejects_non_canonical_key_order() -> None:
    data = make_event().to_bytes()
    value = cbor2.loads(data)
    shuffled = dict(sorted(value.items(), reverse=True))
    reordered = cbor2.dumps(shuffled)
    assert reordered != data
    expect_malformed(reordered, NonCanonicalEvent)


def test_rejects_non_minimal_integer() -> None:
    data = make_event().to_bytes()
    # "seq": 4 is encoded as 0x63 's' 'e' 'q' 0x04; re-encode 4 in two bytes (0x18 0x04).
    needle = b"\x63seq\x04"
    assert data.count(needle) == 1
    expect_malformed(data.replace(needle, b"\x63seq\x18\x04"), NonCanonicalEvent)


def test_rejects_indefinite_lengths_floats_and_other_tags() -> None:
    data = make_event().to_bytes()
    value = cbor2.loads(data)
    expect_malformed(cbor2.dumps(value, indefinite_containers=True))
    expect_malformed(edit(data, time=1.5))
    expect_malformed(edit(data, seq=True))
    expect_malformed(edit(data, seq=None))
    expect_malformed(edit(data, time=cbor2.CBORTag(1, 5)))
    expect_malformed(edit(data, seq=cbor2.CBORTag(2, b"\x04")))  # bignum 4


def test_rejects_deep_nesting() -> None:
    deep: Any = "x"
    for _ in range(500):
        deep = [deep]
    data = make_event().to_bytes()
    expect_malformed(edit(data, body={"kind": "text", "text": deep}))
    expect_malformed(edit(data, body={"kind": "text", "text": {"a": "b"}}))
    expect_malformed(edit(data, parents=[[link(PARENTS[0])]]))
    expect_malformed(edit(data, parents=[cbor2.CBORTag(42, cbor2.CBORTag(42, b"\x00"))]))
    with pytest.raises(MalformedEvent):
        decode_strict_cbor(b"\x81" * 100 + b"\x00")


def test_rejects_extra_missing_and_mistyped_fields() -> None:
    data = make_event().to_bytes()
    value = cbor2.loads(data)
    expect_malformed(edit(data, extra=1))
    del value["time"]
    expect_malformed(cbor2.dumps(value, canonical=True))
    expect_malformed(edit(data, v=2))
    expect_malformed(edit(data, seq="4"))
    expect_malformed(edit(data, seq=0))
    expect_malformed(edit(data, seq=-1))
    expect_malformed(edit(data, lamport=2**63))
    expect_malformed(edit(data, time=-1))
    expect_malformed(edit(data, author=b"\x01" * 31))
    expect_malformed(edit(data, conv="conversation"))
    expect_malformed(edit(data, sig=b"\x00" * 63))
    expect_malformed(edit(data, body=[1, 2]))
    expect_malformed(edit(data, body={"kind": "text", "n": 0.25}))
    expect_malformed(edit(data, parents={}))


def test_rejects_bad_parent_lists() -> None:
    data = make_event().to_bytes()
    many = sorted(Cid.for_block(bytes([i])) for i in range(MAX_PARENTS + 1))
    expect_malformed(edit(data, parents=[link(c) for c in many]))
    expect_malformed(edit(data, parents=[link(c) for c in reversed(PARENTS)]))
    expect_malformed(edit(data, parents=[link(PARENTS[0]), link(PARENTS[0])]))
    expect_malformed(edit(data, parents=[PARENTS[0].raw]))  # untagged
    expect_malformed(edit(data, parents=[cbor2.CBORTag(42, PARENTS[0].raw)]))  # no 0x00
    expect_malformed(edit(data, parents=[cbor2.CBORTag(42, b"\x00" + b"\x01" * 36)]))
    raw_cid = Cid.for_block(b"file block", CODEC_RAW)
    expect_malformed(edit(data, parents=[link(raw_cid)]))


def test_rejects_duplicate_keys_and_bad_utf8() -> None:
    data = make_event().to_bytes()
    # A map header claiming one more entry, with "v": 1 appended a second time.
    assert data[0] == 0xA9
    expect_malformed(b"\xaa" + data[1:] + b"\x61v\x01")
    needle = b"\x65hello"
    assert data.count(needle) == 1
    expect_malformed(data.replace(needle, b"\x65hell\xff"))


def test_rejects_non_bytes_input() -> None:
    with pytest.raises(MalformedEvent):
        decode_event(bytearray(make_event().to_bytes()))  # type: ignore[arg-type]


def test_golden_vector() -> None:
    """Pins the wire format (Ed25519 is deterministic): a change here breaks old histories.

    The same vector is listed in docs/protocol.md (section 8) for other implementations.
    """
    assert CONV.hex() == "2d2600b6a19f68e2d02af01c84564da489d6a331e27e1294ab16b54bbbcbac7f"
    event = sign_event(ALICE, CONV, 1, (), 1, 1_700_000_000_000, EventBody.of("text", text="hello"))
    assert str(event.cid) == "bafyreiguhvmbo3o6cl3jtwppbwihg3canse7if73njpjrdr453o2lwhddu"
    # map(9) "v" 1 "seq" 1 "sig" bytes(64): canonical order puts the shortest keys first.
    assert event.to_bytes()[:15].hex() == "a96176016373657101637369675840"


def _reference_maps(event: Event) -> tuple[bytes, bytes]:
    """The unsigned and signed canonical encodings, built from the fields by cbor2."""
    unsigned = {
        "v": 1,
        "conv": event.conversation,
        "author": event.author,
        "seq": event.seq,
        "parents": [link(p) for p in event.parents],
        "lamport": event.lamport,
        "time": event.wall_time,
        "body": event.body.as_dict(),
    }
    signed = {**unsigned, "sig": event.signature}
    return cbor2.dumps(unsigned, canonical=True), cbor2.dumps(signed, canonical=True)


SEQ_EDGES = [1, 23, 24, 255, 256, 65_535, 65_536, 2**32 - 1, 2**32, 2**63 - 1]


@settings(max_examples=60, deadline=None)
@given(
    seq=st.one_of(st.sampled_from(SEQ_EDGES), st.integers(1, 2**63 - 1)),
    text=st.text(max_size=40),
    parents=st.integers(0, 3),
)
def test_signed_and_unsigned_bytes_are_cut_from_each_other_exactly(
    seq: int, text: str, parents: int
) -> None:
    """Signing encodes the map once and inserts the signature; verifying a decoded
    event cuts it out again: both give exactly cbor2's canonical encodings."""
    event = sign_event(ALICE, CONV, seq, PARENTS[:parents], 9, 5, EventBody.of("text", text=text))
    unsigned, signed = _reference_maps(event)
    assert event.to_bytes() == signed
    assert event.unsigned_bytes() == unsigned
    decoded = decode_event(signed)
    assert decoded.unsigned_bytes() == unsigned
    decoded.verify_signature()
    assert decoded == event and decoded.cid == Cid.for_block(signed)


def test_an_event_whose_signature_was_swapped_still_fails_to_verify() -> None:
    """What is verified is still exactly the map without its signature when the bytes
    carry someone else's signature: verification fails."""
    event = make_event()
    other = sign_event(
        ALICE, CONV, 4, PARENTS, 9, 1_700_000_000_000, EventBody.of("text", text="x")
    )
    forged = decode_event(edit(event.to_bytes(), sig=other.signature))
    assert forged.unsigned_bytes() == _reference_maps(forged)[0]
    with pytest.raises(BadEventSignature):
        forged.verify_signature()


BODY_KEYS = st.from_regex(r"[a-z][a-z0-9_]{0,31}", fullmatch=True)
BODY_VALUES = st.one_of(
    st.integers(-(2**63), 2**63 - 1), st.text(max_size=30), st.binary(max_size=30)
)


@settings(max_examples=100, deadline=None)
@given(fields=st.dictionaries(BODY_KEYS, BODY_VALUES, max_size=12), lamport=st.integers(1, 2**40))
def test_events_are_encoded_in_canonical_order_without_cbor2s_canonical_mode(
    fields: dict[str, Any], lamport: int
) -> None:
    """The map is built in canonical key order and encoded as it is: byte-identical to
    cbor2's canonical mode for any body (keys of every length: shorter first, then
    bytewise), and decoding accepts it (its canonical check encodes it the same way)."""
    fields.pop("kind", None)
    body = EventBody.of("note", **fields)
    event = sign_event(ALICE, CONV, 3, PARENTS, lamport, 2**33, body)
    unsigned, signed = _reference_maps(event)
    assert event.to_bytes() == signed
    assert event._unsigned_map() == cbor2.loads(unsigned)
    assert decode_event(signed).unsigned_bytes() == unsigned
    fresh = Event(
        event.conversation, event.author, 3, PARENTS, lamport, 2**33, body, event.signature
    )
    assert fresh.unsigned_bytes() == unsigned and fresh.to_bytes() == signed
