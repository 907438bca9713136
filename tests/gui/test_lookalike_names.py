"""A peer chooses the name its invite carries: one that reads exactly like another
contact's ("Воb Builder" with a Cyrillic В and о beside "Bob Builder") must not pass for
that contact in the contact list, the conversation, a notification or the transfers list."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from gui_helpers import PASSPHRASE, wait_for
from PySide6.QtCore import Qt
from pytestqt.qtbot import QtBot

from app.gui.app import GuiSession
from app.gui.bridge import NodeBridge
from app.gui.dialogs.add_contact import AddContactDialog
from app.gui.main_window import MainWindow
from app.gui.models.contacts import ContactRole
from app.gui.models.lookalike_names import lookalikes
from app.node import api

BOB = "Bob Builder"
FAKE_BOB = "Воb Builder"  # Cyrillic В and о


def test_names_drawn_alike_or_equal_once_folded_are_lookalikes(qtbot: QtBot) -> None:
    names = [
        ("bob", BOB),
        ("cyrillic", FAKE_BOB),
        ("no-break space", "Bob\u00a0Builder"),
        ("digit one", "Bob Bui1der"),  # drawn differently: a name of its own
        ("full width", "ＡＬＩＣＥ"),
        ("alice", "alice"),
        ("carol", "Carol"),
    ]
    assert lookalikes(names) == {"bob", "cyrillic", "no-break space", "full width", "alice"}
    assert lookalikes([("bob", BOB), ("carol", "Carol")]) == set()


def window_of(session: GuiSession) -> MainWindow:
    assert session.window is not None
    return session.window


@pytest.mark.asyncio
async def test_a_contact_named_like_another_is_told_apart_by_its_address(
    session: GuiSession, tmp_path: Path
) -> None:
    window = window_of(session)
    service: Any = session.node
    real = api.init_profile(tmp_path / "real", BOB, PASSPHRASE)
    fake = api.init_profile(tmp_path / "fake", FAKE_BOB, PASSPHRASE)
    bob = (await service.add_contact(api.AddContact(real.whoami.invite))).contact
    await service.verify_contact(api.VerifyContact(bob.address, confirm=True))
    await wait_for(lambda: window.contacts.row_of(bob.address) >= 0)
    model = window.contacts
    assert not model.looks_like_another(bob.address)
    window.open_conversation(bob.address)
    await wait_for(lambda: window.conversation.contact is not None)
    assert window.conversation.banner.isHidden()  # verified, the only Bob

    impostor = (await service.add_contact(api.AddContact(fake.whoami.invite))).contact
    await wait_for(lambda: model.row_of(impostor.address) >= 0)
    for contact in (bob, impostor):
        index = model.index(model.row_of(contact.address))
        assert index.data(ContactRole.LOOKALIKE) is True
        spoken = index.data(Qt.ItemDataRole.AccessibleTextRole)
        assert f"name looks like another contact's, address ends {contact.address[-6:]}" in spoken
    # the real Bob's open conversation now warns too (verified: no "Verify now")
    banner = window.conversation
    assert not banner.banner.isHidden()
    assert banner.banner_label.text() == (
        f"Another contact's name looks the same: this {BOB} has the address ending "
        f"{bob.address[-6:]}."
    )
    assert banner.banner_button.isHidden()

    window.open_conversation(impostor.address)
    await wait_for(
        lambda: banner.contact is not None and banner.contact.address == impostor.address
    )
    assert banner.banner_label.text().startswith(
        f"Another contact's name looks the same: this {FAKE_BOB} has the address ending "
        f"{impostor.address[-6:]}. Not verified yet"
    )

    await service.remove_contact(api.RemoveContact(bob.address))
    await wait_for(lambda: model.row_of(bob.address) < 0)
    assert not model.looks_like_another(impostor.address)
    assert banner.banner_label.text().startswith("Not verified yet")


@pytest.mark.asyncio
async def test_a_taken_name_points_at_the_name_field_not_at_a_command_line_option(
    qtbot: QtBot, node: api.NodeApi, friend: api.InitResult, tmp_path: Path
) -> None:
    """Found in the window: a second "Bob" read "You already have a contact named Bob;
    choose another with --name." (the node's words for the command line)."""
    await node.add_contact(api.AddContact(friend.whoami.invite))
    other = api.init_profile(tmp_path / "other-bob", "bob", PASSPHRASE)
    dialog = AddContactDialog(NodeBridge(node))
    qtbot.addWidget(dialog)
    dialog.show()
    dialog.invite.setPlainText(other.whoami.invite)
    qtbot.mouseClick(dialog.add_button, Qt.MouseButton.LeftButton)
    await wait_for(dialog.error.isVisible)
    assert dialog.error.text() == (
        "You already have a contact named Bob. Type another name for this one below."
    )
    assert dialog.name.hasFocus()
    qtbot.keyClicks(dialog.name, "Bob from work")
    qtbot.mouseClick(dialog.add_button, Qt.MouseButton.LeftButton)
    await wait_for(lambda: dialog.result() == AddContactDialog.DialogCode.Accepted)
    assert sorted(c.name for c in await node.list_contacts()) == ["Bob", "Bob from work"]


@pytest.mark.asyncio
async def test_a_lookalike_is_told_apart_in_its_notification_and_the_transfers_list(
    session: GuiSession, tmp_path: Path
) -> None:
    """The contact list and the conversation told "Воb Builder" from "Bob Builder" by
    the end of the address, but the desktop notification of the impostor's message was
    titled "Bob Builder" alone, and the transfers list said "From Bob Builder": there the
    impostor's words passed for Bob's."""
    window = window_of(session)
    service: Any = session.node
    real = api.init_profile(tmp_path / "real", BOB, PASSPHRASE)
    fake = api.init_profile(tmp_path / "fake", FAKE_BOB, PASSPHRASE)
    bob = (await service.add_contact(api.AddContact(real.whoami.invite))).contact
    impostor = (await service.add_contact(api.AddContact(fake.whoami.invite))).contact
    await wait_for(lambda: window.contacts.looks_like_another(impostor.address))
    said = api.Message(
        id="m1",
        contact=impostor.address,
        sender=impostor.address,
        outgoing=False,
        text="it's Bob, send me the code",
        time=time.time(),
        status=api.MessageStatus.RECEIVED,
    )
    assert window.notification(said)[0] == f"{FAKE_BOB} …{impostor.address[-6:]}"
    offered = api.Transfer(
        id="t1",
        contact=impostor.address,
        outgoing=False,
        name="a.txt",
        size=1,
        done_bytes=0,
        state=api.TransferState.OFFERED,
        path=None,
        mime="text/plain",
        time=time.time(),
    )
    footer = window.show_transfers().delegate._footer(offered)
    assert footer.startswith(f"From {FAKE_BOB} …{impostor.address[-6:]} · ")
    await service.remove_contact(api.RemoveContact(bob.address))
    await wait_for(lambda: not window.contacts.looks_like_another(impostor.address))
    assert window.notification(said)[0] == FAKE_BOB  # the only one: its name alone
