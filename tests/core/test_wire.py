"""Frame codec: round trips, streaming, hard limits, garbage."""

from __future__ import annotations

import struct

import pytest

from app.core.errors import LocalProtocolError, RemoteProtocolError
from app.core.transport_errors import FrameTooLarge, UnknownFrameType, UnsupportedFrameVersion
from app.core.wire import (
    HEADER_SIZE,
    MAX_PAYLOAD,
    WIRE_VERSION,
    Frame,
    FrameDecoder,
    FrameType,
    decode_frame,
    encode_frame,
)


def test_round_trip_every_type() -> None:
    for frame_type in FrameType:
        frame = Frame(frame_type, bytes([frame_type]) * 10)
        assert decode_frame(frame.encode()) == frame


def test_header_layout() -> None:
    raw = encode_frame(FrameType.DATA, b"abc")
    assert raw == bytes([WIRE_VERSION, FrameType.DATA]) + (3).to_bytes(4, "big") + b"abc"
    assert len(raw) == HEADER_SIZE + 3


def test_streaming_byte_by_byte_and_batched() -> None:
    frames = [Frame(FrameType.DATA, b"x" * n) for n in (0, 1, 5, 70_000)]
    stream = b"".join(f.encode() for f in frames)
    decoder = FrameDecoder()
    out: list[Frame] = []
    for i in range(0, len(stream), 7):
        out += decoder.feed(stream[i : i + 7])
    assert out == frames
    assert decoder.buffered == 0
    assert FrameDecoder().feed(stream) == frames


def test_max_payload_accepted_and_one_more_refused() -> None:
    assert decode_frame(encode_frame(FrameType.DATA, b"\x00" * MAX_PAYLOAD)).payload == bytes(
        MAX_PAYLOAD
    )
    with pytest.raises(LocalProtocolError):
        Frame(FrameType.DATA, b"\x00" * (MAX_PAYLOAD + 1))


def test_oversize_header_refused_before_buffering() -> None:
    header = struct.pack(">BBI", WIRE_VERSION, FrameType.DATA, MAX_PAYLOAD + 1)
    decoder = FrameDecoder()
    with pytest.raises(FrameTooLarge):
        decoder.feed(header)  # no payload yet: refused on the header alone


def test_bad_version_and_unknown_type() -> None:
    with pytest.raises(UnsupportedFrameVersion):
        FrameDecoder().feed(struct.pack(">BBI", 2, FrameType.DATA, 0))
    with pytest.raises(UnknownFrameType):
        FrameDecoder().feed(struct.pack(">BBI", WIRE_VERSION, 200, 0))


def test_garbage_is_a_remote_error_and_decoder_stays_failed() -> None:
    decoder = FrameDecoder()
    with pytest.raises(RemoteProtocolError):
        decoder.feed(b"GET / HTTP/1.1\r\n")
    with pytest.raises(LocalProtocolError):
        decoder.feed(encode_frame(FrameType.PING))


def test_decode_frame_requires_exactly_one() -> None:
    two = encode_frame(FrameType.PING) + encode_frame(FrameType.PONG)
    with pytest.raises(UnknownFrameType):
        decode_frame(two)
    with pytest.raises(UnknownFrameType):
        decode_frame(encode_frame(FrameType.DATA, b"abc")[:-1])
