"""The embedded blockstore: sharded layout, atomic verified writes, verified reads, pins."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

import pytest

from app.core.unixfs import cid_to_str, dag_pb_cid, raw_cid
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
