"""File transfers in the main window over a real node: file bubbles in the conversation,
the transfers list (Ctrl+J), live progress updated in place, and the buttons (Accept,
Decline, Cancel, Retry, Open, Show in folder) reaching the node.

The node's transfer engine is built on another branch; until it is merged, the tests that
drive the view feed `TransferAdded`/`TransferChanged`/`MessageAdded` through the real
node's event bus (`service.publish`), exactly as the engine will, and record the commands
the buttons issue on their way to the real `NodeService` methods. The tests at the end,
marked NEEDS THE NODE BRANCH, use the real engine end to end.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import time
from pathlib import Path
from typing import Any

import pytest
from gui_helpers import PASSPHRASE, XdgOpen, drop_files, options, wait_for
from PySide6.QtCore import QPointF, QRect, Qt
from PySide6.QtGui import QColor, QImage, QPainter
from PySide6.QtWidgets import QMessageBox, QStyleOptionViewItem
from pytestqt.qtbot import QtBot

from app.gui.app import GuiSession
from app.gui.main_window import MainWindow
from app.gui.models.messages import MessageRole
from app.gui.models.transfers import TransferModel
from app.gui.theme import colors
from app.gui.views.file_card import TransferAction, card_colors
from app.node import api


def window_of(session: GuiSession) -> MainWindow:
    assert session.window is not None
    return session.window


def service_of(session: GuiSession) -> Any:
    """The real in-process `NodeService` (its `publish` feeds the event bus)."""
    assert session.node is not None
    return session.node


def _asked_now(window: MainWindow) -> QMessageBox | None:
    shown = [b for b in window.findChildren(QMessageBox) if b.isVisible()]
    return shown[0] if shown else None


async def _asked(window: MainWindow) -> QMessageBox:
    await wait_for(lambda: _asked_now(window) is not None)
    box = _asked_now(window)
    assert box is not None
    return box


async def add_bob(session: GuiSession, friend: api.InitResult) -> api.Contact:
    contact = (await service_of(session).add_contact(api.AddContact(friend.whoami.invite))).contact
    await wait_for(lambda: window_of(session).contacts.row_of(contact.address) >= 0)
    return contact


async def open_chat(session: GuiSession, address: str) -> MainWindow:
    window = window_of(session)
    window.open_conversation(address)
    await wait_for(lambda: window.messages.contact == address and not window.messages.loading)
    return window


def make_transfer(contact: str, **changes: Any) -> api.Transfer:
    base = api.Transfer(
        id="tr-1",
        contact=contact,
        outgoing=False,
        name="holiday.jpg",
        size=8_000_000,
        done_bytes=0,
        state=api.TransferState.OFFERED,
        path=None,
        mime="image/jpeg",
        time=time.time(),
    )
    return dataclasses.replace(base, **changes)


def file_message(transfer: api.Transfer, me: str) -> api.Message:
    return api.Message(
        id=f"msg-{transfer.id}",
        contact=transfer.contact,
        sender=me if transfer.outgoing else transfer.contact,
        outgoing=transfer.outgoing,
        text=transfer.name,
        time=transfer.time,
        status=api.MessageStatus.SENT if transfer.outgoing else api.MessageStatus.RECEIVED,
        transfer=transfer.id,
    )


class CommandLog:
    """Records the transfer commands the GUI sends, then hands each to the real
    `NodeService` method (which exists once the node branch is merged)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, service: Any) -> None:
        self.commands: list[object] = []
        for name in (
            "share_files",
            "accept_transfer",
            "cancel_transfer",
            "pause_transfer",
            "retry_transfer",
        ):
            monkeypatch.setattr(service, name, self._recorder(service, name), raising=False)

    def _recorder(self, service: Any, name: str) -> Any:
        async def record(command: object) -> Any:
            self.commands.append(command)
            return await getattr(type(service), name)(service, command)

        return record


@pytest.fixture
def opened_urls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> XdgOpen:
    """The desktop's file opener: an `xdg-open` that records what it is asked to open."""
    opener = XdgOpen(tmp_path / "xdg-bin")
    monkeypatch.setenv("PATH", f"{opener.folder}:{os.environ['PATH']}")
    return opener


def bubble_row(window: MainWindow, transfer_id: str) -> int:
    model = window.messages
    for row in range(model.rowCount()):
        if model.message_at(row).transfer == transfer_id:
            return row
    return -1


def bubble_buttons(window: MainWindow, row: int) -> list[tuple[TransferAction, QPointF]]:
    """The painted buttons of the file bubble in `row`, left to right, with their centres
    (viewport pixels)."""
    pane = window.conversation
    index = pane.list.model().index(row, 0)
    rect = pane.list.visualRect(index)
    message = window.messages.message_at(row)
    transfer = index.data(MessageRole.TRANSFER)
    header = bool(index.data(MessageRole.DAY_HEADER))
    _, layout = pane.delegate.file_geometry(rect.toRectF(), message, transfer, header)
    return [(action, button.center()) for action, button in layout.buttons]


def button_center(window: MainWindow, row: int, action: TransferAction) -> QPointF | None:
    """Where the painted `action` button of the file bubble in `row` is."""
    return dict(bubble_buttons(window, row)).get(action)


def click_bubble_button(qtbot: QtBot, window: MainWindow, row: int, action: TransferAction) -> None:
    center = button_center(window, row, action)
    assert center is not None, f"no {action} button on row {row}"
    qtbot.mouseClick(
        window.conversation.list.viewport(), Qt.MouseButton.LeftButton, pos=center.toPoint()
    )


def buttons_of(window: MainWindow, row: int) -> list[TransferAction]:
    return [action for action, _ in bubble_buttons(window, row)]


# ---------------------------------------------------------------------------- the models


def test_transfer_model_updates_rows_in_place_newest_first(qtbot: QtBot) -> None:
    model = TransferModel()
    inserted: list[int] = []
    changed: list[int] = []
    model.rowsInserted.connect(lambda _p, first, _l: inserted.append(first))
    model.dataChanged.connect(lambda top, _b: changed.append(top.row()))
    old = make_transfer("bob", id="old", time=100.0, state=api.TransferState.RUNNING)
    new = make_transfer("bob", id="new", time=200.0)
    model.upsert(old)
    model.upsert(new)
    assert [model.transfer_at(r).id for r in range(2)] == ["new", "old"]
    assert model.active == 2
    for done in range(1, 50):
        model.upsert(dataclasses.replace(old, done_bytes=done * 1000, speed_bps=5e5))
    assert inserted == [0, 0] and changed == [1] * 49
    assert model.transfer("old") is not None and model.transfer("old").done_bytes == 49_000  # type: ignore[union-attr]
    model.upsert(dataclasses.replace(old, state=api.TransferState.DONE, done_bytes=old.size))
    assert model.active == 1


def test_offers_waiting_for_us_are_counted_apart_from_moving_transfers(qtbot: QtBot) -> None:
    """Found by a tester: one offer nobody had answered read "1 transfer active"; the
    count must also be told again when that offer starts (the total stays 1)."""
    model = TransferModel()
    told: list[tuple[int, int]] = []
    model.activeChanged.connect(lambda active: told.append((active, model.offers_to_answer())))
    offer = make_transfer("bob", id="offer")
    model.upsert(offer)
    model.upsert(dataclasses.replace(offer, state=api.TransferState.RUNNING))
    model.upsert(make_transfer("bob", id="sent", outgoing=True))  # offered by us: moving
    assert told == [(1, 1), (1, 0), (2, 0)]


def test_a_snapshot_never_overwrites_a_newer_event(qtbot: QtBot) -> None:
    model = TransferModel()
    token = model.snapshot_token()
    # while ListTransfers was being answered, an event brought newer progress
    fresh = make_transfer("bob", id="a", state=api.TransferState.RUNNING, done_bytes=500)
    model.upsert(fresh)
    stale = dataclasses.replace(fresh, done_bytes=100)
    other = make_transfer("bob", id="b", time=fresh.time - 10)
    model.merge_snapshot([other, stale], token)
    assert model.transfer("a") == fresh
    assert model.transfer("b") == other
    assert [model.transfer_at(r).id for r in range(2)] == ["a", "b"]


# ---------------------------------------------------------------------------- the window


@pytest.mark.asyncio
async def test_a_file_bubble_follows_its_transfer_and_its_buttons_reach_the_node(
    qtbot: QtBot,
    session: GuiSession,
    friend: api.InitResult,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    opened_urls: XdgOpen,
) -> None:
    bob = await add_bob(session, friend)
    window = await open_chat(session, bob.address)
    service = service_of(session)
    log = CommandLog(monkeypatch, service)
    me = (await service.whoami()).address
    offer = make_transfer(bob.address)
    service.publish(api.MessageAdded(file_message(offer, me)))
    await wait_for(lambda: bubble_row(window, offer.id) >= 0)
    row = bubble_row(window, offer.id)
    index = window.messages.index(row)
    assert index.data(MessageRole.TRANSFER) is None  # the node has not described it yet
    assert buttons_of(window, row) == []
    service.publish(api.TransferAdded(offer))
    await wait_for(lambda: window.messages.index(row).data(MessageRole.TRANSFER) == offer)
    height = window.conversation.list.visualRect(window.conversation.list.model().index(row, 0))
    assert buttons_of(window, row) == [TransferAction.ACCEPT, TransferAction.DECLINE]
    spoken = window.messages.index(row).data(Qt.ItemDataRole.AccessibleTextRole)
    assert spoken == "holiday.jpg, 8.00 MB · Offered to you, Accept to download it."

    resets: list[int] = []
    window.messages.modelReset.connect(lambda: resets.append(1))
    repaints: list[int] = []
    window.messages.dataChanged.connect(lambda top, _b, _r: repaints.append(top.row()))

    click_bubble_button(qtbot, window, row, TransferAction.ACCEPT)
    await wait_for(lambda: len(log.commands) == 1)
    assert log.commands == [api.AcceptTransfer(offer.id)]

    running = dataclasses.replace(
        offer, state=api.TransferState.RUNNING, done_bytes=2_000_000, speed_bps=1_000_000
    )
    for step in range(10):  # progress reports, several a second
        service.publish(
            api.TransferChanged(dataclasses.replace(running, done_bytes=2_000_000 + step))
        )
    await wait_for(lambda: window.transfers.transfer(offer.id).done_bytes == 2_000_009)  # type: ignore[union-attr]
    assert resets == [] and set(repaints) == {row} and len(repaints) == 10
    assert window.messages.rowCount() == 1
    assert buttons_of(window, row) == [TransferAction.PAUSE, TransferAction.CANCEL]
    same_row = window.conversation.list.visualRect(window.conversation.list.model().index(row, 0))
    assert same_row.height() == height.height()  # a state change never resizes the bubble
    assert window.active_transfers.isVisibleTo(window)
    assert "1 transfer" in window.active_transfers.text()

    click_bubble_button(qtbot, window, row, TransferAction.PAUSE)
    await wait_for(lambda: len(log.commands) == 2)
    assert log.commands[1] == api.PauseTransfer(offer.id)
    paused = dataclasses.replace(running, state=api.TransferState.PAUSED, speed_bps=0.0)
    service.publish(api.TransferChanged(paused))
    await wait_for(
        lambda: buttons_of(window, row) == [TransferAction.RESUME, TransferAction.CANCEL]
    )
    click_bubble_button(qtbot, window, row, TransferAction.RESUME)
    await wait_for(lambda: len(log.commands) == 3)
    assert log.commands[2] == api.RetryTransfer(offer.id)
    service.publish(api.TransferChanged(running))
    await wait_for(lambda: buttons_of(window, row) == [TransferAction.PAUSE, TransferAction.CANCEL])

    # 2 MB received: cancelling throws them away for good, so the window asks first;
    # "Keep going" (also Esc, the default) changes nothing
    for answer in ("Keep going", "Esc", "Cancel transfer"):
        click_bubble_button(qtbot, window, row, TransferAction.CANCEL)
        box = await _asked(window)
        assert "Stop receiving" in box.text() and "holiday.jpg" in box.text()
        assert "2.00 MB" in box.informativeText() and "Bob" in box.informativeText()
        if answer == "Esc":
            qtbot.keyClick(box, Qt.Key.Key_Escape)
        else:
            next(b for b in box.buttons() if b.text() == answer).click()
        await wait_for(lambda: _asked_now(window) is None)
        await asyncio.sleep(0.2)  # room for a command that must not come
        assert len(log.commands) == (4 if answer == "Cancel transfer" else 3)
    assert log.commands[3] == api.CancelTransfer(offer.id)

    failed = dataclasses.replace(running, state=api.TransferState.FAILED, error="Bob went away.")
    service.publish(api.TransferChanged(failed))
    await wait_for(lambda: buttons_of(window, row) == [TransferAction.RETRY, TransferAction.CANCEL])
    click_bubble_button(qtbot, window, row, TransferAction.RETRY)
    await wait_for(lambda: len(log.commands) == 5)
    assert log.commands[4] == api.RetryTransfer(offer.id)

    saved = tmp_path / "Downloads" / "holiday.jpg"
    saved.parent.mkdir()
    saved.write_bytes(b"jpeg")
    done = dataclasses.replace(
        failed, state=api.TransferState.DONE, done_bytes=offer.size, path=str(saved), error=None
    )
    service.publish(api.TransferChanged(done))
    await wait_for(
        lambda: buttons_of(window, row) == [TransferAction.OPEN, TransferAction.SHOW_IN_FOLDER]
    )
    assert not window.active_transfers.isVisibleTo(window)
    click_bubble_button(qtbot, window, row, TransferAction.OPEN)
    click_bubble_button(qtbot, window, row, TransferAction.SHOW_IN_FOLDER)
    # two xdg-open run at once: either may write first
    await wait_for(lambda: sorted(opened_urls.opened()) == sorted([str(saved), str(saved.parent)]))

    saved.unlink()  # moved away since: say so instead of failing silently
    click_bubble_button(qtbot, window, row, TransferAction.OPEN)
    assert len(opened_urls.opened()) == 2
    assert "no longer there" in window.conversation.toast.text()

    declined = make_transfer(bob.address, id="tr-2", name="taxes.pdf")
    service.publish(api.TransferAdded(declined))
    service.publish(api.MessageAdded(file_message(declined, me)))
    await wait_for(lambda: bubble_row(window, declined.id) == 1)
    await wait_for(lambda: buttons_of(window, 1) == [TransferAction.ACCEPT, TransferAction.DECLINE])
    click_bubble_button(qtbot, window, 1, TransferAction.DECLINE)
    await wait_for(lambda: len(log.commands) == 6)
    assert log.commands[5] == api.CancelTransfer(declined.id)
    assert resets == []  # one conversation open the whole time: never reloaded


@pytest.mark.asyncio
async def test_the_transfers_list_shows_every_transfer_live(
    qtbot: QtBot,
    session: GuiSession,
    friend: api.InitResult,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    bob = await add_bob(session, friend)
    window = window_of(session)
    service = service_of(session)
    log = CommandLog(monkeypatch, service)
    assert window.transfers_action.shortcut().toString() == "Ctrl+J"
    window.transfers_action.trigger()
    dialog = window.transfers_dialog
    assert dialog is not None and dialog.isVisible()
    assert dialog.stack.currentWidget() is dialog.empty

    sending = make_transfer(
        bob.address,
        id="up",
        outgoing=True,
        name="slides.pdf",
        state=api.TransferState.RUNNING,
        size=10_000_000,
        done_bytes=2_500_000,
        speed_bps=2_500_000,
        time=time.time() - 5,
    )
    offered = make_transfer(bob.address, id="down", name="song.flac")
    service.publish(api.TransferAdded(sending))
    service.publish(api.TransferAdded(offered))
    await wait_for(lambda: window.transfers.rowCount() == 2)
    assert dialog.stack.currentWidget() is dialog.list
    assert dialog.summary.text() == "2 active · 2 in all"
    model = dialog.list.model()
    assert [model.index(r, 0).data() for r in range(2)] == ["song.flac", "slides.pdf"]
    spoken = model.index(1, 0).data(Qt.ItemDataRole.AccessibleTextRole)
    assert spoken == ("slides.pdf, 10.0 MB · Sending, 2.50 MB of 10.0 MB · 2.50 MB/s · 3 s left")

    # the painted row: accent progress bar filled to a quarter, then the empty track
    image = paint_row(dialog, 1, 600)
    layout = dialog.delegate.card_layout(QRect(0, 0, 600, image.height()).toRectF(), sending)
    bar = layout.bar
    y = int(bar.center().y())
    filled = QColor(image.pixel(int(bar.left() + bar.width() * 0.12), y))
    empty = QColor(image.pixel(int(bar.left() + bar.width() * 0.6), y))
    assert filled == card_colors(on_accent=False).bar
    assert empty != filled

    # a click on the offered row's Accept button reaches the node
    list_view = dialog.list
    rect = list_view.visualRect(model.index(0, 0))
    accept = dialog.delegate.card_layout(rect.toRectF(), offered).buttons[0]
    assert accept[0] == TransferAction.ACCEPT
    qtbot.mouseClick(
        list_view.viewport(), Qt.MouseButton.LeftButton, pos=accept[1].center().toPoint()
    )
    await wait_for(lambda: log.commands == [api.AcceptTransfer("down")])

    inserted: list[int] = []
    model.rowsInserted.connect(lambda *_: inserted.append(1))
    service.publish(
        api.TransferChanged(
            dataclasses.replace(
                sending,
                state=api.TransferState.DONE,
                done_bytes=sending.size,
                path="/tmp/slides.pdf",
            )
        )
    )
    await wait_for(lambda: dialog.summary.text() == "1 active · 2 in all")
    assert inserted == []
    again = window.show_transfers()  # Ctrl+J again raises the same window
    assert again is dialog


def paint_row(dialog: Any, row: int, width: int) -> QImage:
    index = dialog.list.model().index(row, 0)
    option = QStyleOptionViewItem()
    height = dialog.delegate.sizeHint(option, index).height()
    option.rect = QRect(0, 0, width, height)
    image = QImage(width, height, QImage.Format.Format_ARGB32)
    image.fill(QColor(colors().base))
    painter = QPainter(image)
    dialog.delegate.paint(painter, option, index)
    painter.end()
    return image


# ------------------------------------------------ NEEDS THE NODE BRANCH (real transfer engine)
# These drive `share_files`/`accept_transfer`/`cancel_transfer` of the real NodeService; they
# fail until the node side of issue #8 is merged.


@pytest.mark.asyncio
async def test_dropped_files_become_file_bubbles_and_can_be_cancelled(
    qtbot: QtBot, session: GuiSession, friend: api.InitResult, tmp_path: Path
) -> None:
    """NEEDS THE NODE BRANCH."""
    bob = await add_bob(session, friend)
    window = await open_chat(session, bob.address)
    files = [tmp_path / "notes.txt", tmp_path / "data.bin"]
    files[0].write_text("hello")
    files[1].write_bytes(bytes(300_000))
    drop_files(window.conversation, files)
    await wait_for(lambda: window.transfers.rowCount() == 2)
    names = {window.transfers.transfer_at(r).name for r in range(2)}
    assert names == {"notes.txt", "data.bin"}
    assert all(window.transfers.transfer_at(r).outgoing for r in range(2))
    await wait_for(lambda: window.messages.rowCount() == 2)
    row = [window.messages.message_at(r).text for r in range(2)].index("data.bin")
    transfer_id = window.messages.message_at(row).transfer
    assert transfer_id is not None
    await wait_for(lambda: TransferAction.CANCEL in buttons_of(window, row))
    click_bubble_button(qtbot, window, row, TransferAction.CANCEL)
    await wait_for(
        lambda: window.transfers.transfer(transfer_id).state == api.TransferState.CANCELLED  # type: ignore[union-attr]
    )
    assert buttons_of(window, row) == []
    listed = await service_of(session).list_transfers(api.ListTransfers(bob.address))
    assert {t.id: t.state for t in listed}[transfer_id] == api.TransferState.CANCELLED


@pytest.mark.asyncio
async def test_a_file_offered_to_an_offline_contact_does_not_claim_they_were_asked(
    session: GuiSession, friend: api.InitResult, tmp_path: Path
) -> None:
    """Bob is offline: the offer waits in the outbox (a clock, not ticks), so the bubble
    must not say that he is being asked; once it reached him, it does."""
    bob = await add_bob(session, friend)
    window = await open_chat(session, bob.address)
    big = tmp_path / "video.bin"
    big.write_bytes(bytes(300_000))
    drop_files(window.conversation, [big])
    await wait_for(lambda: window.messages.rowCount() == 1)
    await wait_for(lambda: window.messages.index(0).data(MessageRole.TRANSFER) is not None)
    message = window.messages.message_at(0)
    assert message.status in (api.MessageStatus.QUEUED, api.MessageStatus.SENT)
    spoken = window.messages.index(0).data(Qt.ItemDataRole.AccessibleTextRole)
    assert spoken.endswith("They are asked when it reaches them.")
    assert "whether to accept" not in window.messages.index(0).data(Qt.ItemDataRole.ToolTipRole)

    service_of(session).publish(
        api.MessageStatusChanged(message.id, bob.address, api.MessageStatus.DELIVERED)
    )
    await wait_for(lambda: window.messages.message_at(0).status == api.MessageStatus.DELIVERED)
    spoken = window.messages.index(0).data(Qt.ItemDataRole.AccessibleTextRole)
    assert spoken.endswith("They are asked whether to accept it.")


@pytest.mark.asyncio
async def test_a_share_the_node_refuses_is_reported(
    session: GuiSession, friend: api.InitResult, tmp_path: Path
) -> None:
    """NEEDS THE NODE BRANCH."""
    bob = await add_bob(session, friend)
    window = await open_chat(session, bob.address)
    drop_files(window.conversation, [tmp_path / "vanished.txt"])  # dropped, then deleted
    await wait_for(lambda: window.conversation.toast.isVisible())
    assert "went wrong inside the app" not in window.conversation.toast.text()
    assert window.transfers.rowCount() == 0


@pytest.fixture
def loopback_ice(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCRAMBLED_EGGS_ICE_LOOPBACK", "1")


@pytest.mark.asyncio
@pytest.mark.slow
async def test_a_file_from_a_real_peer_is_accepted_in_the_bubble_and_opened(
    qtbot: QtBot,
    loopback_ice: None,
    session: GuiSession,
    friend: api.InitResult,
    tmp_path: Path,
    opened_urls: XdgOpen,
) -> None:
    """NEEDS THE NODE BRANCH. Alice (the window) and Bob (hosted beside her) on loopback:
    Bob shares a file, Alice accepts it with the bubble's button, sees it arrive, opens it."""
    window = window_of(session)
    alice = service_of(session)
    await alice.update_settings(  # always ask; save under tmp_path, not ~/Downloads
        api.UpdateSettings(auto_accept_bytes=0, downloads_folder=str(tmp_path / "downloads"))
    )
    payload = bytes(range(256)) * 1500  # 384,000 bytes: two blocks
    source = tmp_path / "bob-files" / "report.bin"
    source.parent.mkdir()
    source.write_bytes(payload)
    async with api.host_node(options(tmp_path / "bob"), lambda: PASSPHRASE) as bob:
        await bob.add_contact(api.AddContact((await alice.whoami()).invite))
        contact = (await alice.add_contact(api.AddContact((await bob.whoami()).invite))).contact
        await wait_for(lambda: window.contacts.row_of(contact.address) >= 0)
        window = await open_chat(session, contact.address)
        alice_address = (await alice.whoami()).address
        await bob.share_files(api.ShareFiles(alice_address, [str(source)]))
        messages = window.messages
        await wait_for(
            lambda: messages.rowCount() == 1 and messages.message_at(0).transfer is not None,
            timeout=60,
        )
        await wait_for(lambda: buttons_of(window, 0)[:1] == [TransferAction.ACCEPT], timeout=60)
        click_bubble_button(qtbot, window, 0, TransferAction.ACCEPT)
        transfer_id = window.messages.message_at(0).transfer
        assert transfer_id is not None

        def state() -> api.TransferState | None:
            found = window.transfers.transfer(transfer_id)
            return None if found is None else found.state

        await wait_for(lambda: state() == api.TransferState.DONE, timeout=60)
        done = window.transfers.transfer(transfer_id)
        assert done is not None and done.path is not None
        assert Path(done.path).read_bytes() == payload
        click_bubble_button(qtbot, window, 0, TransferAction.OPEN)
        await wait_for(lambda: opened_urls.opened() == [done.path])
        await asyncio.sleep(0)
