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
from app.core.ledger_event import Event, EventBody
from app.node import history
from app.node import messenger as messenger_module
from app.node.history import load_ledger
from app.node.messenger import Messenger
from app.node.network import NetworkStack
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


@pytest.mark.asyncio
async def test_reconciling_a_long_history_lets_the_event_loop_turn(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Reconciling a conversation at start goes through every event of its history on
    the event loop (0.35-0.9 s for 100k events), during which the window and the control
    socket stood still. It now lets the loop turn every `RECONCILE_SLICE` events."""
    monkeypatch.setattr(messenger_module, "RECONCILE_SLICE", 64, raising=False)
    store, written = _store_with_history(tmp_path / "alice", 600)
    network = NetworkStack(store.identity)
    messenger = Messenger(store, network, lambda event: None)
    walked = 0
    order_key = messenger_module._order_key

    def counting(event: Event) -> tuple[int, str]:
        nonlocal walked
        walked += 1
        return order_key(event)

    monkeypatch.setattr(messenger_module, "_order_key", counting)
    seen: list[int] = []
    done = asyncio.Event()

    async def other_work() -> None:  # what else the loop has to do meanwhile
        while not done.is_set():
            seen.append(walked)
            await asyncio.sleep(0)

    ticker = asyncio.ensure_future(other_work())
    try:
        await messenger._reconcile(BOB.public.address)
    finally:
        done.set()
        await ticker
        await asyncio.to_thread(store.close)
    assert walked == len(written.ordered())  # every event was walked (all unstored)
    assert any(0 < n < walked for n in seen)  # and the loop turned in between


@pytest.mark.asyncio
async def test_a_loaded_history_keeps_no_event_bytes_and_serves_them_as_stored(
    tmp_path: Path,
) -> None:
    """The node's load (decision 0022): the events read back from the store keep no
    encoded bytes in memory, yet what a peer lacking them is sent is byte for byte what
    was stored, and the export (`history export`) holds the same events."""
    store, written = _store_with_history(tmp_path / "alice", 30)
    try:
        stored = store.history.all(BOB.public.address)
        loaded = await load_ledger(store, BOB.public.address)
        assert not any(event.holds_bytes for event in loaded.ordered())
        assert loaded.events_since([]) == written.events_since([]) == stored
        exported = await history.export_stored(store, BOB.public.address, "Bob")
        assert exported.events == len(stored)
    finally:
        await asyncio.to_thread(store.close)
