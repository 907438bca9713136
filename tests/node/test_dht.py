"""The DHT over loopback: validated stores and reads, a forging node, churn, signalling.

Every node listens on 127.0.0.1 and bootstraps only from nodes of the same test.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, ClassVar

import pytest
import umsgpack  # type: ignore[import-untyped]
from kademlia.network import Server
from kademlia.protocol import KademliaProtocol

from app.core.domains import Domain
from app.core.identity import IdentityKeys
from app.core.record_errors import InvalidRecord, StaleRecord, WrongRecordKey
from app.core.records import (
    MAX_RECORD_BYTES,
    PresencePayload,
    RecordKind,
    SignedRecord,
    dht_key,
    sign_record,
    validate,
)
from app.node.api import InvalidArgument
from app.node.dht import DhtNode
from app.node.dht_protocol import MAX_SIGNAL_BYTES, RttEstimator
from app.node.record_store import RecordStore

HOST = "127.0.0.1"


class FakeClock:
    """Wall-clock stand-in the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def identity(tag: str) -> IdentityKeys:
    return IdentityKeys.from_seeds(
        hashlib.sha256(b"s" + tag.encode()).digest(), hashlib.sha256(b"d" + tag.encode()).digest()
    )


def presence(keys: IdentityKeys, seq: int, expires_at: float, port: int = 4000) -> SignedRecord:
    return sign_record(
        keys.sign,
        keys.public.signing_key,
        RecordKind.PRESENCE,
        seq=seq,
        expires_at=int(expires_at),
        payload=PresencePayload((f"127.0.0.1:{port}",)).encode(),
    )


@asynccontextmanager
async def network(count: int, **options: Any) -> AsyncIterator[list[DhtNode]]:
    """`count` started, bootstrapped nodes; all stopped on exit."""
    nodes: list[DhtNode] = []
    try:
        for _ in range(count):
            node = DhtNode(**options)
            await node.start(HOST, 0)
            nodes.append(node)
        rng = random.Random(count)
        for i, node in enumerate(nodes[1:], start=1):
            seeds = {0, rng.randrange(i)}
            assert await node.bootstrap([(HOST, nodes[s].port) for s in seeds]) > 0
        yield nodes
    finally:
        for node in nodes:
            node.stop()


def test_record_store_keeps_the_highest_valid_and_is_bounded() -> None:
    clock = FakeClock()
    store = RecordStore(clock, max_records=2)
    alice, bob, carol = identity("alice"), identity("bob"), identity("carol")
    first, second = presence(alice, 1, clock() + 100), presence(alice, 2, clock() + 50)
    assert store.offer(first.key, first.encode()) == first
    assert store.offer(first.key, first.encode()) == first  # the same record again
    assert store.offer(first.key, second.encode()) == second
    with pytest.raises(StaleRecord):
        store.offer(first.key, first.encode())
    with pytest.raises(WrongRecordKey):
        store.offer(first.key, presence(bob, 9, clock() + 100).encode())
    bobs = presence(bob, 1, clock() + 100)
    store.offer(bobs.key, bobs.encode())
    carols = presence(carol, 1, clock() + 100)
    with pytest.raises(InvalidRecord, match="as many records"):
        store.offer(carols.key, carols.encode())
    clock.now += 60  # alice's record expires: its slot frees up
    assert store.get(first.key) is None
    store.offer(carols.key, carols.encode())
    assert sorted(k for k, _ in store) == sorted([bobs.key, carols.key])


def test_rtt_estimator_adapts_within_bounds() -> None:
    rtt = RttEstimator(minimum=0.25, maximum=2.0)
    assert rtt.timeout() == 2.0  # nothing measured yet: be patient
    for _ in range(20):
        rtt.sample(0.001)
    assert rtt.timeout() == 0.25
    assert 0.01 <= rtt.stall_after() <= 0.125
    for _ in range(20):
        rtt.sample(0.4)
    assert 0.4 <= rtt.timeout() <= 2.0
    assert rtt.stall_after() <= rtt.timeout() / 2


@pytest.mark.asyncio
async def test_put_get_and_newer_sequence_replaces_older() -> None:
    alice = identity("alice")
    now = time.time()
    async with network(5) as nodes:
        assert all(n.peer_count() >= 3 for n in nodes)
        first = presence(alice, 1, now + 3600)
        assert await nodes[1].put_record(first) >= 4
        assert await nodes[4].get_record(first.key) == first
        second = presence(alice, 2, now + 3600, port=4001)
        assert await nodes[2].put_record(second) >= 4
        for reader in nodes:
            assert await reader.get_record(first.key) == second
        assert await nodes[3].put_record(first) == 0  # every holder refuses the older one
        assert await nodes[0].get_record(first.key) == second
        missing = dht_key(RecordKind.PRESENCE, identity("nobody").public.signing_key)
        assert await nodes[0].get_record(missing) is None


@pytest.mark.asyncio
async def test_lookup_of_a_nodes_own_id_does_not_raise() -> None:
    async with network(4) as nodes:
        for node in nodes:
            assert await node.get_record(node.node_id) is None
        assert await nodes[0].bootstrap([(HOST, nodes[0].port)]) == 0  # only ourselves


@pytest.mark.asyncio
async def test_expired_records_are_not_served_and_renewal_republishes() -> None:
    clock = FakeClock()
    alice = identity("alice")
    renewals: list[int] = []

    def renew(old: SignedRecord) -> SignedRecord:
        renewals.append(old.seq)
        return presence(alice, old.seq + 1, clock() + 3600)

    async with network(4, clock=clock, renew_before=600.0) as nodes:
        lapsing = presence(identity("bob"), 1, clock() + 100)
        assert await nodes[0].put_record(lapsing) >= 3
        assert await nodes[1].get_record(lapsing.key) == lapsing
        record = presence(alice, 1, clock() + 1000)
        assert await nodes[0].put_record(record, renew=renew) >= 3
        clock.now += 500  # 500 s left: inside renew_before
        await nodes[0].republish()
        assert renewals == [1]
        renewed = await nodes[2].get_record(record.key)
        assert renewed is not None and renewed.seq == 2
        assert await nodes[2].get_record(lapsing.key) is None  # bob's expired, no renewer
        clock.now += 2000  # past the first record's expiry: the renewed one still lives
        assert await nodes[3].get_record(record.key) == renewed
        with pytest.raises(Exception, match="expired"):
            await nodes[0].put_record(lapsing)


@pytest.mark.asyncio
async def test_signalling_round_trip() -> None:
    async with network(3) as nodes:
        seen: list[tuple[tuple[str, int], bytes]] = []

        async def answer(sender: tuple[str, int], payload: bytes) -> bytes:
            seen.append((sender, payload))
            return b"answer:" + payload

        async def broken(sender: tuple[str, int], payload: bytes) -> bytes:
            raise RuntimeError("handler bug")

        async def oversize(sender: tuple[str, int], payload: bytes) -> bytes:
            return b"x" * (MAX_SIGNAL_BYTES + 1)

        nodes[1].set_signal_handler(answer)
        target = (HOST, nodes[1].port)
        assert await nodes[0].send_signal(target, b"offer") == b"answer:offer"
        big = os.urandom(MAX_SIGNAL_BYTES - len(b"answer:"))
        assert await nodes[2].send_signal(target, big) == b"answer:" + big
        assert seen[0] == ((HOST, nodes[0].port), b"offer")
        with pytest.raises(InvalidArgument):
            await nodes[0].send_signal(target, b"x" * (MAX_SIGNAL_BYTES + 1))
        assert await nodes[0].send_signal((HOST, nodes[2].port), b"offer") is None  # no handler
        nodes[1].set_signal_handler(broken)
        assert await nodes[0].send_signal(target, b"offer") is None
        nodes[1].set_signal_handler(oversize)
        assert await nodes[0].send_signal(target, b"offer") is None
        nodes[2].stop()
        started = time.monotonic()
        assert await nodes[0].send_signal((HOST, nodes[2].port), b"x", timeout=0.2) is None
        assert time.monotonic() - started < 2.0


class ForgingProtocol(KademliaProtocol):  # type: ignore[misc]
    """An unmodified-library node that answers every read with a bad record."""

    bad_values: ClassVar[list[Any]] = []

    def rpc_find_value(self, sender: Any, nodeid: bytes, key: bytes) -> Any:
        super().rpc_find_value(sender, nodeid, key)
        return {"value": random.choice(self.bad_values)}

    def rpc_find_node(self, sender: Any, nodeid: bytes, key: bytes) -> Any:
        honest = super().rpc_find_node(sender, nodeid, key)
        return [*honest, ["not", "a", "node"], [b"\x00" * 20, "999.1.1.1", 1], 42]


class ForgingServer(Server):  # type: ignore[misc]
    protocol_class = ForgingProtocol


def oversize_bundle(alice: IdentityKeys, now: float) -> SignedRecord:
    """A correctly keyed and signed prekey bundle, just too large to accept."""
    owner = alice.public.signing_key
    payload = b"x" * MAX_RECORD_BYTES
    unsigned = SignedRecord(RecordKind.PREKEY_BUNDLE, owner, 1, int(now + 3600), payload, bytes(64))
    signature = alice.sign(Domain.DHT_RECORD, unsigned.signed_bytes())
    return SignedRecord(RecordKind.PREKEY_BUNDLE, owner, 1, int(now + 3600), payload, signature)


def forged_values(
    alice: IdentityKeys, bob: IdentityKeys, old: SignedRecord, now: float
) -> dict[str, Any]:
    """Everything a forger might try to pass off as alice's presence record."""
    bobs = presence(bob, 99, now + 3600)  # valid, but bob's: wrong key
    resigned = SignedRecord(
        old.kind, old.owner, 100, old.expires_at, old.payload, old.signature
    )  # seq bumped without the key
    other_domain = SignedRecord(
        old.kind,
        old.owner,
        101,
        old.expires_at,
        old.payload,
        alice.sign(Domain.INVITE, resigned.signed_bytes()),
    )
    return {
        "wrong-key": bobs.encode(),
        "older-sequence": old.encode(),
        "oversize": oversize_bundle(alice, now).encode(),
        "garbage": os.urandom(300),
        "garbage-msgpack": umsgpack.packb({"value": 1}),
        "not-bytes": "a string",
        "bad-signature": resigned.encode(),
        "other-domain": other_domain.encode(),
        "expired": presence(alice, 102, now - 1).encode(),
        "trailing-bytes": old.encode() + b"\x00",
    }


async def store_at(sender: DhtNode, target: DhtNode, key: bytes, value: Any) -> Any:
    """A direct store RPC from `sender` to `target`; the target's answer."""
    ok, kept = await sender._server.proto.call(
        (HOST, target.port), "store", sender.node_id, key, value
    )
    assert ok
    return kept


@pytest.mark.slow
@pytest.mark.asyncio
async def test_forging_node_never_gets_bad_records_to_readers_and_churn() -> None:
    alice, bob = identity("alice"), identity("bob")
    now = time.time()
    async with network(24, ksize=8) as nodes:
        key = dht_key(RecordKind.PRESENCE, alice.public.signing_key)
        bundle_key = dht_key(RecordKind.PREKEY_BUNDLE, alice.public.signing_key)
        captured = presence(alice, 3, now + 3600, port=4003)  # valid, but superseded
        previous = presence(alice, 4, now + 3600, port=4004)
        current = presence(alice, 5, now + 3600, port=4005)
        for node in nodes:
            assert await store_at(nodes[1], node, key, previous.encode()) is True
        # the newest record reaches only two of the nodes closest to the key
        by_distance = sorted(nodes, key=lambda n: int.from_bytes(n.node_id) ^ int.from_bytes(key))
        for holder in (by_distance[2], by_distance[6]):
            assert await store_at(nodes[0], holder, key, current.encode()) is True
        bad = forged_values(alice, bob, captured, now)
        ForgingProtocol.bad_values = list(bad.values())

        forger = ForgingServer(ksize=8)
        await forger.listen(0, interface=HOST)
        forger_port = forger.transport.get_extra_info("sockname")[1]
        try:
            assert await forger.bootstrap([(HOST, nodes[5].port), (HOST, nodes[17].port)])
            # the forger stores every bad value directly at every node, over the RPC
            for name, value in bad.items():
                target = bundle_key if name == "oversize" else key
                for node in nodes:
                    answered, kept = await forger.protocol.store(
                        (HOST, node.port), forger.node.id, target, value
                    )
                    assert answered, name
                    assert kept is False, name
            # and datagrams no RPC may carry: too large, or not msgpack at all
            raw = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            huge = umsgpack.packb(["store", [forger.node.id, key, os.urandom(20_000)]])
            for node in nodes:
                raw.sendto(b"\x00" + os.urandom(20) + huge, (HOST, node.port))
                raw.sendto(b"\x00" + os.urandom(20) + b"\xc1garbage", (HOST, node.port))
            raw.close()
            await asyncio.sleep(0.05)
            for node in nodes:
                held = node._server.storage.get(key)
                assert held is not None and validate(held, key, time.time()).seq in (4, 5)
                assert node._server.storage.get(bundle_key) is None
            assert any(  # the forger is a contact readers may ask
                (n.ip, n.port) == (HOST, forger_port)
                for node in nodes
                for bucket in node._server.proto.router.buckets
                for n in bucket.get_nodes()
            )

            results = await asyncio.gather(*(n.get_record(key) for n in nodes))
            assert all(r == current for r in results)
            assert await asyncio.gather(*(n.get_record(bundle_key) for n in nodes)) == [None] * 24
            await asyncio.sleep(0.05)  # read repair: the closest nodes now hold seq 5
            assert all(
                validate(n._server.storage.get(key), key, time.time()) == current
                for n in by_distance[:8]
            )

            # kill 20% of the honest nodes, the first publisher and a holder among them
            killed = [nodes[0], by_distance[2], *random.Random(2).sample(nodes[1:], 3)]
            killed = list({id(n): n for n in killed}.values())
            for node in killed:
                node.stop()
            alive = [n for n in nodes if n not in killed]
            assert len(alive) <= 24 - 4
            results = await asyncio.gather(*(n.get_record(key) for n in alive))
            assert all(r == current for r in results)
            later = presence(identity("carol"), 1, time.time() + 3600)
            assert await alive[0].put_record(later) >= 4
            results = await asyncio.gather(*(n.get_record(later.key) for n in alive))
            assert all(r == later for r in results)
        finally:
            forger.stop()


@pytest.mark.asyncio
async def test_a_neighbour_is_evicted_after_two_unanswered_rpcs_not_one() -> None:
    """Found by a soak test: a node of a three-node network was left with no neighbour
    for a while; one lost datagram or a peer busy for a moment (the RPC timeout can be
    0.25 s on a LAN) was enough to evict it."""
    async with network(2) as (first, second):
        proto = first._server.protocol
        peer = next(iter(proto.router.find_neighbors(proto.source_node)))
        assert (peer.ip, peer.port) == (HOST, second.port)
        proto.handle_call_response((False, None), peer)
        assert first.peer_count() == 1
        proto.handle_call_response((True, None), peer)  # it answered: the count restarts
        proto.handle_call_response((False, None), peer)
        assert first.peer_count() == 1
        proto.handle_call_response((False, None), peer)
        assert first.peer_count() == 0


@pytest.mark.asyncio
async def test_a_made_up_node_id_gets_no_records_and_a_host_only_its_budget() -> None:
    """A ping under a made-up id made a node hand the address it came from every record
    that id should hold (one 50-byte ping: 465 stores, 2.9 MB, to an address anyone can
    forge). Now an address gets records only once it answers our ping with that id, and
    a host at most `HANDOVER_RECORDS_PER_MINUTE` a minute; a real node joining still gets
    its records."""
    from app.node.dht_protocol import HANDOVER_RECORDS_PER_MINUTE
    from tools.fuzz.record_flood import made_up_record

    victim = DhtNode()
    await victim.start(HOST, 0)
    raw = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    raw.bind(("127.0.0.3", 0))
    raw.setblocking(False)
    newcomer = DhtNode()
    try:
        held = [made_up_record(RecordKind.MAILBOX, 3600, 100) for _ in range(600)]
        for record in held:
            victim._server.storage.offer(record.key, record.encode())
        for _ in range(3):
            ping = umsgpack.packb(["ping", [os.urandom(20)]])
            raw.sendto(b"\x00" + os.urandom(20) + ping, (HOST, victim.port))
        await asyncio.sleep(2.5)  # its checks time out: the made-up ids leave the table
        names = []
        while True:
            try:
                data = raw.recv(65536)
            except BlockingIOError:
                break
            message = umsgpack.unpackb(data[21:])
            names.append(message[0] if data[:1] == b"\x00" else "answer")
        assert sorted(names) == ["answer"] * 3 + ["ping"] * 3  # our answers, its checks
        assert victim.peer_count() == 0

        await newcomer.start("127.0.0.4", 0)
        assert await newcomer.bootstrap([(HOST, victim.port)]) > 0
        for _ in range(50):
            await asyncio.sleep(0.1)
            if len(newcomer._server.storage) >= HANDOVER_RECORDS_PER_MINUTE:
                break
        await asyncio.sleep(0.3)
        assert len(newcomer._server.storage) == HANDOVER_RECORDS_PER_MINUTE
    finally:
        raw.close()
        victim.stop()
        newcomer.stop()


@pytest.mark.asyncio
async def test_a_node_restarted_on_its_port_replaces_its_old_id_in_routing_tables() -> None:
    """Node ids are random per run: a node restarted on the same port joined its
    neighbours' routing tables under its new id, and its old ids stayed there for good
    (the new node answers at their address). Found with `status`: "DHT peers: 17" on a
    network of three daemons restarted a few times; the one node then counted several
    times among the closest nodes a record was stored at."""
    async with network(1) as (keeper,):
        port = 0
        for _ in range(3):
            node = DhtNode()
            await node.start(HOST, port)
            port = node.port
            assert await node.bootstrap([(HOST, keeper.port)]) > 0
            if _ < 2:
                node.stop()
                await asyncio.sleep(0.1)  # the socket closes on the next turns of the loop
        try:
            router = keeper._server.protocol.router
            deadline = time.monotonic() + 10
            while keeper.peer_count() != 1 and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            assert [n.id for b in router.buckets for n in b.get_nodes()] == [node.node_id]
        finally:
            node.stop()
