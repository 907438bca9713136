"""Typing indicator and read receipts in the GUI, against a second real node hosted in
this process (Bob) on loopback: Bob's typing shows in Alice's conversation header,
Alice's composer tells Bob she types, and opening the conversation marks Bob's
messages read on Bob's side."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from gui_helpers import PASSPHRASE, options, wait_for
from PySide6.QtCore import QRect
from PySide6.QtGui import QColor, QImage, QPainter
from test_presence import eventually, window_of

from app.gui.app import GuiSession
from app.gui.theme import colors
from app.gui.views.painting import draw_ticks
from app.node import api


@pytest.fixture
def loopback_ice(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("SCRAMBLED_EGGS_ICE_LOOPBACK", "1")
    yield


@pytest.mark.asyncio
async def test_typing_in_the_header_and_opening_marks_read(
    loopback_ice: None, session: GuiSession, friend: api.InitResult, tmp_path: Path
) -> None:
    window = window_of(session)
    alice = session.node
    assert alice is not None
    async with api.host_node(options(tmp_path / "bob"), lambda: PASSPHRASE) as bob:
        bob_events: list[api.TypingChanged] = []

        async def collect() -> None:
            async for event in bob.events():
                if isinstance(event, api.TypingChanged):
                    bob_events.append(event)

        collector = asyncio.ensure_future(collect())
        try:
            alice_me = await alice.whoami()
            await bob.add_contact(api.AddContact(alice_me.invite))
            contact = (await alice.add_contact(api.AddContact((await bob.whoami()).invite))).contact
            sent = await bob.send_message(api.SendMessage(alice_me.address, "are you there?"))

            async def bob_sees(status: api.MessageStatus) -> bool:
                got = await bob.list_messages(api.ListMessages(alice_me.address))
                return any(m.id == sent.id and m.status is status for m in got)

            await eventually(lambda: bob_sees(api.MessageStatus.DELIVERED))
            await wait_for(lambda: window.contacts.row_of(contact.address) >= 0)

            # opening the conversation marks Bob's message read, on Bob's side too
            window.open_conversation(contact.address)
            await wait_for(lambda: window.messages.contact == contact.address)
            await eventually(lambda: bob_sees(api.MessageStatus.READ))
            assert not window.conversation.typing
            assert not window.conversation.subtitle.startswith("typing…")

            # Bob types: Alice's header says so until he stops
            await bob.set_typing(api.SetTyping(alice_me.address, True))
            await wait_for(lambda: window.conversation.typing)
            assert window.conversation.subtitle.startswith("typing…")
            await bob.set_typing(api.SetTyping(alice_me.address, False))
            await wait_for(lambda: not window.conversation.typing)
            assert not window.conversation.subtitle.startswith("typing…")

            # Alice types in the composer: Bob's node hears it; clearing it stops it
            window.conversation.composer.setPlainText("hel")
            await wait_for(lambda: [e.typing for e in bob_events] == [True])
            window.conversation.composer.setPlainText("hello")  # throttled: nothing new
            window.conversation.composer.clear()
            await wait_for(lambda: [e.typing for e in bob_events] == [True, False])
            assert all(e.contact == alice_me.address for e in bob_events)
        finally:
            collector.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await collector

    async def bob_gone() -> bool:  # let Alice's side of the connection wind down
        return all(p.state != "connected" for p in await alice.peers())

    await eventually(bob_gone)
    await asyncio.sleep(0.5)


def _tick_pixels(status: api.MessageStatus) -> int:
    """Paint the delivery mark and count pixels in the "read" colour."""
    image = QImage(40, 20, QImage.Format.Format_ARGB32)
    image.fill(QColor("#000000"))
    painter = QPainter(image)
    draw_ticks(painter, 2, 2, 14, status, QColor("#808080"), QColor(colors().tick_read))
    painter.end()
    read = QColor(colors().tick_read).rgb()
    area = QRect(0, 0, 40, 20)
    return sum(
        1 for x in range(area.width()) for y in range(area.height()) if image.pixel(x, y) == read
    )


def test_read_messages_show_double_ticks_in_the_read_colour(qtbot: object) -> None:
    assert _tick_pixels(api.MessageStatus.READ) > 10
    assert _tick_pixels(api.MessageStatus.DELIVERED) == 0
