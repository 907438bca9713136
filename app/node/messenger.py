"""Message delivery: history events inside the Double Ratchet, over the connections.

Pipeline for an outgoing message (`send_new`):

1. a "text" event is appended to the conversation's ledger in memory; a session exists
   or is started (X3DH from the contact's prekey bundle in the DHT) and the state
   message carrying the event is encrypted with it;
2. one transaction stores the message (QUEUED), the event (`store.history`) and the
   advanced session state; only then does `send_new` return and the ciphertext leave;
   the message becomes SENT;
3. the peer stores the event, the messages it carries and its own session state in one
   transaction, then answers with its heads (at once if it lacks something, else a
   little later, covering what arrives meanwhile); the message is DELIVERED.

Messages queued while a transaction runs go together in the next one.

Every payload between contacts is one session message whose plaintext is a CBOR map
``{"t": "state", "e": [event bytes...], "h": [head CIDs...], "q": bool}``: events the
peer lacks, our current heads (which acknowledge what we hold), and whether we want the
peer's state in return. On every (re)connection both sides send their heads with
``q = true`` and fill each other's gaps from `Ledger.events_since`. Duplicates are
harmless: the ledger deduplicates events, the ratchet rejects replayed ciphertexts, and a
received message is stored once per id. Typing indicators and read receipts are
ephemeral signals in the same sessions (`app.node.ephemeral`). docs/protocol.md, section 7.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
import os
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Protocol

from app.core.cid import Cid
from app.core.e2e_errors import (
    CorruptState,
    DuplicateMessage,
    ReplayedInitialMessage,
    UnknownPrekey,
)
from app.core.errors import DecryptionFailed
from app.core.filenames import sanitize_relative_name
from app.core.ledger import EquivocationDetected, EventAccepted, EventRejected, Ledger
from app.core.ledger_errors import BadEventSignature
from app.core.ledger_event import Event, EventBody
from app.core.session import Session
from app.core.shown_time import latest_written, shown_time_ms
from app.node.added_back import AddedBack
from app.node.api import (
    MAX_MESSAGE_BYTES,
    HistoryInvalid,
    Message,
    MessageAdded,
    MessageStatus,
    MessageStatusChanged,
    NodeEvent,
    SecurityAlert,
    StorageFailed,
)
from app.node.clean_stop import leave_note, take_note
from app.node.clock_alarm import ClockAlarm
from app.node.e2e import SessionBook, hand_over, seal
from app.node.ephemeral import Ephemeral
from app.node.history import FILE, FILE_KINDS, MESSAGE_KINDS, TEXT, load_ledger, own_texts_behind
from app.node.network import NetworkStack
from app.node.state_message import (
    MAX_EVENTS,
    NewMailboxEpoch,
    NoSession,
    StateMessage,
    TransferStatus,
    TransferStatuses,
    decode_plaintext,
)
from app.node.storage.repositories import ContactRecord
from app.node.storage.schema import UNORDERED
from app.node.storage.store import ProfileStore
from app.node.storage_alarm import StorageAlarm
from app.node.transport import ConnectionStateChanged, PeerState, TransportEvent
from app.node.transport.base import AuthenticatedConnection, ConnectFailed, TransportError

log = logging.getLogger(__name__)

MAX_PAYLOAD = 1024 * 1024
"""Largest session message accepted from a peer (the transport's message cap)."""
BATCH_BYTES = 256 * 1024
"""Events per state message are batched up to about this many bytes."""
RESYNC_SECONDS = 3.0
"""How often conversations whose last send failed are retried while connected."""
RECONCILE_SLICE = 2048
"""Events `_reconcile_with` goes through between two turns of the event loop: a history
of 100k events took it 0.35-0.9 s, during which the window and the control socket
stood still."""
STORAGE_RETRY_SECONDS = 10.0
"""When what a contact sent could not be stored (the disk is full), we ask it for the
missing events again this long after (and so on until it can be stored); the contact
keeps them unacknowledged meanwhile."""
ACK_DELAY = 0.1
"""A state message that only acknowledges (we lack nothing, the peer lacks nothing) is
sent this long after the events it covers: one acknowledgement covers a run of messages,
and the sender handles no receipt while the next message of a conversation is on its way
(the "delivered" mark comes at most this much later). Anything else we send in between
carries our heads and makes it unnecessary."""
SENT_SAVE_DELAY = 0.5
"""A first-time SENT status is stored at the latest this long after it was published."""
LOOKUP_RETRY_FIRST = 2.0
LOOKUP_RETRY_MAX = 120.0
"""Backoff of presence lookups for contacts that published none (offline for long)."""
REDIAL_EVERY_ROUNDS = 5
"""Every this many resync rounds, contacts we owe events to and can't reach are redialled."""
FAREWELL_SECONDS = 1.0
"""A removed contact's connection closes this long after: what we just sent it leaves."""
RESET_AFTER_FAILURES = 5
"""Undecryptable messages in a row after which a contact's session is started afresh."""


class FileEvents(Protocol):
    """The file transfers' seat in the pipeline (see `app.node.file_transfers`)."""

    async def body_for(self, message: Message) -> EventBody | None:
        """The event body for a queued message that shares a file, else None (text)."""
        ...

    def file_event(self, address: str, event: Event) -> None:
        """A contact's event of a file kind was accepted (must not block)."""
        ...

    async def transfer_status(
        self, address: str, status: TransferStatus | TransferStatuses
    ) -> None:
        """The contact's signal of what became of a file (or several) we sent it."""
        ...

    async def greeted(self, address: str) -> None:
        """A contact (re)connected: tell it what became of the files it sent us."""
        ...


class OfflineCourier(Protocol):
    """Leaves envelopes for offline contacts (see `app.node.mailbox`)."""

    async def post(self, address: str) -> None: ...


def _order_key(event: Event) -> tuple[int, str]:
    """A message's place in the conversation's total order: its event's Lamport time,
    then its CID's bytes in hex (which sort like the bytes, as the ledger's order does;
    the base32 text form doesn't)."""
    return event.lamport, event.cid.raw.hex()


Queued = tuple[Message, "asyncio.Future[None] | None"]
Append = tuple[EventBody, tuple[Callable[[], object], ...], "asyncio.Future[None]"]
"""An event of ours to append (`Messenger.append_event`): body, store steps, caller."""
"""A message handed to the messenger, with the future `send_new` waits on (None if the
message is stored already)."""


def _fail(batch: list[Queued], exc: Exception) -> None:
    """The `send_new` calls still waiting on `batch` raise `exc`."""
    for _, stored in batch:
        if stored is not None and not stored.done():
            stored.set_exception(exc)


def _message_ids(events: list[Event]) -> set[str]:
    return {str(e.body.get("id")) for e in events}


def _batches(events: list[bytes]) -> list[list[bytes]]:
    """`events` cut into state-message batches (`BATCH_BYTES`, `MAX_EVENTS`); at least one
    (possibly empty: a state message may carry only our heads)."""
    batches: list[list[bytes]] = [[]]
    size = 0
    for event in events:
        if batches[-1] and (size + len(event) > BATCH_BYTES or len(batches[-1]) >= MAX_EVENTS):
            batches.append([])
            size = 0
        batches[-1].append(event)
        size += len(event)
    return batches


class Messenger:
    """Delivers messages to contacts and receives theirs (see the module docstring)."""

    def __init__(
        self,
        store: ProfileStore,
        network: NetworkStack,
        publish: Callable[[NodeEvent], None],
        *,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        random: Callable[[int], bytes] = os.urandom,
    ) -> None:
        self.store = store
        self.network = network
        self._publish = publish
        self.storage_alarm = StorageAlarm(store.paths.root, lambda event: self._publish(event))
        self.clock_alarm = ClockAlarm(
            lambda event: self._publish(event), wall=clock, monotonic=monotonic
        )
        self._clock = clock
        self._random = random
        self._keys = store.identity
        self._own_key = store.identity.public.signing_key
        self._locks: dict[str, asyncio.Lock] = {}
        self._ledgers: dict[str, Ledger] = {}
        self._deferred: set[str] = set()
        """Conversations not reconciled at start (nothing was unsettled after a clean
        stop): reconciled when their history is first loaded (`_ledger`)."""
        self._unprepared: set[str] = set()
        """Contacts whose start-up preparation (`_prepare`) has not finished: a stop then
        notes them unsettled, so the next start prepares them again."""
        self._contacts: dict[str, ContactRecord] = {}
        self._peer_heads: dict[str, list[Cid]] = {}
        self._latest_written: dict[bytes, dict[Cid, int]] = {}
        """Per conversation, the latest author time of each event and its ancestors."""
        self._own_ids: dict[str, set[str]] = {}
        self._failures: dict[str, int] = {}
        self._connecting: dict[str, asyncio.Task[None]] = {}
        self._lookups: dict[str, tuple[float, float]] = {}
        """Contacts with no known presence: address -> (next lookup, current delay)."""
        self._last_pure_answer: dict[str, float] = {}
        self._dirty: set[str] = set()
        self._delivered: dict[str, int] = {}
        """Per contact, the seq of ours up to which their acknowledgements covered
        (`own_texts_behind`)."""
        self._acks: dict[str, asyncio.TimerHandle] = {}
        """Acknowledgements due (`ACK_DELAY`), per contact."""
        self._unsaved_sent: dict[str, list[str]] = {}
        """Messages said to be SENT, not yet stored so (`_first_sent`)."""
        self._sent_timer: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._outbox: dict[str, list[Queued]] = {}
        """Messages handed over by `enqueue`, not yet in the history, per contact."""
        self._draining: set[str] = set()
        self._appends: dict[str, list[Append]] = {}
        """Per contact, our non-message events waiting to be appended (`append_event`)."""
        self._appending: set[str] = set()
        self._in_flight: dict[str, dict[Cid, int]] = {}
        """Events sent over the current connection to a contact and not known to be held
        by it yet, with their Lamport times, in sending order: an acknowledgement that
        doesn't cover them yet doesn't send them again (the connection is reliable and
        ordered); cleared when the connection changes."""
        self._resync: asyncio.Task[None] | None = None
        self.stats: Counter[str] = Counter()
        self.courier: OfflineCourier | None = None
        self.files: FileEvents | None = None
        self.epoch_sink: Callable[[str, NewMailboxEpoch], Awaitable[None]] | None = None
        """Receives a contact's mailbox epoch announcements (the courier)."""
        self.observer: Callable[[str, str, int], None] | None = None
        """Told each payload's outcome per peer ("ok", "decrypt_failed", "replay",
        "malformed", "invalid_signature", "event_rejected") and each "sent" message
        (the anomaly monitor and the key-rotation policy)."""
        self.added_back = AddedBack(lambda event: self._publish(event), self.is_known_contact)
        """Which contacts' nodes said they don't have us (and telling strangers so)."""
        self.sessions = SessionBook(
            store,
            network,
            contact=self._contact,
            contact_changed=self._forget_cached_contact,
            lock=self._lock,
            publish=lambda event: self._publish(event),
            on_race_won=lambda address: self._spawn(self._send_quietly(address, [], True)),
            stats=self.stats,
            clock=clock,
            random=random,
        )
        self.ephemeral = Ephemeral(
            store,
            network,
            self.sessions,
            ledger=self._ledger,
            lock=self._lock,
            publish=lambda event: self._publish(event),
            stats=self.stats,
            random=random,
        )

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Load or create our prekeys, hook into the transport, reach every contact."""
        self.network.set_bundle(await self.sessions.load_prekeys())
        self.network.on_message(self.handle_payload)
        self.network.manager.known = self.is_known_contact  # strangers' connections are capped
        self.network.not_a_contact = self.added_back.told_not_a_contact
        self.network.presence_seen = self._presence_seen
        self.network.manager.subscribe(self._on_transport)
        self._resync = asyncio.ensure_future(self._resync_loop())
        note = await asyncio.to_thread(take_note, self.store.paths)
        for record in await self.store.call(self.store.contacts.all):
            self._contacts[record.address] = record
            self._unprepared.add(record.address)
            self._spawn(self._prepare(record.address, note))

    async def stop(self) -> None:
        """Cancel background work (state is already persisted)."""
        self.sessions.stop()
        self.ephemeral.stop()
        for address in list(self._acks):
            self._cancel_ack(address)
        if self._sent_timer is not None:
            self._sent_timer.cancel()
        await self._save_sent()
        for task in [*self._tasks, self._resync]:
            if task is not None:
                task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        # with those not prepared yet (a stop right after the start): left out, one
        # waiting for its reconciliation after a crash, or noted unsettled by the last
        # stop, was taken as settled and left unloaded at the next start
        unsettled = {self.store.contact_tag(a) for a in list(self._ledgers) if self.lacking(a)}
        unsettled |= {self.store.contact_tag(a) for a in self._unprepared}
        try:
            await asyncio.to_thread(leave_note, self.store.paths, unsettled)
        except OSError as exc:  # the next start reconciles everything: slower, not wrong
            log.warning("could not note the clean stop: %r", exc)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _lock(self, address: str) -> asyncio.Lock:
        return self._locks.setdefault(address, asyncio.Lock())

    async def _prepare(self, address: str, note: set[bytes] | None = None) -> None:
        """Reconcile storage after a crash, then start connecting. After a clean stop
        (`note`: see `app.node.clean_stop`) a conversation with nothing unsettled is
        left to be reconciled when first used: its history is not loaded now."""
        try:
            if (
                note is not None
                and self.store.contact_tag(address) not in note
                and not await self.store.call(self.store.messages.unsettled, address)
            ):
                self._deferred.add(address)
            else:
                await self._reconcile(address)
        except HistoryInvalid as exc:
            self._unprepared.discard(address)
            self._history_invalid(address, exc)
            return
        self._unprepared.discard(address)
        self.want(address)

    def _history_invalid(self, address: str, exc: HistoryInvalid) -> None:
        log.error("history with a contact does not verify: %s", exc)
        self._publish(SecurityAlert(address, "history_invalid", str(exc)))

    def want(self, address: str) -> None:
        """Connect to `address` and keep reconnecting (backoff) while it is a contact.

        One attempt per contact at a time: a burst of sends doesn't start a burst of dials.
        """
        running = self._connecting.get(address)
        if running is not None and not running.done():
            return
        task = asyncio.ensure_future(self._connect(address))
        self._connecting[address] = task
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _connect(self, address: str) -> None:
        record = await self._contact(address)
        if record is None:
            return
        if record.endpoints:
            self.network.note_endpoints(address, record.endpoints)
            try:
                await self.network.join_via(record.endpoints)
            except Exception as exc:  # joining through an invite is best effort
                log.info("joining the DHT through an invite failed: %r", exc)
        already = self.network.manager.connection(address) is not None
        try:
            if not already and not await self.network.endpoints_of(address):
                # nowhere to signal or dial: don't build a WebRTC offer for nobody; look
                # for its presence again later (backoff), the transport can't retry this
                self._schedule_lookup(address)
                raise ConnectFailed("no presence record or endpoint known")
            self._lookups.pop(address, None)
            await self.network.manager.connect(address, keep=True)
            if already:  # e.g. a stranger's connection that just became a contact
                await self._greet(address)
        except ConnectFailed as exc:
            log.info("can't reach a contact now (%s)", exc)
            if self.courier is not None:
                await self.courier.post(address)

    def _schedule_lookup(self, address: str) -> None:
        _, delay = self._lookups.get(address, (0.0, LOOKUP_RETRY_FIRST / 2))
        delay = min(delay * 2, LOOKUP_RETRY_MAX)
        # +-20%: contacts added together are not looked up together ever after
        jittered = delay * (0.8 + 0.4 * int.from_bytes(os.urandom(2)) / 65535)
        self._lookups[address] = (time.monotonic() + jittered, delay)

    def network_changed(self, event: object = None) -> None:
        """The machine woke up or changed networks: contacts we found no presence for are
        looked up again at the next resync round (their backoff, up to 2 minutes, started
        over; the lookups themselves are paced by `NetworkStack.background`)."""
        now = time.monotonic()
        for address in self._lookups:
            self._lookups[address] = (now, LOOKUP_RETRY_FIRST / 2)

    def after_join(self, joined: asyncio.Future[Any]) -> None:
        """Once the DHT is joined, look for every contact not reached yet."""

        def retry(_: object) -> None:
            for address in list(self._lookups):
                self.want(address)

        joined.add_done_callback(retry)

    # ------------------------------------------------------------------ state

    async def _contact(self, address: str) -> ContactRecord | None:
        record = self._contacts.get(address)
        if record is None:
            record = await self.store.call(self.store.contacts.get, address)
            if record is not None:
                self._contacts[address] = record
        return record

    async def _ledger(self, address: str) -> Ledger:
        """The conversation's history (the caller holds its lock), loaded on first use;
        a conversation left unreconciled at start is reconciled then."""
        ledger = self._ledgers.get(address)
        if ledger is None:
            try:
                ledger = await load_ledger(self.store, address)
            except HistoryInvalid as exc:
                if address in self._deferred:  # said at start for the others
                    self._deferred.discard(address)
                    self._history_invalid(address, exc)
                raise
            self._ledgers[address] = ledger
            if address in self._deferred:
                self._deferred.discard(address)
                try:
                    await self._reconcile_with(address, ledger)
                except BaseException:
                    self._ledgers.pop(address, None)
                    self._deferred.add(address)
                    raise
        return ledger

    async def _reconcile(self, address: str) -> None:
        """Make the message table and the ledger agree after an interrupted run:
        received text events become messages (idempotent), and queued messages that
        never reached the ledger are appended now, in their original order."""
        async with self._lock(address):
            self._deferred.discard(address)
            await self._reconcile_with(address, await self._ledger(address))

    async def _reconcile_with(self, address: str, ledger: Ledger) -> None:
        """`_reconcile` with the lock held and the history loaded."""
        # only messages not stored yet are made and stored again (a long history
        # holds tens of thousands: sealing each at every start took seconds)
        stored = await self.store.call(self.store.messages.ids, address)
        unordered = await self.store.call(self.store.messages.unordered_ids, address)
        ids: dict[str, Cid] = {}
        incoming = []
        theirs: list[Cid] = []
        order: dict[str, tuple[int, str]] = {}
        for count, event in enumerate(ledger.ordered(), 1):
            if count % RECONCILE_SLICE == 0:  # a copy of the order: nothing moves under it
                await asyncio.sleep(0)
            body = event.body
            kind = body.kind
            if event.author != self._own_key:
                theirs.append(event.cid)
                if kind in FILE_KINDS and self.files is not None:
                    self.files.file_event(address, event)
            if kind not in MESSAGE_KINDS:
                continue
            msg_id = str(body.get("id"))
            if event.author == self._own_key:
                ids[msg_id] = event.cid
            elif msg_id[:64] not in stored:
                message = self._incoming_message(address, event, ledger)
                if message is not None:
                    incoming.append(message)
            if msg_id[:64] in unordered or msg_id[:64] not in stored:
                order[msg_id[:64]] = _order_key(event)
        added = await self.store.call(self.store.messages.add_many_if_absent, incoming, order)
        await self._publish_added(address, added, order)
        # messages stored before they had a place in the history order (an older
        # version, or a crash between the two writes of an older version)
        late = {i: order[i] for i in unordered if i in order}
        if late:
            await self.store.call(self.store.messages.set_order, address, late)
        queued = await self.store.call(
            self.store.messages.outgoing_with_status, address, MessageStatus.QUEUED
        )
        acknowledged = await self.store.call(
            self.store.messages.outgoing_ids_with_status,
            address,
            (MessageStatus.DELIVERED, MessageStatus.READ),
        )
        # what the peer is known to hold: its own events and our acknowledged ones
        known = [ids[i] for i in acknowledged if i in ids]
        # as heads: every later query of what the peer lacks then costs what it
        # lacks, not a walk from each of the events it holds
        if address not in self._peer_heads:
            self._peer_heads[address] = list(ledger.heads_of(theirs + known))
        self._own_ids.setdefault(address, set()).update(ids)
        await self._append_texts(address, ledger, queued)

    async def _publish_added(
        self, address: str, added: list[Message], order: dict[str, tuple[int, str]]
    ) -> None:
        """Tell front ends about received messages, in the shared order, each with the
        already-shown message it comes before (if it is not the newest)."""
        if not added:
            return
        before = await self.store.call(
            self.store.messages.followers, address, [m.id for m in added]
        )
        self._publish_in_order(added, order, before)

    def _publish_in_order(
        self,
        added: list[Message],
        order: dict[str, tuple[int, str]],
        before: dict[str, str | None],
    ) -> None:
        last = (UNORDERED, "")
        for message in sorted(added, key=lambda m: order.get(m.id, last)):
            self._publish(MessageAdded(message, before.get(message.id)))

    def _incoming_message(self, address: str, event: Event, ledger: Ledger) -> Message | None:
        msg_id, text = event.body.get("id"), event.body.get("text")
        if not isinstance(msg_id, str) or not isinstance(text, str) or not msg_id:
            return None
        if event.body.kind == FILE:
            # the sender's own text: shown as is, an RTL override could fake the
            # extension; the names the file and its folders are saved under instead
            # (the event keeps what the sender wrote)
            text = sanitize_relative_name(text)
        return Message(
            id=msg_id[:64],
            contact=address,
            sender=address,
            outgoing=False,
            text=text,
            time=self._shown_time(event, ledger),
            status=MessageStatus.RECEIVED,
            transfer=msg_id[:64] if event.body.kind == FILE else None,
        )

    def _shown_time(self, event: Event, ledger: Ledger) -> float:
        """When to say `event` was written: its author's clock, but not after now (its
        clock runs ahead) nor before the events it builds on (decision 0020)."""
        memo = self._latest_written.setdefault(ledger.conversation, {})
        parents = [latest_written(cid, ledger.get, memo) for cid in event.parents]
        return shown_time_ms(event.wall_time, parents, int(self._clock() * 1000)) / 1000.0

    async def _append_texts(
        self, address: str, ledger: Ledger, messages: list[Message]
    ) -> list[Event]:
        """Append our text events for `messages` (skipping those the ledger already
        holds) and store them in one transaction."""
        events = await self._new_events(address, ledger, messages)
        if events:
            await self._commit(address, self._history_steps(address, ledger, events))
            self._own_ids.setdefault(address, set()).update(_message_ids(events))
        return events

    async def _new_events(
        self, address: str, ledger: Ledger, messages: list[Message]
    ) -> list[Event]:
        """Append our text events for `messages` (skipping those the ledger already
        holds) to the ledger in memory; the caller stores them (`_history_steps`)."""
        own_ids = self._own_ids.setdefault(address, set())
        events: list[Event] = []
        batch_ids: set[str] = set()
        for message in messages:
            if message.id in own_ids or message.id in batch_ids:
                continue
            body = await self.files.body_for(message) if self.files is not None else None
            if body is None:
                if len(message.text.encode("utf-8", "surrogatepass")) > MAX_MESSAGE_BYTES:
                    # queued by a version that let it through: it can't become an event,
                    # and must not hold back the messages queued after it
                    log.warning("a queued message is too long to send; it stays queued")
                    continue
                body = EventBody.of(TEXT, id=message.id, text=message.text)
            events.append(ledger.append(self._keys, body, int(message.time * 1000)))
            batch_ids.add(message.id)
        return events

    def _history_steps(
        self, address: str, ledger: Ledger, events: list[Event]
    ) -> list[Callable[[], object]]:
        """Store steps for our new `events` and their messages' place in the order."""
        store = self.store
        rows = [(str(e.cid), ledger.get_bytes(e.cid) or e.to_bytes()) for e in events]
        order = {str(e.body.get("id")): _order_key(e) for e in events}
        return [
            lambda: store.history.add_many(address, rows),
            lambda: store.messages.set_order(address, order),
        ]

    async def _commit(self, address: str, steps: list[Callable[[], object]]) -> list[object]:
        """Run `steps` in one transaction. If it fails, the ledger is reloaded from the
        store: events appended in memory but never stored must not be sent (their
        sequence numbers would be used again after a restart: equivocation)."""
        sent = self._sent_step(address)
        try:
            stored = await self.store.call(
                self.store.atomically, *steps, *([sent] if sent is not None else [])
            )
        except BaseException:
            self._ledgers.pop(address, None)
            self._delivered.pop(address, None)  # receipts walked but not stored
            raise
        self.storage_alarm.stored()
        return stored

    async def _commit_then(
        self, address: str, steps: list[Callable[[], object]], then: Callable[[], None]
    ) -> None:
        """`_commit`, then `then()` — also when we are cancelled meanwhile (a connection
        closing cancels its handler): the transaction runs on in its thread and lands,
        and a file event stored but never handed on left the sender's transfer
        "running" for good (a receiver killed just after saving)."""
        commit = asyncio.ensure_future(self._commit(address, steps))
        try:
            await asyncio.shield(commit)
        except asyncio.CancelledError:
            await asyncio.wait([commit])
            if not commit.cancelled() and commit.exception() is None:
                then()
            raise
        then()

    # ------------------------------------------------------------------ sending

    def enqueue(self, message: Message) -> None:
        """Hand over a message the service stored as QUEUED, without waiting: it is
        appended to the history in the background, in the order of the calls (a crash
        before that is repaired at the next start, see `_reconcile`).

        Messages handed over while earlier ones are being appended or sent wait in a
        per-contact queue and go together: one history transaction, one session message
        (batched by `BATCH_BYTES`) and one session-state write for the whole run."""
        self._queue(message, None)

    async def send_new(self, message: Message) -> None:
        """Store a new outgoing message (QUEUED) and append its event to the history, in
        one transaction shared with the messages queued at the same time and, if the
        contact is connected, with the session state that encrypts them; return once
        that committed (then it survives a crash; `MessageAdded` is published),
        sending goes on in the background. Raises the store's error (nothing stored)
        if the commit fails."""
        stored = asyncio.get_running_loop().create_future()
        self._queue(message, stored)
        await stored

    def _queue(self, message: Message, stored: asyncio.Future[None] | None) -> None:
        self._outbox.setdefault(message.contact, []).append((message, stored))
        if message.contact not in self._draining:
            self._draining.add(message.contact)
            self._spawn(self._drain(message.contact))
        self.ephemeral.message_sent(message.contact)

    async def set_typing(self, address: str, typing: bool) -> None:
        await self.ephemeral.set_typing(address, typing)

    async def mark_read(self, address: str) -> None:
        await self.ephemeral.send_read(address)

    async def send_signal(self, address: str, plaintext: bytes) -> bool:
        """Send an ephemeral signal if `address` is connected (`Ephemeral.send`)."""
        return await self.ephemeral.send(address, plaintext)

    async def _drain(self, address: str) -> None:
        try:
            while batch := self._outbox.pop(address, []):
                try:
                    await self._submit(address, batch)
                except HistoryInvalid as exc:
                    log.error("can't append to the history: %s", exc)
                    await self._store_unstored(batch)
                except Exception as exc:  # e.g. the disk is full: the senders are told
                    log.warning("storing messages failed: %r", exc)
                    _fail(batch, exc)
        finally:
            self._draining.discard(address)

    async def _store_unstored(self, batch: list[Queued]) -> None:
        """After a history that can't be appended to: store the new messages alone
        (their events are appended at the next start, see `_reconcile`), or give their
        senders the error."""
        waiting: list[Queued] = [(m, d) for m, d in batch if d is not None and not d.done()]
        if not waiting:
            return
        try:
            await self.store.call(self.store.messages.add_many, [m for m, _ in waiting])
        except Exception as exc:
            _fail(waiting, exc)
        else:
            self._announce([m for m, _ in waiting], waiting)

    async def _submit(self, address: str, batch: list[Queued]) -> None:
        """Append text events for the batch's messages (in this order) to the history
        and send them if the contact is connected (else keep dialling it; the events go
        at the next exchange of heads or into its DHT mailbox).

        One transaction stores the messages not stored yet, the events and, when
        connected with a session, the session state the first state message is
        encrypted with (stored before the ciphertext leaves); the waiting `send_new`
        calls return after it. A session still to be set up (a prekey bundle fetched
        from the DHT) is set up after that, so `send` never waits for the network."""
        new = [m for m, stored in batch if stored is not None]
        store = self.store
        async with self._lock(address):
            ledger = await self._ledger(address)
            events = await self._new_events(address, ledger, [m for m, _ in batch])
            steps: list[Callable[[], object]] = []
            if new:
                steps.append(lambda: store.messages.add_many(new))
            if events:
                steps += self._history_steps(address, ledger, events)
            conn = self.network.manager.connection(address) if events else None
            first, *rest = _batches([ledger.get_bytes(e.cid) or b"" for e in events])
            sealed, failed = None, False
            if conn is not None and await self.sessions.load(address) is not None:
                try:
                    sealed = await self._seal_batch(address, ledger, first, False)
                except (NoSession, TransportError) as exc:
                    self._send_failed(address, exc)
                    failed = True
                else:
                    steps.append(self.sessions.put_step(address, sealed[0]))
            if steps:
                await self._commit(address, steps)
            self._own_ids.setdefault(address, set()).update(_message_ids(events))
            sending = None
            if sealed is not None and conn is not None:
                self.sessions.adopt(address, sealed[0])
                # handed to the connection (and counted in flight) before the lock is let
                # go. The callers are told once the transport has had its turn (the
                # transmission starts first, then their replies)
                first_cids = [e.cid for e in events[: len(first)]]  # `first` holds these
                sending = self._transmit(address, conn, ledger, first, sealed[1], first_cids)
                asyncio.get_running_loop().call_soon(self._announce, new, batch)
            else:
                self._announce(new, batch)
                if events and conn is None:
                    self.want(address)
                elif conn is not None and not failed:
                    # no session yet: `send_state` starts one from the contact's DHT
                    # bundle, without this lock (the next `send` must not wait for the DHT)
                    unsent = [raw for part in (first, *rest) for raw in part]
                    self._spawn(self._send_quietly(address, unsent, False))
        if sending is not None:
            # waited for apart: a shaped connection may take a slot or more to put it on
            # the wire, and the next messages must not wait for that to be stored
            self._spawn(self._after_sending(address, ledger, sending, first_cids, rest))

    def _send_failed(self, address: str, exc: Exception) -> None:
        """Note a failed send: the resync loop tries again while connected."""
        log.info("sending to a contact failed (%s); will retry", exc)
        self._dirty.add(address)

    async def _after_sending(
        self,
        address: str,
        ledger: Ledger,
        sending: asyncio.Future[None],
        first: list[Cid],
        rest: list[list[bytes]],
    ) -> None:
        try:
            await sending
        except TransportError as exc:
            self._send_failed(address, exc)
            return
        covered = self._delivered.get(address, 0)  # a receipt may have come first
        self._first_sent(address, self._own_message_ids(ledger, [], covered, first))
        if rest:
            await self._send_quietly(address, [raw for batch in rest for raw in batch], False)

    def _announce(self, new: list[Message], batch: list[Queued]) -> None:
        """Stored: publish the new messages (before anything else is said about them)
        and let the waiting `send_new` calls return."""
        for message in new:
            self._publish(MessageAdded(message))
        for _, stored in batch:
            if stored is not None and not stored.done():
                stored.set_result(None)

    async def append_event(
        self, address: str, body: EventBody, *with_steps: Callable[[], object]
    ) -> None:
        """Append one of our non-message events (e.g. a file cancel) to the conversation
        and send it now if connected (else on the next connection, or by mailbox).

        `with_steps` (store calls, e.g. the transfer's new state) are committed in the
        same transaction as the event: a crash keeps both or neither. Events appended
        while earlier ones are being stored go together, in the order of the calls: one
        transaction and one state message for the run (a folder of small files ends many
        transfers at once; each file_done cost a commit, a session-state write and a
        shaped message of its own, all under the contact's lock)."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._appends.setdefault(address, []).append((body, with_steps, done))
        if address not in self._appending:
            self._appending.add(address)
            self._spawn(self._append_in_turn(address))
        await asyncio.shield(done)  # a caller giving up does not undo what is stored

    async def _append_in_turn(self, address: str) -> None:
        """Store and send the events waiting for `address`, a run at a time."""
        try:
            while batch := self._appends.pop(address, []):
                try:
                    ledger, events = await self._append_run(address, batch)
                except asyncio.CancelledError:
                    for *_, done in batch:
                        done.cancel()
                    raise
                except Exception as exc:  # the callers have it (e.g. the disk is full)
                    for *_, done in batch:
                        if not done.done():
                            done.set_exception(exc)
                    continue
                for *_, done in batch:
                    if not done.done():
                        done.set_result(None)
                if self.network.manager.connection(address) is None:
                    self.want(address)
                    continue
                raws = [ledger.get_bytes(e.cid) or b"" for e in events]
                self._spawn(self._send_quietly(address, raws, False))
        finally:
            self._appending.discard(address)
            for *_, done in self._appends.pop(address, []):  # stopping: none will be stored
                done.cancel()

    async def _append_run(self, address: str, batch: list[Append]) -> tuple[Ledger, list[Event]]:
        """Append `batch`'s events to the ledger and store them with their steps in one
        transaction."""
        async with self._lock(address):
            ledger = await self._ledger(address)
            store = self.store
            steps: list[Callable[[], object]] = []
            events: list[Event] = []
            for body, with_steps, _ in batch:
                event = ledger.append(self._keys, body, int(self._clock() * 1000))
                events.append(event)
                cid, raw = str(event.cid), event.to_bytes()
                steps.append(functools.partial(store.history.add, address, cid, raw))
                steps.extend(with_steps)
            await self._commit(address, steps)
        return ledger, events

    async def _send_quietly(self, address: str, events: list[bytes], query: bool) -> None:
        try:
            await self.send_state(address, events, query)
        except (NoSession, TransportError, HistoryInvalid) as exc:
            self._send_failed(address, exc)
        except StorageFailed as exc:  # the session state could not be saved first
            self._storage_failed(address, exc)

    @property
    def storage_problem(self) -> str:
        """Why what contacts send can't be stored right now ("" when it can)."""
        return self.storage_alarm.problem

    @property
    def clock_problem(self) -> str:
        """Why the computer's clock looks wrong ("" when it looks right)."""
        return self.clock_alarm.problem

    def _storage_failed(self, address: str, exc: StorageFailed) -> None:
        """What a contact sent, or the session state to answer it with, could not be
        stored (the disk is full): nothing was acknowledged, so the exchange of heads is
        tried again `STORAGE_RETRY_SECONDS` later (the resync loop)."""
        self.stats["storage_failed"] += 1
        log.warning("could not store a conversation's state, trying again later: %s", exc)
        self.storage_alarm.failed(exc)
        asyncio.get_running_loop().call_later(STORAGE_RETRY_SECONDS, self._dirty.add, address)

    async def send_state(self, address: str, events: list[bytes], query: bool) -> None:
        """Encrypt and send our heads plus `events` (batched) to a connected contact."""
        conn = self.network.manager.connection(address)
        if conn is None:
            raise ConnectFailed("not connected")
        await self.sessions.prepare(address)  # without the lock: it may wait for the DHT
        for batch in _batches(events):
            async with self._lock(address):
                ledger = await self._ledger(address)
                sending = await self._send_batch(address, conn, ledger, batch, query)
            await sending  # on the wire, waited for without the lock
            await self.mark_sent(address, ledger, batch)
        self._dirty.discard(address)

    async def _send_batch(
        self,
        address: str,
        conn: AuthenticatedConnection,
        ledger: Ledger,
        batch: list[bytes],
        query: bool,
    ) -> asyncio.Future[None]:
        """One state message: `batch` and our heads, handed to the connection (see
        `_transmit`). Call with the contact's lock held."""
        session, wire = await self._seal_batch(address, ledger, batch, query)
        await self.sessions.save(address, session)  # before the ciphertext leaves
        return self._transmit(address, conn, ledger, batch, wire)

    async def _seal_batch(
        self, address: str, ledger: Ledger, batch: list[bytes], query: bool
    ) -> tuple[Session, bytes]:
        """Encrypt a state message (`batch` and our heads): the advanced session, not
        stored yet, and the ciphertext."""
        # sent over a live connection: it carries our clock (the peer's clock check)
        sent_ms = int(self._clock() * 1000)
        plaintext = StateMessage(batch, list(ledger.heads()), query, sent_ms).encode()
        return await seal(await self.sessions.for_sending(address), plaintext, self._random)

    def _transmit(
        self,
        address: str,
        conn: AuthenticatedConnection,
        ledger: Ledger,
        batch: list[bytes],
        wire: bytes,
        cids: list[Cid] | None = None,
    ) -> asyncio.Future[None]:
        """Hand a sealed state message (its session state stored) to the connection.
        Call with the contact's lock held: the returned task's first step writes it, or
        queues it for the shaper's slots, before any later call's, so state messages
        leave in the order they were sealed; await it without the lock (it is done once
        the message is on the wire, which a shaped connection may take a while to do).
        Its events count as in flight from now on: an acknowledgement handled meanwhile
        does not send them again."""
        self._cancel_ack(address)  # it carries our heads
        self.stats["sent"] += 1
        if batch:
            flight = self._in_flight.setdefault(address, {})
            for cid in cids if cids is not None else [Cid.for_block(raw) for raw in batch]:
                event = ledger.get(cid)
                flight[cid] = event.lamport if event is not None else 0
        self._note(address, "sent", len(wire))
        # events call for an acknowledgement: if the link then goes silent, it is probed
        return hand_over(conn, wire, awaits_answer=bool(batch))

    async def send_control(self, address: str, plaintext: bytes) -> bool:
        """Encrypt and send one control plaintext (not stored in the history) to a
        connected contact with a session; False if it could not go now."""
        conn = self.network.manager.connection(address)
        if conn is None:
            return False
        async with self._lock(address):
            current = await self.sessions.load(address)
            if current is None:
                return False
            session, wire = await seal(current, plaintext, self._random)
            await self.sessions.save(address, session)  # before the ciphertext leaves
            sending = hand_over(conn, wire)
        try:
            await sending
        except TransportError:
            return False
        return True

    def settled(self, address: str) -> bool:
        """Whether the conversation is known to have nothing on its way without loading
        it: left unloaded at start after a clean stop (`_prepare`), not used since."""
        return address in self._deferred and address not in self._ledgers

    def lacking(self, address: str) -> list[bytes]:
        """Events the contact is not known to hold (from its last heads), parents first."""
        ledger = self._ledgers.get(address)
        if ledger is None:
            return []
        return ledger.events_since(self._peer_heads.get(address, []))

    @contextlib.asynccontextmanager
    async def conversation(self, address: str) -> AsyncIterator[Ledger]:
        """Hold the contact's lock and yield its ledger (for callers that seal several
        session messages in a row, like the mailbox)."""
        async with self._lock(address):
            yield await self._ledger(address)

    async def seal_state(
        self, address: str, ledger: Ledger, events: list[bytes], max_size: int
    ) -> bytes | None:
        """One session message carrying `events` and our heads, or None if it would exceed
        `max_size` (then no session state changes). Call inside `conversation`; the new
        session state is stored before the message is returned."""
        plaintext = StateMessage(events, list(ledger.heads()), True).encode()
        session = await self.sessions.for_sending(address)
        session, wire = await seal(session, plaintext, self._random)
        if len(wire) > max_size:
            return None
        await self.sessions.save(address, session)
        return wire

    async def mark_sent(self, address: str, ledger: Ledger, batch: list[bytes]) -> None:
        """Our text messages among `batch` have left the node: QUEUED -> SENT."""
        ids = self._own_message_ids(ledger, batch)
        if ids:
            changed = await self.store.call(
                self.store.messages.advance_status, ids, MessageStatus.SENT, (MessageStatus.QUEUED,)
            )
            if changed:
                self._publish(MessageStatusChanged.of(changed, address, MessageStatus.SENT))

    def _own_message_ids(
        self,
        ledger: Ledger,
        batch: list[bytes],
        covered: int = 0,
        cids: list[Cid] | None = None,
    ) -> list[str]:
        """The ids of our text messages among `batch` (or the events named by `cids`,
        if given: not hashed again), leaving out those receipts covered (our seqs up to
        `covered`)."""
        ids = []
        for cid in cids if cids is not None else [Cid.for_block(raw) for raw in batch]:
            event = ledger.get(cid)
            if (
                event is not None
                and event.seq > covered
                and event.author == self._own_key
                and event.body.kind in MESSAGE_KINDS
            ):
                ids.append(str(event.body.get("id")))
        return ids

    def _first_sent(self, address: str, ids: list[str]) -> None:
        """Messages sent for the first time (QUEUED until now) are SENT: said at once,
        stored with the conversation's next transaction or `SENT_SAVE_DELAY` later,
        whichever comes first (a crash in between shows them queued until their
        receipt: one write fewer per message; statuses only move forward)."""
        if not ids:
            return
        self._publish(MessageStatusChanged.of(ids, address, MessageStatus.SENT))
        self._unsaved_sent.setdefault(address, []).extend(ids)
        if self._sent_timer is None:
            self._sent_timer = asyncio.get_running_loop().call_later(
                SENT_SAVE_DELAY, lambda: self._spawn(self._save_sent())
            )

    def _sent_step(self, address: str) -> Callable[[], object] | None:
        ids = self._unsaved_sent.pop(address, None)
        if not ids:
            return None
        advance = self.store.messages.advance_status
        return lambda: advance(ids, MessageStatus.SENT, (MessageStatus.QUEUED,))

    async def _save_sent(self) -> None:
        self._sent_timer = None
        for address in list(self._unsaved_sent):
            step = self._sent_step(address)
            if step is not None:
                try:
                    await self.store.call(step)
                except Exception as exc:  # shown as queued until the receipt comes
                    log.warning("storing sent statuses failed: %r", exc)

    # ------------------------------------------------------------------ receiving

    async def handle_payload(self, address: str, payload: bytes) -> None:
        """One payload from a connected peer (with the state messages queued behind it,
        see `_merge_following`). Never raises: bad input is counted."""
        await self.take_payload(address, payload, live=True)

    async def take_payload(self, address: str, payload: bytes, live: bool = False) -> bool:
        """`handle_payload`; False if what it carried could not be stored (the disk is
        full), so a caller holding it (a mailbox slot) offers it again later. `live`: it
        came over a connection just now (not from a mailbox; the state messages received
        after it wait in the peer's inbox, see `_merge_following`)."""
        self.stats["received"] += 1
        try:
            await self._handle(address, payload, live)
        except (DecryptionFailed, CorruptState) as exc:
            self.stats["decrypt_failed"] += 1
            log.info("dropped an undecryptable message: %s", type(exc).__name__)
            if not isinstance(exc, DuplicateMessage | ReplayedInitialMessage):
                self._note(address, "decrypt_failed")
                # a first message naming a prekey we no longer hold (picked from a stale
                # copy of our bundle): the peer dropped our session and can't start this
                # one, so we start one of ours at once
                await self._count_failure(address, restart=isinstance(exc, UnknownPrekey))
            else:
                self._note(address, "replay")
        except ValueError as exc:
            self.stats["malformed"] += 1
            self._note(address, "malformed")
            log.info("dropped a malformed message: %s", exc)
        except (NoSession, TransportError) as exc:
            self.stats["not_answered"] += 1
            log.info("could not answer a peer: %s", exc)
            self._dirty.add(address)
        except HistoryInvalid as exc:
            self.stats["history_invalid"] += 1
            log.error("%s", exc)
        except StorageFailed as exc:  # nothing was stored or acknowledged: ask again later
            self._storage_failed(address, exc)
            return False
        except Exception:  # a bug must never take the node down with it
            self.stats["errors"] += 1
            log.exception("handling a message failed")
        return True

    def _note(self, address: str, outcome: str, size: int = 0) -> None:
        if self.observer is not None:
            try:
                self.observer(address, outcome, size)
            except Exception:  # an observer's bug must not cost us the message
                log.exception("messenger observer failed")

    async def _count_failure(self, address: str, restart: bool = False) -> None:
        """After `RESET_AFTER_FAILURES` undecryptable messages in a row (not replays), the
        two sessions have diverged (e.g. a profile restored from a backup): drop ours and
        start a new one, which the peer accepts; lost events are sent again. `restart`:
        at once (the peer has dropped our session already)."""
        failures = self._failures[address] = self._failures.get(address, 0) + 1
        if not restart and failures < RESET_AFTER_FAILURES:
            return
        if await self._contact(address) is None:
            return
        async with self._lock(address):
            self._failures.pop(address, None)
            await self.sessions.reset(address)
        self.stats["session_reset"] += 1
        log.warning("the session with a contact diverged; starting a new one")
        self._spawn(self._send_quietly(address, [], True))

    async def _handle(self, address: str, payload: bytes, live: bool = False) -> None:
        if len(payload) > MAX_PAYLOAD:
            raise ValueError("oversize message")
        if await self._contact(address) is None:
            self.stats["stranger"] += 1
            if live:  # say so: its messages would wait for us with no word why
                await self.added_back.tell_stranger(self.network.manager.connection(address))
            return
        reply = None
        async with self._lock(address):
            opened = await self.sessions.open(address, payload)
            if opened is None:
                return
            self._failures.pop(address, None)
            self.added_back.heard(address)
            unsaved = opened.unsaved
            sizes = [len(payload)]
            try:
                message = decode_plaintext(opened.plaintext)
                if isinstance(message, StateMessage):
                    if live and message.sent_ms is not None:
                        self.clock_alarm.heard(address, message.sent_ms)
                    if live and unsaved is not None:
                        message, unsaved = self._merge_following(address, message, unsaved, sizes)
                    # the session state is stored with what the messages carried
                    reply = await self._ingest(address, message, unsaved)
                    unsaved = None
            finally:
                if unsaved is not None:
                    await self.sessions.save(address, unsaved)
                # only now: the observer's rotation hooks read the session this message
                # advanced (a ratchet step announces a pending mailbox epoch)
                for size in sizes:
                    self._note(address, "ok", size)
        new_session = opened.new_session
        # the peer asked for a DH ratchet step (key rotation): answer even if nothing else
        # would, so both sides step within one round trip
        step = self.sessions.ratchet_requested(address)
        if isinstance(message, NewMailboxEpoch):
            if self.epoch_sink is not None:
                await self.epoch_sink(address, message)
        elif isinstance(message, TransferStatus | TransferStatuses):
            if self.files is not None:
                await self.files.transfer_status(address, message)
        elif not isinstance(message, StateMessage):  # an ephemeral signal, never stored
            await self.ephemeral.receive(address, message)
        if not isinstance(message, StateMessage):
            if new_session or step:
                await self.send_state(address, [], new_session)
            return
        if new_session or step or (reply is not None and (reply[0] or reply[1])):
            events, query = reply if reply is not None else ([], new_session)
            await self.send_state(address, events, query or new_session)
        elif reply is not None:  # nothing lacking, nothing asked: just our heads, later
            self._schedule_ack(address)

    def _merge_following(
        self, address: str, first: StateMessage, session: Session, sizes: list[int]
    ) -> tuple[StateMessage, Session]:
        """`first` with the state messages queued behind it in the peer's inbox, as one:
        their events in order, the last one's heads (a peer's heads only grow), a query
        if any asks. A burst of N messages is then one transaction, not N in a row (each
        a commit the next message waited for: the receiver's limit under a fast
        sender). Decrypted on the loop with the session the previous one advanced; the
        first that is not a small follow-up state message, and everything after it, go
        back to the inbox and are handled alone, as before. Returns the merged message
        and the session after its last part; `sizes` gets each part's size."""
        waiting = self.network.inboxes.take_waiting(address)
        events, heads, query = list(first.events), first.heads, first.query
        sent_ms = first.sent_ms
        for index, payload in enumerate(waiting):
            opened = (
                self.sessions.open_following(session, payload)
                if len(payload) <= MAX_PAYLOAD
                else None
            )
            try:
                message = decode_plaintext(opened[1]) if opened is not None else None
            except ValueError:
                message = None
            if not isinstance(message, StateMessage) or opened is None:
                self.network.inboxes.give_back(address, waiting[index:])
                break
            session = opened[0]
            if message.sent_ms is not None:  # live, as the first one
                self.clock_alarm.heard(address, message.sent_ms)
            events += message.events
            heads, query, sent_ms = message.heads, query or message.query, message.sent_ms
            sizes.append(len(payload))
            self.stats["received"] += 1
        if len(sizes) == 1:
            return first, session
        self.stats["merged"] += len(sizes) - 1
        return StateMessage(events, heads, query, sent_ms), session

    async def _ingest(
        self, address: str, message: StateMessage, session: Session | None = None
    ) -> tuple[list[bytes], bool] | None:
        """Apply a peer's state (with the contact's lock held), storing its events, the
        messages they carry, receipts for ours and the advanced `session` (if any) in
        one transaction; return (events to send, query) if an answer is due."""
        ledger = await self._ledger(address)
        accepted: list[Event] = []
        for raw in message.events:
            for outcome in ledger.receive(raw):
                if isinstance(outcome, EventAccepted):
                    accepted.append(outcome.event)
                elif isinstance(outcome, EquivocationDetected):
                    self.stats["equivocation"] += 1
                    detail = (
                        f"event #{outcome.seq} exists in {len(outcome.cids)} conflicting "
                        f"versions ({', '.join(str(c) for c in outcome.cids)})"
                    )
                    self._publish(SecurityAlert(address, "equivocation", detail))
                elif isinstance(outcome, EventRejected):
                    self.stats["event_rejected"] += 1
                    forged = isinstance(outcome.error, BadEventSignature)
                    self._note(address, "invalid_signature" if forged else "event_rejected")
                    log.warning("rejected a history event: %s", outcome.reason)
        store = self.store
        steps: list[Callable[[], object]] = []
        if session is not None:
            steps.append(self.sessions.put_step(address, session))
        theirs = [e for e in accepted if e.author != self._own_key]
        incoming: list[Message] = []
        order: dict[str, tuple[int, str]] = {}
        for event in theirs:
            if event.body.kind not in MESSAGE_KINDS:
                continue
            received = self._incoming_message(address, event, ledger)
            if received is not None:
                incoming.append(received)
                order[received.id] = _order_key(event)
        stored: list[tuple[list[Message], dict[str, str | None]]] = []
        if accepted:
            rows = [(str(e.cid), ledger.get_bytes(e.cid) or e.to_bytes()) for e in accepted]
            steps.append(lambda: store.history.add_many(address, rows))

            def add_messages() -> None:
                added = store.messages.add_many_if_absent(incoming, order)
                ids = [m.id for m in added]
                stored.append((added, store.messages.followers(address, ids) if ids else {}))

            steps.append(add_messages)
        known = [h for h in message.heads if h in ledger]
        receipts, self._delivered[address] = own_texts_behind(
            ledger, known, self._delivered.get(address, 0), self._own_key
        )
        changed: list[list[str]] = []
        if receipts:
            steps.append(
                lambda: changed.append(
                    store.messages.advance_status(
                        receipts,
                        MessageStatus.DELIVERED,
                        (MessageStatus.QUEUED, MessageStatus.SENT),
                    )
                )
            )

        def committed() -> None:
            """What follows the commit: once these events are stored they are never
            accepted again, so this must run whenever the commit landed."""
            if session is not None:
                self.sessions.adopt(address, session)
            if self.files is not None:
                for event in theirs:
                    if event.body.kind in FILE_KINDS:
                        self.files.file_event(address, event)
            for added, before in stored:
                self._publish_in_order(added, order, before)
                if added:
                    self.ephemeral.peer_wrote(address)
            if changed and changed[0]:  # one event however many one answer covered
                self._publish(MessageStatusChanged.of(changed[0], address, MessageStatus.DELIVERED))

        if steps:
            await self._commit_then(address, steps, committed)
        else:
            committed()
        unknown = len(known) < len(message.heads) or bool(ledger.missing())
        if known or not message.heads:
            self._peer_heads[address] = known
        # heads we don't know yet: what they hold is at least what they held before
        basis = known if not unknown else [*known, *self._peer_heads.get(address, [])]
        flight = self._in_flight.get(address)
        if flight and not message.query:
            # a plain acknowledgement: what is on its way will arrive (or the
            # connection drops, which clears this, and the greeting resends it), so
            # only what the peer lacks beyond it is sent, and both walks stay short
            # however many events are in flight. Events go out in Lamport order,
            # mostly: the first one's is the floor of the walk that finds what
            # arrived (one sent again out of order stays until those before it have)
            floor = next(iter(flight.values()))
            for cid in ledger.held_by(known, flight.keys(), floor):
                del flight[cid]  # arrived
            lacking = ledger.cids_since(basis, assume_known=flight.keys())
        else:
            if flight:
                flight.clear()  # the peer asks for everything it lacks: send it again
            lacking = ledger.cids_since(basis)
        lack = [block for cid in lacking if (block := ledger.get_bytes(cid)) is not None]
        if lack or accepted:
            return lack, unknown
        if message.query or unknown:
            # a pure question is answered at most once a second (no ping-pong), and so
            # is a gap of ours (events we hold wait for parents we never got, e.g. a
            # payload we could not store): we ask for it
            now = time.monotonic()
            if now - self._last_pure_answer.get(address, 0.0) >= 1.0:
                self._last_pure_answer[address] = now
                return lack, unknown
            if unknown:
                self._dirty.add(address)  # the resync loop asks a little later
        return None

    def _schedule_ack(self, address: str) -> None:
        """Send our heads `ACK_DELAY` from now unless something else carries them first."""
        if address not in self._acks:
            self._acks[address] = asyncio.get_running_loop().call_later(
                ACK_DELAY, self._send_ack, address
            )

    def _cancel_ack(self, address: str) -> None:
        timer = self._acks.pop(address, None)
        if timer is not None:
            timer.cancel()

    def _send_ack(self, address: str) -> None:
        self._acks.pop(address, None)
        self._spawn(self._send_quietly(address, [], False))

    # ------------------------------------------------------------------ background

    def _on_transport(self, event: TransportEvent) -> None:
        if isinstance(event, ConnectionStateChanged):
            self._in_flight.pop(event.address, None)
        if isinstance(event, ConnectionStateChanged) and event.state is PeerState.CONNECTED:
            self._spawn(self._greet(event.address))
        elif isinstance(event, ConnectionStateChanged) and event.state is not PeerState.CONNECTING:
            self.ephemeral.disconnected(event.address)
            if event.state is PeerState.DISCONNECTED:
                self.added_back.closed(event.address, event.reason)

    async def _greet(self, address: str) -> None:
        """On every (re)connection: tell a contact our heads and ask for theirs, with
        what we wrote that never left (see `_never_sent`)."""
        if await self._contact(address) is None:
            return
        try:
            unsent = await self._never_sent(address)
        except (StorageFailed, HistoryInvalid) as exc:  # they go after the answer, as before
            log.warning("could not read what waits for a contact: %r", exc)
            unsent = []
        await self._send_quietly(address, unsent, True)
        try:
            await self.ephemeral.send_read(address)  # our read position, if it moved
        except StorageFailed as exc:  # sent at the next greeting
            log.warning("could not send our read position: %s", exc)
        if self.files is not None:
            await self.files.greeted(address)

    async def _never_sent(self, address: str) -> list[bytes]:
        """What the contact is not known to hold (`lacking`, parents first) when some of
        it is our messages that never left (QUEUED), else nothing: they go with the
        greeting. Left for the contact's answer to the greeting, they waited for one
        that a node which has not added us never sends: written before the connection
        they stayed "queued", written after it they went at once and said "sent"."""
        queued = await self.store.call(
            self.store.messages.outgoing_ids_with_status, address, (MessageStatus.QUEUED,)
        )
        if not queued:
            return []
        async with self._lock(address):
            ledger = await self._ledger(address)
            events = self.lacking(address)
            ours = self._own_message_ids(ledger, events)
        return [] if set(queued).isdisjoint(ours) else events

    async def _resync_loop(self) -> None:
        rounds = 0
        while True:
            await asyncio.sleep(RESYNC_SECONDS)
            rounds += 1
            now = time.monotonic()
            for address, (due, _) in list(self._lookups.items()):
                if due <= now:
                    self.want(address)
            if rounds % REDIAL_EVERY_ROUNDS == 0:
                for address in list(self._contacts):
                    if self.network.manager.connection(address) is None and self.lacking(address):
                        self.want(address)
            for address in list(self._dirty):
                if self.network.manager.connection(address) is not None:
                    self._dirty.discard(address)
                    self._spawn(self._send_quietly(address, [], True))

    def not_added_back(self, address: str) -> bool:
        """True when the contact's node told us it does not have us as a contact."""
        return self.added_back.not_added_back(address)

    def all_not_added_back(self) -> frozenset[str]:
        """Every contact whose node told us it does not have us as a contact."""
        return self.added_back.all_not_added_back()

    def is_known_contact(self, address: str) -> bool:
        """Whether `address` is a contact the messenger has loaded (no I/O)."""
        return address in self._contacts

    def _forget_cached_contact(self, address: str) -> None:
        self._contacts.pop(address, None)

    def _presence_seen(self, address: str, endpoints: tuple[str, ...]) -> None:
        """A contact's signed presence record names where it listens now: dial there from
        now on, and store it, so that after a restart (with no other DHT node to ask) we
        still find a contact whose address changed since its invite."""
        record = self._contacts.get(address)
        if record is not None and record.endpoints == endpoints:
            return
        if record is not None:
            self._use_record(dataclasses.replace(record, endpoints=endpoints))
        self._spawn(self._store_endpoints(address, endpoints))

    async def _store_endpoints(self, address: str, endpoints: tuple[str, ...]) -> None:
        record = await self._contact(address)  # one not cached yet (added meanwhile)
        if record is None:  # a stranger's record
            return
        if record.endpoints != endpoints:
            self._use_record(dataclasses.replace(record, endpoints=endpoints))
        try:
            await self.store.call(self.store.contacts.set_endpoints, address, endpoints)
        except Exception as exc:  # used in this run all the same; stored at a later change
            log.info("could not store a contact's new endpoints: %r", exc)

    def contact_updated(self, record: ContactRecord) -> None:
        """The user refreshed a contact from a new invite (e.g. their port changed): use
        its endpoints from now on and, unless connected, try them at once."""
        self._use_record(record)
        if self.network.manager.connection(record.address) is None:
            self.want(record.address)

    def _use_record(self, record: ContactRecord) -> None:
        self._contacts[record.address] = record
        self.network.note_endpoints(record.address, record.endpoints)

    def forget_contact(self, address: str) -> None:
        """Drop cached state of a removed contact and close its connection, after a
        moment: the events appended just before (cancels of its transfers) leave first."""
        self._contacts.pop(address, None)
        self._lookups.pop(address, None)
        self.clock_alarm.forget(address)
        self.added_back.forget(address)
        self._spawn(self._disconnect_later(address))

    async def _disconnect_later(self, address: str) -> None:
        await asyncio.sleep(FAREWELL_SECONDS)
        if address not in self._contacts:  # not added again meanwhile
            await self.network.manager.disconnect(address)
