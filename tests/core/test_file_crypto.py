"""Chunked file encryption: round trips, tamper/reorder/truncation detection, manifests."""

from __future__ import annotations

import os
from dataclasses import replace

import cbor2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.core.errors import DecryptionFailed, LocalProtocolError
from app.core.file_crypto import (
    CHUNK_PLAINTEXT_SIZE,
    MAX_MANIFEST_BYTES,
    MIN_PADDED_SIZE,
    TAG_SIZE,
    ChunkDecryptor,
    ChunkEncryptor,
    FileManifest,
    InvalidManifest,
    chunk_count,
    ciphertext_size,
    decode_manifest,
    encode_manifest,
    padded_size,
)
from app.core.padme import padme
from app.core.unixfs import BLOCK_SIZE, dag_pb_cid, raw_cid

KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))


def encrypt(data: bytes, key: bytes = KEY, piece: int = 100_000) -> list[bytes]:
    enc = ChunkEncryptor(key, len(data))
    blocks: list[bytes] = []
    for start in range(0, len(data), piece):
        blocks += enc.update(data[start : start + piece])
    blocks += list(enc.finish())
    return blocks


def decrypt(blocks: list[bytes], size: int, key: bytes = KEY) -> bytes:
    dec = ChunkDecryptor(key, padded_size(size), size)
    out = b"".join(dec.decrypt_next(block) for block in blocks)
    if not dec.is_complete:
        raise DecryptionFailed("incomplete")
    return out


@pytest.mark.parametrize(
    "size",
    [
        0,
        1,
        MIN_PADDED_SIZE,
        CHUNK_PLAINTEXT_SIZE - 1,
        CHUNK_PLAINTEXT_SIZE,
        BLOCK_SIZE + 1,
        3 << 20,
    ],
)
def test_round_trip_and_block_sizes(size: int) -> None:
    data = os.urandom(size)
    blocks = encrypt(data)
    padded = padded_size(size)
    assert padded == padme(max(size, MIN_PADDED_SIZE))
    assert len(blocks) == chunk_count(padded)
    assert all(len(b) == BLOCK_SIZE for b in blocks[:-1])  # every block but the last is full
    assert sum(map(len, blocks)) == ciphertext_size(padded) == padded + TAG_SIZE * len(blocks)
    assert decrypt(blocks, size) == data


@settings(max_examples=30, deadline=None)
@given(st.integers(min_value=0, max_value=700_000), st.integers(min_value=1, max_value=300_000))
def test_round_trip_any_feeding(size: int, piece: int) -> None:
    data = bytes(size)
    assert decrypt(encrypt(data, piece=piece), size) == data


def test_network_sees_only_padded_sizes() -> None:
    # Files of different real sizes in one Padmé bucket produce identical ciphertext sizes.
    sizes = {sum(map(len, encrypt(bytes(n)))) for n in range(1_000_001, 1_000_001 + 8000, 997)}
    assert len(sizes) == 1
    assert len({sum(map(len, encrypt(bytes(n)))) for n in (0, 1, 500, 1024)}) == 1


def test_tampered_chunk_rejected() -> None:
    blocks = encrypt(os.urandom(600_000))
    blocks[1] = blocks[1][:10] + bytes([blocks[1][10] ^ 1]) + blocks[1][11:]
    with pytest.raises(DecryptionFailed):
        decrypt(blocks, 600_000)


def test_reordered_chunks_rejected() -> None:
    blocks = encrypt(os.urandom(2 * BLOCK_SIZE + 10))
    dec = ChunkDecryptor(KEY, padded_size(2 * BLOCK_SIZE + 10), 2 * BLOCK_SIZE + 10)
    with pytest.raises(DecryptionFailed):
        dec.decrypt_chunk(0, blocks[1])
    with pytest.raises(DecryptionFailed):
        decrypt([blocks[1], blocks[0], *blocks[2:]], 2 * BLOCK_SIZE + 10)


def test_truncation_rejected() -> None:
    size = 3 * BLOCK_SIZE
    blocks = encrypt(os.urandom(size))
    assert len(blocks) >= 4
    # Dropping the last chunk leaves no final chunk: incomplete.
    with pytest.raises(DecryptionFailed):
        decrypt(blocks[:-1], size)
    # A full non-final chunk presented as the final one fails (final flag in nonce/AAD).
    dec = ChunkDecryptor(KEY, padded_size(size), size)
    assert dec.chunk_count == len(blocks)
    with pytest.raises(DecryptionFailed):
        dec.decrypt_chunk(len(blocks), blocks[-1])
    with pytest.raises(DecryptionFailed):
        dec.decrypt_chunk(len(blocks) - 1, blocks[-2])


def test_extra_chunk_rejected() -> None:
    blocks = encrypt(os.urandom(1000))
    dec = ChunkDecryptor(KEY, padded_size(1000), 1000)
    dec.decrypt_next(blocks[0])
    with pytest.raises(DecryptionFailed):
        dec.decrypt_next(blocks[0])


def test_splicing_files_with_same_key_rejected() -> None:
    # Same key, different padded size: the size is bound in the AAD.
    small, large = encrypt(bytes(1000)), encrypt(bytes(5000))
    with pytest.raises(DecryptionFailed):
        decrypt(large, 1000)
    with pytest.raises(DecryptionFailed):
        decrypt(small, 5000)


def test_wrong_key_rejected() -> None:
    with pytest.raises(DecryptionFailed):
        decrypt(encrypt(b"secret"), 6, key=OTHER_KEY)


def test_encryptor_enforces_declared_size() -> None:
    enc = ChunkEncryptor(KEY, 10)
    with pytest.raises(LocalProtocolError):
        enc.update(bytes(11))
    enc = ChunkEncryptor(KEY, 10)
    enc.update(bytes(5))
    with pytest.raises(LocalProtocolError):
        list(enc.finish())
    with pytest.raises(LocalProtocolError):
        ChunkEncryptor(b"short", 10)


def test_padding_stays_lazy() -> None:
    # A size just past a bucket edge: the padding spans chunks but comes one at a time.
    size = BLOCK_SIZE * 40 + 1
    enc = ChunkEncryptor(KEY, size)
    emitted = len(enc.update(bytes(size)))
    tail = enc.finish()
    first = next(tail)
    assert len(first) == BLOCK_SIZE
    assert emitted + 1 + sum(1 for _ in tail) == chunk_count(padded_size(size))


def make_manifest(**changes: object) -> FileManifest:
    size = 5 * BLOCK_SIZE
    base = FileManifest(
        root_cid=dag_pb_cid(b"root"),
        file_key=KEY,
        padded_size=padded_size(size),
        size=size,
        name="holiday.jpg",
        mime_type="image/jpeg",
        folder=("Photos", "2026"),
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def test_manifest_round_trip_and_canonical() -> None:
    manifest = make_manifest()
    data = encode_manifest(manifest)
    assert decode_manifest(data) == manifest
    assert data == cbor2.dumps(cbor2.loads(data), canonical=True)
    assert "file_key" not in repr(manifest) and KEY.hex() not in repr(manifest)
    small = FileManifest(raw_cid(b"x"), KEY, padded_size(3), 3, "a.txt", "text/plain")
    assert decode_manifest(encode_manifest(small)) == small


def test_manifest_rejects_inconsistent_values() -> None:
    cases: list[dict[str, object]] = [
        {"padded_size": 5 * BLOCK_SIZE + 1},  # not the Padmé size
        {"file_key": b"short"},
        {"root_cid": raw_cid(b"x")},  # many chunks need a dag-pb root
        {"root_cid": b"\x01\x71" + bytes(34)},
        {"name": "x" * 2000},
        {"mime_type": "ü/x"},
        {"folder": ("a",) * 40},
    ]
    for changes in cases:
        with pytest.raises(LocalProtocolError):
            make_manifest(**changes)


def test_decode_manifest_rejects_malformed() -> None:
    good = cbor2.loads(encode_manifest(make_manifest()))
    candidates = [
        b"",
        b"\xff",
        cbor2.dumps([1, 2]),
        cbor2.dumps({**good, "extra": 1}, canonical=True),
        cbor2.dumps({k: v for k, v in good.items() if k != "name"}, canonical=True),
        cbor2.dumps({**good, "v": 2}, canonical=True),
        cbor2.dumps({**good, "size": "5"}, canonical=True),
        cbor2.dumps({**good, "size": good["size"] + 1}, canonical=True),
        cbor2.dumps({**good, "dir": [1]}, canonical=True),
        cbor2.dumps({**good, "v": True}, canonical=True),
        cbor2.dumps(good, canonical=False).replace(b"\x01", b"\x18\x01", 1),  # non-minimal int
        bytes(MAX_MANIFEST_BYTES + 1),
    ]
    for data in candidates:
        with pytest.raises(InvalidManifest):
            decode_manifest(data)


@settings(max_examples=300)
@given(st.binary(max_size=400), st.integers(min_value=0, max_value=300), st.integers(0, 255))
def test_decode_manifest_fuzz(noise: bytes, position: int, value: int) -> None:
    """Random bytes and one-byte mutations of a valid manifest: a manifest or InvalidManifest."""
    valid = encode_manifest(make_manifest())
    mutated = bytearray(valid)
    mutated[position % len(valid)] = value
    for data in (noise, bytes(mutated)):
        try:
            decoded = decode_manifest(data)
        except InvalidManifest:
            continue
        assert encode_manifest(decoded) == data


@pytest.mark.parametrize(
    "size", [CHUNK_PLAINTEXT_SIZE, 3 * CHUNK_PLAINTEXT_SIZE, 3 * CHUNK_PLAINTEXT_SIZE + 5]
)
def test_whole_chunks_and_odd_pieces_encrypt_alike(size: int) -> None:
    # Whole chunks fed one by one take the no-copy path; odd pieces go through the buffer.
    data = bytes(i % 251 for i in range(size))
    whole = encrypt(data, piece=CHUNK_PLAINTEXT_SIZE)
    assert whole == encrypt(data, piece=77_777)
    assert decrypt(whole, size) == data
