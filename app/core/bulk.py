"""The bulk stream: a file's blocks over a TCP connection of their own (docs/protocol.md,
section 10.5).

The block exchange asks for one block per message over the authenticated connection,
so every block costs the event loop several WebSocket messages and Noise decryptions.
For a large file between peers that reach each other directly, the receiver asks the
sender for a *ticket* over that authenticated connection instead: 32 random bytes, the
`secret`, valid once and for one file. It then opens a plain TCP connection to the
sender and sends the ticket's 16-byte `ticket_id`; both sides derive two AES-256-GCM
keys from the secret and speak *records*:

``length (4, big-endian) || AES-256-GCM(key, nonce = record number (12, big-endian),
plaintext, associated data = length)``

where `length` counts the ciphertext with its tag. Record numbers count up from zero in
each direction, so a record cannot be dropped, repeated or moved without the next
decryption failing. The asker's records carry wanted CIDs (`encode_wants`), the server's
records one answer each, in the order asked: ``0x00 || block`` or ``0x01`` (not held).

The secret travels only inside the Noise/DTLS-protected connection, so whoever presents
its id and then speaks with its keys is the contact the ticket was given to. Blocks are
ciphertext under the file's key anyway and the asker re-hashes each against its CID.

Sans-I/O: the secret is passed in; no sockets, no clock.
"""

from __future__ import annotations

import hashlib
import struct

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from app.core.errors import DecryptionFailed, LocalProtocolError, RemoteProtocolError
from app.core.unixfs import BLOCK_SIZE, CID_SIZE

SECRET_SIZE = 32
TICKET_ID_SIZE = 16
HEADER_SIZE = 4
TAG_SIZE = 16
MAX_WANTS = 256
"""CIDs in one asking record."""
MAX_RECORD = 1 + BLOCK_SIZE + TAG_SIZE
"""The longest record either side accepts (ciphertext with tag)."""
BLOCK = 0x00
NOT_HELD = 0x01
_LABEL = b"scrambled-eggs/v1/bulk\x00"


def ticket_id(secret: bytes) -> bytes:
    """What the asker sends first, in the clear: names the ticket, reveals nothing of it."""
    _check_secret(secret)
    return hashlib.sha256(_LABEL + b"ticket-id\x00" + secret).digest()[:TICKET_ID_SIZE]


def stream_keys(secret: bytes) -> tuple[bytes, bytes]:
    """(asker -> server key, server -> asker key)."""
    _check_secret(secret)
    okm = HKDF(algorithm=SHA256(), length=64, salt=None, info=_LABEL + b"keys").derive(secret)
    return okm[:32], okm[32:]


def _check_secret(secret: bytes) -> None:
    if len(secret) != SECRET_SIZE:
        raise LocalProtocolError("a bulk ticket's secret is 32 bytes")


class RecordSealer:
    """Seals one direction's records."""

    def __init__(self, key: bytes) -> None:
        self._aead = AESGCM(key)
        self._number = 0

    def seal(self, plaintext: bytes) -> bytes:
        """The record (header and ciphertext) carrying `plaintext`."""
        if len(plaintext) + TAG_SIZE > MAX_RECORD:
            raise LocalProtocolError("a bulk record is at most one block and its status")
        header = struct.pack(">I", len(plaintext) + TAG_SIZE)
        nonce = self._number.to_bytes(12, "big")
        self._number += 1
        return header + self._aead.encrypt(nonce, plaintext, header)


class RecordOpener:
    """Opens the other direction's records, in order."""

    def __init__(self, key: bytes) -> None:
        self._aead = AESGCM(key)
        self._number = 0

    @staticmethod
    def length(header: bytes | bytearray) -> int:
        """The ciphertext length a header announces; `RemoteProtocolError` if too long."""
        length = int.from_bytes(header, "big")
        if len(header) != HEADER_SIZE or not TAG_SIZE <= length <= MAX_RECORD:
            raise RemoteProtocolError(f"a bulk record of {length} bytes is out of bounds")
        return length

    def open(self, header: bytes | bytearray, ciphertext: bytes | bytearray | memoryview) -> bytes:
        """The plaintext of the next record; `DecryptionFailed` if it was tampered with."""
        nonce = self._number.to_bytes(12, "big")
        try:
            plaintext = self._aead.decrypt(nonce, ciphertext, header)
        except InvalidTag:
            raise DecryptionFailed("a bulk record failed to decrypt") from None
        self._number += 1
        return plaintext


def encode_wants(cids: list[bytes]) -> bytes:
    """An asking record's plaintext: the CIDs, concatenated."""
    if not 0 < len(cids) <= MAX_WANTS or any(len(c) != CID_SIZE for c in cids):
        raise LocalProtocolError(f"ask for 1 to {MAX_WANTS} CIDs at a time")
    return b"".join(cids)


def decode_wants(plaintext: bytes) -> list[bytes]:
    """The CIDs of an asking record; `RemoteProtocolError` if malformed."""
    count, rest = divmod(len(plaintext), CID_SIZE)
    if rest or not 0 < count <= MAX_WANTS:
        raise RemoteProtocolError("a bulk asking record is malformed")
    return [plaintext[i * CID_SIZE : (i + 1) * CID_SIZE] for i in range(count)]


INDEX_SIZE = 4


def encode_indices(indices: list[int]) -> bytes:
    """An asking record's plaintext on a stream by chunk index (a file offered before
    its root was known, docs/protocol.md section 10.6): 4-byte big-endian indices."""
    if not 0 < len(indices) <= MAX_WANTS or not all(0 <= i < 1 << 32 for i in indices):
        raise LocalProtocolError(f"ask for 1 to {MAX_WANTS} chunks at a time")
    return b"".join(i.to_bytes(INDEX_SIZE, "big") for i in indices)


def decode_indices(plaintext: bytes) -> list[int]:
    """The chunk indices of an asking record by index; `RemoteProtocolError` if malformed."""
    count, rest = divmod(len(plaintext), INDEX_SIZE)
    if rest or not 0 < count <= MAX_WANTS:
        raise RemoteProtocolError("a bulk asking record is malformed")
    return [int.from_bytes(plaintext[i * 4 : i * 4 + 4], "big") for i in range(count)]


def decode_answer(plaintext: bytes) -> memoryview | None:
    """A block (a view into `plaintext`: no copy), or None when the server lacks it."""
    if plaintext[:1] == bytes([BLOCK]):
        return memoryview(plaintext)[1:]
    if plaintext == bytes([NOT_HELD]):
        return None
    raise RemoteProtocolError("a bulk answer is malformed")


__all__ = [
    "BLOCK",
    "HEADER_SIZE",
    "INDEX_SIZE",
    "MAX_RECORD",
    "MAX_WANTS",
    "NOT_HELD",
    "SECRET_SIZE",
    "TICKET_ID_SIZE",
    "RecordOpener",
    "RecordSealer",
    "decode_answer",
    "decode_indices",
    "decode_wants",
    "encode_indices",
    "encode_wants",
    "stream_keys",
    "ticket_id",
]
