"""Saving received files: those named in one folder at the same time share its fsync
(`FolderSyncs`), and each is still done only once its own name is durable (an fsync of
the folder that started after the file was given its name); a part flushed whole by its
last checkpoint is not flushed again to be published."""

from __future__ import annotations

import os
import stat
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from test_file_endings import Node, eventually, in_state, pair  # noqa: F401
from test_file_io import (  # noqa: F401
    KEY,
    CountingSource,
    HalfSource,
    downloads,
    receiver,
    sender,
    sha256_file,
    write_random,
)

from app.node import part_file
from app.node.api import ShareFiles, TransferState
from app.node.blockstore import Blockstore
from app.node.file_fetch import fetch_into
from app.node.file_io import share_file
from app.node.files_errors import BlocksUnavailable
from app.node.folder_syncs import FolderSyncs
from app.node.part_file import PartFile

HELD_AT_MOST_S = 30.0
"""A held fsync lets go by itself after this long, so that a regression fails the test
instead of hanging it; no assertion is about time."""


class HeldSyncs:
    """A folder sync whose first call waits until the test lets it go; it records the
    order of the calls' starts and ends."""

    def __init__(self) -> None:
        self.log: list[str] = []
        self.started = threading.Event()
        self.release = threading.Event()

    def __call__(self, folder: Path) -> None:
        n = sum(1 for entry in self.log if entry.startswith("start"))
        self.log.append(f"start {n}")
        if n == 0:
            self.started.set()
            self.release.wait(HELD_AT_MOST_S)
        self.log.append(f"end {n}")


def _in_threads(count: int, call: Callable[[], None]) -> list[threading.Thread]:
    threads = [threading.Thread(target=call) for _ in range(count)]
    for thread in threads:
        thread.start()
    return threads


def test_callers_asking_during_an_fsync_share_the_next_one(tmp_path: Path) -> None:
    syncs = HeldSyncs()
    folders = FolderSyncs(syncs)
    [first] = _in_threads(1, lambda: folders.sync(tmp_path))
    assert syncs.started.wait(HELD_AT_MOST_S)
    # named while the first fsync runs: that fsync may have missed their names
    later = _in_threads(10, lambda: folders.sync(tmp_path))
    first.join(0.05)
    assert first.is_alive() and all(t.is_alive() for t in later)  # all wait for it
    syncs.release.set()
    for thread in [first, *later]:
        thread.join(HELD_AT_MOST_S)
    assert syncs.log == ["start 0", "end 0", "start 1", "end 1"]  # 11 callers, 2 fsyncs


def test_a_failed_fsync_fails_the_callers_it_served_and_other_folders_are_apart(
    tmp_path: Path,
) -> None:
    calls: list[Path] = []

    def sync(folder: Path) -> None:
        calls.append(folder)
        if folder.name == "broken":
            raise OSError(5, "Input/output error")

    folders = FolderSyncs(sync)
    broken, fine = tmp_path / "broken", tmp_path / "fine"
    with pytest.raises(OSError, match="Input/output"):
        folders.sync(broken)
    folders.sync(fine)
    assert calls == [broken, fine]
    with pytest.raises(OSError, match="Input/output"):
        folders.sync(broken)  # tried again: an fsync of its own
    assert calls == [broken, fine, broken]


@pytest.mark.asyncio
async def test_a_folders_files_share_its_fsync_and_none_is_done_before_it(
    pair: list[Node],  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A folder of small files received at once cost an fsync of the folder per file
    (each also made durable the names given before it). Now the files named while one
    runs share the next; none is stored done before its name is durable."""
    alice, bob = pair
    album = bob.downloads / "album"
    real_fsync = os.fsync
    synced: list[int] = []
    held = threading.Event()

    def is_album(fd: int) -> bool:
        try:
            folder = os.stat(album)
        except FileNotFoundError:
            return False
        st = os.fstat(fd)
        return (st.st_ino, st.st_dev) == (folder.st_ino, folder.st_dev)

    def counting_fsync(fd: int) -> None:
        if is_album(fd):
            synced.append(fd)
            if len(synced) == 1:  # the first waits until the test lets it go
                held.wait(HELD_AT_MOST_S)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", counting_fsync)
    folder = tmp_path / "album"
    folder.mkdir()
    files = {f"{i}.txt": os.urandom(2000) for i in range(12)}
    for name, data in files.items():
        (folder / name).write_bytes(data)
    transfers = await alice.service.share_files(ShareFiles("Bob", [str(folder)]))

    def named() -> set[str]:
        return {p.name for p in album.iterdir() if not p.name.startswith(".")}

    try:
        # the first file's fsync runs; four more are named meanwhile (fewer than the
        # worker threads, at least 5, that name them)
        await eventually(lambda: album.exists() and len(named()) >= 5)
        for transfer in transfers:  # named, not durably: none is done
            assert not await in_state(bob, transfer.id, TransferState.DONE)
    finally:
        held.set()
    for transfer in transfers:
        await eventually(lambda t=transfer: in_state(bob, t.id, TransferState.DONE))
    # the four (at least) named during the first fsync shared the next one (12 before)
    assert len(synced) <= len(files) - 3
    for name, data in files.items():
        assert (album / name).read_bytes() == data


@pytest.mark.asyncio
async def test_a_part_flushed_whole_by_its_checkpoint_is_not_flushed_again(
    tmp_path: Path,
    sender: Blockstore,  # noqa: F811
    receiver: Blockstore,  # noqa: F811
    downloads: Path,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The node checkpoints a part once it is complete (flushed, then its bitmap stored)
    and publishes it at once: publishing flushed it a second time (a disk cache flush
    for each file of a folder of small files). A part not flushed whole since its last
    chunk still is."""
    flushed: list[int] = []  # the inodes of files (not folders) flushed, fsync or fdatasync
    real_datasync, real_fsync = part_file.datasync, os.fsync

    def counting(real: Callable[[int], None]) -> Callable[[int], None]:
        def flush(fd: int) -> None:
            if stat.S_ISREG(os.fstat(fd).st_mode):
                flushed.append(os.fstat(fd).st_ino)
            real(fd)

        return flush

    monkeypatch.setattr(part_file, "datasync", counting(real_datasync))
    monkeypatch.setattr(os, "fsync", counting(real_fsync))
    source = tmp_path / "photo.jpg"
    digest = write_random(source, 600 * 1024)
    manifest = await share_file(source, sender, KEY)

    checkpointed = PartFile(manifest, downloads, "t1")
    part = checkpointed.path.stat().st_ino
    await fetch_into(manifest, receiver, checkpointed, {"peer": CountingSource(sender)})
    checkpointed.checkpoint()
    assert flushed.count(part) == 1
    path = checkpointed.publish()
    checkpointed.sync_folder()
    checkpointed.discard()
    assert flushed.count(part) == 1 and sha256_file(path) == digest

    half = PartFile(manifest, downloads / "other", "t2")
    part = half.path.stat().st_ino
    with pytest.raises(BlocksUnavailable):
        await fetch_into(manifest, receiver, half, {"half": HalfSource(sender, 1)}, timeout=1.0)
    half.checkpoint()  # not whole
    await fetch_into(manifest, receiver, half, {"peer": CountingSource(sender)})
    assert half.is_complete and flushed.count(part) == 1
    path = half.publish()  # its last chunks were never flushed: flushed here
    half.discard()
    assert flushed.count(part) == 2 and sha256_file(path) == digest
