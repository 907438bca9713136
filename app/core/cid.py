"""Content identifiers (CIDv1) for history events and other content-addressed blocks.

A CID names a block of bytes by its hash, in the IPFS/IPLD format, so anyone can check
that a block is the one a link points to:

* binary form: ``varint(1) || varint(codec) || multihash``, where
  ``multihash = varint(0x12) || varint(32) || sha2-256(block)``;
* text form: multibase base32 (RFC 4648 alphabet, lowercase, no padding) with the
  ``"b"`` prefix, e.g. ``bafyrei...`` for a dag-cbor block.

Only CIDv1 with a sha2-256 multihash is accepted; the codec is dag-cbor (0x71) for
history events and raw (0x55) for file blocks. The unsigned-varint encoding is the
multiformats one (LEB128, minimal, at most 9 bytes) and is implemented here because
it is a dozen lines.
"""

from __future__ import annotations

import base64
import hashlib
import re
from dataclasses import dataclass, field

from app.core.ledger_errors import InvalidCid

CID_VERSION = 1
CODEC_DAG_CBOR = 0x71
CODEC_RAW = 0x55
MULTIHASH_SHA2_256 = 0x12
SHA2_256_SIZE = 32
MULTIBASE_BASE32 = "b"
KNOWN_CODECS = frozenset({CODEC_DAG_CBOR, CODEC_RAW})
MAX_VARINT_BYTES = 9
# Every CID we accept has the same shape: 1 + 1 + 1 + 1 + 32 bytes.
CID_BYTES = 36
_BASE32_TEXT = re.compile(r"b[a-z2-7]{58}")


def encode_varint(value: int) -> bytes:
    """The multiformats unsigned varint (LEB128) of a non-negative integer < 2**63."""
    if value < 0 or value >= 1 << 63:
        raise ValueError("a varint holds an integer in [0, 2**63)")
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def decode_varint(data: bytes, offset: int = 0) -> tuple[int, int]:
    """Read one minimal unsigned varint at `offset`; return ``(value, next_offset)``."""
    value = 0
    for index in range(MAX_VARINT_BYTES):
        if offset + index >= len(data):
            raise InvalidCid("truncated varint")
        byte = data[offset + index]
        value |= (byte & 0x7F) << (7 * index)
        if not byte & 0x80:
            if byte == 0 and index > 0:
                raise InvalidCid("non-minimal varint")
            return value, offset + index + 1
    raise InvalidCid("varint longer than 9 bytes")


def sha256_multihash(data: bytes) -> bytes:
    """The sha2-256 multihash of `data`: code, digest length, digest."""
    digest = hashlib.sha256(data).digest()
    return encode_varint(MULTIHASH_SHA2_256) + encode_varint(SHA2_256_SIZE) + digest


@dataclass(frozen=True, order=True, slots=True)
class Cid:
    """A CIDv1 with a sha2-256 multihash. Ordered (and compared) by its binary form.

    Slotted (a history holds one per event): its text form is cached in a slot."""

    raw: bytes
    _text: str | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        _check_binary(self.raw)

    @classmethod
    def for_block(cls, block: bytes, codec: int = CODEC_DAG_CBOR) -> Cid:
        """The CID of `block` under `codec` (dag-cbor unless told otherwise)."""
        prefix = _PREFIXES.get(codec)
        if prefix is None:
            raise ValueError(f"unsupported codec 0x{codec:x}")
        # well-formed by construction: not decoded and checked again as a raw CID is
        # (every event's CID is computed on both sides of every message)
        cid = object.__new__(cls)
        object.__setattr__(cid, "raw", prefix + hashlib.sha256(block).digest())
        object.__setattr__(cid, "_text", None)
        return cid

    @classmethod
    def unchecked(cls, raw: bytes) -> Cid:
        """A CID from binary bytes already known to be one (e.g. to look a held CID up):
        no checks. Anything else goes through ``Cid(raw)``."""
        cid = object.__new__(cls)
        object.__setattr__(cid, "raw", raw)
        object.__setattr__(cid, "_text", None)
        return cid

    @classmethod
    def parse(cls, text: str) -> Cid:
        """Parse the base32 text form; raise `InvalidCid` on anything else."""
        if not _BASE32_TEXT.fullmatch(text):
            raise InvalidCid("a CID is 'b' followed by 58 lowercase base32 characters")
        body = text[1:].upper()
        try:
            raw = base64.b32decode(body + "=" * (-len(body) % 8))
        except ValueError:
            raise InvalidCid("a CID is not valid base32") from None
        cid = cls(raw)
        if str(cid) != text:
            # Non-zero padding bits would give a second spelling of the same CID.
            raise InvalidCid("a CID must be in its canonical text form")
        return cid

    @property
    def codec(self) -> int:
        """The multicodec of the block this CID names."""
        return decode_varint(self.raw, 1)[0]

    @property
    def digest(self) -> bytes:
        """The 32-byte sha2-256 digest of the block."""
        return self.raw[-SHA2_256_SIZE:]

    def matches(self, block: bytes) -> bool:
        """Whether `block` is the block this CID names."""
        return hashlib.sha256(block).digest() == self.digest

    def __str__(self) -> str:
        """The base32 text form, encoded once (events are stored and looked up by it)."""
        text = self._text
        if text is None:
            encoded = base64.b32encode(self.raw).decode("ascii").rstrip("=").lower()
            text = MULTIBASE_BASE32 + encoded
            object.__setattr__(self, "_text", text)
        return text

    def __repr__(self) -> str:
        return f"Cid({self})"


_PREFIXES = {
    codec: encode_varint(CID_VERSION)
    + encode_varint(codec)
    + encode_varint(MULTIHASH_SHA2_256)
    + encode_varint(SHA2_256_SIZE)
    for codec in KNOWN_CODECS
}
"""Each codec's CID bytes before the digest."""


def _check_binary(raw: bytes) -> None:
    if not isinstance(raw, bytes) or len(raw) != CID_BYTES:
        raise InvalidCid(f"a CID is {CID_BYTES} bytes")
    version, offset = decode_varint(raw, 0)
    if version != CID_VERSION:
        raise InvalidCid("only CIDv1 is supported")
    codec, offset = decode_varint(raw, offset)
    if codec not in KNOWN_CODECS:
        raise InvalidCid(f"unsupported codec 0x{codec:x}")
    hash_code, offset = decode_varint(raw, offset)
    size, offset = decode_varint(raw, offset)
    if hash_code != MULTIHASH_SHA2_256 or size != SHA2_256_SIZE:
        raise InvalidCid("only sha2-256 multihashes are supported")
    if len(raw) - offset != SHA2_256_SIZE:
        raise InvalidCid("multihash digest length mismatch")
