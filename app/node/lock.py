"""One process per profile: an exclusive, non-blocking lock on `<profile>/lock`.

The desktop app takes it the moment it starts (`ProfileClaim`), before its first-run or
unlock dialog, and lends it to the profile's creation and to the node it then starts in
the same process: a second start finds the profile held from the first moment.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from types import TracebackType

from app.node.api import ProfileLocked, StorageFailed
from app.node.fsutil import write_failure


class ProfileLock:
    """An OS-level exclusive lock, released automatically if the process dies."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._fd: int | None = None
        self._borrowed: ProfileClaim | None = None

    def acquire(self) -> None:
        """Take the lock or raise `ProfileLocked` naming the holder's pid;
        `StorageFailed` if the profile's disk can't take the lock file (read-only).
        Claimed by this process (`ProfileClaim`): borrowed from the claim, once."""
        claim = _CLAIMS.get(_key(self._path))
        if claim is not None and not claim.lent:
            claim.lent = True
            self._borrowed = claim
            return
        try:
            fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            reason = write_failure(exc, self._path.parent)
            if reason is None:
                raise
            raise StorageFailed(
                f"Can't use the profile at {self._path.parent}: {reason}. Nothing was "
                "changed; make the disk writable (or free some space) and try again."
            ) from None
        try:
            _lock_fd(fd)
        except OSError:
            holder = _read_pid(fd)
            os.close(fd)
            who = f" (process {holder})" if holder else ""
            raise ProfileLocked(
                f"The profile at {self._path.parent} is in use by another Scrambled Eggs "
                f"process{who}. Stop it first; while it runs, commands go through it."
            ) from None
        os.ftruncate(fd, 0)
        with contextlib.suppress(OSError):  # the pid only names the holder (disk full)
            os.pwrite(fd, str(os.getpid()).encode(), 0)
        self._fd = fd

    def release(self) -> None:
        """Release the lock (idempotent); a borrowed one goes back to its claim."""
        if self._borrowed is not None:
            self._borrowed.lent = False
            self._borrowed = None
            return
        if self._fd is not None:
            with contextlib.suppress(OSError):  # the pid is only informative (read-only)
                os.ftruncate(self._fd, 0)
            os.close(self._fd)  # closing drops the lock
            self._fd = None

    def __enter__(self) -> ProfileLock:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


LOCK_WAIT_SECONDS = 5.0
"""How long a starting node (or a command without one) waits for a profile another
process holds: a command run without a node holds it for a moment, and a node
starting holds it before its control socket answers."""


@contextlib.asynccontextmanager
async def waiting_lock(
    path: Path,
    wait: float = LOCK_WAIT_SECONDS,
    meanwhile: Callable[[], Awaitable[bool]] | None = None,
) -> AsyncIterator[ProfileLock | None]:
    """Hold the lock at `path`, trying again while another process has it, for up to
    `wait` seconds after it last changed hands; `ProfileLocked` after that. (Counted
    from the start alone, commands run at once, each holding the profile a moment,
    failed once their queue was longer than `wait`: the sixth of six `send`s.)
    `meanwhile()` is asked between tries: when it returns True (a node's control socket
    answers now), nothing is locked and None is yielded; given, a refusal says that
    no node answered (`_not_serving`)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    lock = ProfileLock(path)
    holder: str | None = None
    while True:
        try:
            lock.acquire()
            break
        except ProfileLocked:
            now = lock_holder(path)
            if now != holder:  # another process's turn: the queue moves
                holder, deadline = now, loop.time() + wait
            elif loop.time() >= deadline and meanwhile is None:
                raise
            elif loop.time() >= deadline:
                raise _not_serving(path, now) from None
        if meanwhile is not None and await meanwhile():
            yield None
            return
        await asyncio.sleep(0.1)
    try:
        yield lock
    finally:
        lock.release()


def _not_serving(path: Path, holder: str | None) -> ProfileLocked:
    """The refusal of a command that waited in vain: no node's control socket answered
    meanwhile, so another command holds the profile (or the app or a node still
    starting). A second node's words ("Stop it first; while it runs, commands go
    through it") sent the user to stop a command that would have ended by itself."""
    who = f" (process {holder})" if holder else ""
    return ProfileLocked(
        f"The profile at {path.parent} is in use by another Scrambled Eggs command{who}, "
        "or by the app or a node that is still starting. Try again once it has finished "
        "or started."
    )


class ProfileClaim:
    """The lock at `path` held by this process from now until `release`, lent to each
    `ProfileLock` of the same path this process makes meanwhile (one at a time: a
    second one is refused as if another process held it). The desktop app claims its
    profile before its first-run or unlock dialog: creating the profile and starting
    its node then borrow the lock, and no other process can take it in between (a
    second start of the app, a `daemon`, a command), where before the lock was taken
    only by the create and by the node after the dialog."""

    def __init__(self, path: Path) -> None:
        self._key = _key(path)
        self._lock = ProfileLock(path)
        self.lent = False

    def acquire(self) -> None:
        """Take the lock (`ProfileLock.acquire`'s errors if another process has it)."""
        if self._key in _CLAIMS:
            raise ProfileLocked(f"The profile at {self._key.parent} is claimed already.")
        self._lock.acquire()
        _CLAIMS[self._key] = self

    def release(self) -> None:
        """Let the lock go (idempotent)."""
        if _CLAIMS.get(self._key) is self:
            del _CLAIMS[self._key]
            self._lock.release()

    def __enter__(self) -> ProfileClaim:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


_CLAIMS: dict[Path, ProfileClaim] = {}
"""The profile locks this process claims, by the lock file's real path."""


def _key(path: Path) -> Path:
    return Path(os.path.realpath(path))


def is_locked(path: Path) -> bool:
    """True if some process holds the lock at `path` right now."""
    return lock_holder(path) is not None


def lock_holder(path: Path) -> str | None:
    """The process id of whoever holds the lock at `path` right now ("" if it can't be
    read), or None if nobody does, or if this process claims it (`ProfileClaim`: the
    app asking about its own profile)."""
    if not path.exists() or _key(path) in _CLAIMS:
        return None
    try:
        fd = os.open(path, os.O_RDWR)
    except OSError:  # a read-only disk: a lock is taken through any descriptor
        fd = os.open(path, os.O_RDONLY)
    try:
        _lock_fd(fd)
    except OSError:
        return _read_pid(fd)
    finally:
        os.close(fd)
    return None


def _read_pid(fd: int) -> str:
    try:
        return os.pread(fd, 16, 0).decode("ascii", "replace").strip()
    except OSError:
        return ""


if sys.platform == "win32":
    import msvcrt

    def _lock_fd(fd: int) -> None:
        msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)

else:
    import fcntl

    def _lock_fd(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
