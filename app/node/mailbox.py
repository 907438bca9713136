"""Offline delivery: sealed envelopes left in the DHT under pairwise, daily mailbox keys.

A direction's mailbox on UTC day ``d`` is a sequence of up to `MAX_SLOTS` records, slot
``i = 0, 1, 2, ...``. For each slot both contacts can derive, from the static X25519
secret they share (``X25519(our identity dh key, theirs)``)::

    okm = HKDF-SHA256(ikm = shared, salt = 32 zero bytes,
                      info = "scrambled-eggs/v1/mailbox" || sender key || recipient key
                             || d (4 B) || i (2 B))
    signing seed = okm[0:32]    -> DerivedSigningKey: the slot record's owner
    sealing key  = okm[32:64]   -> AES-256-GCM key of the payload

Each slot is a `SignedRecord` of kind ``mailbox`` owned by its own derived key (record
slot field empty), so every slot of every day has an unrelated DHT key that reveals
neither identity nor its neighbours; only the two contacts can write or read it. Its
payload is ``nonce (12) || AES-GCM(sealing key, nonce, CBOR [session message], aad =
owner)``. Each session message is one ratchet message carrying a run of events (oldest
first) plus our heads, exactly what a connection would carry, so every slot decrypts on
its own; the ratchet refuses replays and the ledger ignores events it holds (and keeps
an event whose parents are still missing until they come).

The sender writes slots in order (0, 1, ...); when its backlog grows it keeps the slots
whose events are still a prefix of the backlog and rewrites from the last one on. Once
the recipient's heads show it holds everything, the slots written are overwritten with
empty payloads. The recipient reads, for each of the last `RETENTION_DAYS` days and
tomorrow (a sender's clock may run ahead), slot 0, 1, 2, ... until a miss. Records live
`MAILBOX_TTL` (7 days) and are republished by the DHT layer while the sender runs.

Epochs (key rotation, docs/protocol.md section 12): the mailbox a contact writes to us
can be moved to a new epoch ``e >= 1`` whose 32-byte random seed WE choose and announce
inside the ratchet (``NewMailboxEpoch``) once our sending chain has stepped to a fresh
DH key; then ``ikm = shared || seed`` and ``info`` ends with ``"/epoch" || e (4 B)``.
The writer always uses the newest epoch it was told; the reader polls every epoch it
issued until 8 days after a newer one replaced it (plus epoch 0 likewise), so whatever
the writer used is found. An attacker holding an old snapshot of either state can't
learn the new seed, so it can neither find nor forge the new slots.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import cbor2
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from app.core.identity import IdentityKeys
from app.core.ratchet import hkdf_sha256, x25519_shared_secret
from app.core.records import (
    MAX_RECORD_BYTES,
    DerivedSigningKey,
    RecordKind,
    SignedRecord,
    dht_key,
    next_sequence,
    sign_record,
)
from app.core.wake import Resumed, WakeEvent
from app.node.futures import cancel_and_wait
from app.node.state_message import NewMailboxEpoch
from app.node.storage.mailbox_epochs import MailboxEpoch

if TYPE_CHECKING:
    from app.core.ledger import Ledger
    from app.node.messenger import Messenger
    from app.node.network import NetworkStack
    from app.node.storage.repositories import ContactRecord
    from app.node.storage.store import ProfileStore

log = logging.getLogger(__name__)

DAY_SECONDS = 86400
RETENTION_DAYS = 7
"""A recipient reads the mailboxes of today and the 6 days before."""
MAILBOX_TTL = RETENTION_DAYS * DAY_SECONDS
"""A slot record lives 7 days (the DHT's longest allowed lifetime)."""
MAX_PAYLOAD = MAX_RECORD_BYTES - 400
"""Room for the sealed payload inside one record (record fields and signature take the rest)."""
ENVELOPE_BUDGET = MAX_PAYLOAD - 64
"""Largest session message in one slot (sealing adds nonce, tag and CBOR framing)."""
ENVELOPE_OVERHEAD = 1024
"""Room kept in a session message for its heads, CBOR framing and ratchet header."""
EVENTS_BUDGET = ENVELOPE_BUDGET - ENVELOPE_OVERHEAD
"""Bytes of events per slot (~5.7 KiB)."""
MAX_SLOTS = 64
"""Slots per direction and day: 64 x ~5.7 KiB of events ~ 360 KiB of backlog a day."""
MAX_ENVELOPES = 16
FRAGMENT_ID_SIZE = 8
MAX_FRAGMENTS = 12
"""Slots one session message may span: an event larger than a slot (a message of up to
32 KiB of text) is sealed alone and its session message cut into fragments."""
FRAGMENT_BYTES = ENVELOPE_BUDGET - 64
"""Bytes of a session message per fragment (the fragment's CBOR framing takes the rest)."""
MAX_FRAGMENTED = MAX_FRAGMENTS * FRAGMENT_BYTES
"""The largest session message that goes by mailbox (~77 KiB)."""
MAX_PARTIAL = 32
"""Session messages whose fragments are being collected at once (oldest dropped)."""
EPOCH_OVERLAP = (RETENTION_DAYS + 1) * DAY_SECONDS
"""An incoming epoch is still polled this long after a newer one replaced it."""
REPOST_SECONDS = 600.0
"""An unchanged backlog already stored in the DHT is not posted again sooner."""
_INFO = b"scrambled-eggs/v1/mailbox"
_NONCE = 12


def day_of(now: float) -> int:
    """The UTC day number of `now` (seconds since the epoch)."""
    return int(now // DAY_SECONDS)


@dataclass(frozen=True, repr=False)
class MailboxKey:
    """The keys of one slot of one direction's mailbox on one day (secret: no repr)."""

    signer: DerivedSigningKey
    sealing_key: bytes
    day: int
    index: int = 0
    epoch: int = 0

    def __repr__(self) -> str:
        return f"MailboxKey(<secret>, day={self.day}, index={self.index}, epoch={self.epoch})"

    @property
    def owner(self) -> bytes:
        """The record owner (derived public key)."""
        return self.signer.public_key

    @property
    def dht_key(self) -> bytes:
        """Where the slot record lives in the DHT."""
        return dht_key(RecordKind.MAILBOX, self.owner)


def mailbox_key(
    ours: IdentityKeys,
    their_dh_key: bytes,
    sender: bytes,
    recipient: bytes,
    day: int,
    index: int = 0,
    epoch: int = 0,
    seed: bytes = b"",
) -> MailboxKey:
    """Slot `index` of the mailbox of `sender` -> `recipient` (Ed25519 keys) on `day`,
    in `epoch` (0: no seed; >= 1: the 32-byte `seed` the recipient issued)."""
    if not 0 <= index < MAX_SLOTS:
        raise ValueError(f"a mailbox slot index is in 0..{MAX_SLOTS - 1}")
    if (epoch == 0) != (seed == b"") or (epoch and len(seed) != 32) or not 0 <= epoch < 2**32:
        raise ValueError("epoch 0 has no seed; a later epoch has a 32-byte seed")
    shared = x25519_shared_secret(ours.dh_secret, their_dh_key)
    info = _INFO + sender + recipient + day.to_bytes(4, "big") + index.to_bytes(2, "big")
    if epoch:
        info += b"/epoch" + epoch.to_bytes(4, "big")
    okm = hkdf_sha256(shared + seed, bytes(32), info, 64)
    return MailboxKey(DerivedSigningKey(okm[:32]), okm[32:], day, index, epoch)


def split_events(events: list[bytes], budget: int = EVENTS_BUDGET) -> list[list[bytes]]:
    """Cut `events` (in order) into runs of at most `budget` bytes, one run per slot.

    Order is kept and every run holds at least one event; the split stops before an event
    that alone exceeds `budget` (it and what follows can't go by mailbox).
    """
    runs: list[list[bytes]] = []
    size = 0
    for raw in events:
        if len(raw) > budget:
            break
        if not runs or size + len(raw) > budget:
            runs.append([])
            size = 0
        runs[-1].append(raw)
        size += len(raw)
    return runs


@dataclass(frozen=True)
class Fragment:
    """Part `index` of `count` of a session message too large for one slot; `ident`
    (random) groups the parts. In a slot: the CBOR array [ident, index, count, chunk]."""

    ident: bytes
    index: int
    count: int
    chunk: bytes

    def encode(self) -> list[object]:
        return [self.ident, self.index, self.count, self.chunk]


def fragment(wire: bytes, ident: bytes) -> list[Fragment]:
    """Cut a session message into fragments of at most `FRAGMENT_BYTES`."""
    if len(ident) != FRAGMENT_ID_SIZE or not wire or len(wire) > MAX_FRAGMENTED:
        raise ValueError("a fragmented session message has an 8-byte id and fits 12 slots")
    chunks = [wire[i : i + FRAGMENT_BYTES] for i in range(0, len(wire), FRAGMENT_BYTES)]
    return [Fragment(ident, n, len(chunks), chunk) for n, chunk in enumerate(chunks)]


def fragments_needed(event_bytes: int) -> int:
    """Slots an event of `event_bytes` takes when sealed alone (for planning)."""
    return -(-(event_bytes + ENVELOPE_OVERHEAD) // FRAGMENT_BYTES)


def _decode_fragment(item: list[Any]) -> Fragment:
    if len(item) != 4:
        raise ValueError("a mailbox fragment has four fields")
    ident, index, count, chunk = item
    valid = (
        isinstance(ident, bytes)
        and len(ident) == FRAGMENT_ID_SIZE
        and type(index) is int
        and type(count) is int
        and 0 <= index < count <= MAX_FRAGMENTS
        and isinstance(chunk, bytes)
        and 0 < len(chunk) <= FRAGMENT_BYTES
    )
    if not valid:
        raise ValueError("a mailbox fragment is malformed")
    return Fragment(ident, index, count, chunk)


def seal_envelopes(key: MailboxKey, envelopes: list[bytes | Fragment], nonce: bytes) -> bytes:
    """The record payload carrying `envelopes` (raise `ValueError` if they don't fit)."""
    items = [e.encode() if isinstance(e, Fragment) else e for e in envelopes]
    plain = cbor2.dumps(items, canonical=True)
    payload = nonce + AESGCM(key.sealing_key).encrypt(nonce, plain, key.owner)
    if len(payload) > MAX_PAYLOAD:
        raise ValueError("the envelopes don't fit in one mailbox record")
    return payload


def open_envelopes(key: MailboxKey, payload: bytes) -> list[bytes | Fragment]:
    """The envelopes (whole session messages or fragments) of a mailbox record; raise
    `ValueError` if it doesn't open."""
    if len(payload) < _NONCE + 16:
        raise ValueError("mailbox payload too short")
    try:
        plain = AESGCM(key.sealing_key).decrypt(payload[:_NONCE], payload[_NONCE:], key.owner)
    except InvalidTag:
        raise ValueError("mailbox payload does not authenticate") from None
    try:
        items: Any = cbor2.loads(plain)
    except Exception:  # cbor2 raises many types on garbage
        raise ValueError("mailbox payload is not CBOR") from None
    if not isinstance(items, list) or len(items) > MAX_ENVELOPES:
        raise ValueError("mailbox payload is not a list of envelopes")
    opened: list[bytes | Fragment] = []
    for item in items:
        if isinstance(item, bytes):
            opened.append(item)
        elif isinstance(item, list):
            opened.append(_decode_fragment(item))
        else:
            raise ValueError("a mailbox envelope is neither bytes nor a fragment")
    return opened


def mailbox_record(
    key: MailboxKey, payload: bytes, now: float, seq: int | None = None
) -> SignedRecord:
    """The signed record to put in the DHT (seq: now in ms unless given; newer posts win)."""
    return sign_record(
        key.signer.sign,
        key.owner,
        RecordKind.MAILBOX,
        seq=int(now * 1000) if seq is None else seq,
        expires_at=int(now) + MAILBOX_TTL,
        payload=payload,
    )


FUTURE_DAYS = 1
"""A recipient also reads tomorrow's mailbox: a sender whose clock runs ahead of ours
(a wrong time zone, a wrong date) writes under its own day, which can be our tomorrow;
unread, its envelopes waited up to a day, or were never read (decision 0020)."""
RECENT_DAYS = 2 + FUTURE_DAYS
"""After the first round, polls read only yesterday's, today's and tomorrow's mailboxes:
a sender writes under the day it sends on, so older days gain nothing new (yesterday: a
post just before midnight, or a sender's clock a little behind ours; tomorrow: one
ahead of ours)."""
NEW_CONTACT_READS = 1
"""After the first round, contacts whose last 7 days were not read in this run (added
since) get that full read, this many per round: adding several at once must not send
a burst of lookups (7 per contact) that the other nodes' detectors take for a flood."""
READ_SPACING = 1.0
"""Seconds between reading one contact's mailboxes and the next one's: a round's lookups
are spread instead of sent in one burst."""
FIRST_POLL_DELAY = 5.0
"""Seconds between joining the DHT and the first (full) poll: contacts online on the LAN
or the internet connect within that, and a connected contact needs no poll."""


def poll_days(now: float | None = None) -> list[int]:
    """The days whose mailboxes a recipient reads, oldest first (the last 7, and
    tomorrow: `FUTURE_DAYS`)."""
    today = day_of(time.time() if now is None else now)
    return [today - back for back in range(RETENTION_DAYS - 1, -FUTURE_DAYS - 1, -1)]


def kept_slots(
    posted: list[tuple[bytes, ...]], backlog: list[bytes], budget: int = EVENTS_BUDGET
) -> int:
    """How many leading slots of `posted` (the events of each) may stay as they are.

    A slot stays if it and the slots before it carry exactly the backlog's first events,
    in order. If all stay and more events follow that the last slot has room for, the
    last slot is rewritten (refilled) instead of starting a new one.
    """
    kept = 0
    offset = 0
    for run in posted:
        if tuple(backlog[offset : offset + len(run)]) != run:
            break
        offset += len(run)
        kept += 1
    room = kept and kept == len(posted) and offset < len(backlog)
    # a slot of a fragmented event (its first holds one event over the budget, the
    # others none) is never refilled: its fragments stay together
    if room and posted[-1] and sum(map(len, posted[-1])) + len(backlog[offset]) <= budget:
        kept -= 1
    return kept


Epoch = tuple[int, bytes]
"""(epoch number, seed); (0, b"") is the mailbox without epochs."""
NO_EPOCH: Epoch = (0, b"")


@dataclass
class _Layout:
    """What we wrote in one contact's mailbox today."""

    day: int
    epoch: Epoch = NO_EPOCH
    runs: list[tuple[bytes, ...]] = field(default_factory=list)
    records: list[SignedRecord] = field(default_factory=list)


class MailboxCourier:
    """Posts envelopes for contacts we can't reach and reads the ones left for us.

    `post` is called when dialling a contact failed; `poll` runs `first_poll_delay`
    seconds after the DHT is joined (7 days) and then every `poll_interval` seconds
    (recent days only); each round also re-posts for unreachable contacts whose backlog
    changed, and empties the slots of contacts that caught up.
    """

    def __init__(
        self,
        store: ProfileStore,
        network: NetworkStack,
        messenger: Messenger,
        *,
        poll_interval: float = 60.0,
        first_poll_delay: float = FIRST_POLL_DELAY,
        read_spacing: float = READ_SPACING,
        clock: Callable[[], float] = time.time,
        random: Callable[[int], bytes] = os.urandom,
    ) -> None:
        self._store = store
        self._network = network
        self._messenger = messenger
        self._keys = store.identity
        self._own = store.identity.public.signing_key
        self._poll_interval = poll_interval
        self._first_poll_delay = first_poll_delay
        self._read_spacing = read_spacing
        self._clock = clock
        self._random = random
        self._last_seq = 0
        self._seen: dict[tuple[str, int, int, int], int] = {}
        self._partial: dict[tuple[str, bytes], tuple[int, dict[int, bytes]]] = {}
        """(contact, fragment id) -> (fragments in all, those read) of session messages
        being collected, oldest first (at most `MAX_PARTIAL`)."""
        self._posted: dict[str, tuple[int, bool, float]] = {}
        """address -> (events lacking, stored on another node, when) of the last post."""
        self._layouts: dict[str, _Layout] = {}
        self._written: dict[str, set[tuple[Epoch, int, int]]] = {}
        """address -> (epoch, day, slot) holding envelopes we wrote (emptied once caught up)."""
        self._out_epochs: dict[str, Epoch] = {}
        """The newest epoch each contact issued to us (we write under it)."""
        self._announce: dict[str, tuple[int, bytes, bytes | None]] = {}
        """Epochs we issued and must still announce: address -> (epoch, seed, the
        contact's ratchet key when we rotated; we announce once it has changed)."""
        self._task: asyncio.Task[None] | None = None
        self._soon = asyncio.Event()
        """Set when the next round should not wait for `poll_interval` (a wake)."""
        self._full_soon = False
        self._lock = asyncio.Lock()
        self._read_all: set[str] = set()
        """Contacts whose last 7 days were read in this run (or synced: connected)."""

    def _next_seq(self, now: float) -> int:
        """The sequence of a slot record we sign now: above every one we signed before, so
        a slot rewritten after our clock was stepped back still replaces the old one."""
        self._last_seq = next_sequence(now, self._last_seq)
        return self._last_seq

    def start(self, joined: Awaitable[object]) -> None:
        """Poll once `joined` completes, then periodically."""
        self._task = asyncio.ensure_future(self._run(joined))

    async def stop(self) -> None:
        """Stop polling (a post in progress is abandoned; the outbox keeps its events)."""
        await cancel_and_wait(self._task)

    async def _run(self, joined: Awaitable[object]) -> None:
        with contextlib.suppress(Exception):
            await joined
        await asyncio.sleep(self._first_poll_delay)  # contacts online by then need no poll
        full = True
        while True:
            try:
                await self.poll(full=full)
                full = False
                await self._repost()
            except Exception:  # one failed round must not end the polling
                log.exception("mailbox round failed")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._poll_interval):
                    await self._soon.wait()
            if self._soon.is_set():
                self._soon.clear()
                full, self._full_soon = self._full_soon, False
                await asyncio.sleep(self._first_poll_delay)  # contacts back by then need none

    def poll_soon(self, *, full: bool = False) -> None:
        """Poll `first_poll_delay` seconds from now rather than at the next period (the
        machine woke up or changed networks: contacts online reconnect meanwhile, the
        others may have left envelopes while we slept). `full`: all 7 days (a sleep
        longer than the `RECENT_DAYS` a round reads)."""
        self._full_soon = self._full_soon or full
        self._soon.set()

    def network_changed(self, event: WakeEvent) -> None:
        """A wake or network change: poll soon, all 7 days after a sleep of more than a
        day (a round reads today's and yesterday's mailboxes only)."""
        slept = event.slept if isinstance(event, Resumed) else 0.0
        self.poll_soon(full=slept > (RECENT_DAYS - FUTURE_DAYS - 1) * DAY_SECONDS)

    async def _contacts(self) -> list[ContactRecord]:
        return [r for r in await self._store.call(self._store.contacts.all) if r.dh_key]

    async def post(self, address: str) -> None:
        """Leave everything `address` lacks in today's mailbox (best effort, never raises)."""
        try:
            await self._post(address)
        except Exception as exc:  # offline delivery is best effort; the outbox remains
            log.info("posting to a mailbox failed: %r", exc)

    async def _key(
        self, record: ContactRecord, day: int, index: int, outgoing: bool, epoch: Epoch = NO_EPOCH
    ) -> MailboxKey:
        assert record.dh_key is not None
        sender, recipient = (
            (self._own, record.signing_key) if outgoing else (record.signing_key, self._own)
        )
        return await asyncio.to_thread(
            mailbox_key, self._keys, record.dh_key, sender, recipient, day, index, *epoch
        )

    # ------------------------------------------------------------------ epochs

    async def _outgoing_epoch(self, address: str) -> Epoch:
        cached = self._out_epochs.get(address)
        if cached is None:
            stored = await self._store.call(self._store.mailbox_epochs.get, address, False)
            cached = (stored[-1].epoch, stored[-1].seed) if stored else NO_EPOCH
            self._out_epochs[address] = cached
        return cached

    async def incoming_epochs(self, address: str) -> list[Epoch]:
        """The epochs we poll for `address`: each until `EPOCH_OVERLAP` after a newer one
        replaced it (epoch 0 until that long after the first epoch was issued)."""
        stored = await self._store.call(self._store.mailbox_epochs.get, address, True)
        cutoff = self._clock() - EPOCH_OVERLAP
        epochs: list[Epoch] = []
        if not stored or stored[0].created_at >= cutoff:
            epochs.append(NO_EPOCH)
        for entry in stored:
            if entry.superseded_at is None or entry.superseded_at >= cutoff:
                epochs.append((entry.epoch, entry.seed))
        return epochs

    async def rotate_epoch(self, address: str) -> None:
        """Key rotation: issue a new epoch for the mailbox `address` writes to us (stored
        first), and announce it once our sending chain has stepped (`announce`)."""
        now = self._clock()
        stored = await self._store.call(self._store.mailbox_epochs.get, address, True)
        entry = MailboxEpoch((stored[-1].epoch if stored else 0) + 1, self._random(32), now)
        await self._store.call(self._store.mailbox_epochs.put, address, True, entry)
        await self._store.call(self._store.mailbox_epochs.prune, address, now - EPOCH_OVERLAP)
        session = await self._messenger.sessions.load(address)
        marker = session.ratchet.remote_dh if session is not None else None
        self._announce[address] = (entry.epoch, entry.seed, marker)
        await self.announce(address)

    def announcing(self, address: str) -> bool:
        """Whether an issued epoch still waits to be announced to `address`."""
        return address in self._announce

    async def announce(self, address: str) -> bool:
        """Send a pending epoch announcement if the session stepped since the rotation
        (then the announcement travels on a chain made from a fresh DH key); True if sent."""
        pending = self._announce.get(address)
        if pending is None:
            return False
        epoch, seed, marker = pending
        session = await self._messenger.sessions.load(address)
        if session is None or (marker is not None and session.ratchet.remote_dh == marker):
            return False
        if not await self._messenger.send_control(address, NewMailboxEpoch(epoch, seed).encode()):
            return False
        if self._announce.get(address) == pending:
            del self._announce[address]
        return True

    async def epoch_announced(self, address: str, notice: NewMailboxEpoch) -> None:
        """`address` issued a new epoch for what we leave it: write under it from now on."""
        if notice.epoch <= (await self._outgoing_epoch(address))[0]:
            return
        entry = MailboxEpoch(notice.epoch, notice.seed, self._clock())
        await self._store.call(self._store.mailbox_epochs.put, address, False, entry)
        self._out_epochs[address] = (entry.epoch, entry.seed)
        self._layouts.pop(address, None)
        self._posted.pop(address, None)

    async def _post(self, address: str) -> None:
        if self._messenger.settled(address):
            return  # nothing on its way: no need to load a (long) history to find out
        record = await self._store.call(self._store.contacts.get, address)
        if record is None or record.dh_key is None:
            return
        async with self._lock:
            lacking = len(self._messenger.lacking(address))
            previous = self._posted.get(address)
            already = previous is not None and previous[:2] == (lacking, True)
            # a post dated after now was made before our clock was stepped back: not recent
            recent = previous is not None and 0 <= self._clock() - previous[2] < REPOST_SECONDS
            if already and recent:
                return  # that backlog is already in the DHT
            now = self._clock()
            today = day_of(now)
            epoch = await self._outgoing_epoch(address)
            layout = self._layouts.get(address)
            if layout is None or layout.day != today or layout.epoch != epoch:
                layout = self._layouts[address] = _Layout(today, epoch)
            sealed = await self._seal_backlog(record, layout, now)
            if sealed is None:
                return
            keep, total = sealed
            # a kept slot is already stored (and republished by the DHT layer) unless the
            # last post reached no other node or it is time to refresh
            put_all = (
                previous is None or not previous[1] or not 0 <= now - previous[2] < REPOST_SECONDS
            )
            stored = 1
            held: list[bool] = []
            for index, slot in enumerate(layout.records):
                if index < keep and not put_all:
                    held.append(True)
                    continue
                kept = await self._network.dht.put_record(slot)
                if kept == 0:
                    slot = await self._outnumber(record, layout, index, slot, now)
                    kept = await self._network.dht.put_record(slot)
                stored = min(stored, kept)
                held.append(kept > 0)
                self._written.setdefault(address, set()).add((epoch, today, index))
            self._posted[address] = (lacking, stored > 0, now)
            await self._mark_sent(address, layout.runs, held)
            log.info(
                "left %d mailbox slots (%d new); fewest nodes keeping one: %d",
                total,
                total - keep,
                stored,
            )

    async def _outnumber(
        self, contact: ContactRecord, layout: _Layout, index: int, slot: SignedRecord, now: float
    ) -> SignedRecord:
        """`slot` again, numbered above the one the DHT holds under its key if that one
        outnumbers it (written before a restart while our clock ran ahead, so no node
        takes ours); else `slot` itself."""
        held = await self._network.dht.get_record(slot.key)
        if held is None or held.seq < slot.seq:
            return slot
        self._last_seq = max(self._last_seq, held.seq)
        key = await self._key(contact, layout.day, index, True, layout.epoch)
        renumbered = mailbox_record(key, slot.payload, now, self._next_seq(now))
        layout.records[index] = renumbered
        return renumbered

    async def _seal_backlog(
        self, contact: ContactRecord, layout: _Layout, now: float
    ) -> tuple[int, int] | None:
        """Bring `layout` up to the contact's backlog (new ratchet messages only for the
        slots that change): (slots kept, slots in all), or None if nothing can go."""
        messenger = self._messenger
        address = contact.address
        async with messenger.conversation(address):
            if not messenger.lacking(address):
                return None
        # a first message sets up the session from the contact's DHT bundle: not while
        # holding the conversation's lock, which the user's next `send` waits for
        await messenger.sessions.prepare(address)
        async with messenger.conversation(address) as ledger:
            backlog = messenger.lacking(address)
            if not backlog:
                return None
            keep = kept_slots(layout.runs, backlog)
            offset = sum(len(run) for run in layout.runs[:keep])
            events = backlog[offset:]
            new_runs = layout.runs[:keep]
            new_records = layout.records[:keep]
            done = 0
            while done < len(events) and len(new_runs) < MAX_SLOTS:
                index = len(new_runs)
                event = events[done]
                if len(event) > EVENTS_BUDGET:  # alone, over several slots
                    sealed = await self._seal_fragments(contact, ledger, layout, index, event)
                    if not sealed:
                        break
                    new_runs += [(event,)] + [()] * (len(sealed) - 1)
                    done += 1
                else:
                    run = split_events(events[done:])[0]  # stops before a larger event
                    wire = await messenger.seal_state(address, ledger, run, ENVELOPE_BUDGET)
                    if wire is None:
                        break
                    key = await self._key(contact, layout.day, index, True, layout.epoch)
                    sealed = [(key, seal_envelopes(key, [wire], self._random(_NONCE)))]
                    new_runs.append(tuple(run))
                    done += len(run)
                new_records += [
                    mailbox_record(key, sealed_payload, now, self._next_seq(now))
                    for key, sealed_payload in sealed
                ]
            stale = len(layout.runs)
            layout.runs, layout.records = new_runs, new_records
        # slots of a longer, older layout of today would only repeat what we hold
        for index in range(len(new_runs), stale):
            await self._empty(contact, layout.epoch, layout.day, index, now)
        return keep, len(new_runs)

    async def _mark_sent(
        self, address: str, runs: list[tuple[bytes, ...]], held: list[bool]
    ) -> None:
        """Our messages in slots another node keeps are SENT (with no other node, they
        stay QUEUED: nobody could hand them on). A fragmented event counts once every
        slot of it is kept."""
        events: list[bytes] = []
        for index, run in enumerate(runs):
            if not run:
                continue  # a later fragment: counted with its first slot
            end = index + 1
            while end < len(runs) and not runs[end]:
                end += 1
            if all(held[index:end]):
                events.extend(run)
        if events:
            async with self._messenger.conversation(address) as ledger:
                await self._messenger.mark_sent(address, ledger, events)

    async def _seal_fragments(
        self, contact: ContactRecord, ledger: Ledger, layout: _Layout, first: int, event: bytes
    ) -> list[tuple[MailboxKey, bytes]]:
        """Seal `event` alone and cut its session message over the slots from `first`:
        their (key, payload), or [] if today's slots can't hold it."""
        if first + fragments_needed(len(event)) > MAX_SLOTS:
            return []  # checked before sealing: a sealed message would be a skipped one
        wire = await self._messenger.seal_state(contact.address, ledger, [event], MAX_FRAGMENTED)
        if wire is None:
            return []
        parts = fragment(wire, self._random(FRAGMENT_ID_SIZE))
        if first + len(parts) > MAX_SLOTS:
            return []
        sealed = []
        for index, part in enumerate(parts, start=first):
            key = await self._key(contact, layout.day, index, True, layout.epoch)
            sealed.append((key, seal_envelopes(key, [part], self._random(_NONCE))))
        return sealed

    async def _empty(
        self, contact: ContactRecord, epoch: Epoch, day: int, index: int, now: float
    ) -> None:
        """Overwrite one of our slots with no envelopes (newer seq wins everywhere)."""
        key = await self._key(contact, day, index, True, epoch)
        sealed = seal_envelopes(key, [], self._random(_NONCE))
        empty = mailbox_record(key, sealed, now, self._next_seq(now))
        await self._network.dht.put_record(empty)
        self._network.dht.forget_record(empty.key)

    async def _repost(self) -> None:
        for record in await self._contacts():
            address = record.address
            lacking = len(self._messenger.lacking(address))
            if not lacking:
                await self._clean(record)
                continue
            if self._network.manager.connection(address) is not None:
                continue
            # post again if the backlog changed, the last post reached no other node, the
            # day changed or it is time to refresh
            previous = self._posted.get(address)
            if (
                previous is None
                or previous[:2] != (lacking, True)
                or not 0 <= self._clock() - previous[2] < REPOST_SECONDS
            ):
                await self.post(address)

    async def _clean(self, record: ContactRecord) -> None:
        """The contact holds everything: empty the slots we wrote for it."""
        written = self._written.pop(record.address, set())
        self._layouts.pop(record.address, None)
        self._posted.pop(record.address, None)
        now = self._clock()
        for epoch, day, index in sorted(written):
            try:
                await self._empty(record, epoch, day, index, now)
            except Exception as exc:  # best effort: the records lapse at their expiry
                log.info("emptying a mailbox slot failed: %r", exc)

    async def poll(self, *, full: bool = True) -> int:
        """Read the mailboxes of every contact we are not connected to, slot by slot until
        a miss: the last 7 days' if `full`, else only the `RECENT_DAYS` that can still
        gain envelopes, except for `NEW_CONTACT_READS` contacts whose 7 days were not
        read in this run yet (added since the first round). The number of envelopes
        handled.

        A connected contact is skipped: its history syncs over the connection, which makes
        its mailbox redundant. Every mailbox read is a DHT lookup, ~2 requests to each
        node of a small network: 7 days x 2 contacts every minute looked like a request
        flood to the anomaly detector of every other node on a three-person LAN."""
        handled = 0
        new_reads = NEW_CONTACT_READS
        spaced = False
        for record in await self._contacts():
            if self._network.manager.connection(record.address) is not None:
                self._read_all.add(record.address)
                continue
            if spaced:
                await asyncio.sleep(self._read_spacing)
            spaced = True
            days = poll_days(self._clock())
            read_all = full or (record.address not in self._read_all and new_reads > 0)
            if not read_all:
                days = days[-RECENT_DAYS:]
            elif not full:
                new_reads -= 1
            for epoch in await self.incoming_epochs(record.address):
                firsts = await asyncio.gather(*(self._read(record, d, 0, epoch) for d in days))
                for day, first in zip(days, firsts, strict=True):
                    found = first
                    index = 0
                    while found is not None:
                        key, slot = found
                        handled += await self._handle(record, key, slot)
                        index += 1
                        if index >= MAX_SLOTS:
                            break
                        found = await self._read(record, day, index, epoch)
            if read_all:
                self._read_all.add(record.address)
        return handled

    async def _read(
        self, record: ContactRecord, day: int, index: int, epoch: Epoch = NO_EPOCH
    ) -> tuple[MailboxKey, SignedRecord] | None:
        key = await self._key(record, day, index, False, epoch)
        await self._network.background.wait()
        found = await self._network.dht.get_record(key.dht_key)
        return None if found is None else (key, found)

    async def _handle(self, record: ContactRecord, key: MailboxKey, slot: SignedRecord) -> int:
        """Hand a slot's envelopes to the messenger, once per version of the slot: again
        at the next read if one of them could not be stored (the disk was full)."""
        seen = (record.address, key.epoch, key.day, key.index)
        before = self._seen.get(seen, -1)
        if slot.seq <= before:
            return 0
        self._seen[seen] = slot.seq
        try:
            envelopes = open_envelopes(key, slot.payload)
        except ValueError as exc:
            log.info("ignoring a mailbox slot that does not open: %s", exc)
            return 0
        handled = 0
        for envelope in envelopes:
            wire = self._assemble(record.address, envelope)
            if wire is None:
                continue  # a fragment: its message waits for the other fragments
            handled += 1
            if not await self._messenger.take_payload(record.address, wire):
                # read it again (envelopes taken are duplicates); a fragment's group is
                # kept, so that read completes it again
                self._seen[seen] = before
            elif isinstance(envelope, Fragment):
                self._partial.pop((record.address, envelope.ident), None)
        return handled

    def _assemble(self, address: str, envelope: bytes | Fragment) -> bytes | None:
        """A whole session message: `envelope` itself, or the one its fragment completes
        (None while fragments are missing). A group stays until its message is stored
        (`_handle` drops it)."""
        if not isinstance(envelope, Fragment):
            return envelope
        group = (address, envelope.ident)
        count, parts = self._partial.pop(group, (envelope.count, {}))
        if count != envelope.count:
            return None  # contradicts the fragments seen before: drop the group
        parts[envelope.index] = envelope.chunk
        self._partial[group] = (count, parts)  # re-inserted: the newest goes last
        while len(self._partial) > MAX_PARTIAL:
            del self._partial[next(iter(self._partial))]
        return b"".join(parts[i] for i in range(count)) if len(parts) == count else None
