"""`scrambled-eggs messages CONTACT --limit N` shows the newest N messages however large N
is: the node answers a page (at most 1,000) at a time, and `--limit 5000` showed 1,000
without a word."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from app.cli import newest_messages
from app.core.identity import IdentityKeys
from app.node.api import Message, MessageStatus
from app.node.profile import create_profile, open_store
from app.node.service import MAX_PAGE, NodeService
from app.node.storage.repositories import ContactRecord

BOB = IdentityKeys.from_seeds(b"\x07" * 32, b"\x17" * 32).public
STORED = 2 * MAX_PAGE + 500


@pytest.mark.asyncio
async def test_a_limit_beyond_one_page_is_shown_whole(tmp_path: Path) -> None:
    root = tmp_path / "alice"
    create_profile(root, "Alice", None)
    store = open_store(root, None)
    store.contacts.add(ContactRecord(BOB.address, "Bob", BOB.signing_key, BOB.dh_key, (), False), 0)
    lines = [
        Message(
            f"{i:032x}",
            BOB.address,
            BOB.address,
            False,
            f"line {i}",
            1000.0 + i,
            MessageStatus.RECEIVED,
        )
        for i in range(STORED)
    ]
    store.messages.add_many_if_absent(
        lines, {m.id: (i + 1, f"{i:08d}") for i, m in enumerate(lines)}
    )
    node = NodeService(store)
    try:
        for limit in (1, 50, MAX_PAGE, MAX_PAGE + 1, 2 * MAX_PAGE + 7, STORED, 5 * MAX_PAGE):
            shown = await newest_messages(node, "Bob", limit)
            expected = lines[-min(limit, STORED) :]
            assert [m.id for m in shown] == [m.id for m in expected], limit
    finally:
        node.close()
        await asyncio.to_thread(store.close)
