"""The GUI's only door to the node: node events become Qt signals, and widgets ask the
node for things through typed coroutines or fire-and-forget slots.

Every failure is turned into a sentence for the user in `describe_error`, the one place
that maps errors to words; the GUI never shows a traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from PySide6.QtCore import QCoreApplication, QObject, QTimer, Signal

from app.gui.asyncqt import async_slot
from app.node.api import (
    AcceptTransfer,
    AddContact,
    AddedBackChanged,
    CancelTransfer,
    ChangePassphrase,
    ClockAlert,
    Contact,
    ContactAdded,
    ContactRemoved,
    ContactRenamed,
    ContactVerified,
    ListMessages,
    ListTransfers,
    MarkRead,
    Message,
    MessageAdded,
    MessageStatusChanged,
    NodeApi,
    NodeError,
    NodeEvent,
    NodeStopping,
    PauseTransfer,
    Peer,
    RemoveContact,
    RenameContact,
    RetryTransfer,
    SaveDraft,
    SearchMessages,
    SecurityAlert,
    SendMessage,
    Settings,
    SettingsChanged,
    SetTyping,
    ShareFiles,
    Status,
    StorageAlert,
    Transfer,
    TransferAdded,
    TransferChanged,
    TypingChanged,
    UpdateSettings,
    Verification,
    VerifyContact,
    Whoami,
    left_out_of_shares,
    left_out_sentence,
)

log = logging.getLogger(__name__)
T = TypeVar("T")
STATUS_POLL_MS = 3000


def _save_draft(command: SaveDraft, node: NodeApi) -> Awaitable[None]:
    return node.save_draft(command)


def _mark_read(command: MarkRead, node: NodeApi) -> Awaitable[None]:
    return node.mark_read(command)


DRAFT_FLUSH_TIMEOUT = 3.0
"""How long quitting waits for drafts still being stored."""
TYPING_THROTTLE = 3.5
"""At most one "typing" signal per contact in this many seconds: the node's 3 s plus a
margin, so the node never drops a refresh (its receiver expires "typing" after 6 s)."""


def _tr(text: str) -> str:
    return QCoreApplication.translate("NodeBridge", text)


def describe_error(exc: BaseException) -> str:
    """A sentence for the user about `exc`. Node errors already carry one."""
    if isinstance(exc, NodeError):
        return str(exc) or _tr("The node could not do that.")
    if isinstance(exc, PermissionError):
        return _tr("The app is not allowed to use a file it needs: {0}").format(exc.filename or exc)
    if isinstance(exc, OSError):
        return _tr("A file or network operation failed: {0}").format(exc.strerror or exc)
    log.error("unexpected error in the GUI", exc_info=exc)
    return _tr("Something went wrong inside the app. Details were written to the log.")


class ActionFailed(Exception):
    """A node request failed; `str()` is the sentence to show the user."""


class NodeBridge(QObject):
    """Turns `NodeApi.events()` into Qt signals and runs `NodeApi` coroutines for widgets."""

    contactAdded = Signal(object)  # Contact
    contactRemoved = Signal(object)  # Contact
    contactVerified = Signal(object)  # Contact
    contactChanged = Signal(object)  # Contact (e.g. flagged: its key changed)
    securityAlert = Signal(str, str, str)  # contact address, kind, sentence for the user
    messageAdded = Signal(object, object)  # Message, id of the message it goes before or None
    messageStatusChanged = Signal(object, str, object)  # ids (tuple), contact, MessageStatus
    typingChanged = Signal(str, bool)  # contact address, whether they are typing to us
    settingsChanged = Signal(object)  # Settings
    statusUpdated = Signal(object)  # Status
    peersUpdated = Signal(list)  # list[Peer]: every peer the transport knows, in one poll
    nodeStopped = Signal(str)  # reason
    errorOccurred = Signal(str)  # a sentence for the user
    sendFailed = Signal(str, str)  # contact address, the text that was not sent
    notice = Signal(str)  # an informational sentence for the user
    shareRequested = Signal(str, list)  # contact address, local file paths (as str)
    transferAdded = Signal(object)  # Transfer: shared by us or offered to us
    transferChanged = Signal(object)  # Transfer: progressed or changed state

    def __init__(self, node: NodeApi | None, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._node = node
        self._pump: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Future[None]] = set()
        self._status_timer = QTimer(self)
        self._status_timer.setInterval(STATUS_POLL_MS)
        self._status_timer.timeout.connect(self.refresh_status)
        self.last_status: Status | None = None
        self.last_peers: list[Peer] = []
        self._typing_at: dict[str, float] = {}
        self._reading: dict[str, bool] = {}  # address -> asked again while a mark ran
        self._read_up_to: dict[str, str | None] = {}  # address -> the bound to ask next
        self._drafting: dict[str, str] = {}  # address -> the draft text still to store
        self._draft_writers: dict[str, asyncio.Task[None]] = {}

    # ------------------------------------------------------------------ lifecycle

    @property
    def ready(self) -> bool:
        """True once a running node is attached."""
        return self._node is not None

    def attach(self, node: NodeApi) -> None:
        """Use `node` from now on (the window may be shown while the node still starts)."""
        self._node = node

    def _running(self) -> NodeApi:
        if self._node is None:
            raise ActionFailed(_tr("The node is still starting; try again in a moment."))
        return self._node

    async def start(self) -> None:
        """Subscribe to node events and start polling the status."""
        self._running()
        if self._pump is None:
            self._pump = asyncio.create_task(self._pump_events(), name="gui-event-pump")
            await asyncio.sleep(0)  # let the subscription register before anything happens
        self._status_timer.start()
        self.refresh_status()

    async def stop(self) -> None:
        """Stop listening (before the node goes away)."""
        self._status_timer.stop()
        if self._pump is not None:
            self._pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pump
            self._pump = None

    async def _pump_events(self) -> None:
        try:
            async for event in self._running().events():
                self._dispatch(event)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the node's fan-out failed: tell the user, keep the UI up
            self.errorOccurred.emit(describe_error(exc))

    def _dispatch(self, event: NodeEvent) -> None:
        if isinstance(event, ContactAdded):
            self.contactAdded.emit(event.contact)
        elif isinstance(event, ContactRemoved):
            self.contactRemoved.emit(event.contact)
        elif isinstance(event, ContactVerified):
            self.contactVerified.emit(event.contact)
        elif isinstance(event, ContactRenamed):
            self.contactChanged.emit(event.contact)
        elif isinstance(event, MessageAdded):
            self.messageAdded.emit(event.message, event.before)
        elif isinstance(event, MessageStatusChanged):
            self.messageStatusChanged.emit(event.ids, event.contact, event.status)
        elif isinstance(event, TypingChanged):
            self.typingChanged.emit(event.contact, event.typing)
        elif isinstance(event, SettingsChanged):
            self.settingsChanged.emit(event.settings)
        elif isinstance(event, SecurityAlert):
            self.securityAlert.emit(event.contact, event.kind, event.detail)
            self._refresh_later(event.contact)
        elif isinstance(event, AddedBackChanged):  # the row and the header say it
            self._refresh_later(event.contact)
        elif isinstance(event, TransferAdded):
            self.transferAdded.emit(event.transfer)
        elif isinstance(event, TransferChanged):
            self.transferChanged.emit(event.transfer)
        elif isinstance(event, StorageAlert | ClockAlert):  # the status poll shows the rest
            if event.resolved:
                self.notice.emit(event.detail)
            else:
                self.errorOccurred.emit(event.detail)
        elif isinstance(event, NodeStopping):
            self.nodeStopped.emit(event.reason)

    def _refresh_later(self, address: str) -> None:
        refresh = asyncio.ensure_future(self._refresh_contact(address))
        self._tasks.add(refresh)
        refresh.add_done_callback(self._tasks.discard)

    async def _refresh_contact(self, address: str) -> None:
        """Re-read one contact after an alert changed its state (e.g. `key_changed`)."""
        try:
            contacts = await self._running().list_contacts()
        except Exception:  # the node is going away; the next start shows the state
            return
        for contact in contacts:
            if contact.address == address:
                self.contactChanged.emit(contact)

    # ------------------------------------------------------------------ requests

    async def _ask(self, request: Callable[[NodeApi], Awaitable[T]]) -> T:
        node = self._running()
        try:
            return await request(node)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            raise ActionFailed(describe_error(exc)) from exc

    async def whoami(self) -> Whoami:
        """Our own identity and invite link."""
        return await self._ask(lambda n: n.whoami())

    async def status(self) -> Status:
        """DHT peers and endpoints."""
        return await self._ask(lambda n: n.status())

    async def contacts(self) -> list[Contact]:
        """The address book."""
        return await self._ask(lambda n: n.list_contacts())

    async def add_contact(self, invite_or_address: str, name: str | None) -> Contact:
        """Add a contact from an invite link or an address."""
        added = await self._ask(
            lambda n: n.add_contact(AddContact(invite_or_address, name or None))
        )
        return added.contact

    async def remove_contact(self, address: str) -> Contact:
        """Remove a contact."""
        return await self._ask(lambda n: n.remove_contact(RemoveContact(address)))

    async def rename_contact(self, address: str, name: str) -> Contact:
        """Give a contact another name."""
        return await self._ask(lambda n: n.rename_contact(RenameContact(address, name)))

    async def verification(self, address: str, confirm: bool = False) -> Verification:
        """The safety number with a contact; `confirm=True` marks them verified."""
        return await self._ask(lambda n: n.verify_contact(VerifyContact(address, confirm)))

    async def send(self, address: str, text: str) -> Message:
        """Queue a message (it arrives in the view through `messageAdded`)."""
        return await self._ask(lambda n: n.send_message(SendMessage(address, text)))

    async def messages(self, address: str, before: str | None, limit: int) -> list[Message]:
        """A page of history, newest last."""
        return await self._ask(lambda n: n.list_messages(ListMessages(address, before, limit)))

    async def last_messages(self) -> list[Message]:
        """Each contact's newest message (contacts without any have none)."""
        return await self._ask(lambda n: n.last_messages())

    async def search(self, text: str) -> list[Message]:
        """Messages containing `text`, newest first."""
        return await self._ask(lambda n: n.search_messages(SearchMessages(text)))

    async def settings(self) -> Settings:
        """The current settings."""
        return await self._ask(lambda n: n.get_settings())

    async def update_settings(self, change: UpdateSettings) -> Settings:
        """Persist changed settings."""
        return await self._ask(lambda n: n.update_settings(change))

    async def change_passphrase(self, new_passphrase: str, current: str | None = None) -> None:
        """Protect the profile with a new passphrase (`current`: the one it has, if any)."""
        command = ChangePassphrase(new_passphrase, current_passphrase=current)
        await self._ask(lambda n: n.change_passphrase(command))

    async def transfers(self, contact: str | None = None) -> list[Transfer]:
        """Every transfer (or a contact's), newest last."""
        return await self._ask(lambda n: n.list_transfers(ListTransfers(contact)))

    async def share(self, address: str, paths: list[str]) -> list[Transfer]:
        """Share files and folders with a contact; one transfer per file."""
        return await self._ask(lambda n: n.share_files(ShareFiles(address, paths)))

    # ------------------------------------------------------------------ fire-and-forget slots

    @async_slot(str, str)
    async def send_message(self, address: str, text: str) -> None:
        """Send `text`; failures are reported through `errorOccurred`, and the text is
        handed back through `sendFailed` (the composer was cleared: it must not be lost,
        e.g. when the disk is full)."""
        self._typing_at.pop(address, None)  # the node tells the contact we stopped typing
        try:
            await self.send(address, text)
        except ActionFailed as exc:
            self.sendFailed.emit(address, text)
            self.errorOccurred.emit(str(exc))

    def set_typing(self, address: str, typing: bool) -> None:
        """The user is (or stopped) typing to `address`: throttled, and "stopped" is only
        sent after "typing" was."""
        now = time.monotonic()
        if typing:
            last = self._typing_at.get(address)
            if last is not None and now - last < TYPING_THROTTLE:
                return
            self._typing_at[address] = now
        elif self._typing_at.pop(address, None) is None:
            return
        self._signal(lambda n: n.set_typing(SetTyping(address, typing)))

    def mark_read(self, address: str, up_to: str | None = None) -> None:
        """The user has seen the conversation with `address` (with `up_to`: up to that
        message, the newest they were shown): tell the node (and the contact, through a
        read receipt). Coalesced: asked again while the node is still at it (a burst of
        messages arriving in the open conversation), the node is asked once more
        afterwards, not once per message, with the widest bound asked meanwhile."""
        if self._node is None:
            return
        if address in self._reading:
            self._reading[address] = True
            if self._read_up_to.get(address, "") is not None:  # None: every one already
                self._read_up_to[address] = up_to
            return
        self._reading[address] = False
        self._read_up_to[address] = up_to
        self._run(self._mark_read(address))

    async def _mark_read(self, address: str) -> None:
        try:
            again = True
            while again:
                self._reading[address] = False
                command = MarkRead(address, self._read_up_to.pop(address, None))
                await self._quietly(partial(_mark_read, command))
                again = self._reading.get(address, False)
        finally:
            self._reading.pop(address, None)
            self._read_up_to.pop(address, None)

    def save_draft(self, address: str, text: str) -> None:
        """Keep what is typed to `address` and not sent (empty: nothing), across restarts.
        In order per contact, coalesced: while one is stored, only the newest waits."""
        if self._node is None:
            return
        self._drafting[address] = text
        if address not in self._draft_writers:
            task = asyncio.ensure_future(self._write_drafts(address))
            self._draft_writers[address] = task
            task.add_done_callback(lambda _: self._draft_writers.pop(address, None))

    async def _write_drafts(self, address: str) -> None:
        while address in self._drafting:
            text = self._drafting[address]
            try:
                await self._ask(partial(_save_draft, SaveDraft(address, text)))
            except ActionFailed as exc:  # the text is still in the window
                log.warning("a draft could not be kept: %s", exc)
            if self._drafting.get(address) == text:
                del self._drafting[address]

    async def drafts_kept(self) -> None:
        """Wait until the drafts asked for are stored (before the node stops)."""
        writers = list(self._draft_writers.values())
        if writers:
            await asyncio.wait(writers, timeout=DRAFT_FLUSH_TIMEOUT)

    async def drafts(self) -> dict[str, str]:
        """The kept drafts: contact address -> text."""
        return {d.contact: d.text for d in await self._ask(lambda n: n.drafts())}

    def _signal(self, request: Callable[[NodeApi], Awaitable[None]]) -> None:
        """Fire an ephemeral request; a failure is logged, never shown (nothing is lost
        that the user would miss)."""
        if self._node is None:
            return
        self._run(self._quietly(request))

    async def _quietly(self, request: Callable[[NodeApi], Awaitable[None]]) -> None:
        try:
            await self._ask(request)
        except ActionFailed as exc:
            log.info("an ephemeral request failed: %s", exc)

    @async_slot()
    async def refresh_status(self) -> None:
        """Poll the node's status and its peers once (one call each) and emit
        `statusUpdated` and `peersUpdated`."""
        node = self._node
        if node is None:
            return
        try:
            status = await node.status()
            peers = await node.peers()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("status poll failed: %s", exc)
            return
        self.last_status = status
        self.last_peers = peers
        self.statusUpdated.emit(status)
        self.peersUpdated.emit(peers)

    def share_paths(self, address: str, paths: list[Path]) -> None:
        """Share dropped files and folders with a contact (the transfers then arrive as
        `transferAdded`); a failure is reported through `errorOccurred`."""
        names = [str(p) for p in paths]
        self.shareRequested.emit(address, names)
        self._run(self._share(address, names))

    async def _share(self, address: str, paths: list[str]) -> None:
        try:
            await self.share(address, paths)
        except ActionFailed as exc:
            self.errorOccurred.emit(str(exc))
            return
        # what the folders held that is never shared (links, pipes...): said, not hidden
        skipped = await asyncio.to_thread(left_out_of_shares, paths)
        sentence = left_out_sentence(skipped)
        if sentence is not None:
            self.notice.emit(sentence)

    def accept_transfer(self, transfer_id: str) -> None:
        """Start fetching an offered file."""
        self._act(lambda n: n.accept_transfer(AcceptTransfer(transfer_id)))

    def cancel_transfer(self, transfer_id: str) -> None:
        """Cancel (or decline) a transfer; the peer is told."""
        self._act(lambda n: n.cancel_transfer(CancelTransfer(transfer_id)))

    def pause_transfer(self, transfer_id: str) -> None:
        """Stop fetching an incoming file for now (resumed by `retry_transfer`)."""
        self._act(lambda n: n.pause_transfer(PauseTransfer(transfer_id)))

    def retry_transfer(self, transfer_id: str) -> None:
        """Resume a paused transfer, or try a failed one again."""
        self._act(lambda n: n.retry_transfer(RetryTransfer(transfer_id)))

    def _act(self, request: Callable[[NodeApi], Awaitable[Transfer]]) -> None:
        """Run a transfer command; its effect arrives as `transferChanged` (the node
        publishes it), its failure as `errorOccurred`."""
        self._run(self._reported(request))

    async def _reported(self, request: Callable[[NodeApi], Awaitable[Transfer]]) -> None:
        try:
            await self._ask(request)
        except ActionFailed as exc:
            self.errorOccurred.emit(str(exc))

    def _run(self, work: Coroutine[Any, Any, None]) -> None:
        """Run `work` as a task the bridge keeps until it ends."""
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
