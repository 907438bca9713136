"""Opening the profile database: WAL, durable writes, versioned migrations.

Every sensitive column is sealed by the vault before it reaches SQLite, so the database,
its -wal and -shm files hold only ciphertext for names, keys and message text.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

from app.node.api import NodeError, ProfileUnreadable, StorageFailed
from app.node.fsutil import read_only
from app.node.storage.schema import MIGRATIONS

T = TypeVar("T")
DISK_FULL_BYTES = 1024 * 1024
"""Less free space than this on the profile's disk reads as "the disk is full" when
SQLite only says "disk I/O error"."""


def connect(path: Path, *, create: bool = False) -> sqlite3.Connection:
    """Open (or with `create`, make) the database and bring its schema up to date."""
    if not create and not path.is_file():
        raise ProfileUnreadable(f"The profile database {path} is missing or not a file.")
    if create:
        # SQLite gives the -wal and -shm files the database file's mode: owner-only.
        os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
    try:
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=10)
    except sqlite3.Error as exc:
        raise unreadable(path, exc) from None
    try:
        conn.execute("PRAGMA journal_mode=WAL").fetchone()
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA foreign_keys=ON")
        conn.execute("PRAGMA secure_delete=ON")
        migrate(conn)
    except sqlite3.Error as exc:
        conn.close()
        raise unreadable(path, exc) from None
    return conn


def open_reader(path: Path) -> sqlite3.Connection:
    """A second connection to an open profile's database that can only read (WAL lets
    it read what is committed while the writer writes). Usable on the thread that opens
    it only."""
    try:
        conn = sqlite3.connect(path, isolation_level=None, timeout=10)
    except sqlite3.Error as exc:
        raise unreadable(path, exc) from None
    try:
        conn.execute("PRAGMA query_only=ON")
    except sqlite3.Error as exc:
        conn.close()
        raise unreadable(path, exc) from None
    return conn


def unreadable(path: Path, exc: sqlite3.Error) -> NodeError:
    """The error for a database that can't be opened: `StorageFailed` when the disk is
    full (SQLite then reports a "disk I/O error": nothing is wrong with the data, and
    telling the user to restore a backup would be the worst advice) or read-only, else
    `ProfileUnreadable`."""
    code = getattr(exc, "sqlite_errorcode", None)
    if (isinstance(code, int) and code & 0xFF == sqlite3.SQLITE_FULL) or _disk_full(path):
        return StorageFailed(
            f"Couldn't open the profile database {path}: the disk is full. "
            "Nothing was changed; free some space and try again."
        )
    if read_only(path.parent):  # SQLite says "unable to open database file"
        return StorageFailed(
            f"Couldn't open the profile database {path}: the disk is read-only. "
            "Nothing was changed; make it writable again (remount it read-write) and try "
            "again."
        )
    return ProfileUnreadable(
        f"The profile database {path} is unreadable or corrupt ({exc}). "
        "Nothing was changed; restore the folder from a backup."
    )


def _disk_full(path: Path) -> bool:
    """Whether the file system holding `path` has (next to) no space left for us."""
    try:
        return shutil.disk_usage(path.parent).free < DISK_FULL_BYTES
    except OSError:
        return False


def schema_version(conn: sqlite3.Connection) -> int:
    """The migration level the database is at."""
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def migrate(conn: sqlite3.Connection) -> None:
    """Apply every migration newer than the database, each in its own transaction."""
    current = schema_version(conn)
    if current > len(MIGRATIONS):
        raise ProfileUnreadable(
            "This profile was written by a newer version of Scrambled Eggs; update the app."
        )
    for version, script in enumerate(MIGRATIONS[current:], start=current + 1):
        with transaction(conn):
            for statement in script:
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version={version}")


@contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """BEGIN IMMEDIATE ... COMMIT, rolled back on any exception. Inside an open
    transaction it joins that one (the outer one commits or rolls back everything)."""
    if conn.in_transaction:
        yield conn
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


@contextmanager
def snapshot(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """A read transaction: every query inside sees the same committed state."""
    conn.execute("BEGIN")
    try:
        yield conn
    finally:
        if conn.in_transaction:  # an I/O error may have ended it already
            conn.execute("ROLLBACK")


_WRITE_FAILURES = {
    sqlite3.SQLITE_FULL: "the disk is full",
    sqlite3.SQLITE_IOERR: "the disk reported an error",
    sqlite3.SQLITE_READONLY: "it is read-only",
}
"""Primary SQLite result codes that mean a write failed, not that the data is bad."""


def guarded(path: Path, fn: Callable[[], T]) -> T:
    """Run `fn`, turning low-level SQLite failures into a user-facing error."""
    try:
        return fn()
    except sqlite3.DatabaseError as exc:
        code = getattr(exc, "sqlite_errorcode", None)
        reason = _WRITE_FAILURES.get(code & 0xFF) if isinstance(code, int) else None
        if reason is None and "disk is full" in str(exc):
            reason = _WRITE_FAILURES[sqlite3.SQLITE_FULL]
        full = _WRITE_FAILURES[sqlite3.SQLITE_FULL]
        if reason not in (None, full) and read_only(path.parent):  # "disk I/O error"
            reason = "the disk is read-only"
        if reason is not None:
            raise StorageFailed(
                f"Couldn't save to the profile database {path}: {reason}. "
                "Nothing was changed; free some space (or fix the disk) and try again.",
                reason,
            ) from None
        raise unreadable(path, exc) from None
