"""Ephemeral signals between connected contacts: typing indicators and read receipts.

Both travel inside the contact's end-to-end session as their own plaintext kinds
(`app.node.state_message.Typing` and `ReadUpTo`) and are never stored, queued, retried
or left in a DHT mailbox: with no live connection (or no session yet) they are dropped.

* Typing: at most one ``typing=True`` per `TYPING_THROTTLE` seconds per contact; a
  ``typing=False`` follows when the user stops or sends. The receiver publishes
  `TypingChanged` and expires ``typing=True`` after `TYPING_EXPIRY` seconds.
* Read receipts: the reader sends the CID of the newest event of the contact's it has
  read; the contact marks its own text events up to there READ (never downgraded). The
  read position is persisted with the messages; it is sent again on reconnection when
  it moved since it was last sent. See docs/protocol.md, section 7.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections import Counter
from collections.abc import Awaitable, Callable

from app.core.cid import Cid
from app.core.ledger import Ledger
from app.node.api import (
    MessageStatus,
    MessageStatusChanged,
    NodeEvent,
    StorageFailed,
    TypingChanged,
)
from app.node.e2e import SessionBook, hand_over, seal
from app.node.history import MESSAGE_KINDS, own_texts_behind
from app.node.network import NetworkStack
from app.node.state_message import ReadUpTo, Signal, Typing
from app.node.storage.store import ProfileStore
from app.node.transport.base import TransportError

log = logging.getLogger(__name__)

TYPING_THROTTLE = 3.0
"""At most one typing=True signal per contact in this many seconds."""
TYPING_EXPIRY = 6.0
"""A contact's typing=True is dropped after this many seconds without a refresh."""


class Ephemeral:
    """Typing indicators and read receipts for the messenger (see the module docstring)."""

    def __init__(
        self,
        store: ProfileStore,
        network: NetworkStack,
        sessions: SessionBook,
        *,
        ledger: Callable[[str], Awaitable[Ledger]],
        lock: Callable[[str], asyncio.Lock],
        publish: Callable[[NodeEvent], None],
        stats: Counter[str],
        random: Callable[[int], bytes] = os.urandom,
    ) -> None:
        self.store = store
        self.network = network
        self.sessions = sessions
        self._ledger = ledger
        self._lock = lock
        self._publish = publish
        self.stats = stats
        self._random = random
        self._own_key = store.identity.public.signing_key
        self.typing_throttle = TYPING_THROTTLE
        self.typing_expiry = TYPING_EXPIRY
        self._typing_sent: dict[str, float] = {}
        """Contacts we told we are typing: address -> when (monotonic)."""
        self._typing_seen: dict[str, asyncio.TimerHandle] = {}
        """Contacts typing to us: address -> their expiry timer."""
        self._read_sent: dict[str, Cid] = {}
        self._read_covered: dict[str, int] = {}
        """Per contact, the seq of ours up to which their read receipts covered
        (`own_texts_behind`)."""
        self._tasks: set[asyncio.Task[None]] = set()

    def stop(self) -> None:
        """Cancel timers and pending sends."""
        for handle in self._typing_seen.values():
            handle.cancel()
        self._typing_seen.clear()
        for task in self._tasks:
            task.cancel()

    def _spawn(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def send(self, address: str, plaintext: bytes) -> bool:
        """Encrypt and send one signal if the contact is connected and a session exists
        (the session state is stored first); False if it was dropped."""
        conn = self.network.manager.connection(address)
        if conn is None:
            return False
        try:
            async with self._lock(address):
                current = await self.sessions.load(address)
                if current is None:
                    return False
                session, wire = await seal(current, plaintext, self._random)
                await self.sessions.save(address, session)  # before the ciphertext leaves
                sending = hand_over(conn, wire)
            await sending
        except TransportError as exc:
            log.info("an ephemeral signal was dropped: %s", exc)
            return False
        self.stats["signals_sent"] += 1
        return True

    # ------------------------------------------------------------------ typing, sending

    async def set_typing(self, address: str, typing: bool) -> None:
        """We are (or stopped) typing to `address`: throttled, dropped when offline."""
        now = time.monotonic()
        if typing:
            last = self._typing_sent.get(address)
            if last is not None and now - last < self.typing_throttle:
                return
            if await self.send(address, Typing(True).encode()):
                self._typing_sent[address] = now
        elif self._typing_sent.pop(address, None) is not None:
            await self.send(address, Typing(False).encode())

    def message_sent(self, address: str) -> None:
        """A message to `address` was sent: we stopped typing."""
        if address in self._typing_sent:
            self._spawn(self._stop_typing(address))

    async def _stop_typing(self, address: str) -> None:
        """`set_typing(False)` in the background: dropped if the session state that
        encrypts it can't be stored (a full disk); the contact's indicator expires."""
        try:
            await self.set_typing(address, False)
        except StorageFailed as exc:
            log.info("a typing signal was dropped: %s", exc)

    # ------------------------------------------------------------------ read, sending

    async def send_read(self, address: str) -> None:
        """Send our read position to `address` if it moved since we last sent it."""
        msg_id = await self.store.call(self.store.messages.last_seen, address)
        if msg_id is None:
            return
        cid = await self._event_of(address, msg_id)
        if cid is None or self._read_sent.get(address) == cid:
            return
        if await self.send(address, ReadUpTo(cid).encode()):
            self._read_sent[address] = cid

    async def _event_of(self, address: str, msg_id: str) -> Cid | None:
        """The CID of the contact's event carrying message `msg_id` (a text or a file)."""
        async with self._lock(address):
            ledger = await self._ledger(address)
            for event in reversed(ledger.ordered()):
                if event.author == self._own_key or event.body.kind not in MESSAGE_KINDS:
                    continue
                if str(event.body.get("id"))[:64] == msg_id:
                    return event.cid
        return None

    # ------------------------------------------------------------------ connection

    def disconnected(self, address: str) -> None:
        """The connection dropped: nobody types over a dead line."""
        self._typing_sent.pop(address, None)
        self.peer_wrote(address)

    def peer_wrote(self, address: str) -> None:
        """A message from `address` arrived (or it went away): it is no longer typing."""
        handle = self._typing_seen.pop(address, None)
        if handle is not None:
            handle.cancel()
            self._publish(TypingChanged(address, False))

    # ------------------------------------------------------------------ receiving

    async def receive(self, address: str, signal: Signal) -> None:
        """Apply a signal from the contact `address`."""
        self.stats["signals_received"] += 1
        if isinstance(signal, Typing):
            if not signal.typing:
                self.peer_wrote(address)
                return
            handle = self._typing_seen.pop(address, None)
            if handle is not None:
                handle.cancel()
            else:
                self._publish(TypingChanged(address, True))
            loop = asyncio.get_running_loop()
            self._typing_seen[address] = loop.call_later(
                self.typing_expiry, self.peer_wrote, address
            )
            return
        await self._read_up_to(address, signal.cid)

    async def _read_up_to(self, address: str, cid: Cid) -> None:
        """The contact read our events up to `cid`: our text messages there become READ."""
        async with self._lock(address):
            ledger = await self._ledger(address)
            event = ledger.get(cid)
            if event is None or event.author != self._own_key:
                self.stats["read_ignored"] += 1
                return
            covered = self._read_covered.get(address, 0)
            ids, self._read_covered[address] = own_texts_behind(
                ledger, [cid], covered, self._own_key
            )
        if not ids:
            return
        changed = await self.store.call(
            self.store.messages.advance_status,
            ids,
            MessageStatus.READ,
            (MessageStatus.QUEUED, MessageStatus.SENT, MessageStatus.DELIVERED),
        )
        if changed:  # one event for all a receipt covered (it may cover a long backlog)
            self._publish(MessageStatusChanged.of(changed, address, MessageStatus.READ))
