"""A file message's name is the sender's own text (the transfer's name comes from the
file and is sanitised by the node): shown as is, "invoice\\u202efdp.exe" read
"invoiceexe.pdf" in the contact list, the search results and the notification."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from pathlib import Path
from typing import Any

import pytest
from gui_helpers import PASSPHRASE, wait_for
from PySide6.QtCore import QRect
from PySide6.QtGui import QColor, QFont, QImage, QPainter, QTextLayout
from PySide6.QtWidgets import QStyleOptionViewItem
from pytestqt.qtbot import QtBot

from app.gui.app import GuiSession
from app.gui.main_window import MainWindow
from app.gui.theme import colors
from app.gui.views.contact_delegate import preview_parts, preview_text
from app.gui.views.painting import grapheme_prefix, short_time
from app.gui.views.peer_text import isolated, one_line_name
from app.gui.views.search_results import search_result_item
from app.gui.views.transfer_delegate import direction_text
from app.node import api

SPOOF = "invoice\u202efdp.exe"  # shows as "invoiceexe.pdf"


def test_a_peer_given_name_loses_what_reorders_hides_or_breaks_it() -> None:
    assert one_line_name(SPOOF) == "invoicefdp.exe"
    assert one_line_name("re\u200bport\u2066.pdf\u2069") == "report.pdf"
    assert one_line_name(" two\nlines\tand\u2028more ") == "two lines and more"
    assert one_line_name("שלום.txt") == "שלום.txt"  # right-to-left letters stay
    assert one_line_name("cafe\u0301 \U0001f468\u200d\U0001f469.png") == (
        "cafe\u0301 \U0001f468\U0001f469.png"  # combining marks stay; a ZWJ is format
    )


def file_message(contact: str, text: str, transfer: str = "tr-x") -> api.Message:
    return api.Message(
        id=transfer,
        contact=contact,
        sender=contact,
        outgoing=False,
        text=text,
        time=time.time(),
        status=api.MessageStatus.RECEIVED,
        transfer=transfer,
    )


def test_the_contact_list_and_search_show_the_file_name_without_overrides(qtbot: QtBot) -> None:
    message = file_message("bob", SPOOF)
    assert preview_text(message) == "File: invoicefdp.exe"
    item = search_result_item(message, "Bob", "invoice")
    assert "\u202e" not in item.text()
    assert item.text().endswith("File: invoicefdp.exe")


@pytest.mark.asyncio
async def test_the_notification_names_the_file_the_transfer_carries(
    session: GuiSession, friend: api.InitResult
) -> None:
    window = session.window
    assert isinstance(window, MainWindow)
    service: Any = session.node
    bob = (await service.add_contact(api.AddContact(friend.whoami.invite))).contact
    await wait_for(lambda: window.contacts.row_of(bob.address) >= 0)
    claimed = file_message(bob.address, "holiday.jpg")  # the sender's text
    assert window.notification(claimed) == (bob.name, "Sent you a file: holiday.jpg")
    actual = api.Transfer(
        id="tr-x",
        contact=bob.address,
        outgoing=False,
        name="holiday.jpg.exe",  # from the file's manifest, sanitised by the node
        size=1000,
        done_bytes=0,
        state=api.TransferState.OFFERED,
        path=None,
        mime="application/x-msdownload",
        time=time.time(),
    )
    service.publish(api.TransferAdded(actual))
    await wait_for(lambda: window.transfers.rowCount() == 1)
    assert window.notification(claimed) == (bob.name, "Sent you a file: holiday.jpg.exe")
    spoofed = file_message(bob.address, SPOOF, transfer="tr-unknown")
    assert window.notification(spoofed)[1] == "Sent you a file: invoicefdp.exe"


HEBREW = "עברית שלום"


def visual_x(text: str, index: int) -> float:
    """Where character `index` of `text` is drawn on one left-to-right line."""
    layout = QTextLayout(text, QFont())
    layout.beginLayout()
    line = layout.createLine()
    line.setLineWidth(10_000)
    layout.endLayout()
    return line.cursorToX(index)[0]


def test_a_right_to_left_name_does_not_pull_the_time_into_it(qtbot: QtBot) -> None:
    """Found in the transfers list: "From עברית שלום · 22:14" was drawn as
    "From 22:14 · עברית שלום" (digits after a right-to-left name join its run)."""
    transfer = api.Transfer(
        id="t",
        contact="c",
        outgoing=False,
        name="a.txt",
        size=1,
        done_bytes=0,
        state=api.TransferState.OFFERED,
        path=None,
        mime="text/plain",
        time=time.time(),
    )
    line = direction_text(transfer, HEBREW)
    clock = short_time(transfer.time)
    assert visual_x(line, line.index(clock)) > max(
        visual_x(line, line.index(HEBREW) + i) for i in range(len(HEBREW))
    )
    assert isolated("Bob") == "Bob"  # left-to-right names are left as they are
    assert isolated(HEBREW) == f"\u2068{HEBREW}\u2069"


def test_the_apps_own_words_in_a_preview_are_apart_from_what_was_written() -> None:
    """A contact's message "You: I agree to pay" read, in the contact list, exactly like
    one we sent."""
    theirs = dataclasses.replace(file_message("bob", "You: I agree to pay"), transfer=None)
    ours = dataclasses.replace(theirs, outgoing=True, text="I agree to pay")
    assert preview_parts(theirs) == ("", "You: I agree to pay")
    assert preview_parts(ours) == ("You: ", "I agree to pay")
    assert preview_parts(file_message("bob", SPOOF)) == ("File: ", "invoicefdp.exe")


@pytest.mark.asyncio
async def test_a_contacts_you_prefix_is_not_drawn_as_the_apps(
    session: GuiSession, friend: api.InitResult
) -> None:
    window = session.window
    assert isinstance(window, MainWindow)
    service: Any = session.node
    bob = (await service.add_contact(api.AddContact(friend.whoami.invite))).contact
    await wait_for(lambda: window.contacts.row_of(bob.address) >= 0)
    row = window.contacts.row_of(bob.address)
    muted = QColor(colors().muted).lightness()
    assert QColor(colors().text).lightness() < muted - 40  # the light theme

    def darkest(message: api.Message) -> int:
        window.contacts.set_last(bob.address, message)
        view = window.contact_list
        index = view.model().index(row, 0)
        option = QStyleOptionViewItem()
        option.initFrom(view)
        option.rect = QRect(0, 0, view.viewport().width(), 64)
        image = QImage(option.rect.width(), 64, QImage.Format.Format_ARGB32)
        image.fill(QColor(colors().base))
        painter = QPainter(image)
        view.itemDelegate().paint(painter, option, index)
        painter.end()
        # the bottom line's first word, right of the avatar: its darkest pixel
        return min(
            QColor(image.pixel(x, y)).lightness() for y in range(36, 56) for x in range(70, 100)
        )

    theirs = dataclasses.replace(file_message(bob.address, "You: I agree"), transfer=None)
    ours = dataclasses.replace(theirs, outgoing=True, text="I agree")
    assert darkest(ours) < muted - 20  # "You:" in the text colour
    assert darkest(theirs) >= muted - 5  # their "You:" as muted as the rest


@pytest.mark.asyncio
async def test_a_name_of_64_letters_without_a_space_fits_a_narrow_window(
    session: GuiSession, tmp_path: Path
) -> None:
    """Found in the window: such a name (a peer chooses it) cut the conversation's title
    off mid-letter and made the banner's sentence wider than the window, its first and
    last lines cut off; the window asked for 977 px."""
    window = session.window
    assert isinstance(window, MainWindow)
    service: Any = session.node
    name = "Averyveryverylongnamewithnospacesatall" + "x" * 26
    peer = api.init_profile(tmp_path / "long", name, PASSPHRASE)
    contact = (await service.add_contact(api.AddContact(peer.whoami.invite))).contact
    await wait_for(lambda: window.contacts.row_of(contact.address) >= 0)
    window.open_conversation(contact.address)
    window.resize(640, 600)
    await wait_for(lambda: window.conversation.contact is not None)
    await asyncio.sleep(0.1)
    pane = window.conversation
    assert pane._title.full_text() == name
    assert pane._title.text().endswith("…")
    label = pane.banner_label
    assert label.minimumSizeHint().width() < 300
    await wait_for(lambda: label.height() >= label.heightForWidth(label.width()))
    assert (
        label.text()
        .replace("\u200b", "")
        .startswith(f"Not verified yet: compare safety numbers with {name} in person")
    )
    assert window.minimumSizeHint().width() <= 700


FAMILY = "\U0001f468\u200d\U0001f469\u200d\U0001f467\u200d\U0001f466"  # one grapheme


@pytest.mark.asyncio
async def test_a_long_notification_is_cut_between_graphemes(
    session: GuiSession, friend: api.InitResult
) -> None:
    """The notification's text was cut at 119 characters: a family emoji (four people
    joined by zero-width joiners) across the cut showed as a family of two or three."""
    window = session.window
    assert isinstance(window, MainWindow)
    service: Any = session.node
    bob = (await service.add_contact(api.AddContact(friend.whoami.invite))).contact
    await wait_for(lambda: window.contacts.row_of(bob.address) >= 0)
    said = dataclasses.replace(file_message(bob.address, "ab" + FAMILY * 30), transfer=None)
    _, preview = window.notification(said)
    assert preview == "ab" + FAMILY * 16 + "…"  # 2 + 16 * 7 = 114 characters; 121 is over
    assert grapheme_prefix("ab" + FAMILY, 4) == "ab"
    assert grapheme_prefix("ab" + FAMILY, 9) == "ab" + FAMILY
    assert grapheme_prefix("plain text", 5) == "plain"
