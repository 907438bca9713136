"""Block packs: the blocks of one shared file in one file, with an index beside it.

A shared file of 1 GiB is 4,096 leaves. Written as 4,096 files they cost this machine
~1.5 s of kernel time (create, write, rename each); written one after another into one
file, ~0.2 s, and a single `fsync` makes them durable (decision 0009). Layout, under
``<blocks>/packs/``:

* ``<name>.pack``: the blocks, one after another, nothing between them;
* ``<name>.idx``: ``MAGIC``, then one entry per block (``CID (36) || offset (u64) ||
  length (u32)``, big-endian), then the SHA-256 of everything before it.

The index is written (whole, fsynced, renamed into place) only after the pack is
fsynced, so a pack without its index is an interrupted write: `load_packs` removes it.
An index that fails its checksum or names bytes past the end of its pack is not trusted:
the pair is removed (the blocks are fetched or shared again). Blocks are verified by
their CIDs when read, like every other block (`app.node.blockstore`).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import logging
import os
import secrets
import struct
import threading
from dataclasses import dataclass
from pathlib import Path

from app.core.unixfs import CID_SIZE
from app.node.files_errors import DiskFull, FilesError
from app.node.fsutil import BINARY, atomic_write, datasync, drop_cached, fsync_dir, pwrite_all

log = logging.getLogger(__name__)

MAGIC = b"SEGGPAK1"
_ENTRY = struct.Struct(">36sQI")
_CHECKSUM = 32
FLUSH_EVERY = 64 * 1024 * 1024
"""Bytes written between background flushes: the disk writes while the caller still
encrypts and hashes, so the final fsync has little left to do."""
PACK_SUFFIX = ".pack"
INDEX_SUFFIX = ".idx"


@dataclass(frozen=True)
class PackedBlock:
    """Where a block sits: in which pack, at which offset, how long."""

    pack: str
    offset: int
    length: int


def encode_index(entries: dict[bytes, PackedBlock]) -> bytes:
    """An index file's bytes for `entries` (all of one pack)."""
    body = MAGIC + b"".join(
        _ENTRY.pack(cid, where.offset, where.length) for cid, where in entries.items()
    )
    return body + hashlib.sha256(body).digest()


def decode_index(name: str, data: bytes, pack_size: int) -> dict[bytes, PackedBlock]:
    """Parse an index file of pack `name`; `ValueError` if it cannot be trusted."""
    body, checksum = data[:-_CHECKSUM], data[-_CHECKSUM:]
    if (
        len(data) < len(MAGIC) + _CHECKSUM
        or not body.startswith(MAGIC)
        or (len(body) - len(MAGIC)) % _ENTRY.size
        or hashlib.sha256(body).digest() != checksum
    ):
        raise ValueError("damaged pack index")
    entries: dict[bytes, PackedBlock] = {}
    for cid, offset, length in _ENTRY.iter_unpack(body[len(MAGIC) :]):
        if offset + length > pack_size:
            raise ValueError("pack index names bytes past the end of its pack")
        entries[cid] = PackedBlock(name, offset, length)
    return entries


def load_packs(folder: Path) -> dict[str, dict[bytes, PackedBlock]]:
    """Every complete pack in `folder` with its entries; removes interrupted or damaged
    packs and leftover temporary files."""
    packs: dict[str, dict[bytes, PackedBlock]] = {}
    for entry in sorted(folder.iterdir()):
        name = entry.name
        if name.endswith(".tmp"):
            with contextlib.suppress(OSError):
                entry.unlink()
        elif name.endswith(PACK_SUFFIX):
            stem = name[: -len(PACK_SUFFIX)]
            index = folder / f"{stem}{INDEX_SUFFIX}"
            try:
                packs[stem] = decode_index(stem, index.read_bytes(), entry.stat().st_size)
            except (OSError, ValueError) as exc:
                log.warning("dropping block pack %s: %s", stem, exc)
                remove_pack(folder, stem)
    for entry in folder.glob(f"*{INDEX_SUFFIX}"):  # an index whose pack is gone
        if entry.name[: -len(INDEX_SUFFIX)] not in packs:
            with contextlib.suppress(OSError):
                entry.unlink()
    return packs


class PackWriter:
    """Writes one pack. Offsets are reserved in order (`reserve`); the bytes may then be
    written from several threads (`write_at`); `record` names what is where. Nothing is
    visible to readers until `Blockstore.commit_pack`."""

    def __init__(self, folder: Path, *, drop_behind: bool = False) -> None:
        """`drop_behind`: after each background flush, the pages flushed before it are
        dropped from the page cache (`drop_cached`): a file offered before it is
        encrypted is read back right behind the writer or not at all, and new pack
        pages, once a few GiB were written, cost this machine's kernel more than the
        encryption itself (decision 0035)."""
        self.folder = folder
        self._drop_behind = drop_behind
        self.name = secrets.token_hex(8)
        self.path = folder / f"{self.name}{PACK_SUFFIX}"
        self.entries: dict[bytes, PackedBlock] = {}
        self._end = 0
        self._flushed_at = 0
        self._flusher: threading.Thread | None = None
        self._lock = threading.Lock()
        try:
            self._fd: int | None = os.open(
                self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | BINARY, 0o600
            )
        except OSError as exc:
            raise store_error(exc) from exc

    def reserve(self, length: int) -> int:
        """The offset where the next `length` bytes go."""
        with self._lock:
            offset = self._end
            self._end += length
            flushing = self._flusher is not None and self._flusher.is_alive()
            if self._end - self._flushed_at >= FLUSH_EVERY and not flushing:
                synced = self._flushed_at  # written and flushed by the last flush
                self._flushed_at = self._end
                self._flusher = threading.Thread(target=self._flush, args=(synced,), daemon=True)
                self._flusher.start()
            return offset

    def _flush(self, synced: int = 0) -> None:
        fd = self._fd
        if fd is not None:
            with contextlib.suppress(OSError):  # the final fsync reports errors
                datasync(fd)
            if self._drop_behind and synced:
                drop_cached(fd, synced)

    def _join_flusher(self) -> None:
        if self._flusher is not None:
            self._flusher.join()

    def write_at(self, offset: int, data: bytes) -> None:
        """Write `data` at `offset` (any thread)."""
        if self._fd is None:
            raise FilesError("the block pack was already closed")
        try:
            pwrite_all(self._fd, data, offset)
        except OSError as exc:
            raise store_error(exc) from exc

    def record(self, cid: bytes, offset: int, length: int) -> None:
        """`cid`'s bytes are at `offset` (a block already recorded keeps its place)."""
        if len(cid) != CID_SIZE:
            raise FilesError("a block pack only holds CIDv1 sha2-256 blocks")
        self.entries.setdefault(cid, PackedBlock(self.name, offset, length))

    def add(self, cid: bytes, data: bytes) -> None:
        """Reserve, write and record in one call (one thread)."""
        offset = self.reserve(len(data))
        self.write_at(offset, data)
        self.record(cid, offset, len(data))

    def finish(self) -> None:
        """Make the pack durable and write its index beside it (fsynced, atomic)."""
        if self._fd is None:
            raise FilesError("the block pack was already closed")
        self._join_flusher()
        try:
            os.fsync(self._fd)
            os.close(self._fd)
            self._fd = None
            atomic_write(self.folder / f"{self.name}{INDEX_SUFFIX}", encode_index(self.entries))
        except OSError as exc:
            self.discard()
            raise store_error(exc) from exc
        fsync_dir(self.folder)

    def discard(self) -> None:
        """Remove the pack (an interrupted share leaves nothing behind)."""
        self._join_flusher()
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None
        remove_pack(self.folder, self.name)


def remove_pack(folder: Path, name: str) -> None:
    """Delete pack `name` and its index (either may be gone already)."""
    for suffix in (INDEX_SUFFIX, PACK_SUFFIX):
        with contextlib.suppress(OSError):
            (folder / f"{name}{suffix}").unlink()


def store_error(exc: OSError) -> FilesError:
    """The error to report when blocks cannot be written (`DiskFull` when space ran out)."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return DiskFull("not enough disk space in the profile to store file blocks")
    if exc.errno == errno.EROFS:
        return FilesError("could not store file blocks: the profile's disk is read-only")
    return FilesError(f"could not store file blocks: {exc.strerror}")
