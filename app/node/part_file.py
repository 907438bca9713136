"""A file being received: each verified block decrypted straight into a hidden ``.part``.

The receiver reads, checks and writes every byte once: a leaf block whose CID matched is
decrypted (`ChunkDecryptor.decrypt_chunk`, which checks the chunk's index and position)
and written at its chunk's offset in ``<dest>/.<name>.<id>.part``, from several worker
threads at once. Which chunks the part holds is a bitmap, one bit per chunk:

* `checkpoint` flushes the part (``fdatasync``) and only then returns the bitmap for the
  caller to persist (the transfer row), so a persisted bitmap never names a chunk that
  is not on disk; after a crash or a kill the transfer resumes from it and at most the
  chunks since the last checkpoint are fetched again. Flushing once a second also keeps
  the final ``fsync`` short.
* `publish` flushes the complete part (``fdatasync``) and links it under a sanitised,
  unique name in the destination folder (never replacing a file); `sync_folder` then
  makes that name durable (the node's files named in one folder at once share that
  fsync, `app/node/folder_syncs.py`). The part's own name stays until the
  caller has stored the transfer as done and calls `discard`: a node killed in between
  finds the complete part linked already, and publishing it again returns that file
  instead of saving a second copy. (Where the file system has no hard links the part is
  renamed instead, and that window remains.) `discard` also removes an unfinished part.
  A part that lost its name while it was written (its folder was deleted or moved away)
  is first copied from the still-open file into its folder, made again.

The part's name is derived from the transfer, so a resumed transfer finds it again; it
is opened without following symbolic links. A part whose bitmap was lost is started
again from nothing. New parts are preallocated, so a file that cannot fit fails at once
with `DiskFull` instead of after most of it was fetched.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from app.core.errors import DecryptionFailed
from app.core.file_crypto import (
    CHUNK_PLAINTEXT_SIZE,
    ChunkDecryptor,
    FileManifest,
    chunk_plaintext_length,
)
from app.core.filenames import sanitize_filename, unique_destination
from app.node.files_errors import (
    DiskFull,
    DownloadPermissionDenied,
    FilesError,
    TransferFailed,
)
from app.node.folder_syncs import FolderSyncs
from app.node.fsutil import BINARY, datasync, drop_cached, fsync_dir, pread, pwrite_all

PART_SUFFIX = ".part"
_COPY_PIECE = 1024 * 1024

log = logging.getLogger(__name__)

PartOpener = Callable[[Path, bool], BinaryIO]
"""Opens the part file for writing: ``(path, keep)``; `keep` keeps what it holds."""

_NO_SPACE = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}
_NO_PERMISSION = {errno.EACCES, errno.EPERM, errno.EROFS}
# link() errors meaning "this file system has no hard links": fall back to rename.
_NO_HARD_LINKS = {
    errno.EPERM,
    errno.EOPNOTSUPP,
    errno.ENOTSUP,
    errno.EXDEV,
    errno.EMLINK,
    errno.ENOSYS,
}


def open_part(path: Path, keep: bool) -> BinaryIO:
    """The default `PartOpener`: owner-only, never through a symbolic link."""
    flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0)
    fd = os.open(path, flags if keep else flags | os.O_TRUNC, 0o600)
    return os.fdopen(fd, "r+b", buffering=0)


def destination_folder(downloads: Path, folder: tuple[str, ...]) -> Path:
    """The sanitised sub-folder of `downloads` a file of a shared folder goes to."""
    target = downloads
    for part in folder:
        target = target / sanitize_filename(part)
    root = os.path.realpath(downloads)
    real = os.path.realpath(target)
    if real != root and not real.startswith(root + os.sep):
        raise TransferFailed("the shared folder would be saved outside the downloads folder")
    return target


def user_error(exc: OSError, downloads: Path) -> FilesError:
    """The error a user sees for a failed write into `downloads`."""
    if exc.errno in _NO_SPACE:
        return DiskFull(f"not enough free space in {downloads} to save the file; nothing was saved")
    if exc.errno in _NO_PERMISSION or isinstance(exc, PermissionError):
        why = "a read-only file system" if exc.errno == errno.EROFS else "permission denied"
        return DownloadPermissionDenied(f"cannot write to {downloads} ({why}); nothing was saved")
    return FilesError(f"could not save the file: {exc.strerror or exc}")


def part_path(manifest: FileManifest, downloads: Path, tag: str) -> Path:
    """Where the part of `manifest` received as `tag` (the transfer id) is kept."""
    name = sanitize_filename(manifest.name)
    safe_tag = "".join(c for c in tag if c.isalnum())[:16]
    return destination_folder(downloads, manifest.folder) / f".{name[:100]}.{safe_tag}{PART_SUFFIX}"


def bitmap_size(chunks: int) -> int:
    """Bytes in the bitmap of a file of `chunks` chunks."""
    return (chunks + 7) // 8


@dataclass(frozen=True)
class Checkpoint:
    """The chunks a part holds on disk: the bitmap to persist and the file bytes in them."""

    received: bytes
    done_bytes: int


class PartFile:
    """One file being received (see the module docstring); thread-safe."""

    def __init__(
        self,
        manifest: FileManifest,
        downloads: Path,
        tag: str,
        received: bytes | None = None,
        *,
        opener: PartOpener = open_part,
    ) -> None:
        """Open (or resume) the part of `manifest` in `downloads`; `tag` names it (the
        transfer id), `received` is the bitmap of the last checkpoint, if any."""
        self.manifest = manifest
        self.downloads = downloads
        self._decryptor = ChunkDecryptor(manifest.file_key, manifest.padded_size, manifest.size)
        self._lock = threading.Lock()
        chunks = manifest.chunk_count
        keep = received is not None and len(received) == bitmap_size(chunks) and any(received)
        self._bits = bytearray(received if keep and received is not None else bitmap_size(chunks))
        self._held = sum(self.is_held(i) for i in range(chunks)) if keep else 0
        self._flushed_whole = False
        """A checkpoint flushed the part after every chunk was written: `publish`
        need not flush it again."""
        try:
            self.path = part_path(manifest, downloads, tag)
            self.dest_dir = self.path.parent
            self.dest_dir.mkdir(parents=True, exist_ok=True)
            self.name = sanitize_filename(manifest.name)
            if keep and not self.path.exists():
                keep = False  # the part is gone: start again
                self._bits = bytearray(bitmap_size(chunks))
                self._held = 0
            self._fh = opener(self.path, keep)
        except OSError as exc:
            raise user_error(exc, downloads) from exc
        if not keep:
            self._preallocate()

    def _preallocate(self) -> None:
        try:
            if self.manifest.size and hasattr(os, "posix_fallocate"):
                os.posix_fallocate(self._fh.fileno(), 0, self.manifest.size)
        except OSError as exc:
            if exc.errno in _NO_SPACE:
                self.discard()
                raise user_error(exc, self.downloads) from exc
            # no preallocation on this file system (or not for this opener): writes tell

    # ------------------------------------------------------------------ chunks

    def is_held(self, index: int) -> bool:
        """Whether chunk `index` is in the part (as of the last `mark`)."""
        return bool(self._bits[index >> 3] & (1 << (index & 7)))

    @property
    def held_count(self) -> int:
        """How many chunks the part holds."""
        return self._held

    @property
    def held_bytes(self) -> int:
        """File bytes the part holds (approximately: the last chunk counts whole)."""
        return min(self.manifest.size, self._held * CHUNK_PLAINTEXT_SIZE)

    @property
    def is_complete(self) -> bool:
        """Whether every chunk is in the part."""
        return self._held == self.manifest.chunk_count

    def write_chunk(self, index: int, block: bytes | memoryview) -> None:
        """Decrypt the verified leaf block of chunk `index` and write it in place (call
        `mark` once this returned). `TransferFailed` if it does not decrypt; `DiskFull`
        or `DownloadPermissionDenied` if it cannot be written."""
        try:
            plaintext = self._decryptor.decrypt_chunk(index, block)
        except DecryptionFailed as exc:
            raise TransferFailed(f"{self.manifest.name!r} failed verification: {exc}") from exc
        if not plaintext:
            return  # a chunk of padding only
        try:  # positioned writes: chunks are written by several threads at once
            pwrite_all(self._fh.fileno(), plaintext, index * CHUNK_PLAINTEXT_SIZE)
        except OSError as exc:
            raise user_error(exc, self.downloads) from exc

    def mark(self, index: int) -> None:
        """Record that chunk `index` was written."""
        with self._lock:
            if not self.is_held(index):
                self._bits[index >> 3] |= 1 << (index & 7)
                self._held += 1

    def read_chunk(self, index: int) -> bytes:
        """The padded plaintext of chunk `index` as written (a file offered before its
        root was known re-encrypts it to check a chunk received before a restart)."""
        length = chunk_plaintext_length(self.manifest.padded_size, index)
        start = index * CHUNK_PLAINTEXT_SIZE
        real = max(0, min(length, self.manifest.size - start))
        try:
            data = pread(self._fh.fileno(), real, start) if real else b""
        except OSError as exc:
            raise user_error(exc, self.downloads) from exc
        if len(data) != real:
            raise TransferFailed(f"{self.manifest.name!r}: its part file is shorter than written")
        return data + bytes(length - real)

    def forget_all(self) -> None:
        """Count no chunk as held (they are fetched again; the next checkpoint stores it)."""
        with self._lock:
            self._bits = bytearray(len(self._bits))
            self._held = 0
            self._flushed_whole = False

    def checkpoint(self) -> Checkpoint:
        """Make every marked chunk durable; what to persist (see the module docstring)."""
        with self._lock:
            snapshot = Checkpoint(bytes(self._bits), self.held_bytes)
            whole = self.is_complete  # every chunk was written before it was marked
        try:
            datasync(self._fh.fileno())
        except OSError as exc:
            raise user_error(exc, self.downloads) from exc
        # what is on disk now is not read back: its pages need not fill the page cache
        # (a new page cost this machine more than writing into it, decision 0035)
        drop_cached(self._fh.fileno())
        self._flushed_whole = self._flushed_whole or whole
        return snapshot

    # ------------------------------------------------------------------ the end

    def publish(self) -> Path:
        """Flush the complete part and give it its final name; return that path. Its
        data is durable (``fdatasync``: size and blocks; not its times, which a crash
        may leave older; already, if a checkpoint flushed it whole), its name once the
        folder is synced (`sync_folder`). The file is not done before."""
        if not self.is_complete:
            raise TransferFailed(f"{self.manifest.name!r} is not complete")
        try:
            with self._fh:
                self._fh.flush()
                fd = self._fh.fileno()
                # flushed whole by the last checkpoint (the node's path: a second flush
                # cost a disk cache flush per file) unless its size is still to be set
                if not self._flushed_whole or os.fstat(fd).st_size != self.manifest.size:
                    self._fh.truncate(self.manifest.size)
                    datasync(fd)
                if not self._in_place():
                    self._restore()
            return self._published() or self._link()
        except OSError as exc:
            self.discard()
            raise user_error(exc, self.downloads) from exc
        except FilesError:
            self.discard()
            raise

    def sync_folder(self, shared: FolderSyncs | None = None) -> None:
        """Make the name `publish` gave the file durable: an fsync of its folder, or
        with `shared`, one that files named in that folder meanwhile share."""
        try:
            if shared is not None:
                shared.sync(self.dest_dir)
            else:
                fsync_dir(self.dest_dir)
        except OSError as exc:
            self.discard()
            raise user_error(exc, self.downloads) from exc

    def _in_place(self) -> bool:
        """Whether the part still has its name (its folder was not deleted or moved
        away while it was written)."""
        try:
            named = os.stat(self.path, follow_symlinks=False)
        except FileNotFoundError:
            return False
        held = os.fstat(self._fh.fileno())
        return (named.st_ino, named.st_dev) == (held.st_ino, held.st_dev)

    def _restore(self) -> None:
        """The part lost its name while it was written (the downloads folder was deleted
        or moved meanwhile): the open file still holds every byte, so copy them into a
        new part at the part's place, in the folder made again, instead of losing the
        whole transfer at the last step."""
        self.dest_dir.mkdir(parents=True, exist_ok=True)
        destination_folder(self.downloads, self.manifest.folder)  # still inside it
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | BINARY
        source = self._fh.fileno()
        target = os.open(self.path, flags, 0o600)
        try:
            offset = 0
            while data := pread(source, _COPY_PIECE, offset):
                pwrite_all(target, data, offset)
                offset += len(data)
            os.fsync(target)
        finally:
            os.close(target)
        log.info("the downloads folder went away during a transfer; its file was saved again")

    def _published(self) -> Path | None:
        """The file the part was linked as already, by a run killed before it stored
        the transfer as done (another name for the same inode), if any."""
        part = os.stat(self.path)
        if part.st_nlink < 2:
            return None
        with os.scandir(self.dest_dir) as entries:
            for entry in entries:
                if entry.name == self.path.name or not entry.is_file(follow_symlinks=False):
                    continue
                found = entry.stat(follow_symlinks=False)
                if (found.st_ino, found.st_dev) == (part.st_ino, part.st_dev):
                    return Path(entry.path)
        return None

    def _link(self) -> Path:
        """Give the part a free name without ever replacing an existing file (the
        part keeps its own name too: see the module docstring)."""
        dest_dir, name = self.dest_dir, self.name
        for _ in range(1000):
            final = dest_dir / unique_destination(lambda n: os.path.lexists(dest_dir / n), name)
            try:
                os.link(self.path, final)  # fails if `final` appeared meanwhile: no clobbering
            except FileExistsError:
                continue
            except OSError as exc:
                if exc.errno not in _NO_HARD_LINKS:
                    raise
                # No hard links here (FAT, some network shares): rename instead. Windows'
                # rename refuses an existing target; elsewhere the lexists check is it.
                if os.path.lexists(final):
                    continue
                try:
                    os.rename(self.path, final)
                except FileExistsError:
                    continue
                return final
            return final
        raise TransferFailed("could not find a free name in the downloads folder")

    def close(self) -> None:
        """Close the part, keeping it for a later resume."""
        with contextlib.suppress(OSError):
            self._fh.close()

    def discard(self) -> None:
        """Close and delete the part (cancelled, or it cannot be completed, or its file
        was published and the transfer stored as done)."""
        self.close()
        with contextlib.suppress(OSError):
            self.path.unlink()


__all__ = [
    "PART_SUFFIX",
    "Checkpoint",
    "PartFile",
    "PartOpener",
    "bitmap_size",
    "destination_folder",
    "open_part",
    "part_path",
    "user_error",
]
