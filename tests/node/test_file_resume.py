"""A waiting transfer resumes as soon as its sender is back, between real nodes in one
process (the fixtures of `test_file_endings`): not when the fetch round that started
without the sender ends, which a third contact that answers slowly (a shaped link: one
DONT_HAVE per block) or not at all can stretch to tens of seconds."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from test_file_endings import Node, eventually, in_state, share, start_node, stop_node

from app.node.api import AddContact, TransferState

KiB = 1024
RESUMED_WITHIN = 5.0
"""Seconds from the sender's reconnection to the file saved (2 MiB on loopback; before
the fix it took the slow contact's ticket and block timeouts: 25 s)."""


@pytest_asyncio.fixture
async def trio(tmp_path: Path) -> AsyncIterator[list[Node]]:
    """[alice, bob, carol]: Bob is a contact of both; Carol never has Alice's files."""
    alice = await start_node(tmp_path / "alice")
    bob = await start_node(tmp_path / "bob", join=alice.network)
    carol = await start_node(tmp_path / "carol", join=alice.network)
    for one, other in ((alice, bob), (bob, alice), (carol, bob), (bob, carol)):
        await one.service.add_contact(AddContact((await other.service.whoami()).invite))
    nodes = [alice, bob, carol]
    yield nodes
    for node in nodes:
        await stop_node(node)


def refuses(node: Node, monkeypatch: pytest.MonkeyPatch) -> None:
    """The node answers every WANT and ticket request of its contacts with DONT_HAVE."""

    async def no(address: str, root: bytes, cid: bytes) -> bool:
        return False

    monkeypatch.setattr(node.service.files.serving, "may_serve", no)


def never_answers(node: Node, monkeypatch: pytest.MonkeyPatch) -> asyncio.Event:
    """The node leaves every WANT and ticket request unanswered; the event is set once
    one came in."""
    asked = asyncio.Event()

    async def hangs(address: str, root: bytes, cid: bytes) -> bool:
        asked.set()
        await asyncio.Event().wait()
        return False

    monkeypatch.setattr(node.service.files.serving, "may_serve", hangs)
    return asked


async def saved_soon_after_reconnecting(bob: Node, alice: Node, transfer_id: str) -> None:
    """Alice connects to Bob again; Bob's transfer must be done `RESUMED_WITHIN` later."""
    address = (await alice.service.whoami()).address
    await eventually(lambda: bob.network.manager.connection(address) is not None, 30)
    await eventually(lambda: in_state(bob, transfer_id, TransferState.DONE), RESUMED_WITHIN)


@pytest.mark.asyncio
async def test_a_restarted_receiver_fetches_from_the_sender_as_soon_as_it_connects(
    trio: list[Node], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Bob restarts; Carol connects first, so his fetch round starts with her alone.
    When Alice connects, the fetch goes to her at once, not after Carol's round."""
    alice, bob, carol = trio
    refuses(alice, monkeypatch)
    transfer_id, data = await share(alice, tmp_path, 2048 * KiB)
    await eventually(lambda: in_state(bob, transfer_id, TransferState.RUNNING))
    await stop_node(bob)
    await stop_node(alice)
    asked = never_answers(carol, monkeypatch)
    bob = trio[1] = await start_node(bob.root, join=carol.network)
    await asyncio.wait_for(asked.wait(), 30)  # Bob's round without Alice has begun
    alice = trio[0] = await start_node(alice.root, join=carol.network)
    await saved_soon_after_reconnecting(bob, alice, transfer_id)
    assert (bob.downloads / "data.bin").read_bytes() == data


@pytest.mark.asyncio
async def test_a_transfer_resumes_as_soon_as_its_restarted_sender_connects(
    trio: list[Node], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Alice restarts while Bob's fetch round asks Carol, who does not answer: when
    Alice is back, the fetch goes to her at once."""
    alice, bob, carol = trio
    refuses(alice, monkeypatch)  # Alice's first run serves nothing: the round goes on
    asked = never_answers(carol, monkeypatch)
    transfer_id, data = await share(alice, tmp_path, 2048 * KiB)
    await asyncio.wait_for(asked.wait(), 30)
    await stop_node(alice)
    alice = trio[0] = await start_node(alice.root, join=carol.network)
    await saved_soon_after_reconnecting(bob, alice, transfer_id)
    assert (bob.downloads / "data.bin").read_bytes() == data
