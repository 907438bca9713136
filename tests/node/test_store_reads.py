"""Front ends' reads on the store's read-only connection (decision 0026): they don't wait
behind the writer's work, see committed data only, and long background work gives way
to them."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from app.core.identity import IdentityKeys
from app.core.ledger import Ledger, Restorer
from app.core.ledger_event import EventBody
from app.node import history
from app.node.api import ListMessages, Message, MessageStatus, ProfileUnreadable
from app.node.history import load_ledger
from app.node.profile import create_profile, open_store
from app.node.service import NodeService
from app.node.storage.database import transaction
from app.node.storage.repositories import ContactRecord
from app.node.storage.store import ProfileStore

BOB = IdentityKeys.from_seeds(b"\x07" * 32, b"\x17" * 32)
HELD_AT_MOST_S = 30.0
"""A held store call lets go by itself after this long, so that a regression fails the
test (the read finishes second) instead of hanging it; no assertion is about time."""


def _message(i: int) -> Message:
    return Message(
        id=f"{i:032x}",
        contact=BOB.public.address,
        sender=BOB.public.address,
        outgoing=False,
        text=f"line {i}",
        time=1000.0 + i,
        status=MessageStatus.RECEIVED,
    )


@pytest_asyncio.fixture
async def store(tmp_path: Path) -> AsyncIterator[ProfileStore]:
    create_profile(tmp_path / "alice", "Alice", None)
    opened = open_store(tmp_path / "alice", None)
    bob = BOB.public
    opened.contacts.add(
        ContactRecord(bob.address, "Bob", bob.signing_key, bob.dh_key, (), False), 0
    )
    opened.messages.add_many([_message(i) for i in range(5)])
    try:
        yield opened
    finally:
        await asyncio.to_thread(opened.close)


def _holding(started: threading.Event, release: threading.Event) -> str:
    started.set()
    release.wait(HELD_AT_MOST_S)
    return "released"


@pytest.mark.asyncio
async def test_a_page_is_read_while_long_work_holds_the_writer(store: ProfileStore) -> None:
    """Found with the window on a profile with a 100,000-message conversation unsettled
    at the last stop: its first pages waited behind that history being read for the
    start-up reconciliation, on the one store thread."""
    service = NodeService(store)
    started, release = threading.Event(), threading.Event()
    held = asyncio.ensure_future(store.call(_holding, started, release))
    await asyncio.to_thread(started.wait)
    page = asyncio.ensure_future(service.list_messages(ListMessages("Bob", limit=3)))
    try:
        done, _ = await asyncio.wait({held, page}, return_when=asyncio.FIRST_COMPLETED)
        assert done == {page}
        assert [m.text for m in page.result()] == ["line 2", "line 3", "line 4"]
        assert [c.name for c in await service.list_contacts()] == ["Bob"]
        assert not held.done()
    finally:
        release.set()
        assert await held == "released"
        await asyncio.gather(page, return_exceptions=True)
        service.close()


@pytest.mark.asyncio
async def test_reads_see_committed_data_only(store: ProfileStore) -> None:
    started, release = threading.Event(), threading.Event()

    def write_then_hold() -> None:
        with transaction(store._conn):
            store.messages.add(_message(5))
            _holding(started, release)

    writing = asyncio.ensure_future(store.call(write_then_hold))
    await asyncio.to_thread(started.wait)
    try:
        ids = await store.read(lambda r: r.messages.ids(BOB.public.address))
        assert f"{5:032x}" not in ids and len(ids) == 5  # not committed yet
    finally:
        release.set()
        await writing
    ids = await store.read(lambda r: r.messages.ids(BOB.public.address))
    assert f"{5:032x}" in ids  # committed: the next read sees it


@pytest.mark.asyncio
async def test_the_read_connection_writes_nothing(store: ProfileStore) -> None:
    with pytest.raises(Exception, match="read-only"):
        await store.read(lambda r: r.messages.add(_message(9)))
    assert f"{9:032x}" not in await store.call(store.messages.ids, BOB.public.address)


@pytest.mark.asyncio
async def test_read_failures_are_told_as_the_writer_tells_them(store: ProfileStore) -> None:
    def broken(conn: sqlite3.Connection) -> object:
        return conn.execute("SELECT * FROM no_such_table").fetchall()

    with pytest.raises(ProfileUnreadable) as by_writer:
        await store.call(broken, store._conn)
    with pytest.raises(ProfileUnreadable) as by_reader:
        await store.read(lambda r: broken(r.conn))
    assert str(by_reader.value) == str(by_writer.value)
    # the reader's connection lives on its thread only: no SQLite object crosses
    reads = await store.read(lambda r: r)
    with pytest.raises(sqlite3.ProgrammingError, match="thread"):
        reads.messages.ids(BOB.public.address)


@pytest.mark.asyncio
async def test_close_finishes_pending_reads_and_writes(tmp_path: Path) -> None:
    create_profile(tmp_path / "alice", "Alice", None)
    store = open_store(tmp_path / "alice", None)
    started, release = threading.Event(), threading.Event()
    held = asyncio.ensure_future(store.read(lambda r: _holding(started, release)))
    await asyncio.to_thread(started.wait)
    write = asyncio.ensure_future(store.call(store.messages.add, _message(1)))
    read = asyncio.ensure_future(store.read(lambda r: r.contacts.all()))
    await asyncio.sleep(0)  # both handed to their threads
    closing = asyncio.ensure_future(asyncio.to_thread(store.close))
    release.set()
    await closing
    assert await held == "released" and await read == [] and await write is None
    wal = Path(f"{store.paths.database}-wal")
    assert not wal.exists() or wal.stat().st_size == 0  # checkpointed
    reopened = open_store(tmp_path / "alice", None)
    try:
        assert reopened.messages.ids(BOB.public.address) == {f"{1:032x}"}
    finally:
        reopened.close()


@pytest.mark.asyncio
async def test_background_work_gives_way_while_a_front_end_reads(
    store: ProfileStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rebuilding a long history at start took the interpreter from the window's reads
    (each page took 3-10 times as long); it now waits between its steps while they run."""
    monkeypatch.setattr(store, "GIVE_WAY_MAX_S", HELD_AT_MOST_S)
    ledger = Ledger(store.identity.public.signing_key, BOB.public.signing_key)
    for i in range(6):
        keys = store.identity if i % 3 else BOB
        ledger.append(keys, EventBody.of("text", id=f"m{i}", text=f"line {i}"), i)
    await store.call(
        store.history.add_many,
        BOB.public.address,
        [(str(e.cid), e.to_bytes()) for e in ledger.ordered()],
    )
    monkeypatch.setattr(history, "RESTORE_CHUNK", 2)
    steps: list[str] = []
    feed = Restorer.feed

    def noted_feed(self: Restorer, blocks: list[bytes]) -> None:
        steps.append("rebuild")
        feed(self, blocks)

    monkeypatch.setattr(Restorer, "feed", noted_feed)
    started, release = threading.Event(), threading.Event()

    def front_end_read() -> str:
        result = _holding(started, release)
        steps.append("read")
        return result

    give_way = store.give_way
    waiting = asyncio.Event()

    async def noted_give_way() -> None:
        waiting.set()
        await give_way()

    monkeypatch.setattr(store, "give_way", noted_give_way)
    reading = asyncio.ensure_future(store.read(lambda r: front_end_read()))
    await asyncio.to_thread(started.wait)
    loading = asyncio.ensure_future(load_ledger(store, BOB.public.address))
    await waiting.wait()  # the load has its history, and would rebuild it now
    await asyncio.wait({loading}, timeout=0.2)  # (it would be done by now)
    assert not loading.done()
    release.set()
    assert await reading == "released"
    loaded = await loading
    assert loaded.ordered() == ledger.ordered()
    assert steps == ["read", "rebuild", "rebuild", "rebuild"]
