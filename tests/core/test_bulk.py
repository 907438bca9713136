"""The bulk stream's records (`app.core.bulk`): keys, ordering, tampering, bounds."""

from __future__ import annotations

import os

import pytest

from app.core.bulk import (
    HEADER_SIZE,
    MAX_RECORD,
    MAX_WANTS,
    RecordOpener,
    RecordSealer,
    decode_answer,
    decode_wants,
    encode_wants,
    stream_keys,
    ticket_id,
)
from app.core.errors import DecryptionFailed, LocalProtocolError, RemoteProtocolError
from app.core.unixfs import BLOCK_SIZE, raw_cid

SECRET = bytes(range(32))


def split(record: bytes) -> tuple[bytes, bytes]:
    return record[:HEADER_SIZE], record[HEADER_SIZE:]


def test_keys_and_ticket_id_are_derived_and_distinct() -> None:
    asked, answer = stream_keys(SECRET)
    assert len(asked) == len(answer) == 32 and asked != answer
    assert stream_keys(SECRET) == (asked, answer)
    assert ticket_id(SECRET) == ticket_id(SECRET) != ticket_id(os.urandom(32))
    assert len(ticket_id(SECRET)) == 16 and ticket_id(SECRET) not in asked + answer
    with pytest.raises(LocalProtocolError):
        stream_keys(b"short")


def test_records_round_trip_in_order() -> None:
    key = stream_keys(SECRET)[1]
    sealer, opener = RecordSealer(key), RecordOpener(key)
    block = os.urandom(BLOCK_SIZE)
    for plaintext in (b"\x00" + block, b"\x01", b"\x00"):
        header, body = split(sealer.seal(plaintext))
        assert opener.length(header) == len(body)
        assert opener.open(header, bytearray(body)) == plaintext


def test_a_dropped_repeated_or_altered_record_fails() -> None:
    key = stream_keys(SECRET)[1]
    sealer = RecordSealer(key)
    first, second = sealer.seal(b"\x01"), sealer.seal(b"\x00abc")

    with pytest.raises(DecryptionFailed):  # the first was dropped
        RecordOpener(key).open(*split(second))
    opener = RecordOpener(key)
    opener.open(*split(first))
    with pytest.raises(DecryptionFailed):  # the first again (a replay)
        opener.open(*split(first))
    header, body = split(second)
    with pytest.raises(DecryptionFailed):  # a flipped bit
        RecordOpener(key).open(header, body[:-1] + bytes([body[-1] ^ 1]))
    with pytest.raises(DecryptionFailed):  # the other direction's key
        RecordOpener(stream_keys(SECRET)[0]).open(*split(first))


def test_lengths_out_of_bounds_are_refused() -> None:
    for length in (0, 15, MAX_RECORD + 1, 2**32 - 1):
        with pytest.raises(RemoteProtocolError):
            RecordOpener.length(length.to_bytes(4, "big"))
    assert RecordOpener.length(MAX_RECORD.to_bytes(4, "big")) == MAX_RECORD
    with pytest.raises(LocalProtocolError):
        RecordSealer(SECRET).seal(bytes(BLOCK_SIZE + 2))


def test_wants_and_answers() -> None:
    cids = [raw_cid(bytes([i])) for i in range(MAX_WANTS)]
    assert decode_wants(encode_wants(cids)) == cids
    for bad in ([], cids + cids[:1], [b"short"]):
        with pytest.raises(LocalProtocolError):
            encode_wants(bad)
    for hostile in (b"", b"x" * 35, b"x" * 36 * (MAX_WANTS + 1)):
        with pytest.raises(RemoteProtocolError):
            decode_wants(hostile)
    answer = decode_answer(b"\x00block")
    assert answer is not None and bytes(answer) == b"block"
    assert decode_answer(b"\x01") is None
    for hostile in (b"", b"\x01x", b"\x02block"):
        with pytest.raises(RemoteProtocolError):
            decode_answer(hostile)
