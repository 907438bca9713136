"""A file offered before its root is known (docs/protocol.md section 10.6): the sender's
`StreamingShare` and the receiver's `EarlySink` and `check_tree`, without a network."""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path

import pytest

from app.core.file_crypto import FileManifest, padded_size
from app.core.unixfs import raw_cid
from app.node.blockstore import Blockstore
from app.node.early_fetch import EarlySink, check_tree
from app.node.files_errors import SourceFileChanged, TransferFailed
from app.node.part_file import PartFile
from app.node.streaming_share import ShareStopped, StreamingShare

MiB = 1024 * 1024


def offered(path: Path) -> FileManifest:
    size = path.stat().st_size
    return FileManifest(
        root_cid=b"",
        file_key=os.urandom(32),
        padded_size=padded_size(size),
        size=size,
        name=path.name,
        mime_type="application/octet-stream",
    )


@pytest.fixture
def source(tmp_path: Path) -> Path:
    path = tmp_path / "film.bin"
    path.write_bytes(os.urandom(5 * MiB + 12345))
    return path


def receive(share: StreamingShare, part: PartFile, cids: dict[int, bytes]) -> None:
    """What a stream by index does: every leaf, in order, into the sink."""
    sink = EarlySink(part, cids)
    for index in sink.take_fresh():
        block = share.block_sync(index, timeout=30)
        assert block is not None
        assert sink.accept_sync(index, memoryview(block))


def test_leaves_are_served_while_the_file_is_encrypted_and_check_against_the_root(
    tmp_path: Path, source: Path
) -> None:
    share = StreamingShare("t1", source, offered(source))
    store = Blockstore(tmp_path / "blocks")
    part = PartFile(share.manifest, tmp_path / "downloads", "t1")
    cids: dict[int, bytes] = {}
    # the receiver asks before the sender has written anything: each leaf is waited for
    reading = threading.Thread(target=receive, args=(share, part, cids))
    reading.start()
    made = share.run_sync(store)
    reading.join(30)
    assert made.is_rooted and made.same_file(share.manifest)
    assert part.is_complete and len(cids) == made.chunk_count
    check_tree(made, part, cids)  # the blocks received make the announced file
    # a receiver restarted since (no CIDs kept) re-encrypts the part to check it
    check_tree(made, part, {})
    saved = part.publish()
    assert (
        hashlib.sha256(saved.read_bytes()).digest() == hashlib.sha256(source.read_bytes()).digest()
    )
    # the blocks served are the blockstore's (the same a `file` offer names)
    assert share.block_sync(0) is not None and raw_cid(share.block_sync(0) or b"") == cids[0]
    assert share.block_sync(made.chunk_count) is None


def test_a_root_of_other_blocks_fails_verification(tmp_path: Path, source: Path) -> None:
    share = StreamingShare("t1", source, offered(source))
    made = share.run_sync(Blockstore(tmp_path / "blocks"))
    part = PartFile(share.manifest, tmp_path / "downloads", "t1")
    cids: dict[int, bytes] = {}
    receive(share, part, cids)
    cids[3] = raw_cid(b"not that block")
    with pytest.raises(TransferFailed, match="failed verification"):
        check_tree(made, part, cids)


def test_a_leaf_that_does_not_authenticate_is_refused(tmp_path: Path, source: Path) -> None:
    share = StreamingShare("t1", source, offered(source))
    share.run_sync(Blockstore(tmp_path / "blocks"))
    part = PartFile(share.manifest, tmp_path / "downloads", "t1")
    sink = EarlySink(part, {})
    block = bytearray(share.block_sync(2) or b"")
    block[100] ^= 1
    assert not sink.accept_sync(2, bytes(block))
    assert not sink.accept_sync(2, share.block_sync(3) or b"")  # another index's leaf
    assert not sink.accept_sync(2, b"short")
    assert part.held_count == 0


def test_a_file_changed_since_the_offer_is_not_shared(tmp_path: Path, source: Path) -> None:
    manifest = offered(source)
    with source.open("ab") as fh:
        fh.write(b"more")
    store = Blockstore(tmp_path / "blocks")
    with pytest.raises(SourceFileChanged):
        StreamingShare("t1", source, manifest).run_sync(store)
    assert not list((tmp_path / "blocks").rglob("*.pack"))


def test_stopping_ends_the_encryption_and_leaves_nothing(tmp_path: Path, source: Path) -> None:
    share = StreamingShare("t1", source, offered(source))
    store = Blockstore(tmp_path / "blocks")
    first = threading.Event()
    real = share._written  # stop the share right after its first leaf

    def written(*args: object) -> None:
        real(*args)  # type: ignore[arg-type]
        first.set()
        share.stop()

    share._written = written  # type: ignore[method-assign]
    with pytest.raises(ShareStopped):
        share.run_sync(store)
    assert first.is_set()
    assert share.block_sync(0) is None  # readers are told it will not come
    assert not list((tmp_path / "blocks").rglob("*.pack"))
