"""An unlocked profile database and the one thread that talks to it."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

from app.core.identity import IdentityKeys
from app.node.paths import ProfilePaths
from app.node.storage.database import guarded, transaction
from app.node.storage.mailbox_epochs import MailboxEpochRepository
from app.node.storage.repositories import (
    ContactRepository,
    HistoryRepository,
    MessageRepository,
    ProfileHeader,
    ProfileRepository,
    SessionRepository,
)
from app.node.storage.security_events import SecurityEventRepository
from app.node.storage.transfers import TransferRepository
from app.node.storage.vault import DataKey

P = ParamSpec("P")
T = TypeVar("T")


class ProfileStore:
    """Repositories over an unlocked database. Use `call` from async code: SQLite runs on
    a dedicated worker thread so it never blocks the event loop."""

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
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="store")

    def contact_tag(self, address: str) -> bytes:
        """The keyed tag that stands for a contact's address in every table."""
        return self.contacts._tag(address)

    async def call(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run a repository call on the store thread; SQLite errors become user errors."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._executor, lambda: guarded(self.paths.database, lambda: fn(*args, **kwargs))
        )

    def atomically(self, *steps: Callable[[], object]) -> list[object]:
        """Run repository calls in one transaction (both or neither); use through `call`,
        e.g. ``await store.call(store.atomically, lambda: ..., lambda: ...)``."""
        with transaction(self._conn):
            return [step() for step in steps]

    def close(self) -> None:
        """Finish pending work, checkpoint the WAL and close the database."""
        self._executor.shutdown(wait=True)
        with contextlib.suppress(sqlite3.Error):
            self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        self._conn.close()
