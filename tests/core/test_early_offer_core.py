"""The pieces of an offer sent before the file's root is known (protocol.md 10.6)."""

from __future__ import annotations

import os

import pytest

from app.core.bulk import decode_indices, encode_indices
from app.core.errors import LocalProtocolError, RemoteProtocolError
from app.core.file_crypto import (
    ChunkEncryptor,
    FileManifest,
    InvalidManifest,
    decode_manifest,
    encode_manifest,
    padded_size,
)
from app.core.unixfs import UnixfsFileBuilder, raw_cid


def manifest(size: int = 3_000_000, root: bytes = b"") -> FileManifest:
    return FileManifest(
        root_cid=root,
        file_key=bytes(range(32)),
        padded_size=padded_size(size),
        size=size,
        name="film.mkv",
        mime_type="video/x-matroska",
    )


def root_of(m: FileManifest, data: bytes) -> bytes:
    encryptor = ChunkEncryptor(m.file_key, m.size)
    builder = UnixfsFileBuilder()
    for block in [*encryptor.update(data), *encryptor.finish()]:
        builder.add_block(block)
    return builder.finish()[0]


def test_an_unrooted_manifest_round_trips_only_where_asked_for() -> None:
    early = manifest()
    assert not early.is_rooted
    data = encode_manifest(early)
    assert decode_manifest(data, rooted=False) == early
    assert decode_manifest(data, rooted=None) == early
    with pytest.raises(InvalidManifest, match="no root"):
        decode_manifest(data)  # a `file` event must carry its root
    full = early.with_root(root_of(early, os.urandom(early.size)))
    assert full.is_rooted and full.same_file(early) and full.unrooted() == early
    assert decode_manifest(encode_manifest(full)) == full
    with pytest.raises(InvalidManifest, match="has a root"):
        decode_manifest(encode_manifest(full), rooted=False)


def test_another_file_is_not_the_same_file() -> None:
    early = manifest()
    other_key = FileManifest(
        root_cid=b"",
        file_key=bytes(32),
        padded_size=early.padded_size,
        size=early.size,
        name=early.name,
        mime_type=early.mime_type,
    )
    assert not early.same_file(other_key)
    assert not early.same_file(manifest(size=3_000_001))


def test_a_tree_built_from_cids_and_sizes_has_the_root_of_the_blocks() -> None:
    m = manifest()
    data = os.urandom(m.size)
    encryptor = ChunkEncryptor(m.file_key, m.size)
    blocks = [*encryptor.update(data), *encryptor.finish()]
    addressed = UnixfsFileBuilder()
    for block in blocks:
        addressed.add_addressed(raw_cid(block), len(block))
    assert addressed.finish()[0] == root_of(m, data)
    # chunk i encrypts alone to the same block (what a receiver re-checks after a restart)
    assert (
        ChunkEncryptor(m.file_key, m.size).encrypt_chunk(
            1, data[len(blocks[0]) - 16 :][: len(blocks[1]) - 16]
        )
        == blocks[1]
    )


def test_index_records_round_trip_and_bounds_hold() -> None:
    assert decode_indices(encode_indices([0, 7, 2**32 - 1])) == [0, 7, 2**32 - 1]
    for bad in ([], [-1], [2**32], list(range(257))):
        with pytest.raises(LocalProtocolError):
            encode_indices(bad)
    for raw in (b"", b"\x00\x01\x02", bytes(4 * 257)):
        with pytest.raises(RemoteProtocolError):
            decode_indices(raw)
