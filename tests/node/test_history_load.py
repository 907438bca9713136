"""Loading a stored history off the event loop: in parts, so that a stopping node
(SIGTERM while every conversation is being rebuilt at start) does not wait for the whole
of a long history."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest

from app.core.identity import IdentityKeys
from app.core.ledger import Ledger, Restorer
from app.core.ledger_event import EventBody
from app.node import history
from app.node.history import load_ledger
from app.node.profile import create_profile, open_store
from app.node.storage.repositories import ContactRecord
from app.node.storage.store import ProfileStore

BOB = IdentityKeys.from_seeds(b"\x07" * 32, b"\x17" * 32)


def _store_with_history(root: Path, events: int) -> tuple[ProfileStore, Ledger]:
    create_profile(root, "Alice", None)
    store = open_store(root, None)
    bob = BOB.public
    store.contacts.add(
        ContactRecord(bob.address, "Bob", bob.signing_key, bob.dh_key, (), False), 0.0
    )
    ledger = Ledger(store.identity.public.signing_key, bob.signing_key)
    for i in range(events):
        keys = store.identity if i % 3 else BOB
        ledger.append(keys, EventBody.of("text", id=f"m{i}", text=f"line {i}"), i)
    store.history.add_many(bob.address, [(str(e.cid), e.to_bytes()) for e in ledger.ordered()])
    return store, ledger


@pytest.mark.asyncio
async def test_a_cancelled_load_stops_after_the_part_being_rebuilt(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store, written = _store_with_history(tmp_path / "alice", 30)
    try:
        loaded = await load_ledger(store, BOB.public.address)
        assert loaded.ordered() == written.ordered()  # whole, as before, in parts
        monkeypatch.setattr(history, "RESTORE_CHUNK", 5)
        parts: list[int] = []
        running, release = threading.Event(), threading.Event()
        feed = Restorer.feed

        def held_feed(self: Restorer, blocks: list[bytes]) -> None:
            parts.append(len(blocks))
            running.set()
            release.wait()
            feed(self, blocks)

        monkeypatch.setattr(Restorer, "feed", held_feed)
        load = asyncio.ensure_future(load_ledger(store, BOB.public.address))
        await asyncio.to_thread(running.wait)
        load.cancel()  # as the node's stop cancels its start-up work
        release.set()
        with pytest.raises(asyncio.CancelledError):
            await load
        assert parts == [5]  # no later part was started: a stop waits for one at most
    finally:
        await asyncio.to_thread(store.close)
