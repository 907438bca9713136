"""Render the screenshots in docs/screenshots/ from the real app on an X display.

    DISPLAY=:N python tests/e2e/make_screenshots.py [OUT_DIR] [--only transfers]

It makes throw-away profiles, fills a conversation (incoming messages are written
through the node's store and event bus, as the network layer will once it delivers),
opens the real window through `GuiSession`, and saves window grabs. The transfers shot
puts a done, a sending, a receiving and an offered file into the conversation through the node's
event bus (`MessageAdded` + `TransferAdded`, as the transfer engine publishes them).
`--only not-added-back` runs two real nodes on loopback: Alice writes to Bob, who has not
added her, and the window shows what his node told hers.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("PYTHON_KEYRING_BACKEND", "keyring.backends.fail.Keyring")

import qasync
from PySide6.QtWidgets import QApplication, QWidget

from app.gui.app import GuiSession, make_application
from app.gui.dialogs.first_run import FirstRunDialog
from app.gui.dialogs.invite import InviteDialog
from app.gui.dialogs.verify import VerifyDialog
from app.gui.theme import ThemeManager
from app.node import api

PASS = "correct horse battery"
DAY = 24 * 3600
CHAT = [
    (False, 1.2 * DAY, "Hey! I scanned your invite, it worked first time."),
    (True, 1.2 * DAY - 60, "Great — so we're talking with no server in between at all?"),
    (False, 1.2 * DAY - 120, "Nothing but the two of us. The DHT only helps us find each other."),
    (True, 3 * 3600, "Let's compare safety numbers when we meet tomorrow."),
    (False, 3 * 3600 - 300, "Deal. Bring the scrambled eggs."),
    (
        True,
        2 * 3600,
        "Long messages wrap nicely too: the bubble grows to about two thirds "
        "of the width and the rest of the text flows onto the next lines, with the time and the "
        "delivery ticks tucked into the corner.",
    ),
    (True, 60, "See you at 10!"),
]


async def populate(root: Path) -> api.InitResult:
    alice = root / "alice"
    api.init_profile(alice, "Alice Liddell", PASS)
    bob = api.init_profile(root / "bob", "Bob Builder", PASS)
    carol = api.init_profile(root / "carol", "Carol Danvers", PASS)
    dan = api.init_profile(root / "dan", "Dan Brown", PASS)
    async with api.open_node(alice, lambda: PASS) as node:
        for who in (bob, carol, dan):
            await node.add_contact(api.AddContact(who.whoami.invite))
        await node.verify_contact(api.VerifyContact("Carol Danvers", confirm=True))
        await node.send_message(api.SendMessage("Carol Danvers", "Slides are in the usual place."))
    return bob


async def deliver(
    session: GuiSession,
    contact: str,
    outgoing: bool,
    ago: float,
    text: str,
    status: api.MessageStatus,
) -> None:
    service = session.node
    store = service.store  # type: ignore[union-attr]
    me = (await service.whoami()).address  # type: ignore[union-attr]
    message = api.Message(
        id=os.urandom(16).hex(),
        contact=contact,
        sender=me if outgoing else contact,
        outgoing=outgoing,
        text=text,
        time=time.time() - ago,
        status=status,
    )
    await store.call(store.messages.add, message)
    service._bus.publish(api.MessageAdded(message))  # type: ignore[union-attr]


def file_message(transfer: api.Transfer, me: str) -> api.Message:
    return api.Message(
        id=os.urandom(16).hex(),
        contact=transfer.contact,
        sender=me if transfer.outgoing else transfer.contact,
        outgoing=transfer.outgoing,
        text=transfer.name,
        time=transfer.time,
        status=api.MessageStatus.DELIVERED if transfer.outgoing else api.MessageStatus.RECEIVED,
        transfer=transfer.id,
    )


async def show_transfers(session: GuiSession, bob: str) -> None:
    """A received file, one being sent, one being received (it can be paused) and one
    offered to us, in Bob's conversation."""
    service = session.node
    me = (await service.whoami()).address  # type: ignore[union-attr]
    now = time.time()
    transfers = [
        api.Transfer(
            id="shot-done",
            contact=bob,
            outgoing=False,
            name="scrambled-eggs-recipe.jpg",
            size=2_431_877,
            done_bytes=2_431_877,
            state=api.TransferState.DONE,
            path="/home/alice/Downloads/scrambled-eggs-recipe.jpg",
            mime="image/jpeg",
            time=now - 240,
        ),
        api.Transfer(
            id="shot-running",
            contact=bob,
            outgoing=True,
            name="slides-final.pdf",
            size=48_200_000,
            done_bytes=15_100_000,
            state=api.TransferState.RUNNING,
            path="/home/alice/Documents/slides-final.pdf",
            mime="application/pdf",
            time=now - 30,
            speed_bps=6_400_000,
        ),
        api.Transfer(
            id="shot-receiving",
            contact=bob,
            outgoing=False,
            name="field-recording.flac",
            size=96_300_000,
            done_bytes=61_800_000,
            state=api.TransferState.RUNNING,
            path=None,
            mime="audio/flac",
            time=now - 15,
            speed_bps=11_200_000,
        ),
        api.Transfer(
            id="shot-offered",
            contact=bob,
            outgoing=False,
            name="holiday-photos.zip",
            size=212_500_000,
            done_bytes=0,
            state=api.TransferState.OFFERED,
            path=None,
            mime="application/zip",
            time=now - 5,
        ),
    ]
    for transfer in transfers:
        service.publish(api.TransferAdded(transfer))  # type: ignore[union-attr]
        service.publish(api.MessageAdded(file_message(transfer, me)))  # type: ignore[union-attr]


def save(widget: QWidget, path: Path) -> None:
    QApplication.processEvents()
    widget.grab().save(str(path))
    print("saved", path)


async def main(out: Path, app: QApplication, themes: ThemeManager, only: str | None) -> None:
    out.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="eggs-shots-"))
    if only == "transfers":
        await transfers_shot(root, out, themes)
        return
    if only == "not-added-back":
        await not_added_back_shot(root, out, themes)
        return
    first = FirstRunDialog(root / "new")
    first.name.setText("Alice Liddell")
    first.show()
    await asyncio.sleep(0.3)
    save(first, out / "first-run.png")
    first.close()

    bob = await populate(root)
    session = GuiSession(api.DaemonOptions(root / "alice", listen="127.0.0.1:0", lan=False), themes)
    assert await session.attempt_unlock(PASS) is None
    window = await session.start_window()
    window.resize(1120, 720)
    statuses = [
        api.MessageStatus.READ,
        api.MessageStatus.DELIVERED,
        api.MessageStatus.SENT,
        api.MessageStatus.QUEUED,
    ]
    outgoing_seen = 0
    for outgoing, ago, text in CHAT:
        status = api.MessageStatus.RECEIVED
        if outgoing:
            status = statuses[min(outgoing_seen, 1)] if ago > 3600 else statuses[2 + (ago < 120)]
            outgoing_seen += 1
        await deliver(session, bob.whoami.address, outgoing, ago, text, status)
    await deliver(
        session,
        window.contacts.contact_at(2).address,
        False,
        200,
        "Did you see the new build?",
        api.MessageStatus.RECEIVED,
    )
    await deliver(
        session,
        window.contacts.contact_at(2).address,
        False,
        100,
        "It has a dark theme now",
        api.MessageStatus.RECEIVED,
    )
    window.open_conversation(bob.whoami.address)
    await asyncio.sleep(1.0)
    save(window, out / "main-window.png")
    themes.apply("dark")
    window._restyle()
    await asyncio.sleep(0.5)
    save(window, out / "main-window-dark.png")
    themes.apply("light")
    window._restyle()
    assert session.bridge is not None
    verify = VerifyDialog(session.bridge, bob.whoami.address, window)
    verify.load()
    verify.show()
    await asyncio.sleep(1.0)
    save(verify, out / "verify.png")
    verify.close()
    invite = InviteDialog(await session.bridge.whoami(), window)
    invite.show()
    await asyncio.sleep(0.3)
    save(invite, out / "invite.png")
    invite.close()
    await session.shutdown()
    await transfers_shot(Path(tempfile.mkdtemp(prefix="eggs-shots-")), out, themes)


async def transfers_shot(root: Path, out: Path, themes: ThemeManager) -> None:
    """The conversation with Bob holding a received, a running and an offered file, then
    the transfers list (Ctrl+J)."""
    bob = await populate(root)
    session = GuiSession(api.DaemonOptions(root / "alice", listen="127.0.0.1:0", lan=False), themes)
    assert await session.attempt_unlock(PASS) is None
    window = await session.start_window()
    window.resize(1120, 720)
    for outgoing, ago, text in CHAT[-3:]:
        status = api.MessageStatus.READ if outgoing else api.MessageStatus.RECEIVED
        await deliver(session, bob.whoami.address, outgoing, ago + 600, text, status)
    window.open_conversation(bob.whoami.address)
    await asyncio.sleep(0.5)
    await show_transfers(session, bob.whoami.address)
    await asyncio.sleep(1.0)
    window.toast.hide()  # a start-up notice must not cover the conversation
    window.conversation.toast.hide()
    window.statusBar().clearMessage()
    save(window, out / "transfers.png")
    dialog = window.show_transfers()
    dialog.resize(640, 640)
    await asyncio.sleep(0.5)
    save(dialog, out / "transfers-list.png")
    dialog.close()
    await session.shutdown()


async def not_added_back_shot(root: Path, out: Path, themes: ThemeManager) -> None:
    """Alice wrote to Bob, who has not added her: two real nodes on loopback (Bob hosted
    beside Alice's window); his node tells hers, and the row and the banner say so."""
    os.environ["SCRAMBLED_EGGS_ICE_LOOPBACK"] = "1"
    api.init_profile(root / "alice", "Alice Liddell", PASS)
    api.init_profile(root / "bob", "Bob Builder", PASS)
    bob_options = api.DaemonOptions(root / "bob", listen="127.0.0.1:0", lan=False)
    async with api.host_node(bob_options, lambda: PASS) as bob:
        session = GuiSession(
            api.DaemonOptions(root / "alice", listen="127.0.0.1:0", lan=False), themes
        )
        assert await session.attempt_unlock(PASS) is None
        window = await session.start_window()
        window.resize(1120, 720)
        assert session.node is not None
        alice = session.node
        added = await alice.add_contact(api.AddContact((await bob.whoami()).invite))
        address = added.contact.address
        window.open_conversation(address)
        await alice.send_message(api.SendMessage(address, "Hi Bob, it's Alice from the meetup!"))
        for _ in range(150):
            if window.conversation.banner_label.text().count("has not added you yet"):
                break
            await asyncio.sleep(0.2)
        assert session.bridge is not None
        session.bridge.refresh_status()  # the header's presence now, not at the next poll
        await asyncio.sleep(2.0)
        window.toast.hide()
        window.conversation.toast.hide()
        window.statusBar().clearMessage()
        save(window, out / "not-added-back.png")
        await session.shutdown()


if __name__ == "__main__":
    application = make_application(sys.argv)
    manager = ThemeManager(application)
    manager.apply("light")
    loop = qasync.QEventLoop(application)
    asyncio.set_event_loop(loop)
    arguments = [a for a in sys.argv[1:] if not a.startswith("--only")]
    selected = sys.argv[sys.argv.index("--only") + 1] if "--only" in sys.argv else None
    arguments = [a for a in arguments if a != selected]
    target = Path(arguments[0]) if arguments else Path("docs/screenshots")
    with loop:
        loop.run_until_complete(main(target, application, manager, selected))
