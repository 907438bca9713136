"""Connection state per contact: the bridge polls `peers()` with `status()`, the contact
row shows an online dot and says so in its accessible text and tooltip, and the
conversation header reads "Online · WebRTC · 0.4 ms" or "Offline".

The first test runs two real nodes in this process (Alice behind the GUI, Bob hosted
beside her) on loopback and lets Alice's message open a real connection, so the `Peer`
values the GUI shows (model, delegate, header) are the node's own. The others check the
wording and the model/delegate with `Peer` values of the API's type (transport states).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest
from gui_helpers import PASSPHRASE, options, wait_for
from PySide6.QtCore import QRect, Qt
from PySide6.QtGui import QColor, QFont, QFontMetricsF, QImage, QPainter
from PySide6.QtWidgets import QStyleOptionViewItem
from pytestqt.qtbot import QtBot

from app.gui.app import GuiSession
from app.gui.main_window import MainWindow
from app.gui.models.contacts import ContactModel, ContactRole, presence_text
from app.gui.theme import colors
from app.gui.views.contact_delegate import AVATAR, ContactDelegate
from app.node import api


@pytest.fixture
def loopback_ice(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The documented test setting: aioice may use 127.0.0.1 host candidates."""
    monkeypatch.setenv("SCRAMBLED_EGGS_ICE_LOOPBACK", "1")
    yield


def window_of(session: GuiSession) -> MainWindow:
    assert session.window is not None and session.bridge is not None
    return session.window


def _accessible(model: ContactModel, row: int) -> str:
    return str(model.data(model.index(row), Qt.ItemDataRole.AccessibleTextRole))


def _online(model: ContactModel, row: int) -> bool:
    return bool(model.data(model.index(row), ContactRole.ONLINE))


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 30.0) -> None:
    """Run `check` until it returns True (the qasync loop keeps running meanwhile)."""
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.2)


@pytest.mark.asyncio
async def test_a_real_connection_shows_online_then_offline(
    loopback_ice: None, session: GuiSession, friend: api.InitResult, tmp_path: Path
) -> None:
    window = window_of(session)
    alice, bridge = session.node, session.bridge
    assert alice is not None and bridge is not None
    polls: list[list[api.Peer]] = []
    bridge.peersUpdated.connect(polls.append)

    async def polled_online(expected: bool) -> bool:
        bridge.refresh_status()  # the timer polls every few seconds; poll now
        await asyncio.sleep(0.05)
        return _online(window.contacts, row) is expected

    # Bob's profile is the `friend` fixture's, now run in this process too
    async with api.host_node(options(tmp_path / "bob"), lambda: PASSPHRASE) as bob:
        assert (await bob.whoami()).address == friend.whoami.address
        await bob.add_contact(api.AddContact((await alice.whoami()).invite))
        contact = (await alice.add_contact(api.AddContact((await bob.whoami()).invite))).contact
        await wait_for(lambda: window.contacts.row_of(contact.address) >= 0)
        row = window.contacts.row_of(contact.address)
        window.open_conversation(contact.address)
        await wait_for(lambda: window.messages.contact == contact.address)
        assert window.conversation.subtitle.startswith("Offline · Not verified · ")
        assert _accessible(window.contacts, row) == "Bob, Offline"

        sent = await alice.send_message(api.SendMessage(contact.address, "are you online?"))

        async def delivered() -> bool:
            got = await alice.list_messages(api.ListMessages(contact.address))
            return any(m.id == sent.id and m.status == api.MessageStatus.DELIVERED for m in got)

        await eventually(delivered)
        await eventually(lambda: polled_online(True))
        peer = window.contacts.peer(contact.address)
        assert peer is not None and peer.state == "connected" and peer.contact == "Bob"
        assert peer.path in {"webrtc", "websocket"}
        assert peer in polls[-1]  # the value the node's peers() returned
        subtitle = window.conversation.subtitle
        assert subtitle.startswith("Online · ") and " · Not verified · " in subtitle
        assert ("WebRTC" if peer.path == "webrtc" else "WebSocket") in subtitle
        assert _accessible(window.contacts, row) == f"Bob, {presence_text(peer)}"
        tooltip = window.contacts.data(window.contacts.index(row), Qt.ItemDataRole.ToolTipRole)
        assert tooltip == f"{contact.address}\n{presence_text(peer)}"
    # Bob's node stopped: Alice's next polls bring the contact back to offline
    await eventually(lambda: polled_online(False))
    assert window.conversation.subtitle.startswith("Offline · Not verified · ")
    assert _accessible(window.contacts, row) == "Bob, Offline"


def _peer(address: str, state: str, path: str | None, rtt: float | None) -> api.Peer:
    return api.Peer(contact="Bob", address=address, path=path, state=state, rtt_ms=rtt)


def test_presence_text_names_path_and_round_trip() -> None:
    address = "a" * 52
    assert presence_text(None) == "Offline"
    assert presence_text(_peer(address, "connecting", None, None)) == "Offline"
    assert presence_text(_peer(address, "waiting-to-retry", None, None)) == "Offline"
    assert presence_text(_peer(address, "connected", "webrtc", 0.38)) == "Online · WebRTC · 0.4 ms"
    assert presence_text(_peer(address, "connected", "turn", 12.0)) == "Online · TURN · 12.0 ms"
    assert presence_text(_peer(address, "connected", "websocket", None)) == "Online · WebSocket"


def _dot_pixels(model: ContactModel) -> int:
    """Paint row 0 and count pixels of the online colour in the avatar's lower right."""
    image = QImage(320, 64, QImage.Format.Format_ARGB32)
    image.fill(QColor(colors().base))
    painter = QPainter(image)
    option = QStyleOptionViewItem()
    option.rect = QRect(0, 0, 320, 64)
    ContactDelegate().paint(painter, option, model.index(0))
    painter.end()
    green = QColor(colors().online).rgb()
    corner = range(int(6 + 10 + AVATAR - 14), int(6 + 10 + AVATAR + 2))
    rows = range(int(32 + AVATAR / 2 - 14), int(32 + AVATAR / 2 + 2))
    return sum(1 for x in corner for y in rows if image.pixel(x, y) == green)


def test_model_and_delegate_follow_the_polled_peers(qtbot: QtBot) -> None:
    model = ContactModel()
    bob = api.Contact("Bob", "b" * 52, verified=True)
    carol = api.Contact("Carol", "c" * 52, verified=False)
    model.set_contacts([bob, carol])
    changed: list[int] = []
    model.dataChanged.connect(lambda first, _last, _roles: changed.append(first.row()))
    assert _dot_pixels(model) == 0

    live = _peer(bob.address, "connected", "webrtc", 0.41)
    model.set_peers([live, _peer(carol.address, "connecting", None, None)])
    assert sorted(changed) == [0, 1]
    assert _online(model, 0) and not _online(model, 1)
    assert _accessible(model, 0) == "Bob, Online · WebRTC · 0.4 ms, verified"
    assert _accessible(model, 1) == "Carol, Offline"
    assert _dot_pixels(model) > 20

    changed.clear()
    model.set_peers([live, _peer(carol.address, "connecting", None, None)])
    assert changed == []  # nothing changed, nothing repainted
    model.set_peers([])  # a poll without Bob: he went offline
    assert changed == [0, 1] and not _online(model, 0) and model.peer(bob.address) is None
    assert _dot_pixels(model) == 0


def test_a_new_round_trip_time_alone_repaints_no_contact(qtbot: QtBot) -> None:
    """Every status poll (3 s) brought each connected contact a new RTT, and each such
    row was repainted although it doesn't show the RTT: idle CPU for nothing."""
    model = ContactModel()
    bob = api.Contact("Bob", "b" * 52, verified=True)
    model.set_contacts([bob])
    model.set_peers([_peer(bob.address, "connected", "webrtc", 0.41)])
    changed: list[int] = []
    model.dataChanged.connect(lambda first, _last, _roles: changed.append(first.row()))
    model.set_peers([_peer(bob.address, "connected", "webrtc", 0.57)])
    assert changed == []
    assert _accessible(model, 0) == "Bob, Online · WebRTC · 0.6 ms, verified"  # still current
    model.set_peers([_peer(bob.address, "connected", "websocket", 0.57)])
    assert changed == [0]  # another path is another state


def test_the_list_starts_with_the_unread_counts_the_node_holds(qtbot: QtBot) -> None:
    """Messages received while the window was closed count as unread when it opens."""
    model = ContactModel()
    totals: list[int] = []
    model.unreadChanged.connect(totals.append)
    model.set_contacts(
        [
            api.Contact("Bob", "b" * 52, verified=True, unread=2),
            api.Contact("Carol", "c" * 52, False),
        ]
    )
    assert model.unread("b" * 52) == 2 and model.unread("c" * 52) == 0
    assert totals == [2]


class _TextPainter(QPainter):
    """Records the texts a delegate draws."""

    def __init__(self, device: QImage) -> None:
        super().__init__(device)
        self.texts: list[str] = []

    def drawText(self, *args: object) -> None:  # type: ignore[override]
        self.texts.append(str(args[-1]))
        super().drawText(*args)  # type: ignore[call-overload]


def test_a_name_uses_the_room_beside_the_time(qtbot: QtBot) -> None:
    """Found by a tester: "Captain Mar…" with room to spare, kept for a verified badge
    an unverified contact does not have. The badge is now on the avatar: a verified
    contact's name has that room too."""
    name = "Captain Marvel"
    option = QStyleOptionViewItem()
    bold = QFont(option.font)
    bold.setBold(True)
    bold.setPointSizeF(option.font.pointSizeF() * 1.05)
    name_w = QFontMetricsF(bold).horizontalAdvance(name)
    text_left = 6 + 10 + AVATAR + 12
    width = int(text_left + name_w + 20 + 6 + 12)  # 20 px to spare: no badge, no time
    drawn: dict[bool, list[str]] = {}
    for verified in (False, True):
        model = ContactModel()
        model.set_contacts([api.Contact(name, "c" * 52, verified=verified)])
        image = QImage(width, 64, QImage.Format.Format_ARGB32)
        painter = _TextPainter(image)
        option.rect = QRect(0, 0, width, 64)
        ContactDelegate().paint(painter, option, model.index(0))
        painter.end()
        drawn[verified] = painter.texts
    assert name in drawn[False]
    assert name in drawn[True]  # the badge is on the avatar, not beside the name
