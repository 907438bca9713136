"""A node stopped right after it started (a daemon told to stop while it starts finishes
starting, then stops): the note of its clean stop must not call settled the
conversations it had not prepared yet (reconciled, or found settled by the last note).
It named only the histories loaded by then, so a conversation waiting for its
reconciliation after a crash, or noted unsettled by the last clean stop, was left
unloaded at the next start: received events not made messages, what the contact lacks
not sent, until the user opened it."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from app.node import clean_stop
from app.node.api import AddContact
from app.node.messenger import Messenger
from app.node.network import NetworkStack
from app.node.paths import ProfilePaths
from app.node.profile import create_profile, open_store
from app.node.service import NodeService


async def started(profile: Path, *, hold: str | None = None) -> tuple[Messenger, NetworkStack]:
    """Alice's messenger, started; `hold`: a contact whose conversation's lock is held
    from before the start (its reconciliation waits, as a slow one would)."""
    store = open_store(profile, None)
    network = NetworkStack(store.identity)
    await network.start("127.0.0.1", 0)
    messenger = Messenger(store, network, NodeService(store).publish)
    if hold is not None:
        await messenger._lock(hold).acquire()
    await messenger.start()
    return messenger, network


async def stopped(messenger: Messenger, network: NetworkStack) -> None:
    await messenger.stop()
    await network.stop()
    await asyncio.to_thread(messenger.store.close)


async def a_profile_with_a_contact(root: Path) -> tuple[Path, str]:
    """Alice's profile, Bob in her contacts; Bob's address."""
    alice, bob = root / "alice", root / "bob"
    create_profile(alice, "Alice", None)
    create_profile(bob, "Bob", None)
    bob_store = open_store(bob, None)
    invite = (await NodeService(bob_store).whoami()).invite
    await asyncio.to_thread(bob_store.close)
    alice_store = open_store(alice, None)
    contact = await NodeService(alice_store).add_contact(AddContact(invite))
    await asyncio.to_thread(alice_store.close)
    return alice, contact.contact.address


async def prepared(messenger: Messenger, address: str) -> str:
    """How the start prepared the conversation: "reconciled" (its history loaded) or
    "deferred" (left unloaded, as settled), once it has."""
    for _ in range(600):
        if address in messenger._ledgers:
            return "reconciled"
        if address in messenger._deferred:
            return "deferred"
        await asyncio.sleep(0.05)
    raise AssertionError("the conversation was not prepared in 30 s")


@pytest.mark.asyncio
@pytest.mark.parametrize("last_run", ["crashed", "noted Bob unsettled"])
async def test_a_conversation_not_prepared_before_the_stop_is_reconciled_next_start(
    tmp_path: Path, last_run: str
) -> None:
    alice, bob = await a_profile_with_a_contact(tmp_path)
    if last_run != "crashed":
        store = open_store(alice, None)
        clean_stop.leave_note(ProfilePaths(alice), [store.contact_tag(bob)])
        await asyncio.to_thread(store.close)
    messenger, network = await started(alice, hold=bob)
    await stopped(messenger, network)  # Bob's reconciliation had not run
    messenger, network = await started(alice)
    try:
        assert await prepared(messenger, bob) == "reconciled"
    finally:
        await stopped(messenger, network)
    # reconciled, and settled (nothing in it): that stop noted so, this start defers it
    messenger, network = await started(alice)
    try:
        assert await prepared(messenger, bob) == "deferred"
    finally:
        await stopped(messenger, network)
