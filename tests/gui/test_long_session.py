"""A window left open for a long time: what it holds must not grow with what passes
through it (found by a 40-minute soak of the real app, see docs/decisions/0004)."""

from __future__ import annotations

import asyncio

import pytest
from gui_helpers import wait_for
from pytestqt.qtbot import QtBot

from app.gui.app import GuiSession
from app.gui.bridge import NodeBridge
from app.gui.views.conversation import TRIM_ABOVE
from app.node import api


def _texts(session: GuiSession) -> list[str]:
    assert session.window is not None
    model = session.window.messages
    return [model.message_at(r).text for r in range(model.rowCount())]


def _consecutive(texts: list[str]) -> bool:
    numbers = [int(t.split()[-1]) for t in texts]
    return numbers == list(range(numbers[0], numbers[0] + len(numbers)))


@pytest.mark.asyncio
async def test_an_open_conversation_keeps_few_rows_while_messages_keep_coming(
    qtbot: QtBot, session: GuiSession, friend: api.InitResult
) -> None:
    """Every arriving message made Qt lay out every row of the open conversation again,
    and the rows only grew: 10 ms per message at 1 000 rows, 86 ms at 10 000. While the
    user follows the newest messages, the oldest rows are let go; scrolling up brings
    them back, and nothing is dropped from under a user reading further up."""
    assert session.node is not None and session.window is not None
    window = session.window
    bob = (await session.node.add_contact(api.AddContact(friend.whoami.invite))).contact
    window.open_conversation(bob.address)
    await wait_for(lambda: window.messages.contact == bob.address and not window.messages.loading)
    sent = TRIM_ABOVE + 60
    for i in range(sent):
        await session.node.send_message(api.SendMessage(bob.address, f"line {i}"))
    await wait_for(lambda: _texts(session)[-1:] == [f"line {sent - 1}"])
    await wait_for(lambda: window.messages.rowCount() <= TRIM_ABOVE)
    texts = _texts(session)
    assert _consecutive(texts) and len(texts) < sent
    assert window.messages.canFetchMore(window.messages.index(0).parent())

    # scrolling to the top reads the forgotten rows again, in their place
    bar = window.conversation.list.verticalScrollBar()
    bar.setValue(bar.minimum())
    await wait_for(lambda: window.messages.rowCount() > len(texts))
    await wait_for(lambda: not window.messages.loading)
    up_there = window.messages.rowCount()
    # a user reading up there keeps every row while more arrive
    bar.setValue(bar.minimum() + 200)
    for i in range(sent, sent + 5):
        await session.node.send_message(api.SendMessage(bob.address, f"line {i}"))
    await wait_for(lambda: _texts(session)[-1:] == [f"line {sent + 4}"])
    assert window.messages.rowCount() >= up_there + 5
    assert _consecutive(_texts(session))


@pytest.mark.asyncio
async def test_a_burst_in_the_open_conversation_marks_it_read_once_more_not_per_message(
    qtbot: QtBot, node: api.NodeApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each message arriving in the open, active conversation asked the node to mark it
    read: a burst of 200 messages meant 200 requests (each a database read and, for each
    newer message, a read receipt on the wire). Asked again while a request runs, the
    bridge asks once more when it is done."""
    gate = asyncio.Event()
    calls: list[str] = []
    real = node.mark_read

    async def held(command: api.MarkRead) -> None:
        calls.append(command.contact)
        await gate.wait()
        await real(command)

    monkeypatch.setattr(node, "mark_read", held)
    bridge = NodeBridge(node)
    bridge.mark_read("bob")
    await wait_for(lambda: len(calls) == 1)
    for _ in range(200):  # the burst arrives while the node is still at the first
        bridge.mark_read("bob")
    bridge.mark_read("carol")  # another conversation is not held up
    await wait_for(lambda: "carol" in calls)
    gate.set()
    await wait_for(lambda: not bridge._tasks)
    assert calls == ["bob", "carol", "bob"]
    bridge.mark_read("bob")  # a later one is not swallowed
    await wait_for(lambda: not bridge._tasks)
    assert calls == ["bob", "carol", "bob", "bob"]
