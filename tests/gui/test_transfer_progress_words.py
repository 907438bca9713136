"""What a transfer's card says between the events the node sends: whether our offer has
reached the contact yet (the transfers list, as the file bubble already did), and whether
a transfer without a speed has only just started or waits for its peer."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from gui_helpers import XdgOpen, drop_files, wait_for
from PySide6.QtCore import QRectF, Qt
from PySide6.QtWidgets import QListView
from pytestqt.qtbot import QtBot

from app.gui import main_window
from app.gui.app import GuiSession
from app.gui.desktop_open import system_environment
from app.gui.main_window import MainWindow
from app.gui.models import transfers as transfer_model
from app.gui.models.messages import MessageRole
from app.gui.models.transfers import TransferModel, TransferRole
from app.gui.views.file_card import (
    CardFonts,
    TransferAction,
    actions_for,
    card_height,
    layout_card,
    summary_line,
)
from app.node import api

MB = 1_000_000


def window_of(session: GuiSession) -> MainWindow:
    assert session.window is not None
    return session.window


def service_of(session: GuiSession) -> Any:
    assert session.node is not None
    return session.node


def running(**changes: Any) -> api.Transfer:
    base = api.Transfer(
        id="t",
        contact="bob",
        outgoing=False,
        name="film.mkv",
        size=50 * MB,
        done_bytes=0,
        state=api.TransferState.OFFERED,
        path=None,
        mime="video/x-matroska",
        time=time.time(),
    )
    return dataclasses.replace(base, **changes)


def spoken(model: TransferModel, transfer_id: str) -> str:
    index = model.index(model.row_of(transfer_id))
    return str(index.data(Qt.ItemDataRole.AccessibleTextRole))


# ------------------------------------------------------------------ starting vs waiting


def test_a_transfer_that_just_began_is_starting_not_waiting_for_the_peer(qtbot: QtBot) -> None:
    """Found in the window: every transfer read "waiting for the peer" for its first half
    second (the node reports no speed until bytes moved for 0.5 s), peer connected or not."""
    model = TransferModel()
    offer = running()
    model.upsert(offer)
    model.upsert(dataclasses.replace(offer, state=api.TransferState.RUNNING))  # accepted
    assert model.starting("t")
    assert spoken(model, "t").endswith("0 B of 50.0 MB · starting…")
    model.upsert(running(state=api.TransferState.RUNNING, done_bytes=MB))  # bytes, no speed
    assert spoken(model, "t").endswith("1.00 MB of 50.0 MB · starting…")
    assert model.index(0).data(TransferRole.STARTING) is True
    measured = running(state=api.TransferState.RUNNING, done_bytes=3 * MB, speed_bps=4 * MB)
    model.upsert(measured)
    assert not model.starting("t")
    assert "4.00 MB/s" in spoken(model, "t")
    # the node reports 0 again without progress: the peer went away
    model.upsert(dataclasses.replace(measured, speed_bps=0.0))
    assert spoken(model, "t").endswith("3.00 MB of 50.0 MB · waiting for the peer")


def test_a_report_without_progress_means_it_waits_for_the_peer(qtbot: QtBot) -> None:
    """Accepted while the sender is away: the node's next report (no source has the
    blocks) shows no progress, so the card says it waits for the peer at once."""
    model = TransferModel()
    model.upsert(running())
    model.upsert(running(state=api.TransferState.RUNNING, done_bytes=2 * MB))
    model.upsert(running(state=api.TransferState.RUNNING, done_bytes=2 * MB))  # the same again
    assert not model.starting("t")
    assert spoken(model, "t").endswith("waiting for the peer")


@pytest.mark.asyncio
async def test_starting_ends_after_a_while_without_progress(
    qtbot: QtBot, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No report at all after the start (a peer gone before the node noticed): the card
    does not say "starting…" for good."""
    monkeypatch.setattr(transfer_model, "STARTING_SECONDS", 0.2)
    model = TransferModel()
    changed: list[int] = []
    model.dataChanged.connect(lambda top, _bottom: changed.append(top.row()))
    model.upsert(running(state=api.TransferState.RUNNING, done_bytes=MB))  # a snapshot row
    assert model.starting("t")
    await wait_for(lambda: not model.starting("t"))
    assert changed == [0]  # repainted when it changed
    assert spoken(model, "t").endswith("waiting for the peer")


# ------------------------------------------------------------------ offers not delivered


async def add_bob(session: GuiSession, friend: api.InitResult) -> api.Contact:
    contact = (await service_of(session).add_contact(api.AddContact(friend.whoami.invite))).contact
    await wait_for(lambda: window_of(session).contacts.row_of(contact.address) >= 0)
    return contact


@pytest.mark.asyncio
async def test_the_transfers_list_says_they_are_asked_only_once_the_offer_reached_them(
    session: GuiSession, friend: api.InitResult, tmp_path: Path
) -> None:
    """Found in the window: the file bubble said "They are asked when it reaches them"
    for an offer to an offline contact, the transfers list (Ctrl+J) "They are asked
    whether to accept it"."""
    bob = await add_bob(session, friend)
    window = window_of(session)
    window.open_conversation(bob.address)
    await wait_for(lambda: window.messages.contact == bob.address and not window.messages.loading)
    video = tmp_path / "video.bin"
    video.write_bytes(bytes(300_000))
    drop_files(window.conversation, [video])  # Bob is offline: the offer waits
    await wait_for(lambda: window.transfers.rowCount() == 1)
    transfer = window.transfers.transfer_at(0)
    dialog = window.show_transfers()
    model = dialog.list.model()
    assert isinstance(model, TransferModel)
    assert spoken(model, transfer.id).endswith("They are asked when it reaches them.")
    assert model.index(0).data(TransferRole.REACHED) is False

    service_of(session).publish(
        api.MessageStatusChanged(transfer.id, bob.address, api.MessageStatus.DELIVERED)
    )
    await wait_for(lambda: model.index(0).data(TransferRole.REACHED) is True)
    assert spoken(model, transfer.id).endswith("They are asked whether to accept it.")
    bubble = window.messages.index(window.messages.rowCount() - 1)
    assert bubble.data(MessageRole.TRANSFER) is not None
    assert str(bubble.data(Qt.ItemDataRole.AccessibleTextRole)).endswith(
        "They are asked whether to accept it."
    )


@pytest.mark.asyncio
async def test_delivery_of_waiting_offers_is_read_at_start(
    session: GuiSession,
    friend: api.InitResult,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """At start the list knows which offers reached the contact from their messages."""
    bob = await add_bob(session, friend)
    window = window_of(session)
    service = service_of(session)
    files = [tmp_path / "a.bin", tmp_path / "b.bin"]
    for path in files:
        path.write_bytes(bytes(200_000))
    shared = await service.share_files(api.ShareFiles(bob.address, [str(p) for p in files]))
    for n in range(5):  # later messages: the offers are not on the newest page of 3
        await service.send_message(api.SendMessage(bob.address, f"message {n}"))
    await wait_for(lambda: window.transfers.rowCount() == 2)
    store = service.store  # delivered while the window was closed: no event
    await store.call(store.messages.set_status, shared[0].id, api.MessageStatus.DELIVERED)
    monkeypatch.setattr(main_window, "OFFER_PAGE", 3)
    await window.load_transfers()  # as at start
    model = window.transfers
    assert model.reached(shared[0])
    assert not model.reached(shared[1])
    assert spoken(model, shared[0].id).endswith("They are asked whether to accept it.")


# ------------------------------------------------------------------ narrow cards


@pytest.mark.parametrize(
    ("outgoing", "state", "words"),
    [
        (True, api.TransferState.OFFERED, "Waiting for them to accept"),
        (False, api.TransferState.CANCELLED, "Cancelled by them"),
    ],
)
def test_a_narrow_card_keeps_the_state_whole_and_drops_the_size(
    qtbot: QtBot, outgoing: bool, state: api.TransferState, words: str
) -> None:
    """Found in the window: at the narrowest bubble (220 px) the summary read
    "212 MB · Waiting for them to…"."""
    view = QListView()
    qtbot.addWidget(view)
    fonts = CardFonts.from_base(view.font())
    transfer = running(outgoing=outgoing, state=state, size=212 * MB, ended_by="contact")
    narrow = layout_card(QRectF(0, 0, 220, card_height(fonts)), fonts, actions_for(transfer))
    assert summary_line(transfer, fonts.detail, narrow.summary.width()) == words
    wide = layout_card(QRectF(0, 0, 380, card_height(fonts)), fonts, actions_for(transfer))
    assert summary_line(transfer, fonts.detail, wide.summary.width()) == f"212 MB · {words}"


# ------------------------------------------------------------------ opening a file


@pytest.mark.asyncio
@pytest.mark.parametrize("status", [0, 3])
async def test_open_tells_the_user_when_no_application_takes_the_file(
    session: GuiSession,
    friend: api.InitResult,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    status: int,
) -> None:
    """Found in the window: with no application for the file (xdg-open exits 3, "no
    method available"), Open and Show in folder did nothing at all: Qt reports success
    once xdg-open has started."""
    opener = XdgOpen(tmp_path / "bin", status)
    monkeypatch.setenv("PATH", f"{opener.folder}:{os.environ['PATH']}")
    bob = await add_bob(session, friend)
    window = window_of(session)
    saved = tmp_path / "Downloads" / "notes.odt"
    saved.parent.mkdir()
    saved.write_bytes(b"x")
    done = running(
        contact=bob.address,
        state=api.TransferState.DONE,
        done_bytes=50 * MB,
        path=str(saved),
    )
    service_of(session).publish(api.TransferAdded(done))
    await wait_for(lambda: window.transfers.rowCount() == 1)
    dialog = window.show_transfers()
    told: list[str] = []  # what the status bar said (as the toast says it), in order
    window.statusBar().messageChanged.connect(told.append)
    dialog.delegate.transferActionRequested.emit(done.id, TransferAction.SHOW_IN_FOLDER)
    dialog.delegate.transferActionRequested.emit(done.id, TransferAction.OPEN)
    await wait_for(lambda: len(opener.opened()) == 2)
    assert sorted(opener.opened()) == sorted([str(saved.parent), str(saved)])  # both at once
    if status:
        # the two openers end in either order: each failure is told (the last one stays
        # in the status bar, which was the folder's in one CI run)
        expected = {
            f"No application could open {saved}.",
            f"No application could open {saved.parent}.",
        }
        await wait_for(lambda: expected <= set(told))
    else:
        await wait_for(lambda: not any(t.name == "xdg-open watcher" for t in threading.enumerate()))
        await asyncio.sleep(0.05)  # their exits, queued to the GUI thread, are handled
        assert not any("No application could open" in message for message in told)


def test_an_installers_build_opens_files_without_its_own_libraries(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A PyInstaller build sets LD_LIBRARY_PATH to its bundled libraries (keeping the
    user's in LD_LIBRARY_PATH_ORIG): `xdg-open` and the application it starts get the
    user's back, else they load our copies of libc's neighbours and may fail."""
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    monkeypatch.setenv("LD_LIBRARY_PATH", "/tmp/_MEI123:/opt/user/lib")
    monkeypatch.setenv("LD_LIBRARY_PATH_ORIG", "/opt/user/lib")
    env = system_environment()
    assert env["LD_LIBRARY_PATH"] == "/opt/user/lib" and "LD_LIBRARY_PATH_ORIG" not in env
    monkeypatch.delenv("LD_LIBRARY_PATH_ORIG")
    assert "LD_LIBRARY_PATH" not in system_environment()
    monkeypatch.setattr(sys, "frozen", False)
    assert system_environment()["LD_LIBRARY_PATH"] == "/tmp/_MEI123:/opt/user/lib"
