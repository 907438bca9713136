"""Drafts (`save_draft` / `drafts`, control `drafts.save` / `drafts.list`): what the user
typed to a contact and did not send, kept across restarts, sealed like messages."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from app.core.identity import IdentityKeys
from app.node.api import (
    MAX_DRAFT_BYTES,
    ContactNotFound,
    Draft,
    InvalidArgument,
    RemoveContact,
    SaveDraft,
)
from app.node.control import ControlServer, connect_control
from app.node.profile import create_profile, open_store
from app.node.service import NodeService
from app.node.storage.repositories import ContactRecord

BOB = IdentityKeys.from_seeds(b"\x07" * 32, b"\x17" * 32).public
CAROL = IdentityKeys.from_seeds(b"\x08" * 32, b"\x18" * 32).public
SECRET = "the surprise party is on Friday"


def _open(root: Path) -> NodeService:
    return NodeService(open_store(root, None))


async def _close(node: NodeService) -> None:
    node.close()
    await asyncio.to_thread(node.store.close)


@pytest_asyncio.fixture
async def root(tmp_path: Path) -> AsyncIterator[Path]:
    root = tmp_path / "alice"
    create_profile(root, "Alice", None)
    store = open_store(root, None)
    for who, name in ((BOB, "Bob"), (CAROL, "Carol")):
        store.contacts.add(
            ContactRecord(who.address, name, who.signing_key, who.dh_key, (), False), 0
        )
    store.close()
    yield root


@pytest.mark.asyncio
async def test_a_draft_is_kept_across_restarts_replaced_and_dropped(root: Path) -> None:
    node = _open(root)
    try:
        await node.save_draft(SaveDraft("Bob", "first words"))
        await node.save_draft(SaveDraft("Bob", SECRET))  # replaces
        await node.save_draft(SaveDraft("Carol", "hi"))
        await node.save_draft(SaveDraft("Carol", "  \n"))  # blank: none
    finally:
        await _close(node)
    node = _open(root)
    try:
        assert await node.drafts() == [Draft(BOB.address, SECRET)]
        await node.save_draft(SaveDraft("Bob", ""))
        assert await node.drafts() == []
    finally:
        await _close(node)


@pytest.mark.asyncio
async def test_a_draft_is_sealed_at_rest(root: Path) -> None:
    node = _open(root)
    try:
        await node.save_draft(SaveDraft("Bob", SECRET))
    finally:
        await _close(node)
    stored = b"".join(p.read_bytes() for p in root.glob("eggs.db*"))
    assert SECRET.encode() not in stored
    assert BOB.address.encode() not in stored


@pytest.mark.asyncio
async def test_bad_drafts_are_refused_and_change_nothing(root: Path) -> None:
    node = _open(root)
    try:
        await node.save_draft(SaveDraft("Bob", SECRET))
        with pytest.raises(ContactNotFound):
            await node.save_draft(SaveDraft("Mallory", "hello"))
        with pytest.raises(InvalidArgument, match="too long to keep"):
            await node.save_draft(SaveDraft("Bob", "x" * (MAX_DRAFT_BYTES + 1)))
        with pytest.raises(InvalidArgument, match="not text"):
            await node.save_draft(SaveDraft("Bob", "\ud800"))
        assert await node.drafts() == [Draft(BOB.address, SECRET)]
    finally:
        await _close(node)


@pytest.mark.asyncio
async def test_a_removed_contacts_draft_comes_back_with_them(root: Path) -> None:
    """Like the conversation: removing a contact keeps it, adding them again shows it."""
    node = _open(root)
    try:
        await node.save_draft(SaveDraft("Carol", "see you"))
        await node.remove_contact(RemoveContact("Carol"))
        assert await node.drafts() == []
        again = ContactRecord(CAROL.address, "Carol", CAROL.signing_key, CAROL.dh_key, (), False)
        await node.store.call(node.store.contacts.add, again, 0)
        assert await node.drafts() == [Draft(CAROL.address, "see you")]
    finally:
        await _close(node)


@pytest.mark.asyncio
async def test_drafts_over_the_control_socket(root: Path) -> None:
    node = _open(root)
    server = ControlServer(node, node.store.paths)
    await server.start()
    try:
        client = await connect_control(node.store.paths)
        assert client is not None
        try:
            await client.save_draft(SaveDraft("Bob", SECRET))
            assert await client.drafts() == [Draft(BOB.address, SECRET)]
        finally:
            await client.close()
    finally:
        await server.stop()
        await _close(node)
