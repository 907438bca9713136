"""Mailbox slots: per-(day, index) keys, splitting a backlog, keeping unchanged slots."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from typing import Any

import cbor2
import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from app.core.cid import Cid
from app.core.identity import IdentityKeys
from app.core.records import MAX_RECORD_BYTES, SignedRecord, newer, validate
from app.node import mailbox
from app.node.state_message import StateMessage
from app.node.storage.mailbox_epochs import MailboxEpoch
from app.node.storage.repositories import ContactRecord

NOW = 1_800_000_000


def keys() -> tuple[IdentityKeys, IdentityKeys, IdentityKeys]:
    return tuple(  # type: ignore[return-value]
        IdentityKeys.from_seeds(os.urandom(32), os.urandom(32)) for _ in range(3)
    )


def test_every_slot_has_its_own_unlinkable_key_both_contacts_derive() -> None:
    alice, bob, eve = keys()
    a, b = alice.public, bob.public
    day = mailbox.day_of(NOW)
    written = [
        mailbox.mailbox_key(alice, b.dh_key, a.signing_key, b.signing_key, day, i)
        for i in range(mailbox.MAX_SLOTS)
    ]
    read = [
        mailbox.mailbox_key(bob, a.dh_key, a.signing_key, b.signing_key, day, i)
        for i in range(mailbox.MAX_SLOTS)
    ]
    assert [k.dht_key for k in written] == [k.dht_key for k in read]
    assert [k.sealing_key for k in written] == [k.sealing_key for k in read]
    # owners, DHT keys and sealing keys all differ between slots: nothing links them
    assert len({k.owner for k in written}) == mailbox.MAX_SLOTS
    assert len({k.dht_key for k in written}) == mailbox.MAX_SLOTS
    assert len({k.sealing_key for k in written}) == mailbox.MAX_SLOTS
    # another day, the other direction or an outsider give other keys again
    tomorrow = mailbox.mailbox_key(alice, b.dh_key, a.signing_key, b.signing_key, day + 1, 0)
    reverse = mailbox.mailbox_key(alice, b.dh_key, b.signing_key, a.signing_key, day, 0)
    outsider = mailbox.mailbox_key(eve, b.dh_key, a.signing_key, b.signing_key, day, 0)
    others = {tomorrow.dht_key, reverse.dht_key, outsider.dht_key}
    assert len(others) == 3 and not others & {k.dht_key for k in written}
    assert written[0].index == 0 and written[5].index == 5 and written[5].day == day
    assert "secret" in repr(written[1]) and written[1].sealing_key.hex() not in repr(written[1])


def test_slot_index_is_bounded() -> None:
    alice, bob, _ = keys()
    a, b = alice.public, bob.public
    for index in (-1, mailbox.MAX_SLOTS):
        with pytest.raises(ValueError):
            mailbox.mailbox_key(alice, b.dh_key, a.signing_key, b.signing_key, 0, index)


def test_each_slot_is_a_separately_signed_record_that_opens_only_with_its_key() -> None:
    alice, bob, _ = keys()
    a, b = alice.public, bob.public
    day = mailbox.day_of(NOW)
    slot0, slot1 = (
        mailbox.mailbox_key(alice, b.dh_key, a.signing_key, b.signing_key, day, i) for i in (0, 1)
    )
    reader1 = mailbox.mailbox_key(bob, a.dh_key, a.signing_key, b.signing_key, day, 1)
    payload = mailbox.seal_envelopes(slot1, [b"ratchet message"], os.urandom(12))
    record = mailbox.mailbox_record(slot1, payload, NOW)
    assert len(record.encode()) <= MAX_RECORD_BYTES
    assert record.expires_at == NOW + 7 * 86400
    assert validate(record.encode(), reader1.dht_key, NOW + 6 * 86400) == record
    assert mailbox.open_envelopes(reader1, record.payload) == [b"ratchet message"]
    with pytest.raises(ValueError):
        mailbox.open_envelopes(slot0, record.payload)  # moved to another slot: refused
    empty = mailbox.seal_envelopes(slot1, [], os.urandom(12))
    assert mailbox.open_envelopes(reader1, empty) == []


def test_a_full_slot_of_events_fits_in_one_record() -> None:
    alice, bob, _ = keys()
    key = mailbox.mailbox_key(alice, bob.public.dh_key, b"a" * 32, b"b" * 32, 0, 3)
    # the largest session message a slot carries still seals into a valid record
    payload = mailbox.seal_envelopes(key, [os.urandom(mailbox.ENVELOPE_BUDGET)], os.urandom(12))
    assert len(mailbox.mailbox_record(key, payload, NOW).encode()) <= MAX_RECORD_BYTES
    assert mailbox.EVENTS_BUDGET + mailbox.ENVELOPE_OVERHEAD == mailbox.ENVELOPE_BUDGET


def test_split_keeps_order_and_fills_slots_up_to_the_budget() -> None:
    events = [bytes([i]) * (300 + i) for i in range(60)]
    runs = mailbox.split_events(events, budget=2000)
    assert [e for run in runs for e in run] == events
    assert all(sum(map(len, run)) <= 2000 for run in runs)
    # greedy: no run could have taken the first event of the next one
    for run, following in itertools.pairwise(runs):
        assert sum(map(len, run)) + len(following[0]) > 2000
    assert len(runs) > 1
    assert mailbox.split_events([], budget=2000) == []


def test_split_stops_before_an_event_too_big_for_any_slot() -> None:
    small, huge = b"s" * 100, b"h" * 3000
    assert mailbox.split_events([small, small, huge, small], budget=2000) == [[small, small]]
    assert mailbox.split_events([huge, small], budget=2000) == []


def test_fifty_text_events_need_several_slots_within_the_daily_bound() -> None:
    events = [os.urandom(450) for _ in range(50)]
    runs = mailbox.split_events(events)
    assert 1 < len(runs) <= mailbox.MAX_SLOTS
    assert [e for run in runs for e in run] == events


def test_unchanged_slots_are_kept_and_a_slot_with_room_is_refilled() -> None:
    e = [bytes([i]) * 600 for i in range(10)]
    posted = [tuple(e[0:3]), tuple(e[3:5])]
    # the same backlog: every slot stays
    assert mailbox.kept_slots(posted, e[:5], budget=2000) == 2
    # more events and room in the last slot (1200 + 600 <= 2000): it is rewritten
    assert mailbox.kept_slots(posted, e[:7], budget=2000) == 1
    # more events but the last slot is full: a new slot follows it
    assert mailbox.kept_slots(posted, e[:7], budget=1500) == 2
    # the recipient caught up on the first events: everything is laid out anew
    assert mailbox.kept_slots(posted, e[1:7], budget=2000) == 0
    assert mailbox.kept_slots([], e, budget=2000) == 0


def test_a_recipient_reads_the_last_seven_days_and_tomorrow_oldest_first() -> None:
    days = mailbox.poll_days(NOW)
    today = mailbox.day_of(NOW)
    assert days == list(range(today - 6, today + 2))
    assert mailbox.MAILBOX_TTL == mailbox.RETENTION_DAYS * mailbox.DAY_SECONDS


# ---------------------------------------------------------------- the courier, end to end
#
# Two couriers over an in-memory DHT. The messenger is a stand-in that exposes what the
# courier uses (backlog, per-contact lock, session book, sent marks, payload handler);
# `encrypt` is replaced by a counter so each envelope says which ratchet message it is.


class FakeDht:
    def __init__(self) -> None:
        self.holders = 1
        """Other nodes that keep what is put (0: we are alone in the DHT)."""
        self.records: dict[bytes, SignedRecord] = {}
        self.puts: list[bytes] = []
        self.gets: list[bytes] = []
        self.published: set[bytes] = set()
        self.now = float(NOW)
        """The storing nodes' clock."""

    async def put_record(self, record: SignedRecord) -> int:
        validate(record.encode(), record.key, self.now)
        held = self.records.get(record.key)
        self.puts.append(record.key)
        if held is not None and held != record and not newer(record, held):
            return 0  # StaleRecord on every node
        self.records[record.key] = record
        self.published.add(record.key)
        return self.holders

    async def get_record(self, key: bytes) -> SignedRecord | None:
        self.gets.append(key)
        return self.records.get(key)

    def forget_record(self, key: bytes) -> None:
        self.published.discard(key)


class FakeLedger:
    def heads(self) -> list[Cid]:
        return []


class FakeSessions:
    def __init__(self) -> None:
        self.counter = 0
        self.dht_answers = asyncio.Event()
        """`prepare` (a first session from the contact's DHT bundle) waits for this."""
        self.dht_answers.set()

    async def prepare(self, address: str) -> None:
        await self.dht_answers.wait()

    async def for_sending(self, address: str) -> int:
        return self.counter

    async def save(self, address: str, session: int) -> None:
        self.counter = session


def fake_encrypt(session: int, plaintext: bytes, random: object) -> tuple[int, bytes]:
    return session + 1, session.to_bytes(4, "big") + plaintext


class FakeMessenger:
    def __init__(self) -> None:
        self.backlog: list[bytes] = []
        self.sessions = FakeSessions()
        self.sent: list[bytes] = []
        self.handled: list[tuple[int, list[bytes]]] = []
        self._locks: dict[str, asyncio.Lock] = {}

    @contextlib.asynccontextmanager
    async def conversation(self, address: str) -> AsyncIterator[FakeLedger]:
        async with self._locks.setdefault(address, asyncio.Lock()):
            yield FakeLedger()

    async def seal_state(
        self, address: str, ledger: FakeLedger, events: list[bytes], max_size: int
    ) -> bytes | None:
        """Like `Messenger.seal_state`, with a counting stand-in for the ratchet."""
        plaintext = StateMessage(events, list(ledger.heads()), True).encode()
        session, wire = fake_encrypt(await self.sessions.for_sending(address), plaintext, None)
        if len(wire) > max_size:
            return None
        await self.sessions.save(address, session)
        return wire

    def lacking(self, address: str) -> list[bytes]:
        return list(self.backlog)

    def settled(self, address: str) -> bool:
        return False  # the backlog is always "loaded" here

    async def mark_sent(self, address: str, ledger: object, batch: list[bytes]) -> None:
        self.sent.extend(batch)

    async def take_payload(self, address: str, payload: bytes) -> bool:
        message = StateMessage.decode(payload[4:])
        self.handled.append((int.from_bytes(payload[:4], "big"), message.events))
        return True


class FakeContacts:
    def __init__(self, record: ContactRecord) -> None:
        self.records = [record]

    def get(self, address: str) -> ContactRecord | None:
        return next((r for r in self.records if r.address == address), None)

    def all(self) -> list[ContactRecord]:
        return list(self.records)


class FakeEpochs:
    """In-memory `MailboxEpochRepository` (same contract: incoming epochs kept with the
    time a newer one replaced them, one outgoing epoch)."""

    def __init__(self) -> None:
        self.rows: dict[tuple[str, bool], list[MailboxEpoch]] = {}

    def put(self, address: str, incoming: bool, entry: MailboxEpoch) -> None:
        rows = self.rows.setdefault((address, incoming), [])
        if incoming:
            rows[:] = [
                replace(r, superseded_at=entry.created_at) if r.superseded_at is None else r
                for r in rows
            ]
        else:
            rows.clear()
        rows.append(entry)

    def get(self, address: str, incoming: bool) -> list[MailboxEpoch]:
        return list(self.rows.get((address, incoming), []))

    def prune(self, address: str, superseded_before: float) -> None:
        rows = self.rows.get((address, True), [])
        rows[:] = [
            r for r in rows if r.superseded_at is None or r.superseded_at >= superseded_before
        ]


class FakeStore:
    def __init__(self, identity: IdentityKeys, contact: ContactRecord) -> None:
        self.identity = identity
        self.contacts = FakeContacts(contact)
        self.mailbox_epochs = FakeEpochs()

    async def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        return fn(*args)


class FakeManager:
    def __init__(self) -> None:
        self.connected: set[str] = set()

    def connection(self, address: str) -> object | None:
        return object() if address in self.connected else None


class NoPacing:
    async def wait(self) -> None:
        pass


class FakeNetwork:
    def __init__(self, dht: FakeDht) -> None:
        self.dht = dht
        self.manager = FakeManager()
        self.background = NoPacing()


def courier(
    ours: IdentityKeys, theirs: IdentityKeys, dht: FakeDht, clock: list[float]
) -> tuple[mailbox.MailboxCourier, FakeMessenger]:
    contact = ContactRecord(
        "them", "Them", theirs.public.signing_key, theirs.public.dh_key, (), True
    )
    messenger = FakeMessenger()
    made = mailbox.MailboxCourier(
        FakeStore(ours, contact),  # type: ignore[arg-type]
        FakeNetwork(dht),  # type: ignore[arg-type]
        messenger,  # type: ignore[arg-type]
        clock=lambda: clock[0],
        read_spacing=0,
    )
    return made, messenger


@pytest.mark.asyncio
async def test_polls_after_the_first_read_recent_days_only_and_skip_connected_contacts() -> None:
    """Each mailbox read is a DHT lookup: 7 days per contact every minute looked like a
    request flood to the other nodes of a three-person LAN (their detectors rate-limited
    every honest node, every minute)."""
    alice, bob, _ = keys()
    dht = FakeDht()
    clock = [float(NOW - 86400)]  # yesterday
    sender, outbox = courier(alice, bob, dht, clock)
    reader, inbox = courier(bob, alice, dht, clock)
    outbox.backlog = [os.urandom(300)]
    await sender.post("them")  # left yesterday, read today by a later, short round
    clock[0] = float(NOW)

    assert await reader.poll() == 1  # the first round reads the last 7 days
    first_round = len(dht.gets)
    assert first_round >= mailbox.RETENTION_DAYS
    dht.gets.clear()
    outbox.backlog.append(os.urandom(300))
    clock[0] += 1
    await sender.post("them")  # today's slot
    assert await reader.poll(full=False) == 1
    # today's and yesterday's first slots, and the next slot of each day that had one
    assert mailbox.RECENT_DAYS <= len(dht.gets) <= 2 * mailbox.RECENT_DAYS < first_round
    assert inbox.handled[-1][1][-1] == outbox.backlog[-1]  # today's event arrived

    reader._network.manager.connected.add("them")  # type: ignore[attr-defined]
    dht.gets.clear()
    assert await reader.poll() == 0
    assert dht.gets == []  # a connected contact's history syncs over the connection


@pytest.mark.asyncio
@pytest.mark.parametrize("ahead", [3600.0, 86400.0])
async def test_a_sender_whose_clock_runs_ahead_is_read_on_time(ahead: float) -> None:
    """A sender writes under its own UTC day: with its clock an hour ahead late in our
    day, or a day ahead, that is our tomorrow, which no poll read (the envelopes waited
    until our clock reached that day, or lapsed unread)."""
    alice, bob, _ = keys()
    dht = FakeDht()
    late_today = float(mailbox.day_of(NOW) * mailbox.DAY_SECONDS + 86400 - 600)
    reader_clock, sender_clock = [late_today], [late_today + ahead]
    dht.now = late_today  # the other nodes' clocks are right
    sender, outbox = courier(alice, bob, dht, sender_clock)
    reader, inbox = courier(bob, alice, dht, reader_clock)
    assert await reader.poll() == 0  # the first, full round: nothing yet
    outbox.backlog = [os.urandom(300)]
    await sender.post("them")
    assert await reader.poll(full=False) == 1
    assert inbox.handled[-1][1] == outbox.backlog

    fresh, inbox = courier(bob, alice, dht, reader_clock)  # a restart: the full round
    assert await fresh.poll() == 1
    assert inbox.handled[-1][1] == outbox.backlog


@pytest.mark.asyncio
async def test_a_slot_rewritten_after_the_clock_was_stepped_back_replaces_the_old_one() -> None:
    """The slot's sequence was the time in ms: once NTP set the sender's clock an hour
    back, the refilled slot numbered below the one it replaces and every node kept the
    old one; the recipient never read what was added."""
    alice, bob, _ = keys()
    dht = FakeDht()
    clock = [float(NOW)]
    sender, outbox = courier(alice, bob, dht, clock)
    reader, inbox = courier(bob, alice, dht, [float(NOW)])
    outbox.backlog = [os.urandom(300)]
    await sender.post("them")
    clock[0] -= 3600  # the same UTC day
    outbox.backlog.append(os.urandom(300))
    await sender.post("them")
    assert await reader.poll() == 1
    assert inbox.handled[-1][1] == outbox.backlog


@pytest.mark.asyncio
async def test_a_slot_written_before_a_restart_while_the_clock_ran_ahead_is_replaced() -> None:
    """Written while the sender's clock ran an hour ahead; the sender restarts with the
    clock corrected and refills the slot: numbered below the old one, it was refused by
    every node, and what was added waited until the clock caught up."""
    alice, bob, _ = keys()
    dht = FakeDht()
    ahead = [float(NOW + 3600)]
    sender, outbox = courier(alice, bob, dht, ahead)
    outbox.backlog = [os.urandom(300)]
    await sender.post("them")
    restarted, again = courier(alice, bob, dht, [float(NOW)])
    again.backlog = [*outbox.backlog, os.urandom(300)]
    await restarted.post("them")
    reader, inbox = courier(bob, alice, dht, [float(NOW)])
    assert await reader.poll() == 1
    assert inbox.handled[-1][1] == again.backlog


@pytest.mark.asyncio
async def test_contacts_added_later_get_their_7_days_read_one_per_round() -> None:
    """Messages a new contact left in the days before we added it are read, but two
    contacts added at once are read one round after the other (not one burst)."""
    alice, bob, carol = keys()
    dht = FakeDht()
    clock = [float(NOW - 3 * 86400)]
    sender, outbox = courier(alice, bob, dht, clock)
    reader, _ = courier(bob, carol, dht, clock)  # Bob's only contact: Carol
    outbox.backlog = [os.urandom(300)]
    await sender.post("them")  # Alice writes to Bob three days ago
    clock[0] = float(NOW)
    assert await reader.poll() == 0  # the first round: Carol, 7 days
    dht.gets.clear()
    assert await reader.poll(full=False) == 0
    recent = len(dht.gets)  # Carol: the recent days only

    contacts = reader._store.contacts  # type: ignore[attr-defined]
    new = ContactRecord("alice", "Alice", alice.public.signing_key, alice.public.dh_key, (), True)
    dave = keys()[0].public
    other = ContactRecord("dave", "Dave", dave.signing_key, dave.dh_key, (), True)
    contacts.records[:] = [contacts.records[0], new, other]
    dht.gets.clear()
    assert await reader.poll(full=False) == 1  # Alice's 3-day-old envelope
    second = len(dht.gets)
    dht.gets.clear()
    assert await reader.poll(full=False) == 0
    third = len(dht.gets)
    # round 2: Carol recent, Alice 7 days, Dave recent; round 3: Dave's 7 days
    assert second >= recent + mailbox.RETENTION_DAYS + mailbox.RECENT_DAYS
    assert third == 2 * recent + len(mailbox.poll_days(NOW))
    dht.gets.clear()
    assert await reader.poll(full=False) == 0
    assert len(dht.gets) == 3 * recent  # everyone read once: the recent days only


@pytest.mark.asyncio
async def test_a_backlog_goes_out_over_several_slots_and_comes_back_in_order() -> None:
    alice, bob, _ = keys()
    dht = FakeDht()
    clock = [float(NOW)]
    sender, outbox = courier(alice, bob, dht, clock)
    reader, inbox = courier(bob, alice, dht, clock)
    events = [os.urandom(600) for _ in range(30)]  # ~18 KiB: more than three records
    outbox.backlog = events[:25]

    await sender.post("them")
    first = len(dht.records)
    assert first == len(mailbox.split_events(events[:25])) >= 3
    assert outbox.sent == events[:25]
    assert await reader.poll() == first
    received = [e for _, batch in inbox.handled for e in batch]
    assert received == events[:25]  # slot by slot, in order, each one on its own
    counters = [c for c, _ in inbox.handled]
    assert counters == sorted(counters)
    assert await reader.poll() == 0  # nothing new: every slot's seq was already read

    # the backlog grows: full slots stay (no new ratchet message, not stored again)
    outbox.backlog = events
    clock[0] += 1
    dht.puts.clear()
    await sender.post("them")
    assert outbox.sent[-5:] == events[25:] and set(outbox.sent) == set(events)
    changed = len(dht.puts)
    assert 1 <= changed < len(dht.records)
    handled_before = len(inbox.handled)
    assert await reader.poll() == changed
    again = [e for _, batch in inbox.handled[handled_before:] for e in batch]
    assert again[-5:] == events[25:]  # the new events, after what the last slot held

    # the recipient caught up (its heads arrived over a connection): slots are emptied
    outbox.backlog = []
    clock[0] += 1
    await sender._repost()
    assert not dht.published
    assert await reader.poll() == 0
    keys_for_slots = [
        mailbox.mailbox_key(
            bob,
            alice.public.dh_key,
            alice.public.signing_key,
            bob.public.signing_key,
            mailbox.day_of(NOW),
            i,
        )
        for i in range(len(dht.records))
    ]
    for key in keys_for_slots:
        assert mailbox.open_envelopes(key, dht.records[key.dht_key].payload) == []


@pytest.mark.asyncio
async def test_a_shorter_layout_empties_the_slots_it_no_longer_uses() -> None:
    alice, bob, _ = keys()
    dht = FakeDht()
    clock = [float(NOW)]
    sender, outbox = courier(alice, bob, dht, clock)
    reader, inbox = courier(bob, alice, dht, clock)
    events = [os.urandom(600) for _ in range(30)]
    outbox.backlog = events
    await sender.post("them")
    slots = len(dht.records)
    # part of the backlog was acknowledged: laid out anew, fewer slots, the rest emptied
    outbox.backlog = events[20:]
    clock[0] += 1
    await sender.post("them")
    used = len(mailbox.split_events(events[20:]))
    assert len(dht.records) == slots > used
    for index in range(used, slots):
        key = mailbox.mailbox_key(
            bob,
            alice.public.dh_key,
            alice.public.signing_key,
            bob.public.signing_key,
            mailbox.day_of(NOW),
            index,
        )
        assert mailbox.open_envelopes(key, dht.records[key.dht_key].payload) == []
        assert key.dht_key not in dht.published
    assert await reader.poll() == len(mailbox.split_events(events[20:]))
    assert [e for _, batch in inbox.handled for e in batch] == events[20:]


class _FullDiskMessenger:
    """Takes envelopes; while `full`, the ones it is handed can't be stored."""

    def __init__(self) -> None:
        self.full = True
        self.stored: list[bytes] = []
        self.offered: list[bytes] = []

    async def take_payload(self, address: str, payload: bytes) -> bool:
        self.offered.append(payload)
        if self.full:
            return False
        if payload not in self.stored:
            self.stored.append(payload)
        return True


@pytest.mark.asyncio
async def test_a_slot_whose_envelopes_could_not_be_stored_is_read_again() -> None:
    """Envelopes read from a mailbox while the disk is full are not lost for the run: the
    slot counts as read only once what it carries was stored."""
    alice, bob, _ = keys()
    a, b = alice.public, bob.public
    day = mailbox.day_of(NOW)
    written = mailbox.mailbox_key(alice, b.dh_key, a.signing_key, b.signing_key, day)
    read = mailbox.mailbox_key(bob, a.dh_key, a.signing_key, b.signing_key, day)
    slot = mailbox.mailbox_record(
        written, mailbox.seal_envelopes(written, [b"one", b"two"], os.urandom(12)), NOW
    )
    messenger = _FullDiskMessenger()
    store: Any = type("Store", (), {"identity": bob})()
    box = mailbox.MailboxCourier(store, None, messenger)  # type: ignore[arg-type]
    contact: Any = type("Contact", (), {"address": a.address})()
    assert await box._handle(contact, read, slot) == 2
    assert messenger.stored == []
    messenger.full = False
    assert await box._handle(contact, read, slot) == 2  # read again: now stored
    assert messenger.stored == [b"one", b"two"]
    offered = len(messenger.offered)
    assert await box._handle(contact, read, slot) == 0  # and not again
    assert len(messenger.offered) == offered


@pytest.mark.asyncio
async def test_an_event_larger_than_a_slot_goes_over_several_and_comes_back_whole() -> None:
    """Found by a tester: one 10 KB message (any event over ~5.7 KiB) could not be left
    in a mailbox, and neither could anything after it. It is sealed alone and its
    session message cut into fragments over consecutive slots."""
    alice, bob, _ = keys()
    dht = FakeDht()
    clock = [float(NOW)]
    sender, outbox = courier(alice, bob, dht, clock)
    reader, inbox = courier(bob, alice, dht, clock)
    big = os.urandom(33 * 1024)  # a message at the 32 KiB limit, with its event fields
    events = [os.urandom(300), big, os.urandom(300), os.urandom(300)]
    outbox.backlog = list(events)
    await sender.post("them")
    assert outbox.sent == events
    slots = len(dht.records)
    assert slots == 1 + mailbox.fragments_needed(len(big)) + 1
    assert await reader.poll() == 3  # three session messages: before, the big one, after
    received = [e for _, batch in inbox.handled for e in batch]
    assert received == events

    # the backlog grows: the fragments stay as they are (not refilled), new slots follow
    outbox.backlog = [*events, os.urandom(300)]
    clock[0] += 1
    dht.puts.clear()
    await sender.post("them")
    assert len(dht.puts) == 1  # only the last slot (refilled with the new event)
    assert await reader.poll() == 1
    assert [e for _, batch in inbox.handled for e in batch][-1] == outbox.backlog[-1]


def test_fragments_are_checked_before_they_are_put_together() -> None:
    alice, bob, _ = keys()
    day = mailbox.day_of(NOW)
    key = mailbox.mailbox_key(alice, bob.public.dh_key, alice.public.signing_key,
                              bob.public.signing_key, day)  # fmt: skip
    wire = os.urandom(20_000)
    parts = mailbox.fragment(wire, bytes(8))
    assert b"".join(p.chunk for p in parts) == wire and len(parts) == 4
    sealed = mailbox.seal_envelopes(key, [parts[1]], os.urandom(12))
    assert mailbox.open_envelopes(key, sealed) == [parts[1]]
    for bad in (
        [bytes(7), 0, 2, b"x"],  # short id
        [bytes(8), 2, 2, b"x"],  # index out of range
        [bytes(8), 0, mailbox.MAX_FRAGMENTS + 1, b"x"],  # too many
        [bytes(8), 0, 2, b""],  # empty
        [bytes(8), 0, 2],  # a field missing
    ):
        plain = cbor2.dumps([bad])
        nonce = os.urandom(12)
        payload = nonce + AESGCM(key.sealing_key).encrypt(nonce, plain, key.owner)
        with pytest.raises(ValueError):
            mailbox.open_envelopes(key, payload)


@pytest.mark.asyncio
async def test_a_message_stays_queued_while_no_other_node_keeps_its_slot() -> None:
    """Found by a tester: alone in the DHT, a message left "in the mailbox" showed as
    sent although nobody could ever hand it on."""
    alice, bob, _ = keys()
    dht = FakeDht()
    dht.holders = 0
    clock = [float(NOW)]
    sender, outbox = courier(alice, bob, dht, clock)
    outbox.backlog = [os.urandom(300)]
    await sender.post("them")
    assert dht.records and outbox.sent == []
    dht.holders = 1  # a node joined: the next round posts again, and now it is sent
    clock[0] += 1
    await sender._repost()
    assert outbox.sent == outbox.backlog


@pytest.mark.asyncio
async def test_a_first_session_is_set_up_without_holding_the_conversation() -> None:
    """Posting a first message sets up the session from the contact's DHT bundle: a
    lookup that may take seconds. It must not hold the conversation's lock meanwhile:
    the user's next `send` to that contact waits for that lock."""
    alice, bob, _ = keys()
    sender, outbox = courier(alice, bob, FakeDht(), [float(NOW)])
    outbox.backlog = [os.urandom(300)]
    outbox.sessions.dht_answers.clear()
    posting = asyncio.ensure_future(sender.post("them"))
    for _ in range(20):
        await asyncio.sleep(0)
    assert not posting.done()  # waiting for the DHT
    assert not outbox._locks["them"].locked()
    outbox.sessions.dht_answers.set()
    await posting
    assert outbox.sent == outbox.backlog
