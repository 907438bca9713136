"""Chunked file encryption and the file manifest (sans-I/O).

A shared file is encrypted as a sequence of chunks so that each ciphertext chunk is one
256 KiB IPFS block (`app.core.unixfs.BLOCK_SIZE`):

* The plaintext is padded with zero bytes to ``padded_size(size)`` (Padmé, at least
  `MIN_PADDED_SIZE`), so the ciphertext length reveals only the padded length.
* The padded stream is cut into `CHUNK_PLAINTEXT_SIZE` (256 KiB - 16) byte chunks, at
  least one. Chunk ``i`` of ``n`` is ``AES-256-GCM(subkey, nonce_i, chunk, aad_i)`` where
  ``subkey = HKDF(file_key, Domain.FILE_KEY, "chunk-encryption/v1")``,
  ``nonce_i = index (8 bytes BE) || 00 00 00 || final`` and
  ``aad_i = Domain.FILE_KEY.tag() || "chunk" || version || index || final || padded_size``
  with ``final = 1`` only for ``i = n - 1``. Moving a chunk, cutting the stream short,
  appending to it or splicing two files together therefore fails authentication.
* The file key is 32 fresh random bytes per file, passed in by the caller.

The manifest (`FileManifest`) is what the sender puts in a conversation event: the root
CID of the ciphertext (its UnixFS DAG lists every block), the file key, the padded and
real sizes, the name and the MIME type. It is encoded as canonical CBOR with hard limits
and decoded strictly.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field, replace

import cbor2
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from app.core.domains import Domain
from app.core.errors import DecryptionFailed, LocalProtocolError, RemoteProtocolError
from app.core.padme import padme
from app.core.sealing import KEY_SIZE, derive_key
from app.core.unixfs import BLOCK_SIZE, CODEC_RAW, InvalidBlock, cid_codec, cid_to_str

FILE_CRYPTO_VERSION = 1
TAG_SIZE = 16
CHUNK_PLAINTEXT_SIZE = BLOCK_SIZE - TAG_SIZE
MIN_PADDED_SIZE = 1024
MAX_FILE_SIZE = 1 << 44  # 16 TiB
MANIFEST_VERSION = 1
MAX_MANIFEST_BYTES = 8 * 1024
MAX_NAME_BYTES = 1024
MAX_MIME_BYTES = 255
MAX_FOLDER_DEPTH = 32
MAX_FOLDER_PART_BYTES = 255
_SUBKEY_PURPOSE = b"chunk-encryption/v1"


class InvalidManifest(RemoteProtocolError):
    """A file manifest from a peer is malformed, non-canonical or out of bounds."""


def padded_size(size: int) -> int:
    """The padded plaintext length of a file of `size` bytes (Padmé, >= MIN_PADDED_SIZE)."""
    if size < 0 or size > MAX_FILE_SIZE:
        raise LocalProtocolError("file size out of range")
    return padme(max(size, MIN_PADDED_SIZE))


def chunk_count(padded: int) -> int:
    """How many encrypted chunks (= IPFS leaves) a padded stream of `padded` bytes has."""
    return max(1, -(-padded // CHUNK_PLAINTEXT_SIZE))


def ciphertext_size(padded: int) -> int:
    """Total ciphertext bytes (what the network sees) for a padded stream of `padded` bytes."""
    return padded + TAG_SIZE * chunk_count(padded)


def chunk_plaintext_length(padded: int, index: int) -> int:
    """The plaintext length of chunk `index` of a padded stream of `padded` bytes."""
    count = chunk_count(padded)
    if not 0 <= index < count:
        raise LocalProtocolError("chunk index out of range")
    if index < count - 1:
        return CHUNK_PLAINTEXT_SIZE
    return padded - CHUNK_PLAINTEXT_SIZE * (count - 1)


class _ChunkCipher:
    def __init__(self, file_key: bytes, padded: int) -> None:
        if len(file_key) != KEY_SIZE:
            raise LocalProtocolError("a file key is 32 bytes")
        self.padded_size = padded
        self.chunk_count = chunk_count(padded)
        self._aead = AESGCM(derive_key(file_key, Domain.FILE_KEY, _SUBKEY_PURPOSE))

    def _nonce_and_aad(self, index: int) -> tuple[bytes, bytes]:
        final = b"\x01" if index == self.chunk_count - 1 else b"\x00"
        idx = index.to_bytes(8, "big")
        nonce = idx + b"\x00\x00\x00" + final
        aad = (
            Domain.FILE_KEY.tag()
            + b"chunk"
            + bytes([FILE_CRYPTO_VERSION])
            + idx
            + final
            + self.padded_size.to_bytes(8, "big")
        )
        return nonce, aad


class ChunkEncryptor(_ChunkCipher):
    """Encrypt one file as a stream: feed plaintext with `update`, then call `finish`.

    Holds at most one chunk of plaintext, whatever the file size. Every returned
    ciphertext chunk is one IPFS block, in order.
    """

    def __init__(self, file_key: bytes, size: int) -> None:
        super().__init__(file_key, padded_size(size))
        self.size = size
        self._buffer = bytearray()
        self._fed = 0
        self._next_index = 0
        self._finished = False

    def encrypt_chunk(self, index: int, plaintext: bytes) -> bytes:
        """Encrypt chunk `index` (its exact padded-stream slice) into one block."""
        if len(plaintext) != chunk_plaintext_length(self.padded_size, index):
            raise LocalProtocolError("chunk has the wrong length for its index")
        nonce, aad = self._nonce_and_aad(index)
        return self._aead.encrypt(nonce, plaintext, aad)

    def update(self, data: bytes) -> list[bytes]:
        """Add file bytes; return the ciphertext chunks completed by them."""
        if self._finished:
            raise LocalProtocolError("encryptor already finished")
        self._fed += len(data)
        if self._fed > self.size:
            raise LocalProtocolError("more bytes than the declared file size")
        out: list[bytes] = []
        whole = not self._buffer and len(data) == CHUNK_PLAINTEXT_SIZE
        if whole and self._next_index < self.chunk_count - 1:
            return [self._emit(data)]  # the common case: one whole chunk, no copy
        self._buffer += data
        while len(self._buffer) >= CHUNK_PLAINTEXT_SIZE and self._next_index < self.chunk_count - 1:
            out.append(self._emit(bytes(self._buffer[:CHUNK_PLAINTEXT_SIZE])))
            del self._buffer[:CHUNK_PLAINTEXT_SIZE]
        return out

    def finish(self) -> Iterator[bytes]:
        """Pad with zeros and yield the remaining chunks (lazily: padding can be large)."""
        if self._fed != self.size:
            raise LocalProtocolError("fewer bytes than the declared file size")
        if self._finished:
            raise LocalProtocolError("encryptor already finished")
        self._finished = True
        tail = bytes(self._buffer)
        self._buffer = bytearray()
        while self._next_index < self.chunk_count:
            want = chunk_plaintext_length(self.padded_size, self._next_index)
            chunk, tail = tail[:want], tail[want:]
            yield self._emit(chunk + bytes(want - len(chunk)))

    def _emit(self, plaintext: bytes) -> bytes:
        block = self.encrypt_chunk(self._next_index, plaintext)
        self._next_index += 1
        return block


class ChunkDecryptor(_ChunkCipher):
    """Decrypt the blocks of one file, checking index, position and completeness.

    `decrypt_chunk` works on any chunk by index; `decrypt_next` enforces order and
    tracks completion (`is_complete`). Both return only real file bytes (padding cut).
    """

    def __init__(self, file_key: bytes, padded: int, size: int) -> None:
        if size < 0 or padded != padded_size(size):
            raise LocalProtocolError("padded size does not match the file size")
        super().__init__(file_key, padded)
        self.size = size
        self._next_index = 0

    @property
    def is_complete(self) -> bool:
        """Whether every chunk, including the final one, has been decrypted in order."""
        return self._next_index == self.chunk_count

    def decrypt_chunk(self, index: int, block: bytes | memoryview) -> bytes:
        """The real file bytes in chunk `index`; `DecryptionFailed` if it was tampered with."""
        if not 0 <= index < self.chunk_count:
            raise DecryptionFailed("chunk index beyond the end of the file")
        if len(block) != chunk_plaintext_length(self.padded_size, index) + TAG_SIZE:
            raise DecryptionFailed("chunk has the wrong length for its position")
        nonce, aad = self._nonce_and_aad(index)
        try:
            plaintext = self._aead.decrypt(nonce, block, aad)
        except InvalidTag:
            raise DecryptionFailed("file chunk does not authenticate") from None
        start = index * CHUNK_PLAINTEXT_SIZE
        keep = max(0, min(len(plaintext), self.size - start))
        return plaintext if keep == len(plaintext) else plaintext[:keep]  # no copy of 256 KiB

    def decrypt_next(self, block: bytes) -> bytes:
        """Decrypt the next chunk in order."""
        if self.is_complete:
            raise DecryptionFailed("data after the final chunk")
        plaintext = self.decrypt_chunk(self._next_index, block)
        self._next_index += 1
        return plaintext


# --------------------------------------------------------------------------- manifest


@dataclass(frozen=True)
class FileManifest:
    """Everything a receiver needs to fetch, verify and decrypt one shared file.

    `root_cid` is the binary CID of the ciphertext's UnixFS DAG: the raw leaf itself for
    a one-chunk file, else a dag-pb root whose tree lists every block; empty in an
    offer sent while the file is still being encrypted (`is_rooted` False; the manifest
    with the root follows, docs/protocol.md section 10.6). `folder` holds the relative
    folder components when the file is part of a shared folder.
    """

    root_cid: bytes
    file_key: bytes = field(repr=False)
    padded_size: int
    size: int
    name: str
    mime_type: str
    folder: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _validate(self, LocalProtocolError)

    @property
    def is_rooted(self) -> bool:
        """Whether the root CID is known (not an offer sent before it was)."""
        return bool(self.root_cid)

    def with_root(self, root_cid: bytes) -> FileManifest:
        """This manifest with its root CID, once the file is encrypted."""
        return replace(self, root_cid=root_cid)

    def unrooted(self) -> FileManifest:
        """This manifest without its root CID (what an early offer carries)."""
        return replace(self, root_cid=b"")

    def same_file(self, other: FileManifest) -> bool:
        """Whether `other` describes the same file (key, sizes, names), roots aside."""
        return self.unrooted() == other.unrooted()

    @property
    def chunk_count(self) -> int:
        """How many encrypted chunks (IPFS leaves) the file has."""
        return chunk_count(self.padded_size)

    @property
    def ciphertext_size(self) -> int:
        """Bytes of ciphertext the network carries for this file."""
        return ciphertext_size(self.padded_size)

    @property
    def root_cid_text(self) -> str:
        """The root CID in base32 text form."""
        return cid_to_str(self.root_cid)


def encode_manifest(manifest: FileManifest) -> bytes:
    """Canonical CBOR encoding of `manifest` (at most `MAX_MANIFEST_BYTES`)."""
    value = {
        "v": MANIFEST_VERSION,
        "cid": manifest.root_cid,
        "key": manifest.file_key,
        "padded": manifest.padded_size,
        "size": manifest.size,
        "name": manifest.name,
        "type": manifest.mime_type,
        "dir": list(manifest.folder),
    }
    data: bytes = cbor2.dumps(value, canonical=True)
    if len(data) > MAX_MANIFEST_BYTES:
        raise LocalProtocolError("manifest too large")
    return data


def decode_manifest(data: bytes, *, rooted: bool | None = True) -> FileManifest:
    """Parse a manifest from a peer; `InvalidManifest` unless canonical and within limits.

    `rooted`: True (a ``file`` event) requires the root CID, False (a ``file_soon``
    event) requires it empty, None (a stored row) takes either."""
    if len(data) > MAX_MANIFEST_BYTES:
        raise InvalidManifest("manifest too large")
    try:
        value = cbor2.loads(data)
    except (cbor2.CBORDecodeError, ValueError, TypeError, OverflowError, RecursionError):
        raise InvalidManifest("manifest is not valid CBOR") from None
    expected = {"v", "cid", "key", "padded", "size", "name", "type", "dir"}
    if not isinstance(value, dict) or set(value) != expected:
        raise InvalidManifest("manifest has missing or unknown fields")
    if value["v"] != MANIFEST_VERSION or type(value["v"]) is not int:
        raise InvalidManifest("unsupported manifest version")
    folder = value["dir"]
    if not isinstance(folder, list) or len(folder) > MAX_FOLDER_DEPTH:
        raise InvalidManifest("manifest folder is malformed")
    fields = (value["cid"], value["key"], value["padded"], value["size"])
    if not all(type(v) is bytes for v in fields[:2]) or not all(type(v) is int for v in fields[2:]):
        raise InvalidManifest("manifest field has the wrong type")
    if type(value["name"]) is not str or type(value["type"]) is not str:
        raise InvalidManifest("manifest field has the wrong type")
    if not all(type(part) is str for part in folder):
        raise InvalidManifest("manifest folder is malformed")
    try:
        manifest = FileManifest(
            root_cid=value["cid"],
            file_key=value["key"],
            padded_size=value["padded"],
            size=value["size"],
            name=value["name"],
            mime_type=value["type"],
            folder=tuple(folder),
        )
    except LocalProtocolError as exc:
        raise InvalidManifest(str(exc)) from None
    if encode_manifest(manifest) != data:
        raise InvalidManifest("manifest is not canonically encoded")
    if rooted is not None and manifest.is_rooted != rooted:
        raise InvalidManifest(
            "manifest has a root" if manifest.is_rooted else "manifest has no root"
        )
    return manifest


def _codec(cid: bytes, error: type[Exception]) -> int:
    try:
        return cid_codec(cid)
    except InvalidBlock:
        raise error("manifest root is not a supported CID") from None


def _validate(m: FileManifest, error: type[Exception]) -> None:
    if len(m.file_key) != KEY_SIZE:
        raise error("a file key is 32 bytes")
    if not 0 <= m.size <= MAX_FILE_SIZE or m.padded_size != padded_size(m.size):
        raise error("manifest sizes are inconsistent")
    if not m.root_cid:
        pass  # not known yet (an early offer)
    elif (_codec(m.root_cid, error) == CODEC_RAW) != (chunk_count(m.padded_size) == 1):
        raise error("manifest root CID kind does not match the number of chunks")
    if len(m.name.encode("utf-8", "surrogatepass")) > MAX_NAME_BYTES:
        raise error("file name too long")
    if len(m.mime_type) > MAX_MIME_BYTES or not m.mime_type.isascii():
        raise error("MIME type too long or not ASCII")
    if len(m.folder) > MAX_FOLDER_DEPTH or any(
        len(p.encode("utf-8", "surrogatepass")) > MAX_FOLDER_PART_BYTES for p in m.folder
    ):
        raise error("folder path too deep or too long")
