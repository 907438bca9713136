"""Frame codec shared by every transport path (WebRTC data channel, Noise WebSocket).

A frame is::

    version (1 byte) | type (1 byte) | length (4 bytes, big-endian) | payload (length bytes)

The version is `WIRE_VERSION`; the payload is at most `MAX_PAYLOAD` bytes (1 MiB), a hard
limit checked *before* buffering, so a peer cannot make us allocate more than that per
frame. Transports carry frames as a byte stream and may split it anywhere (the data
channel and the Noise transport both chunk it); `FrameDecoder` reassembles the frames.

Sans-I/O: no sockets, no clock, no randomness.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass

from app.core.errors import LocalProtocolError
from app.core.transport_errors import FrameTooLarge, UnknownFrameType, UnsupportedFrameVersion

WIRE_VERSION = 1
HEADER_SIZE = 6
MAX_PAYLOAD = 1 << 20
_HEADER = struct.Struct(">BBI")


class FrameType(enum.IntEnum):
    """What a frame carries. Unknown values are rejected by the decoder."""

    DATA = 1
    """Application payload (ratchet ciphertexts, blocks, ...), opaque to the transport."""
    PING = 2
    """Liveness/RTT probe; the payload is echoed back in a PONG."""
    PONG = 3
    """Answer to a PING, carrying the same payload."""
    HELLO = 4
    """First frame on a WebRTC channel: the sender's fresh 32-byte binding nonce."""
    BINDING = 5
    """The signed connection binding (see `app.core.binding`)."""
    CLOSE = 6
    """Orderly close; the payload is a short UTF-8 reason."""
    COVER = 7
    """Cover traffic from the shaper; dropped by the receiver after the inbound hook."""
    PADDED = 8
    """A shaped fragment of a DATA payload: ``flags u8 | length u32be | data | zeros``
    (see `app.core.shaping`); bit 0 of flags marks a message's last fragment."""


@dataclass(frozen=True)
class Frame:
    """One decoded or to-be-encoded frame."""

    type: FrameType
    payload: bytes = b""

    def __post_init__(self) -> None:
        if len(self.payload) > MAX_PAYLOAD:
            raise LocalProtocolError(f"frame payload exceeds {MAX_PAYLOAD} bytes")

    def encode(self) -> bytes:
        """The frame's bytes on the wire."""
        return _HEADER.pack(WIRE_VERSION, int(self.type), len(self.payload)) + self.payload


def encode_frame(frame_type: FrameType, payload: bytes = b"") -> bytes:
    """Shortcut for ``Frame(frame_type, payload).encode()``."""
    return Frame(frame_type, payload).encode()


def _parse_header(header: bytes) -> tuple[FrameType, int]:
    version, type_byte, length = _HEADER.unpack(header)
    if version != WIRE_VERSION:
        raise UnsupportedFrameVersion(f"frame version {version} is not supported")
    try:
        frame_type = FrameType(type_byte)
    except ValueError:
        raise UnknownFrameType(f"unknown frame type {type_byte}") from None
    if length > MAX_PAYLOAD:
        raise FrameTooLarge(f"frame of {length} bytes exceeds the {MAX_PAYLOAD}-byte limit")
    return frame_type, length


def decode_frame(data: bytes) -> Frame:
    """Decode exactly one complete frame (raises `FrameError` on anything else)."""
    decoder = FrameDecoder()
    frames = decoder.feed(data)
    if len(frames) != 1 or decoder.buffered:
        raise UnknownFrameType("expected exactly one complete frame")
    return frames[0]


class FrameDecoder:
    """Streaming decoder: feed it bytes as they arrive, get back the complete frames.

    After it has raised, the stream is unusable (the decoder stays failed): a transport
    must close the connection rather than try to resynchronise.
    """

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._pending: tuple[FrameType, int] | None = None
        self._failed = False

    @property
    def buffered(self) -> int:
        """Bytes received but not yet returned as part of a frame."""
        return len(self._buffer)

    def feed(self, data: bytes) -> list[Frame]:
        """Append `data` and return every frame it completes, in order."""
        if self._failed:
            raise LocalProtocolError("the frame stream already failed")
        self._buffer += data
        frames: list[Frame] = []
        try:
            while True:
                if self._pending is None:
                    if len(self._buffer) < HEADER_SIZE:
                        break
                    self._pending = _parse_header(bytes(self._buffer[:HEADER_SIZE]))
                    del self._buffer[:HEADER_SIZE]
                frame_type, length = self._pending
                if len(self._buffer) < length:
                    break
                payload = bytes(self._buffer[:length])
                del self._buffer[:length]
                self._pending = None
                frames.append(Frame(frame_type, payload))
        except Exception:
            self._failed = True
            self._buffer.clear()
            raise
        return frames
