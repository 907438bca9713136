"""The embedded blockstore: sharded layout, atomic verified writes, verified reads, pins."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

import pytest

from app.core.unixfs import block_matches, cid_to_str, dag_pb_cid, raw_cid
from app.node import block_packs
from app.node import blockstore as blockstore_module
from app.node.blockstore import Blockstore, blockstore_dir
from app.node.files_errors import BlockCorrupt, BlockNotFound, BlockPinned, DiskFull


@pytest.fixture
def store(tmp_path: Path) -> Blockstore:
    return Blockstore(blockstore_dir(tmp_path))


def test_put_get_has_delete(store: Blockstore) -> None:
    data = os.urandom(1000)
    cid = raw_cid(data)
    assert not store.has_sync(cid)
    store.put_sync(cid, data)
    store.put_sync(cid, data)  # idempotent
    assert store.has_sync(cid) and store.get_sync(cid) == data
    text = cid_to_str(cid)
    path = store.path_for(cid)
    assert path == store.root / text[-3:-1] / text
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]
    assert store.delete_sync(cid) and not store.delete_sync(cid)
    with pytest.raises(BlockNotFound):
        store.get_sync(cid)
    assert not path.parent.exists()  # its emptied shard folder went with it
    store.put_sync(cid, data)  # and comes back when needed
    assert store.get_sync(cid) == data


def test_refuses_block_not_matching_cid(store: Blockstore) -> None:
    with pytest.raises(BlockCorrupt):
        store.put_sync(raw_cid(b"one"), b"two")
    assert not store.has_sync(raw_cid(b"one"))


def test_corrupted_on_disk_detected_and_dropped(store: Blockstore) -> None:
    data = b"x" * 5000
    cid = raw_cid(data)
    store.put_sync(cid, data)
    store.path_for(cid).write_bytes(b"y" + data[1:])
    with pytest.raises(BlockCorrupt):
        store.get_sync(cid)
    assert not store.has_sync(cid)  # dropped so it will be fetched again


def test_pins(store: Blockstore) -> None:
    root = dag_pb_cid(b"node")
    store.put_sync(root, b"node")
    store.pin_sync(root)
    store.pin_sync(root)
    assert store.pins_sync() == {root}
    with pytest.raises(BlockPinned):
        store.delete_sync(root)
    store.unpin_sync(root)
    assert store.pins_sync() == set()
    assert store.delete_sync(root)


def test_disk_full_is_typed_and_leaves_nothing(
    store: Blockstore, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = b"z" * 100
    cid = raw_cid(data)

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(DiskFull):
        store.put_sync(cid, data)
    assert not store.has_sync(cid)
    assert not list(store.path_for(cid).parent.iterdir())


@pytest.mark.asyncio
async def test_async_api(store: Blockstore) -> None:
    data = b"async block"
    cid = raw_cid(data)
    await store.put(cid, data)
    assert await store.has(cid)
    assert await store.get(cid) == data
    assert await store.get_block(cid) == data
    assert await store.held([cid, raw_cid(b"other")]) == {cid}
    await store.pin(cid)
    assert await store.pins() == {cid}
    await store.unpin(cid)
    assert await store.delete(cid)
    assert await store.get_block(cid) is None


# --------------------------------------------------------------------------- packs


def _packed(store: Blockstore, count: int) -> dict[bytes, bytes]:
    """`count` leaves written into one committed pack, with a dag-pb node."""
    blocks = {raw_cid(data): data for data in (os.urandom(3000 + i) for i in range(count))}
    node = b"a node"
    blocks[dag_pb_cid(node)] = node
    pack = store.open_pack()
    for cid, data in blocks.items():
        pack.add(cid, data)
    store.commit_pack(pack)
    return blocks


def _pack_files(store: Blockstore) -> list[str]:
    return sorted(p.name.rsplit(".", 1)[1] for p in (store.root / "packs").iterdir())


def test_pack_round_trip_survives_reopen(store: Blockstore) -> None:
    blocks = _packed(store, 5)
    assert _pack_files(store) == ["idx", "pack"]
    for reader in (store, Blockstore(store.root)):
        assert reader.cids_sync() == set(blocks)
        for cid, data in blocks.items():
            assert reader.has_sync(cid) and reader.get_sync(cid) == data
            path, offset, length = reader.locate_sync(cid)
            assert path.read_bytes()[offset : offset + length] == data
    cid, data = next(iter(blocks.items()))
    store.put_sync(cid, data)  # already held in the pack: no file of its own
    assert not store.path_for(cid).exists()


def test_deleting_packed_blocks_rewrites_the_index(store: Blockstore) -> None:
    blocks = _packed(store, 3)
    gone, *kept = blocks
    assert store.delete_sync(gone) and not store.delete_sync(gone)
    reopened = Blockstore(store.root)
    assert not reopened.has_sync(gone) and reopened.cids_sync() == set(kept)
    for cid in kept:
        assert reopened.get_sync(cid) == blocks[cid]
        assert reopened.delete_sync(cid)
    assert _pack_files(reopened) == []  # the last block took its pack with it
    assert Blockstore(store.root).cids_sync() == set()


def test_damaged_packed_block_is_dropped(store: Blockstore) -> None:
    blocks = _packed(store, 3)
    bad = next(iter(blocks))
    path, offset, _ = store.locate_sync(bad)
    with path.open("r+b") as fh:
        fh.seek(offset + 10)
        fh.write(b"\x00\x01\x02")
    with pytest.raises(BlockCorrupt):
        store.get_sync(bad)
    assert not store.has_sync(bad)
    reopened = Blockstore(store.root)
    assert not reopened.has_sync(bad)
    assert all(reopened.get_sync(c) == d for c, d in blocks.items() if c != bad)


def test_interrupted_or_damaged_packs_are_removed_on_open(store: Blockstore) -> None:
    unfinished = store.open_pack()  # a share killed before its pack was committed
    unfinished.add(raw_cid(b"lost"), b"lost")
    assert Blockstore(store.root).cids_sync() == set()
    assert _pack_files(store) == []
    unfinished.discard()

    blocks = _packed(store, 2)
    [index] = (store.root / "packs").glob("*.idx")
    index.write_bytes(index.read_bytes()[:-1] + b"\x00")  # fails its checksum
    reopened = Blockstore(store.root)
    assert not any(reopened.has_sync(cid) for cid in blocks)
    assert _pack_files(reopened) == []


def test_discarded_pack_leaves_nothing(store: Blockstore) -> None:
    pack = store.open_pack()
    pack.add(raw_cid(b"x"), b"x")
    pack.discard()
    assert _pack_files(store) == [] and store.cids_sync() == set()


def test_pack_disk_full_is_typed(store: Blockstore, monkeypatch: pytest.MonkeyPatch) -> None:
    pack = store.open_pack()

    def full(*args: object) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "pwrite", full)
    with pytest.raises(DiskFull):
        pack.add(raw_cid(b"x"), b"x")
    pack.discard()


@pytest.mark.asyncio
async def test_serving_skips_the_hash_only_for_leaves_this_process_hashed(
    store: Blockstore, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocks = _packed(store, 2)
    leaf = next(cid for cid in blocks if cid != dag_pb_cid(b"a node"))
    path, offset, _ = store.locate_sync(leaf)
    with path.open("r+b") as fh:  # damaged after it was written and hashed
        fh.seek(offset)
        fh.write(b"\xff\xfe")
    # a peer checks every block, so this process serves what it wrote without re-hashing
    calls: list[bytes] = []

    def counted(cid: bytes, data: bytes) -> bool:
        calls.append(cid)
        return block_matches(cid, data)

    monkeypatch.setattr(blockstore_module, "block_matches", counted)
    assert await store.get_block(leaf) is not None and calls == []
    # after a restart nothing is vouched for: the damage is found and the block dropped
    restarted = Blockstore(store.root)
    assert await restarted.get_block(leaf) is None and calls == [leaf]
    assert not restarted.has_sync(leaf)


def test_pack_flushed_in_the_background_while_written(
    store: Blockstore, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[int] = []
    real = os.fdatasync

    def counted(fd: int) -> None:
        synced.append(fd)
        real(fd)

    monkeypatch.setattr(block_packs, "FLUSH_EVERY", 10_000)
    monkeypatch.setattr(os, "fdatasync", counted)
    blocks = _packed(store, 20)
    assert synced  # the disk started writing before the final fsync
    assert all(Blockstore(store.root).get_sync(cid) == data for cid, data in blocks.items())


def test_a_block_write_refused_by_the_disk_says_why() -> None:
    """Found sharing onto a read-only profile disk: "could not store file blocks:
    Read-only file system" did not say which disk."""
    full = block_packs.store_error(OSError(errno.ENOSPC, "No space left on device"))
    assert isinstance(full, DiskFull) and "not enough disk space in the profile" in str(full)
    read_only = block_packs.store_error(OSError(errno.EROFS, "Read-only file system"))
    assert str(read_only) == "could not store file blocks: the profile's disk is read-only"
