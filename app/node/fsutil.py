"""File helpers: whole-or-nothing writes with owner-only permissions, and positioned
reads and writes that also work where `os` lacks them.

macOS has no `os.fdatasync` (`datasync` falls back to `os.fsync`); Windows has neither
that nor `os.pread`/`os.pwrite` (`pread`/`pwrite_all` fall back to a seek and a read or
write under one process-wide lock, so threads sharing a descriptor do not interleave)
and opens files in text mode unless `BINARY` is in the flags.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import threading
from pathlib import Path

BINARY: int = getattr(os, "O_BINARY", 0)
"""Add to `os.open` flags of binary files (Windows; 0 elsewhere)."""

_POSITIONED = threading.Lock()
"""Serialises the seek-then-read/write fallback of `pread` and `pwrite_all`."""


def write_failure(exc: OSError, folder: Path) -> str | None:
    """Why a write into `folder` failed, in words for the user ("the disk is full",
    "the disk is read-only"), or None when it is not the disk's state (a bug, a name)."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return "the disk is full"
    if exc.errno == errno.EROFS or read_only(folder):
        return "the disk is read-only"
    if exc.errno == errno.EIO:
        return "the disk reported an error"
    return None


def read_only(folder: Path) -> bool:
    """Whether the file system holding `folder` refuses writes as read-only: mounted so,
    or turned so by the kernel after an error (ext4's ``errors=remount-ro`` still lists
    the mount as ``rw``), which only a write shows. For error paths: it may create and
    remove an empty file in `folder`."""
    statvfs = getattr(os, "statvfs", None)
    try:
        if statvfs is not None and statvfs(folder).f_flag & getattr(os, "ST_RDONLY", 1):
            return True
        probe = folder / f".write-probe.{secrets.token_hex(6)}.tmp"
        os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL | BINARY, 0o600))
    except OSError as exc:
        return exc.errno == errno.EROFS
    with contextlib.suppress(OSError):
        probe.unlink()
    return False


def datasync(fd: int) -> None:
    """`os.fdatasync` where it exists, `os.fsync` elsewhere."""
    if hasattr(os, "fdatasync"):
        os.fdatasync(fd)
    else:
        os.fsync(fd)


def pread(fd: int, size: int, offset: int) -> bytes:
    """Up to `size` bytes at `offset` without moving other threads' position."""
    if hasattr(os, "pread"):
        return os.pread(fd, size, offset)
    with _POSITIONED:
        os.lseek(fd, offset, os.SEEK_SET)
        return os.read(fd, size)


def drop_cached(fd: int, length: int = 0) -> None:
    """Let the kernel drop the clean cached pages of the first `length` bytes of `fd`
    (0: all of it): a file written once and not read back soon (a transfer's part, a
    pack served from memory) then does not fill the page cache. Dirty pages stay until
    they are written; nothing is lost. A no-op where the system has no `posix_fadvise`."""
    if hasattr(os, "posix_fadvise"):
        with contextlib.suppress(OSError):
            os.posix_fadvise(fd, 0, length, os.POSIX_FADV_DONTNEED)


def pwrite_all(fd: int, data: bytes | memoryview, offset: int) -> None:
    """Write all of `data` at `offset` (any thread); `OSError` if the file takes no more."""
    view = memoryview(data)
    while view:
        if hasattr(os, "pwrite"):
            written = os.pwrite(fd, view, offset)
        else:
            with _POSITIONED:
                os.lseek(fd, offset, os.SEEK_SET)
                written = os.write(fd, view)
        if not written:
            raise OSError(errno.ENOSPC, "the file takes no more bytes")
        view, offset = view[written:], offset + written


def atomic_write(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Write `data` to `path` so readers see the old file or the new one, never a mix."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | BINARY, mode)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    fsync_dir(path.parent)


def fsync_dir(path: Path) -> None:
    """Make a rename inside `path` durable (no-op where directories can't be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
