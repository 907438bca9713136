"""An unlocked profile database: one writer thread, and a reader thread for the front
ends' reads (decision 0026)."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

from app.core.identity import IdentityKeys
from app.node.paths import ProfilePaths
from app.node.storage.database import guarded, open_reader, snapshot, transaction
from app.node.storage.drafts import DraftRepository
from app.node.storage.mailbox_epochs import MailboxEpochRepository
from app.node.storage.repositories import (
    ContactRepository,
    HistoryRepository,
    MessageRepository,
    ProfileHeader,
    ProfileRepository,
    SessionRepository,
)
from app.node.storage.sealed_settings import SealedSettingRepository
from app.node.storage.security_events import SecurityEventRepository
from app.node.storage.transfers import TransferRepository
from app.node.storage.vault import DataKey

P = ParamSpec("P")
T = TypeVar("T")


class Reads:
    """The repositories a front end reads through, over the read-only connection: made
    on the reader thread and usable there only (`ProfileStore.read`)."""

    def __init__(self, conn: sqlite3.Connection, key: DataKey, own_address: str) -> None:
        self.conn = conn
        self.contacts = ContactRepository(conn, key)
        self.messages = MessageRepository(conn, key, own_address)
        self.transfers = TransferRepository(conn, key)


class ProfileStore:
    """Repositories over an unlocked database. Use `call` from async code: SQLite runs on
    a dedicated worker thread so it never blocks the event loop. Front ends' reads go
    through `read`: a second, read-only connection on its own thread, so that a page of
    messages doesn't wait behind long start-up work on the writer's thread."""

    GIVE_WAY_QUIET_S = 0.1
    """`give_way` returns once no read has run for this long..."""
    GIVE_WAY_MAX_S = 0.5
    """...or after this long at most: background work is slowed, never starved."""

    def __init__(
        self,
        paths: ProfilePaths,
        conn: sqlite3.Connection,
        key: DataKey,
        header: ProfileHeader,
    ) -> None:
        self.paths = paths
        self.header = header
        self.key = key
        self._conn = conn
        self.profile = ProfileRepository(conn)
        self.contacts = ContactRepository(conn, key)
        self.identity: IdentityKeys
        self.name: str
        self.identity, self.name = self.profile.identity(key)
        self.messages = MessageRepository(conn, key, self.identity.public.address)
        self.sessions = SessionRepository(conn, key)
        self.history = HistoryRepository(conn, key)
        self.transfers = TransferRepository(conn, key)
        self.security_events = SecurityEventRepository(conn, key)
        self.mailbox_epochs = MailboxEpochRepository(conn, key)
        self.drafts = DraftRepository(conn, key)
        self.sealed_settings = SealedSettingRepository(conn, key)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="store")
        # the reader's connection is opened now, on its own thread (SQLite objects never
        # cross threads): a disk that turns read-only later still lets it read
        self._reader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="store-read")
        try:
            self._reads = self._reader.submit(self._open_reads).result()
        except BaseException:
            self._reader.shutdown(wait=True)
            self._executor.shutdown(wait=True)
            raise
        self._reading = 0
        self._last_read = -float("inf")

    def _open_reads(self) -> Reads:
        return Reads(open_reader(self.paths.database), self.key, self.identity.public.address)

    def contact_tag(self, address: str) -> bytes:
        """The keyed tag that stands for a contact's address in every table."""
        return self.contacts._tag(address)

    async def call(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run a repository call on the store thread; SQLite errors become user errors."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._executor, lambda: guarded(self.paths.database, lambda: fn(*args, **kwargs))
        )

    async def read(self, fn: Callable[[Reads], T]) -> T:
        """Run `fn` on the reader thread with the read-only repositories, in one snapshot
        of what is committed; SQLite errors become user errors (as `call`'s). For the
        front ends' reads: it never waits behind the writer's work."""
        loop = asyncio.get_running_loop()
        self._reading += 1
        try:
            return await loop.run_in_executor(
                self._reader, lambda: guarded(self.paths.database, self._in_snapshot(fn))
            )
        finally:
            self._reading -= 1
            self._last_read = time.monotonic()

    def _in_snapshot(self, fn: Callable[[Reads], T]) -> Callable[[], T]:
        def run() -> T:
            with snapshot(self._reads.conn):
                return fn(self._reads)

        return run

    async def give_way(self) -> None:
        """For long background work between its steps (e.g. rebuilding a history at
        start): wait while front ends read (until none has for `GIVE_WAY_QUIET_S`, at
        most `GIVE_WAY_MAX_S`), so that their pages don't compete with it for the
        interpreter."""
        deadline = time.monotonic() + self.GIVE_WAY_MAX_S
        while (now := time.monotonic()) < deadline:
            if self._reading:
                pause = 0.01  # a read is running: look again soon
            else:
                pause = self._last_read + self.GIVE_WAY_QUIET_S - now
                if pause <= 0:
                    return
            await asyncio.sleep(min(pause, deadline - now))

    def atomically(self, *steps: Callable[[], object]) -> list[object]:
        """Run repository calls in one transaction (both or neither); use through `call`,
        e.g. ``await store.call(store.atomically, lambda: ..., lambda: ...)``."""
        with transaction(self._conn):
            return [step() for step in steps]

    def close(self) -> None:
        """Finish pending reads and writes, checkpoint the WAL and close the database."""
        with contextlib.suppress(RuntimeError):  # closed already
            self._reader.submit(self._reads.conn.close)
        self._reader.shutdown(wait=True)
        self._executor.shutdown(wait=True)
        with contextlib.suppress(sqlite3.Error):
            self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        self._conn.close()
