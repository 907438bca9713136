"""Sharing and receiving files: round trips, tampering peers, resume, hostile names,
disk full and permission denied, and bounded memory on a 200 MiB file."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import resource
import shutil
import tracemalloc
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import BinaryIO

import pytest

from app.core.file_crypto import padded_size
from app.core.unixfs import (
    CODEC_RAW,
    NodeLink,
    cid_codec,
    dag_pb_cid,
    encode_file_node,
    iter_leaves,
)
from app.node import part_file
from app.node.blockstore import Blockstore
from app.node.file_fetch import assemble_file_sync, fetch_into, receive_file
from app.node.file_io import share_file, share_file_sync, share_paths
from app.node.files_errors import (
    BlocksUnavailable,
    DiskFull,
    DownloadPermissionDenied,
    IpfsRejected,
    SourceFileChanged,
    TransferFailed,
)
from app.node.part_file import PartFile

SmallTmpfs = Callable[[Path, str], contextlib.AbstractContextManager[Path]]

KEY = bytes(range(32))
MiB = 1024 * 1024


def write_random(path: Path, size: int, piece: int = MiB) -> str:
    """Write `size` random bytes to `path` without holding them; return their SHA-256."""
    digest = hashlib.sha256()
    with path.open("wb") as fh:
        remaining = size
        while remaining:
            data = os.urandom(min(piece, remaining))
            digest.update(data)
            fh.write(data)
            remaining -= len(data)
    return digest.hexdigest()


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while data := fh.read(MiB):
            digest.update(data)
    return digest.hexdigest()


class CountingSource:
    """A peer serving blocks from its blockstore; counts requests; may tamper."""

    def __init__(self, store: Blockstore, tamper: bool = False) -> None:
        self.store = store
        self.tamper = tamper
        self.requests = 0

    async def get_block(self, cid: bytes) -> bytes | None:
        self.requests += 1
        data = await self.store.get_block(cid)
        if data is not None and self.tamper:
            return bytes([data[0] ^ 1]) + data[1:]
        return data


@pytest.fixture
def sender(tmp_path: Path) -> Blockstore:
    return Blockstore(tmp_path / "sender" / "blocks")


@pytest.fixture
def receiver(tmp_path: Path) -> Blockstore:
    return Blockstore(tmp_path / "receiver" / "blocks")


@pytest.fixture
def downloads(tmp_path: Path) -> Path:
    path = tmp_path / "downloads"
    path.mkdir()
    return path


@pytest.mark.parametrize("size", [0, 1, 262128, 262145, 3 * MiB + 7])
def test_share_and_assemble_round_trip(
    size: int, tmp_path: Path, sender: Blockstore, downloads: Path
) -> None:
    source = tmp_path / "report.pdf"
    digest = write_random(source, size)
    manifest = share_file_sync(source, sender, KEY)
    assert manifest.size == size and manifest.padded_size == padded_size(size)
    assert manifest.name == "report.pdf" and manifest.mime_type == "application/pdf"
    assert sender.pins_sync() == {manifest.root_cid}
    assert (cid_codec(manifest.root_cid) == CODEC_RAW) == (manifest.chunk_count == 1)
    leaves = list(
        iter_leaves(
            manifest.root_cid, sender.get_sync, manifest.ciphertext_size, manifest.chunk_count
        )
    )
    assert len(leaves) == manifest.chunk_count
    assert sum(s for _, s in leaves) == manifest.ciphertext_size
    saved = assemble_file_sync(manifest, sender, downloads)
    assert saved == downloads / "report.pdf"
    assert sha256_file(saved) == digest
    assert [p.name for p in downloads.iterdir()] == ["report.pdf"]


@pytest.mark.asyncio
async def test_fetch_from_peer_rejects_tampering_peer(
    tmp_path: Path, sender: Blockstore, receiver: Blockstore, downloads: Path
) -> None:
    source = tmp_path / "movie.bin"
    digest = write_random(source, 2 * MiB + 5)
    manifest = await share_file(source, sender, KEY)
    evil = CountingSource(sender, tamper=True)
    good = CountingSource(sender)
    saved = await receive_file(manifest, receiver, downloads, {"evil": evil, "good": good})
    assert evil.requests >= 1  # it was asked, served garbage, and was dropped
    assert sha256_file(saved) == digest


@pytest.mark.asyncio
async def test_resume_asks_only_for_missing_blocks(
    tmp_path: Path, sender: Blockstore, receiver: Blockstore, downloads: Path
) -> None:
    source = tmp_path / "big.bin"
    digest = write_random(source, 4 * MiB)
    manifest = await share_file(source, sender, KEY)
    all_blocks = [
        cid
        for cid, _ in iter_leaves(
            manifest.root_cid, sender.get_sync, manifest.ciphertext_size, manifest.chunk_count
        )
    ]
    # A first attempt got the root and half the leaves before it was interrupted.
    receiver.put_sync(manifest.root_cid, sender.get_sync(manifest.root_cid))
    for cid in all_blocks[::2]:
        receiver.put_sync(cid, sender.get_sync(cid))
    peer = CountingSource(sender)
    saved = await receive_file(manifest, receiver, downloads, {"peer": peer})
    assert peer.requests == len(all_blocks[1::2])
    assert sha256_file(saved) == digest


class HalfSource(CountingSource):
    """Serves the DAG's nodes and only the first `leaves` leaves it is asked for."""

    def __init__(self, store: Blockstore, leaves: int) -> None:
        super().__init__(store)
        self.leaves = leaves

    async def get_block(self, cid: bytes) -> bytes | None:
        if cid_codec(cid) == CODEC_RAW:
            if self.leaves == 0:
                return None
            self.leaves -= 1
        return await super().get_block(cid)


@pytest.mark.asyncio
async def test_part_resumes_from_its_last_checkpoint(
    tmp_path: Path, sender: Blockstore, receiver: Blockstore, downloads: Path
) -> None:
    """Chunks go straight into the part; a new run with the checkpointed bitmap asks
    only for the others; a bitmap whose part is gone starts again from nothing."""
    source = tmp_path / "big.bin"
    digest = write_random(source, 4 * MiB)
    manifest = await share_file(source, sender, KEY)
    part = PartFile(manifest, downloads, "t1")
    with pytest.raises(BlocksUnavailable):
        await fetch_into(manifest, receiver, part, {"half": HalfSource(sender, 7)}, timeout=1.0)
    saved = part.checkpoint()
    part.close()
    assert part.held_count == 7 and saved.done_bytes == 7 * (256 * 1024 - 16)
    assert not any(cid_codec(c) == CODEC_RAW for c in _stored(receiver))  # leaves: part only

    resumed = PartFile(manifest, downloads, "t1", saved.received)
    assert resumed.path == part.path and resumed.held_count == 7
    peer = CountingSource(sender)
    await fetch_into(manifest, receiver, resumed, {"peer": peer})
    assert peer.requests == manifest.chunk_count - 7  # the root node was kept
    complete = resumed.checkpoint()
    path = resumed.publish()
    assert sha256_file(path) == digest

    # killed before the transfer was stored as done: the part keeps its name until then,
    # and publishing it again finds the saved file instead of saving a second copy
    again = PartFile(manifest, downloads, "t1", complete.received)
    assert again.is_complete and again.publish() == path
    again.discard()
    assert [p.name for p in downloads.iterdir()] == ["big.bin"]
    assert sha256_file(path) == digest

    # the bitmap survived but the part did not: nothing is trusted, all is fetched
    lost = PartFile(manifest, downloads, "t2", saved.received)
    assert lost.held_count == 0
    lost.discard()


@pytest.mark.asyncio
@pytest.mark.parametrize("away", ["deleted", "moved"])
async def test_downloads_folder_gone_during_transfer_still_saves_the_file(
    away: str, tmp_path: Path, sender: Blockstore, receiver: Blockstore, downloads: Path
) -> None:
    """The user deletes (or moves) the downloads folder while a file of a shared folder
    is received: the complete file is still saved, in the folder made again, instead of
    the transfer failing at its last step with everything received lost."""
    folder = tmp_path / "Holiday"
    folder.mkdir()
    digest = write_random(folder / "big.bin", 3 * MiB + 5)
    (manifest,) = await share_paths([folder], sender)
    part = PartFile(manifest, downloads, "t1")
    await fetch_into(manifest, receiver, part, {"peer": CountingSource(sender)})
    part.checkpoint()
    if away == "deleted":
        shutil.rmtree(downloads)
    else:
        downloads.rename(tmp_path / "moved")
    saved = part.publish()
    part.discard()
    assert saved == downloads / "Holiday" / "big.bin"
    assert sha256_file(saved) == digest
    assert [p.name for p in saved.parent.iterdir()] == ["big.bin"]  # no part left


def _stored(store: Blockstore) -> list[bytes]:
    return sorted(store.cids_sync())


@pytest.mark.asyncio
async def test_a_block_tree_naming_a_leaf_twice_is_refused(
    tmp_path: Path, sender: Blockstore, receiver: Blockstore, downloads: Path
) -> None:
    source = tmp_path / "x.bin"
    write_random(source, 2 * MiB)
    manifest = await share_file(source, sender, KEY)
    leaves = list(
        iter_leaves(
            manifest.root_cid, sender.get_sync, manifest.ciphertext_size, manifest.chunk_count
        )
    )
    # the first leaf twice in place of the first two: same size, a well-formed node
    twice = [leaves[0], leaves[0], *leaves[2:]]
    node = encode_file_node([NodeLink(c, s) for c, s in twice], [s for _, s in twice])
    sender.put_sync(dag_pb_cid(node), node)
    forged = replace(manifest, root_cid=dag_pb_cid(node))
    with pytest.raises(TransferFailed, match="twice"):
        await receive_file(forged, receiver, downloads, {"peer": CountingSource(sender)})
    assert list(downloads.iterdir()) == []


class FailingSource:
    """A source whose every request fails with a files error (e.g. an IPFS daemon that
    answered with something that does not verify)."""

    async def get_block(self, cid: bytes) -> bytes | None:
        raise IpfsRejected("the daemon answered with a block that does not verify")


@pytest.mark.asyncio
async def test_a_failing_source_is_a_source_that_lacks_the_block(
    tmp_path: Path, sender: Blockstore, receiver: Blockstore, downloads: Path
) -> None:
    source = tmp_path / "x.bin"
    digest = write_random(source, MiB)
    manifest = await share_file(source, sender, KEY)
    sources = {"broken": FailingSource(), "good": CountingSource(sender)}
    saved = await receive_file(manifest, receiver, downloads, sources)
    assert sha256_file(saved) == digest


@pytest.mark.asyncio
async def test_unavailable_blocks_fail_cleanly(
    tmp_path: Path, sender: Blockstore, receiver: Blockstore, downloads: Path
) -> None:
    source = tmp_path / "x.bin"
    write_random(source, MiB)
    manifest = await share_file(source, sender, KEY)
    empty = CountingSource(Blockstore(tmp_path / "empty"))
    with pytest.raises(TransferFailed):
        await receive_file(manifest, receiver, downloads, {"empty": empty}, timeout=1.0)
    assert list(downloads.iterdir()) == []
    with pytest.raises(TransferFailed):
        await receive_file(manifest, receiver, downloads, {"evil": CountingSource(sender, True)})
    assert list(downloads.iterdir()) == []


@pytest.mark.asyncio
async def test_a_contact_without_the_file_is_not_asked_for_every_block(
    tmp_path: Path, sender: Blockstore, receiver: Blockstore, downloads: Path
) -> None:
    """A resumed transfer whose sender is away: the one contact online, which was never
    sent the file, is asked for one window of blocks, not for each of them."""
    source = tmp_path / "x.bin"
    write_random(source, 24 * MiB)
    manifest = await share_file(source, sender, KEY)
    receiver.put_sync(manifest.root_cid, sender.get_sync(manifest.root_cid))
    stranger = CountingSource(Blockstore(tmp_path / "stranger"))
    part = PartFile(manifest, downloads, "t1")
    with pytest.raises(BlocksUnavailable):
        await fetch_into(manifest, receiver, part, {"stranger": stranger}, max_per_peer=16)
    part.close()
    assert manifest.chunk_count == 97
    # 16 "don't have" answers end it; up to 15 more were asked while they came back
    assert 16 <= stranger.requests <= 31


@pytest.mark.asyncio
async def test_hostile_block_tree_refused(
    tmp_path: Path, sender: Blockstore, receiver: Blockstore
) -> None:
    source = tmp_path / "x.bin"
    write_random(source, MiB)
    manifest = await share_file(source, sender, KEY)
    # A sender whose root node is a chain of single-link nodes far deeper than any file.
    cid, nodes = manifest.root_cid, {}
    for _ in range(10):
        node = encode_file_node([NodeLink(cid, 1)], [manifest.ciphertext_size])
        cid = dag_pb_cid(node)
        nodes[cid] = node
    for node_cid, node in nodes.items():
        sender.put_sync(node_cid, node)
    deep = replace(manifest, root_cid=cid)
    with pytest.raises(TransferFailed):
        await receive_file(deep, receiver, tmp_path / "downloads", {"peer": CountingSource(sender)})
    assert not any((tmp_path / "downloads").iterdir())


def test_hostile_names_and_collisions(tmp_path: Path, sender: Blockstore, downloads: Path) -> None:
    source = tmp_path / "payload"
    write_random(source, 100)
    names = ["../../etc/passwd", "C:\\Windows\\evil.dll", "CON", "a\u202egnp.exe", "..", ""]
    saved = []
    for name in [*names, "passwd", "passwd"]:
        manifest = share_file_sync(source, sender, os.urandom(32), name=name)
        saved.append(assemble_file_sync(manifest, sender, downloads))
    real_downloads = os.path.realpath(downloads)
    for path in saved:
        assert os.path.realpath(path).startswith(real_downloads + os.sep)
        assert path.parent == downloads
    assert [p.name for p in saved] == [
        "passwd",
        "evil.dll",
        "_CON",
        "agnp.exe",
        "file",
        "file (1)",
        "passwd (1)",
        "passwd (2)",
    ]


def test_undecodable_file_name_shared(tmp_path: Path, sender: Blockstore, downloads: Path) -> None:
    source = tmp_path / os.fsdecode(b"caf\xe9.txt")  # Latin-1 bytes, not UTF-8
    write_random(source, 10)
    manifest = share_file_sync(source, sender, KEY)
    assert manifest.name == "caf\ufffd.txt"
    assert assemble_file_sync(manifest, sender, downloads).name == "caf\ufffd.txt"


@pytest.mark.asyncio
async def test_share_folder_keeps_structure_inside_downloads(
    tmp_path: Path, sender: Blockstore, downloads: Path
) -> None:
    folder = tmp_path / "Holiday"
    (folder / "day1").mkdir(parents=True)
    digests = {
        "a.txt": write_random(folder / "a.txt", 10),
        "b.jpg": write_random(folder / "day1" / "b.jpg", 3000),
    }
    (folder / "link").symlink_to("/etc/passwd")
    manifests = await share_paths([folder], sender)
    assert [(m.folder, m.name) for m in manifests] == [
        (("Holiday",), "a.txt"),
        (("Holiday", "day1"), "b.jpg"),
    ]
    assert len({m.file_key for m in manifests}) == 2
    for m in manifests:
        saved = assemble_file_sync(m, sender, downloads)
        assert sha256_file(saved) == digests[m.name]
    assert (downloads / "Holiday" / "day1" / "b.jpg").exists()
    # A hostile folder path from a peer still lands inside downloads.
    hostile = manifests[0].__class__(**{**manifests[0].__dict__, "folder": ("..", "/etc", "C:")})
    saved = assemble_file_sync(hostile, sender, downloads)
    assert os.path.realpath(saved).startswith(os.path.realpath(downloads) + os.sep)


@pytest.mark.asyncio
async def test_round_trip_where_os_lacks_positioned_io(
    tmp_path: Path, sender: Blockstore, receiver: Blockstore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Windows has no `os.pread`/`os.pwrite`/`os.fdatasync`, macOS no `os.fdatasync`:
    sharing (3 threads writing one pack), serving, fetching (several threads writing one
    part) and saving work with the fallbacks."""
    for name in ("pread", "pwrite", "fdatasync"):
        monkeypatch.delattr(os, name)
    source = tmp_path / "data.bin"
    digest = write_random(source, 5 * MiB + 3)
    manifest = await share_file(source, sender, KEY)
    saved = await receive_file(manifest, receiver, tmp_path / "dl", {"sender": sender})
    assert sha256_file(saved) == digest


def failing_pwrite(err: int, limit: int) -> Callable[[int, bytes, int], int]:
    """`os.pwrite` for the part file whose writes fail with `err` past `limit` bytes."""
    real = os.pwrite

    def pwrite(fd: int, data: bytes, offset: int) -> int:
        if offset + len(data) > limit:
            raise OSError(err, os.strerror(err))
        return real(fd, data, offset)

    return pwrite


@pytest.mark.parametrize(
    ("err", "error_type"), [(errno.ENOSPC, DiskFull), (errno.EACCES, DownloadPermissionDenied)]
)
def test_write_errors_leave_nothing(
    err: int,
    error_type: type[Exception],
    tmp_path: Path,
    sender: Blockstore,
    downloads: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    source = tmp_path / "data.bin"
    write_random(source, 2 * MiB)
    manifest = share_file_sync(source, sender, KEY)
    monkeypatch.setattr(part_file.os, "pwrite", failing_pwrite(err, MiB))
    with pytest.raises(error_type) as info:
        assemble_file_sync(manifest, sender, downloads)
    assert "nothing was saved" in str(info.value)
    assert list(downloads.iterdir()) == []  # no final file, no .part


def test_permission_denied_on_open(tmp_path: Path, sender: Blockstore, downloads: Path) -> None:
    source = tmp_path / "data.bin"
    write_random(source, 10)
    manifest = share_file_sync(source, sender, KEY)

    def denied(path: Path, keep: bool) -> BinaryIO:
        raise PermissionError(errno.EACCES, "Permission denied", str(path))

    with pytest.raises(DownloadPermissionDenied, match="permission denied"):
        assemble_file_sync(manifest, sender, downloads, opener=denied)
    assert list(downloads.iterdir()) == []

    def read_only(path: Path, keep: bool) -> BinaryIO:
        raise OSError(errno.EROFS, "Read-only file system", str(path))

    with pytest.raises(DownloadPermissionDenied, match="a read-only file system"):
        assemble_file_sync(manifest, sender, downloads, opener=read_only)


def test_real_disk_full_on_tmpfs(
    tmp_path: Path, sender: Blockstore, small_tmpfs: SmallTmpfs
) -> None:
    source = tmp_path / "large.bin"
    write_random(source, 3 * MiB)
    manifest = share_file_sync(source, sender, KEY)
    with small_tmpfs(tmp_path / "tiny", "1m") as tiny:
        with pytest.raises(DiskFull):
            assemble_file_sync(manifest, sender, tiny)
        assert list(tiny.iterdir()) == []


def test_corrupt_block_on_disk_refused(tmp_path: Path, sender: Blockstore, downloads: Path) -> None:
    source = tmp_path / "data.bin"
    write_random(source, MiB)
    manifest = share_file_sync(source, sender, KEY)
    leaf = next(
        cid
        for cid, _ in iter_leaves(
            manifest.root_cid, sender.get_sync, manifest.ciphertext_size, manifest.chunk_count
        )
    )
    path, offset, _ = sender.locate_sync(leaf)  # in the file's pack
    with path.open("r+b") as fh:
        fh.seek(offset)
        first = fh.read(1)
        fh.seek(offset)
        fh.write(bytes([first[0] ^ 0xFF]))
    with pytest.raises(TransferFailed, match="1 blocks"):
        assemble_file_sync(manifest, sender, downloads)
    assert list(downloads.iterdir()) == []
    assert not sender.has_sync(leaf)  # dropped, so it is fetched again


def test_wrong_key_refused(tmp_path: Path, sender: Blockstore, downloads: Path) -> None:
    source = tmp_path / "data.bin"
    write_random(source, 1000)
    manifest = share_file_sync(source, sender, KEY)
    forged = manifest.__class__(**{**manifest.__dict__, "file_key": bytes(32)})
    with pytest.raises(TransferFailed):
        assemble_file_sync(forged, sender, downloads)
    assert list(downloads.iterdir()) == []


def test_source_changing_size_detected(
    tmp_path: Path, sender: Blockstore, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = tmp_path / "growing.bin"
    write_random(source, 1000)
    real_fstat = os.fstat

    def stale_fstat(fd: int) -> os.stat_result:
        st = real_fstat(fd)
        return os.stat_result((st.st_mode, *st[1:6], st.st_size - 10, *st[7:]))

    monkeypatch.setattr(os, "fstat", stale_fstat)
    with pytest.raises(SourceFileChanged):
        share_file_sync(source, sender, KEY)


@pytest.mark.slow
@pytest.mark.asyncio
async def test_200_mib_round_trip_bounded_memory(
    tmp_path: Path, sender: Blockstore, receiver: Blockstore, downloads: Path
) -> None:
    """Share 200 MiB, fetch every block into another node's store, save it: SHA-256 equal,
    Python allocations and peak RSS growth stay at a few MiB."""
    size = 200 * MiB
    source = tmp_path / "huge.bin"
    digest = write_random(source, size)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    tracemalloc.start()
    try:
        manifest = await share_file(source, sender, KEY)
        peer = CountingSource(sender)
        saved = await receive_file(manifest, receiver, downloads, {"peer": peer})
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    rss_growth = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before
    assert sha256_file(saved) == digest
    assert manifest.chunk_count > 800
    inner_nodes = -(-manifest.chunk_count // 174)
    assert peer.requests == manifest.chunk_count + inner_nodes + 1  # leaves, inner, root
    assert peak < 16 * MiB, f"Python allocations peaked at {peak / MiB:.1f} MiB"
    assert rss_growth * 1024 < 64 * MiB, f"RSS grew by {rss_growth / 1024:.1f} MiB"
    print(f"tracemalloc peak {peak / MiB:.1f} MiB, RSS growth {rss_growth / 1024:.1f} MiB")


@pytest.mark.asyncio
async def test_a_folder_of_small_files_and_large_ones_keeps_its_order_and_contents(
    tmp_path: Path, sender: Blockstore, downloads: Path
) -> None:
    """Runs of small files are shared several at a time, a large file alone: the
    manifests still come in the folder's order, each file intact with its own key."""
    folder = tmp_path / "Mixed"
    folder.mkdir()
    digests = {}
    for i in range(21):
        name = f"f{i:02}.bin"
        size = 2 * MiB + 7 if i in (5, 6, 13) else 1000 + i
        digests[name] = write_random(folder / name, size)
    manifests = await share_paths([folder], sender)
    assert [m.name for m in manifests] == sorted(digests)
    assert len({m.file_key for m in manifests}) == len(manifests)
    for m in manifests:
        assert sha256_file(assemble_file_sync(m, sender, downloads)) == digests[m.name]
    assert sender.pins_sync() == {m.root_cid for m in manifests}


@pytest.mark.asyncio
async def test_a_folder_that_fills_the_disk_part_way_leaves_nothing_behind(
    tmp_path: Path, small_tmpfs: SmallTmpfs
) -> None:
    """Small files are shared several at a time; when the disk fills part-way, the
    ones that made it are deleted with the rest: no pin, no pack, no orphan block."""
    folder = tmp_path / "Photos"
    folder.mkdir()
    for i in range(40):
        write_random(folder / f"p{i:02}.jpg", 100_000)
    with small_tmpfs(tmp_path / "tiny", "2m") as tiny:
        store = Blockstore(tiny / "blocks")
        with pytest.raises(DiskFull):
            await share_paths([folder], store)
        assert store.pins_sync() == set()
        assert store.cids_sync() == set()
        assert list((tiny / "blocks" / "packs").iterdir()) == []
