"""End-to-end session state of the node: our prekeys and one ratchet session per contact.

Every state change is stored (sealed) before it is used: a session before the ciphertext
made with it leaves, an accepted session together with the prekey store that consumed
its one-time prekey (one transaction). The messenger calls these under its per-contact
lock; see docs/protocol.md, section 7.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from app.core.e2e_errors import CorruptState, InvalidPrekeyBundle
from app.core.identity import decode_address
from app.core.prekeys import PrekeyBundle, PrekeyStore, verify_bundle
from app.core.session import (
    Session,
    accept,
    decrypt,
    encrypt,
    force_ratchet,
    initial_header,
    initiate,
    is_initial_message,
)
from app.core.x3dh import INITIAL_HEADER_SIZE
from app.node.api import NodeEvent, SecurityAlert
from app.node.futures import retrieve
from app.node.network import NetworkStack
from app.node.state_message import NoSession
from app.node.storage.repositories import ContactRecord
from app.node.storage.store import ProfileStore
from app.node.transport.base import AuthenticatedConnection

log = logging.getLogger(__name__)

MAX_IGNORED_HEADERS = 64
BUNDLE_REFRESH_DELAY = 1.0
INLINE_CRYPTO_BYTES = 64 * 1024
"""Payloads up to this size are encrypted/decrypted on the event loop (tens of
microseconds; a worker-thread hand-off costs more than the work); larger ones in a
worker thread."""


async def seal(
    session: Session, plaintext: bytes, random: Callable[[int], bytes]
) -> tuple[Session, bytes]:
    """`encrypt`, inline for a small plaintext, else in a worker thread."""
    if len(plaintext) <= INLINE_CRYPTO_BYTES:
        return encrypt(session, plaintext, random)
    return await asyncio.to_thread(encrypt, session, plaintext, random)


def hand_over(
    conn: AuthenticatedConnection, wire: bytes, *, awaits_answer: bool = False
) -> asyncio.Future[None]:
    """Start sending a sealed message (its session state stored). Call with the
    contact's lock held, so messages are written, or queued for the shaper's slots, in
    the order they were sealed; await the result after letting the lock go: a shaped
    connection may wait for a slot and a busy one for its buffer to drain, and the
    user's next `send` waits for that lock. `awaits_answer`: see
    `AuthenticatedConnection.send`."""
    sending = asyncio.ensure_future(conn.send(wire, awaits_answer=awaits_answer))
    sending.add_done_callback(retrieve)
    return sending


@dataclass(frozen=True)
class Opened:
    """A decrypted payload. `unsaved` is the session a follow-up message advanced, for
    the caller to store (`SessionBook.put_step` inside its own transaction, then
    `adopt`); an accepted new session is stored already."""

    plaintext: bytes
    new_session: bool
    unsaved: Session | None = None


class SessionBook:
    """Our prekey store and the sessions with contacts (cached, persisted first)."""

    def __init__(
        self,
        store: ProfileStore,
        network: NetworkStack,
        *,
        contact: Callable[[str], Awaitable[ContactRecord | None]],
        contact_changed: Callable[[str], None],
        lock: Callable[[str], asyncio.Lock],
        publish: Callable[[NodeEvent], None],
        on_race_won: Callable[[str], None],
        stats: Counter[str],
        clock: Callable[[], float],
        random: Callable[[int], bytes],
    ) -> None:
        self.store = store
        self.network = network
        self._keys = store.identity
        self._own_key = store.identity.public.signing_key
        self._contact = contact
        self._contact_changed = contact_changed
        self._conversation_lock = lock
        """The messenger's per-contact lock, held by everything else that changes a session."""
        self._publish = publish
        self._on_race_won = on_race_won
        self.stats = stats
        self._clock = clock
        self._random = random
        self._sessions: dict[str, Session] = {}
        self._prekeys: PrekeyStore | None = None
        self._prekey_lock = asyncio.Lock()
        self._ignored_headers: dict[str, set[bytes]] = {}
        self._race_won: dict[str, bytes] = {}
        """Per contact, our unanswered first header that already won a simultaneous start."""
        self._bundle_task: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------ prekeys

    async def load_prekeys(self) -> PrekeyBundle:
        """Load (or create) and maintain our prekeys; return the bundle to publish."""
        raw = await self.store.call(self.store.sessions.prekeys)
        now = self._clock()
        prekeys = await asyncio.to_thread(
            lambda: (
                PrekeyStore.from_bytes(raw) if raw else PrekeyStore.create(now, self._random)
            ).maintain(now, self._random)
        )
        await self.store.call(self.store.sessions.put_prekeys, prekeys.to_bytes())
        self._prekeys = prekeys
        return await asyncio.to_thread(prekeys.bundle, self._keys)

    def _schedule_bundle_refresh(self) -> None:
        """Republish our bundle soon, without the one-time prekey just consumed."""
        if self._bundle_task is None or self._bundle_task.done():
            self._bundle_task = asyncio.ensure_future(self._refresh_bundle())

    async def _refresh_bundle(self) -> None:
        await asyncio.sleep(BUNDLE_REFRESH_DELAY)
        async with self._prekey_lock:
            prekeys = self._prekeys
            if prekeys is None:
                return
            prekeys = await asyncio.to_thread(prekeys.maintain, self._clock(), self._random)
            await self.store.call(self.store.sessions.put_prekeys, prekeys.to_bytes())
            self._prekeys = prekeys
        bundle = await asyncio.to_thread(prekeys.bundle, self._keys)
        try:
            await self.network.publish_bundle(bundle)
        except Exception as exc:  # the old bundle stays; the next refresh tries again
            log.warning("republishing the prekey bundle failed: %r", exc)

    def stop(self) -> None:
        """Cancel a pending bundle refresh."""
        if self._bundle_task is not None:
            self._bundle_task.cancel()

    # ------------------------------------------------------------------ sessions

    async def load(self, address: str) -> Session | None:
        """The session with `address`, if there is a usable one."""
        session = self._sessions.get(address)
        if session is None:
            raw = await self.store.call(self.store.sessions.get, address)
            if raw is not None:
                try:
                    session = Session.from_bytes(raw)
                except CorruptState:
                    log.error("a stored session is corrupt; starting a new one")
                    session = None
            if session is not None:
                self._sessions[address] = session
        return session

    async def save(self, address: str, session: Session) -> None:
        """Store `session` (sealed), then make it the current one."""
        await self.store.call(self.put_step(address, session))
        self._sessions[address] = session

    def put_step(self, address: str, session: Session) -> Callable[[], None]:
        """A store step writing `session`, for a caller's own transaction
        (`ProfileStore.atomically`); `adopt` the session once that committed."""
        state, now = session.to_bytes(), self._clock()
        return lambda: self.store.sessions.put(address, state, now)

    def adopt(self, address: str, session: Session) -> None:
        """Make a session stored by the caller (see `put_step`) the current one."""
        self._sessions[address] = session

    async def reset(self, address: str) -> None:
        """Forget the session with `address` (the next send starts a new one)."""
        self._sessions.pop(address, None)
        await self.store.call(self.store.sessions.delete, address)

    async def for_sending(self, address: str) -> Session:
        """The session to encrypt with (see `prepare`); `NoSession` if there is none."""
        session = await self.load(address)
        if session is None:
            raise NoSession("no session with the contact yet")
        return session

    async def prepare(self, address: str) -> None:
        """Make sure there is a session with `address`: X3DH from the contact's DHT prekey
        bundle if there is none. This waits for the DHT, so call it without the
        contact's lock: whatever waits for that lock (the user's next `send`) must not
        wait for the network. Raises `NoSession` if the bundle can't be had."""
        if await self.load(address) is not None:
            return
        raw = await self.network.fetch_bundle(address)
        if raw is None:
            raise NoSession("the contact's prekey bundle is not in the DHT (yet)")
        now: float | None = self._clock()
        try:
            bundle = await asyncio.to_thread(verify_bundle, raw, now)
        except InvalidPrekeyBundle as exc:
            # dated too far from our clock (one of the two clocks is wrong by more than
            # a day), or damaged: the one the contact hands over a live connection is
            # its current one whatever the clocks say (decision 0020)
            handed = await self.network.bundle_from_peer(address)
            if handed is None:
                raise NoSession(f"the contact's prekey bundle is invalid: {exc}") from None
            try:
                bundle, now = await asyncio.to_thread(verify_bundle, handed, None), None
            except InvalidPrekeyBundle as exc:
                raise NoSession(f"the contact's prekey bundle is invalid: {exc}") from None
        if bundle.identity.signing_key != decode_address(address):
            raise NoSession("the prekey bundle belongs to someone else")
        await self.check_dh_key(address, bundle.identity.dh_key, "prekey bundle")
        session = await asyncio.to_thread(initiate, self._keys, bundle, now, self._random)
        # a session may have come meanwhile (the contact's first message, another
        # caller's `prepare`): that one stays
        if await self.load(address) is None:
            self._sessions[address] = session

    def ratchet_requested(self, address: str) -> bool:
        """Whether the peer asked for a DH ratchet step that our next message performs."""
        session = self._sessions.get(address)
        return session is not None and session.peer_requested_ratchet

    async def force_ratchet(self, address: str) -> bool:
        """Key rotation: make our next message to `address` request a DH ratchet step
        (stored first); False if there is no session yet (the next one starts fresh).
        Takes the contact's lock: a message being sealed or received meanwhile would
        otherwise store its advanced session over this one (the request lost) or this
        one over it (a chain key used twice)."""
        async with self._conversation_lock(address):
            session = await self.load(address)
            if session is None:
                return False
            await self.save(address, force_ratchet(session))
            return True

    async def rotate_prekeys(self) -> PrekeyBundle | None:
        """Key rotation: a new signed prekey now, one-time prekeys replenished, the new
        bundle published (the old signed prekeys stay for their grace period, so initial
        messages in flight still open). None before `load_prekeys`."""
        async with self._prekey_lock:
            prekeys = self._prekeys
            if prekeys is None:
                return None
            now = self._clock()
            prekeys = await asyncio.to_thread(
                lambda: prekeys.rotate(now, self._random).replenish(self._random)
            )
            await self.store.call(self.store.sessions.put_prekeys, prekeys.to_bytes())
            self._prekeys = prekeys
        bundle = await asyncio.to_thread(prekeys.bundle, self._keys)
        self.network.set_bundle(bundle)
        try:
            await self.network.publish_bundle(bundle)
        except Exception as exc:  # stays set: published again when the DHT is reachable
            log.warning("publishing the rotated prekey bundle failed: %r", exc)
        return bundle

    async def maintain_prekeys(self) -> bool:
        """Periodic upkeep: rotate the signed prekey once it is `SIGNED_PREKEY_ROTATION`
        (48 h) old; True if it rotated."""
        prekeys = self._prekeys
        if prekeys is None or not prekeys.rotation_due(self._clock()):
            return False
        return await self.rotate_prekeys() is not None

    @property
    def prekeys_created_at(self) -> float | None:
        """When our current signed prekey was made."""
        return None if self._prekeys is None else self._prekeys.current.created_at

    async def check_dh_key(self, address: str, dh_key: bytes, source: str) -> None:
        """Learn an address-only contact's X25519 key; refuse (and alert) on a change."""
        record = await self._contact(address)
        if record is None:
            raise NoSession("not a contact")
        if record.dh_key is None:
            await self.store.call(self.store.contacts.set_dh_key, address, dh_key)
            self._contact_changed(address)
        elif record.dh_key != dh_key:
            self.stats["key_changed"] += 1
            if not record.key_changed:
                await self.store.call(self.store.contacts.set_key_changed, address)
                self._contact_changed(address)
            detail = (
                f"{record.name}'s {source} carries a different encryption key than the one "
                "you added; messages are not exchanged until you re-add them from a new invite."
            )
            self._publish(SecurityAlert(address, "key_changed", detail))
            raise NoSession("the contact's key changed")

    def open_following(self, session: Session, payload: bytes) -> tuple[Session, bytes] | None:
        """Decrypt a small follow-up message with `session`, one an earlier message of
        the same burst advanced (not stored yet): the advanced session and the
        plaintext. None if it is not one (a first message, a large one) or does not
        decrypt: nothing changed, and `open` handles (and counts) it on its own."""
        if is_initial_message(payload) or len(payload) > INLINE_CRYPTO_BYTES:
            return None
        try:
            return decrypt(session, payload)
        except Exception:  # e.g. a replay: `open` says so when it meets it alone
            return None

    async def open(self, address: str, payload: bytes) -> Opened | None:
        """Decrypt a payload from `address`, or None for a first message that lost a
        simultaneous start. Raises `DecryptionFailed`/`NoSession`/`ValueError` with
        nothing changed. A session advanced by a follow-up message is left to the caller
        to store (`Opened.unsaved`); an accepted new session is stored here, with the
        prekeys it consumed."""
        current = await self.load(address)
        header_bytes = payload[1 : 1 + INITIAL_HEADER_SIZE]
        repeat = current is not None and current.accepted_header == header_bytes
        if not is_initial_message(payload) or repeat:
            if current is None:
                raise NoSession("a message for a session we don't have")
            if len(payload) <= INLINE_CRYPTO_BYTES:
                session, plaintext = decrypt(current, payload)
            else:
                session, plaintext = await asyncio.to_thread(decrypt, current, payload)
            return Opened(plaintext, False, session)
        header = await asyncio.to_thread(initial_header, payload)
        if header.initiator.signing_key != decode_address(address):
            raise ValueError("an initial message from someone else than the connection peer")
        ignored = self._ignored_headers.setdefault(address, set())
        pending = current.pending_header if current is not None else None
        # a new first message after ours won once: the peer could not accept ours (e.g.
        # it names a one-time prekey from a stale copy of its bundle), so ours yields
        racing = pending is not None and self._race_won.get(address) != pending
        if header_bytes in ignored or (racing and self._own_key < header.initiator.signing_key):
            # both sides started a session at once: the smaller identity key's wins (and
            # a late copy of the losing first message must not replace it afterwards)
            if header_bytes not in ignored:
                if pending is not None:
                    self._race_won[address] = pending
                self._on_race_won(address)  # the peer must get our first message to accept
                if len(ignored) < MAX_IGNORED_HEADERS:
                    ignored.add(header_bytes)
            self.stats["initial_ignored"] += 1
            return None
        await self.check_dh_key(address, header.initiator.dh_key, "first message")
        async with self._prekey_lock:
            assert self._prekeys is not None
            prekeys, session, plaintext = await asyncio.to_thread(
                accept, self._keys, self._prekeys, payload
            )
            await self.store.call(
                self.store.sessions.put_with_prekeys,
                address,
                session.to_bytes(),
                prekeys.to_bytes(),
                self._clock(),
            )
            self._prekeys = prekeys
        self._sessions[address] = session
        self._schedule_bundle_refresh()
        return Opened(plaintext, True)
