"""The DHT record store's sharing among sources, and a real hostile node flooding one.

The node-level test binds the hostile node to 127.0.0.2 (another loopback host) and the
honest ones to 127.0.0.1, so the victim can tell them apart as a node on a LAN would.
"""

from __future__ import annotations

import contextlib
import hashlib
import time

import pytest

from app.core.identity import IdentityKeys
from app.core.record_errors import InvalidRecord
from app.core.records import RecordKind, SignedRecord, sign_record
from app.node.dht import DhtNode
from app.node.record_store import LOCAL_SOURCE, RecordStore, source_of
from tools.fuzz.record_flood import flood

HONEST, HOSTILE = "127.0.0.1", "127.0.0.2"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def mailbox(tag: str, expires_at: float, seq: int = 1) -> SignedRecord:
    keys = IdentityKeys.from_seeds(
        hashlib.sha256(b"s" + tag.encode()).digest(), hashlib.sha256(b"d" + tag.encode()).digest()
    )
    return sign_record(
        keys.sign,
        keys.public.signing_key,
        RecordKind.MAILBOX,
        seq=seq,
        expires_at=int(expires_at),
        payload=tag.encode(),
        slot=b"\x00\x01",
    )


def fill(store: RecordStore, source: str, prefix: str, count: int, expires_at: float) -> int:
    kept = 0
    for i in range(count):
        record = mailbox(f"{prefix}{i}", expires_at)
        try:
            store.offer(record.key, record.encode(), source)
        except InvalidRecord:
            continue
        kept += 1
    return kept


def test_sources_are_hosts_and_ipv6_networks() -> None:
    assert source_of(("127.0.0.2", 4000)) == source_of(("127.0.0.2", 5000)) == "127.0.0.2"
    assert source_of(("2001:db8::1", 1)) == source_of(("2001:db8::ffff:1", 2)) == "2001:db8::/64"
    assert source_of(("::ffff:10.0.0.1", 1)) == "10.0.0.1"


def test_a_flooding_source_makes_room_for_every_other_source() -> None:
    clock = FakeClock()
    store = RecordStore(clock, max_records=20)
    later = clock() + 3600
    assert fill(store, "10.0.0.1", "honest", 3, later) == 3
    assert fill(store, "10.0.0.66", "flood", 50, later) == 17  # it fills what is free
    assert store.held_by("10.0.0.66") == 17
    # the flood can't take more; every honest record still takes one of its places
    assert fill(store, "10.0.0.66", "more flood", 10, later) == 0
    assert fill(store, "10.0.0.2", "replica", 5, later) == 5
    assert fill(store, LOCAL_SOURCE, "own", 2, later) == 2
    assert len(store) == 20 and store.held_by("10.0.0.66") == 10
    for prefix, count in (("honest", 3), ("replica", 5), ("own", 2)):
        for i in range(count):
            assert store.get(mailbox(f"{prefix}{i}", later).key) is not None
    # the flood lost the records it stored last: its first ones are the ones held
    assert store.get(mailbox("flood0", later).key) is not None
    assert store.get(mailbox("flood16", later).key) is None


def test_sources_share_a_full_store_evenly_and_one_cannot_take_from_a_smaller() -> None:
    clock = FakeClock()
    store = RecordStore(clock, max_records=30)
    later = clock() + 3600
    assert fill(store, "a", "a", 30, later) == 30
    assert fill(store, "b", "b", 30, later) == 15  # until both hold 15
    assert fill(store, "c", "c", 30, later) == 10
    assert sorted(store.held_by(s) for s in "abc") == [10, 10, 10]
    assert fill(store, "a", "a again", 5, later) == 0


def test_a_record_vouched_for_by_another_source_survives_its_flooders_eviction() -> None:
    clock = FakeClock()
    store = RecordStore(clock, max_records=10)
    later = clock() + 3600
    assert fill(store, "10.0.0.66", "flood", 9, later) == 9
    honest = mailbox("honest", later)
    store.offer(honest.key, honest.encode(), "10.0.0.1")
    store.offer(honest.key, honest.encode(), "10.0.0.66")  # re-stored by the flooder
    assert store.held_by("10.0.0.66") == 10  # the honest record is its last stored
    assert fill(store, "10.0.0.2", "other", 8, later) == 4
    assert store.get(honest.key) is not None  # its charge went, the record stayed
    assert [store.held_by(s) for s in ("10.0.0.66", "10.0.0.2", "10.0.0.1")] == [5, 4, 1]


def test_expiry_and_newer_versions_keep_the_accounts_right() -> None:
    clock = FakeClock()
    store = RecordStore(clock, max_records=4)
    first = mailbox("x", clock() + 100)
    store.offer(first.key, first.encode(), "a")
    newer = mailbox("x", clock() + 200, seq=2)
    store.offer(first.key, newer.encode(), "b")  # one key, charged to both senders
    assert (len(store), store.held_by("a"), store.held_by("b")) == (1, 1, 1)
    assert fill(store, "c", "c", 3, clock() + 50) == 3
    clock.now += 60  # c's records expire: their places and charges go
    assert list(store) == [(first.key, newer.encode())]
    assert store.held_by("c") == 0
    clock.now += 200
    assert store.get(first.key) is None
    assert (len(store), store.held_by("a"), store.held_by("b")) == (0, 0, 0)


@pytest.mark.asyncio
async def test_a_hostile_node_filling_a_nodes_store_does_not_keep_honest_records_out() -> None:
    """A hostile node (another host, many ports, a made-up identity per record) fills
    the victim's store; an honest publisher's record is still kept, survives more of the
    flood and is read by a node that joins after the publisher left."""
    victim, publisher = DhtNode(max_records=64), DhtNode()
    await victim.start(HONEST, 0)
    await publisher.start(HONEST, 0)
    reader = DhtNode()
    try:
        assert await publisher.bootstrap([(HONEST, victim.port)]) > 0
        flooded = await flood(HONEST, victim.port, 100, source=HOSTILE, per_port=8)
        assert flooded == {"kept": 64, "refused": 36}
        honest = mailbox("an offline message", time.time() + 3600)
        assert await publisher.put_record(honest) == 1  # the victim kept it
        publisher.stop()
        flooded = await flood(HONEST, victim.port, 50, source=HOSTILE, per_port=8)
        assert flooded == {"refused": 50}
        await reader.start(HONEST, 0)
        assert await reader.bootstrap([(HONEST, victim.port)]) > 0
        assert await reader.get_record(honest.key) == honest
    finally:
        for node in (victim, publisher, reader):
            node.stop()


def test_the_largest_source_is_found_right_through_random_offers_and_expiry() -> None:
    """The store finds the largest source through an index by count (a max over every
    source cost 0.65 ms a store with 4,096 sources): it must agree with counting."""
    import random

    clock = FakeClock()
    store = RecordStore(clock, max_records=40)
    rng = random.Random(5)
    records = [mailbox(f"r{i}", clock() + rng.choice([50, 100, 3600])) for i in range(300)]
    for step, record in enumerate(records):
        source = f"10.0.0.{rng.choice([1, 1, 1, 2, 3, 4, 5, 6])}"
        with contextlib.suppress(InvalidRecord):
            store.offer(record.key, record.encode(), source)
        if rng.random() < 0.3:  # another source re-stores a held record
            again = rng.choice(records[: step + 1])
            with contextlib.suppress(InvalidRecord):
                store.offer(again.key, again.encode(), f"10.0.0.{rng.randint(1, 6)}")
        if step % 50 == 49:
            clock.now += 60
            store.cull()
        counts = {s: len(k) for s, k in store._by_source.items()}
        assert store._top == max(counts.values(), default=0)
        for count, sources in store._by_count.items():
            assert sources and all(counts[s] == count for s in sources)
        assert len(store) <= 40
