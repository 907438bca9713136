"""CIDv1 encoding: varints, multihash, base32 text form, strict parsing."""

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.core.cid import (
    CODEC_DAG_CBOR,
    CODEC_RAW,
    KNOWN_CODECS,
    Cid,
    decode_varint,
    encode_varint,
    sha256_multihash,
)
from app.core.errors import RemoteProtocolError
from app.core.ledger_errors import InvalidCid


@pytest.mark.parametrize(
    ("value", "encoded"),
    [(0, "00"), (1, "01"), (127, "7f"), (128, "8001"), (300, "ac02"), (16384, "808001")],
)
def test_varint_known_vectors(value: int, encoded: str) -> None:
    assert encode_varint(value).hex() == encoded
    assert decode_varint(bytes.fromhex(encoded)) == (value, len(encoded) // 2)


@given(st.integers(min_value=0, max_value=2**63 - 1))
def test_varint_round_trip(value: int) -> None:
    raw = encode_varint(value)
    assert decode_varint(raw + b"\xff") == (value, len(raw))


@pytest.mark.parametrize("raw", ["8000", "80", "", "ffffffffffffffffff01"])
def test_varint_rejects_non_minimal_truncated_and_overlong(raw: str) -> None:
    with pytest.raises(InvalidCid):
        decode_varint(bytes.fromhex(raw))


def test_varint_rejects_negative_and_huge() -> None:
    with pytest.raises(ValueError):
        encode_varint(-1)
    with pytest.raises(ValueError):
        encode_varint(2**63)


def test_multihash_layout() -> None:
    assert sha256_multihash(b"abc") == b"\x12\x20" + hashlib.sha256(b"abc").digest()


def test_known_cids_match_ipfs() -> None:
    # Well-known IPFS CIDs: the empty raw block, and the empty dag-cbor map {}.
    empty_raw = "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"
    empty_map = "bafyreigbtj4x7ip5legnfznufuopl4sg4knzc2cof6duas4b3q2fy6swua"
    assert str(Cid.for_block(b"", CODEC_RAW)) == empty_raw
    assert str(Cid.for_block(b"\xa0", CODEC_DAG_CBOR)) == empty_map
    assert Cid.parse(empty_map).codec == CODEC_DAG_CBOR
    assert Cid.parse(empty_raw).codec == CODEC_RAW


@given(st.binary(max_size=200))
def test_text_round_trip_and_matches(block: bytes) -> None:
    cid = Cid.for_block(block)
    text = str(cid)
    assert text.startswith("bafyrei") and len(text) == 59
    assert Cid.parse(text) == cid
    assert cid.digest == hashlib.sha256(block).digest()
    assert cid.matches(block)
    assert not cid.matches(block + b"x")


def test_order_is_by_binary_form() -> None:
    cids = [Cid.for_block(bytes([i])) for i in range(20)]
    assert sorted(cids) == sorted(cids, key=lambda c: c.raw)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG",  # CIDv0
        "BAFYREIGBTJ4X7IP5LEGNFZNUFUOPL4SG4KNZC2COF6DUAS4B3Q2FY6SWUA",  # upper case
        "zafyreigbtj4x7ip5legnfznufuopl4sg4knzc2cof6duas4b3q2fy6swua",  # other multibase
        "bafyreigbtj4x7ip5legnfznufuopl4sg4knzc2cof6duas4b3q2fy6swu",  # truncated
        "bafyreigbtj4x7ip5legnfznufuopl4sg4knzc2cof6duas4b3q2fy6swub",  # padding bits set
        "bafyreigbtj4x7ip5legnfznufuopl4sg4knzc2cof6duas4b3q2fy6sw1a",  # not base32
    ],
)
def test_parse_rejects(text: str) -> None:
    with pytest.raises(InvalidCid):
        Cid.parse(text)


def test_binary_form_is_checked() -> None:
    good = Cid.for_block(b"x").raw
    bad_forms = [
        good[:-1],  # short digest
        b"\x00" + good[1:],  # version 0
        good[:1] + b"\x70" + good[2:],  # dag-pb codec: not accepted here
        good[:2] + b"\x13" + good[3:],  # sha2-512 code
        good[:3] + b"\x1f" + good[4:],  # wrong digest length
    ]
    for raw in bad_forms:
        with pytest.raises(InvalidCid):
            Cid(raw)
    assert issubclass(InvalidCid, RemoteProtocolError)


def test_unknown_codec_for_block() -> None:
    with pytest.raises(ValueError):
        Cid.for_block(b"", 0x70)


@given(st.binary(max_size=300), st.sampled_from(sorted(KNOWN_CODECS)))
def test_a_computed_cid_is_the_one_its_bytes_parse_to(block: bytes, codec: int) -> None:
    """`for_block` builds the CID without decoding it again: the same value (bytes,
    equality, hash, text form) as the checked constructor gives."""
    computed = Cid.for_block(block, codec)
    checked = Cid(computed.raw)
    assert computed == checked and hash(computed) == hash(checked)
    assert computed.codec == codec and Cid.parse(str(computed)) == checked
    assert computed.raw.endswith(hashlib.sha256(block).digest())
