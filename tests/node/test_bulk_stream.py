"""The bulk stream on loopback: a real `BulkServer` serving a real blockstore to
`fetch_into`, tickets asked for over real connections, and hostile use of the port."""

from __future__ import annotations

import asyncio
import functools
import gc
import os
import socket
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from app.core.bulk import RecordOpener, RecordSealer, encode_wants, stream_keys, ticket_id
from app.core.file_crypto import FileManifest, padded_size
from app.core.identity import IdentityKeys
from app.core.unixfs import CODEC_RAW, cid_codec
from app.node import block_exchange, bulk_server
from app.node.block_exchange import BlockExchange
from app.node.blockstore import Blockstore
from app.node.bulk_fetch import BulkStream, BulkTicket
from app.node.bulk_server import BulkServer, recv_exact
from app.node.early_fetch import EarlySink, check_tree
from app.node.file_fetch import receive_file
from app.node.file_io import share_file
from app.node.network import NetworkStack
from app.node.part_file import PartFile
from app.node.streaming_share import StreamingShare
from app.node.transport import PassThroughHook, TransportSettings

MiB = 1024 * 1024
PEER = "peer-address"


async def until(condition: Callable[[], object], what: str, deadline: float = 60.0) -> None:
    """Wait for `condition` (polled on the loop), not a fixed time: a fixed sleep for
    something that happens on other threads is a flake on a loaded machine. `deadline`
    only bounds a wait that would never end."""
    loop = asyncio.get_running_loop()
    give_up = loop.time() + deadline
    while not condition():
        if loop.time() > give_up:
            raise AssertionError(f"not the case after {deadline} s: {what}")
        await asyncio.sleep(0.01)


async def mid_stream(served: Served, peer: str, fetching: asyncio.Future[Path]) -> None:
    """Until `peer`'s stream is mid-way: blocks are being served (its first progress
    report, after 16 blocks of a 64 MiB file's 256), the fetch still running."""
    await until(lambda: peer in served.addresses or fetching.done(), "blocks served")
    assert not fetching.done(), "the fetch ended before it could be stopped mid-stream"


def running_streams(server: BulkServer) -> int:
    """Connections whose ticket was redeemed (a stream slot each)."""
    with server._lock:
        return sum(1 for root in server._streams.values() if root)


def connections(server: BulkServer) -> int:
    """Connections the server holds: waiting for a ticket or streaming."""
    with server._lock:
        return len(server._streams)


def waiting_hellos(server: BulkServer, host: str) -> int:
    with server._lock:
        return server._hellos.get(host, 0)


class Served:
    """The server's progress reports (called on the event loop)."""

    def __init__(self) -> None:
        self.cids: list[bytes] = []
        self.addresses: set[str] = set()

    def __call__(self, address: str, root: bytes, cid: bytes, size: int) -> None:
        self.addresses.add(address)
        self.cids.append(cid)


class Source:
    """A `BlockSource` with a bulk stream: block by block from `store`, or never (None);
    its tickets are issued to `peer`."""

    def __init__(
        self, server: BulkServer, root: bytes, store: Blockstore | None = None, peer: str = PEER
    ) -> None:
        self.server = server
        self.root = root
        self.store = store
        self.peer = peer
        self.asked: list[bytes] = []

    async def get_block(self, cid: bytes) -> bytes | None:
        self.asked.append(cid)
        return None if self.store is None else await self.store.get_block(cid)

    async def bulk_ticket(self) -> BulkTicket | None:
        secret = self.server.issue(self.peer, self.root)
        return None if secret is None else BulkTicket("127.0.0.1", self.server.port, secret)


class TamperingStore(Blockstore):
    """Flips a bit in every leaf it serves (a malicious sender)."""

    def serve_sync(self, cid: bytes) -> bytes:
        data = super().serve_sync(cid)
        return bytes([data[0] ^ 1]) + data[1:] if cid_codec(cid) == CODEC_RAW else data


async def shared(tmp_path: Path, size: int, store: Blockstore) -> tuple[FileManifest, bytes]:
    data = os.urandom(size)
    source = tmp_path / "file.bin"
    source.write_bytes(data)
    return await share_file(source, store, os.urandom(32)), data


async def ticket_for(server: BulkServer, store: Blockstore, tmp_path: Path) -> tuple[bytes, bytes]:
    """A 1 MiB file shared into `store` and a ticket for it: (root CID, secret)."""
    manifest, _ = await shared(tmp_path, MiB, store)
    secret = server.issue(PEER, manifest.root_cid)
    assert secret is not None
    return manifest.root_cid, secret


@pytest_asyncio.fixture
async def alice(tmp_path: Path) -> AsyncIterator[tuple[BulkServer, Blockstore, Served]]:
    store = Blockstore(tmp_path / "alice")
    served = Served()
    server = BulkServer(store, served)
    await server.start("127.0.0.1")
    yield server, store, served
    await server.stop()


@pytest.mark.asyncio
async def test_a_file_arrives_over_the_bulk_stream(
    alice: tuple[BulkServer, Blockstore, Served], tmp_path: Path
) -> None:
    server, store, served = alice
    manifest, data = await shared(tmp_path, 9 * MiB + 5, store)
    source = Source(server, manifest.root_cid)  # serves nothing block by block
    saved = await receive_file(
        manifest, Blockstore(tmp_path / "bob"), tmp_path / "downloads", {"alice": source}
    )
    assert saved.read_bytes() == data
    assert source.asked == []
    leaves = [c for c in store.cids_sync() if cid_codec(c) == CODEC_RAW]

    def reported() -> list[bytes]:
        return [c for c in served.cids if cid_codec(c) == CODEC_RAW]

    # the last progress report reaches the loop after the stream's end
    await until(lambda: len(reported()) >= len(leaves), "every leaf reported served")
    assert served.addresses == {PEER}
    assert sorted(reported()) == sorted(leaves)


@pytest.mark.asyncio
async def test_blocks_outside_the_ticket_file_are_not_served_and_come_block_by_block(
    alice: tuple[BulkServer, Blockstore, Served], tmp_path: Path
) -> None:
    server, store, _ = alice
    manifest, data = await shared(tmp_path, 3 * MiB, store)
    other, _ = await shared(tmp_path, 2 * MiB, store)
    # a ticket for the other file: none of this file's blocks come over the stream
    source = Source(server, other.root_cid, store)
    saved = await receive_file(
        manifest, Blockstore(tmp_path / "bob"), tmp_path / "downloads", {"alice": source}
    )
    assert saved.read_bytes() == data
    assert manifest.root_cid in source.asked and len(source.asked) >= manifest.chunk_count


@pytest.mark.asyncio
async def test_an_unreachable_bulk_port_means_block_by_block(
    alice: tuple[BulkServer, Blockstore, Served], tmp_path: Path
) -> None:
    """A firewall in the way (here: a port nobody listens on) costs only the attempt."""
    server, store, _ = alice
    manifest, data = await shared(tmp_path, 2 * MiB, store)
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]

    class Firewalled(Source):
        async def bulk_ticket(self) -> BulkTicket | None:
            return BulkTicket("127.0.0.1", port, os.urandom(32))

    source = Firewalled(server, manifest.root_cid, store)
    banned: set[str] = set()
    saved = await receive_file(
        manifest, Blockstore(tmp_path / "bob"), tmp_path / "dl", {"alice": source}, banned=banned
    )
    assert saved.read_bytes() == data and not banned
    assert len(source.asked) > manifest.chunk_count  # every block, one by one


@pytest.mark.asyncio
async def test_a_tampering_sender_is_banned_and_the_file_comes_from_elsewhere(
    tmp_path: Path,
) -> None:
    honest = Blockstore(tmp_path / "alice")
    manifest, data = await shared(tmp_path, 3 * MiB, honest)
    mallory_store = TamperingStore(tmp_path / "mallory")
    for cid in honest.cids_sync():
        mallory_store.put_sync(cid, honest.get_sync(cid))
    mallory = BulkServer(mallory_store, Served())
    await mallory.start("127.0.0.1")
    try:
        banned: set[str] = set()
        sources = {
            "mallory": Source(mallory, manifest.root_cid),
            "alice": Source(mallory, manifest.root_cid, honest),  # block by block: honest
        }
        saved = await receive_file(
            manifest, Blockstore(tmp_path / "bob"), tmp_path / "dl", sources, banned=banned
        )
        assert banned == {"mallory"}
        assert saved.read_bytes() == data
    finally:
        await mallory.stop()


@pytest.mark.asyncio
async def test_tickets_are_used_once_and_expire(
    alice: tuple[BulkServer, Blockstore, Served], tmp_path: Path
) -> None:
    server, store, _ = alice
    root, secret = await ticket_for(server, store, tmp_path)
    assert await asyncio.to_thread(ask_root, server.port, secret, root) is not None
    with pytest.raises(ConnectionError):  # the same ticket again
        await asyncio.to_thread(ask_root, server.port, secret, root)

    now = [0.0]
    late = BulkServer(store, Served(), monotonic=lambda: now[0])
    await late.start("127.0.0.1")
    try:
        secret = late.issue(PEER, root)
        assert secret is not None
        now[0] = bulk_server.TICKET_TTL + 1
        with pytest.raises(ConnectionError):
            await asyncio.to_thread(ask_root, late.port, secret, root)
    finally:
        await late.stop()


def ask_root(port: int, secret: bytes, root: bytes) -> bytes:
    """Speak the protocol by hand: name the ticket, ask for `root`, return the answer."""
    asked_key, answer_key = stream_keys(secret)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(ticket_id(secret))
        sock.sendall(RecordSealer(asked_key).seal(encode_wants([root])))
        opener = RecordOpener(answer_key)
        header = recv_exact(sock, 4)
        return opener.open(header, recv_exact(sock, opener.length(header)))


@pytest.mark.asyncio
async def test_hostile_connections_are_closed_and_the_server_keeps_serving(
    alice: tuple[BulkServer, Blockstore, Served],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    server, store, _ = alice
    manifest, data = await shared(tmp_path, 2 * MiB, store)
    monkeypatch.setattr(bulk_server, "HELLO_TIMEOUT", 0.3)

    def closed_after(payload: bytes) -> bool:
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
            sock.sendall(payload)
            try:
                return sock.recv(1) == b""
            except ConnectionResetError:  # closed with our bytes unread
                return True

    secret = server.issue(PEER, manifest.root_cid)
    assert secret is not None
    hostile = [
        b"",  # silent: the hello times out
        os.urandom(16),  # no such ticket
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        ticket_id(secret) + (2**31).to_bytes(4, "big"),  # a record far too long
    ]
    for payload in hostile:
        assert await asyncio.to_thread(closed_after, payload)
    secret = server.issue(PEER, manifest.root_cid)
    assert secret is not None
    garbage = ticket_id(secret) + (100).to_bytes(4, "big") + os.urandom(100)
    assert await asyncio.to_thread(closed_after, garbage)  # does not decrypt

    source = Source(server, manifest.root_cid)
    saved = await receive_file(
        manifest, Blockstore(tmp_path / "bob"), tmp_path / "downloads", {"alice": source}
    )
    assert saved.read_bytes() == data and source.asked == []


@pytest.mark.asyncio
async def test_silent_connections_of_one_host_and_busy_slots_are_bounded(
    alice: tuple[BulkServer, Blockstore, Served], tmp_path: Path
) -> None:
    """Connections that name no ticket are bounded per host (not by the stream slots a
    contact needs); a ticket over the stream limit is not used up."""
    server, store, _ = alice
    root, secret = await ticket_for(server, store, tmp_path)
    connect = functools.partial(socket.create_connection, ("127.0.0.1", server.port), 5)
    other_host = functools.partial(connect, source_address=("127.0.0.2", 0))
    silent = [other_host() for _ in range(bulk_server.MAX_HELLOS_PER_HOST)]
    try:
        await until(
            lambda: waiting_hellos(server, "127.0.0.2") == bulk_server.MAX_HELLOS_PER_HOST,
            "the silent connections accepted and counted",
        )
        with other_host() as one_too_many:
            assert await asyncio.to_thread(one_too_many.recv, 1) == b""  # closed at once
        # a contact on another host is not kept out by them
        other_root, other = await ticket_for(server, store, tmp_path)
        assert await asyncio.to_thread(ask_root, server.port, other, other_root)
    finally:
        for sock in silent:
            sock.close()
    await until(lambda: connections(server) == 0, "the closed connections let go")

    streams = []
    try:
        for _ in range(bulk_server.MAX_STREAMS):  # every slot taken by a named ticket
            _, running = await ticket_for(server, store, tmp_path)
            sock = connect()
            sock.sendall(ticket_id(running))
            streams.append(sock)
        await until(
            lambda: running_streams(server) == bulk_server.MAX_STREAMS,
            "every slot taken by a redeemed ticket",
        )
        with pytest.raises(ConnectionError):  # no free slot
            await asyncio.to_thread(ask_root, server.port, secret, root)
    finally:
        for sock in streams:
            sock.close()
    await until(lambda: running_streams(server) == 0, "the closed streams' slots free")
    assert await asyncio.to_thread(ask_root, server.port, secret, root)  # still valid


@pytest.mark.asyncio
async def test_revoking_the_file_closes_its_streams(
    alice: tuple[BulkServer, Blockstore, Served], tmp_path: Path
) -> None:
    server, store, _ = alice
    root, secret = await ticket_for(server, store, tmp_path)
    asked_key, answer_key = stream_keys(secret)
    sealer, opener = RecordSealer(asked_key), RecordOpener(answer_key)

    def answer(sock: socket.socket) -> bytes:
        sock.sendall(sealer.seal(encode_wants([root])))
        header = recv_exact(sock, 4)
        return opener.open(header, recv_exact(sock, opener.length(header)))

    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(ticket_id(secret))
        assert (await asyncio.to_thread(answer, sock))[:1] == b"\x00"
        unused = server.issue(PEER, root)
        server.revoke(root)
        with pytest.raises(ConnectionError):
            await asyncio.to_thread(answer, sock)
    assert unused is not None
    with pytest.raises(ConnectionError):  # its tickets went too
        await asyncio.to_thread(ask_root, server.port, unused, root)


@pytest.mark.asyncio
async def test_an_aborted_stream_returns_only_after_its_last_write(
    alice: tuple[BulkServer, Blockstore, Served], tmp_path: Path
) -> None:
    server, store, served = alice
    manifest, _ = await shared(tmp_path, 64 * MiB, store)
    source = Source(server, manifest.root_cid)
    fetching = asyncio.ensure_future(
        receive_file(manifest, Blockstore(tmp_path / "bob"), tmp_path / "dl", {"a": source})
    )
    await mid_stream(served, PEER, fetching)
    fetching.cancel()
    with pytest.raises(asyncio.CancelledError):
        await fetching
    # the stream's threads ended before the part was discarded: nothing is left
    assert not [p for p in (tmp_path / "dl").iterdir() if p.is_file()]


@pytest.mark.asyncio
async def test_stopping_a_stream_logs_no_unretrieved_error(
    alice: tuple[BulkServer, Blockstore, Served], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Cancelling (a pause or cancel of the transfer) ends the stream with the error our
    abort causes; that error is expected, so asyncio must not report it as unretrieved."""
    server, store, served = alice
    manifest, _ = await shared(tmp_path, 64 * MiB, store)
    for attempt in range(3):
        peer = f"peer-{attempt}"  # named in the progress reports of this attempt's stream
        source = Source(server, manifest.root_cid, peer=peer)
        dl = tmp_path / f"dl{attempt}"
        fetching = asyncio.ensure_future(
            receive_file(manifest, Blockstore(tmp_path / f"bob{attempt}"), dl, {"a": source})
        )
        await mid_stream(served, peer, fetching)
        fetching.cancel()
        with pytest.raises(asyncio.CancelledError):
            await fetching
        del fetching
        gc.collect()  # an unretrieved exception is reported when its future is collected
        await asyncio.sleep(0)
    assert not [r for r in caplog.records if "never retrieved" in r.getMessage()]


# --------------------------------------------------------------------------- tickets


@pytest_asyncio.fixture
async def pair() -> AsyncIterator[tuple[NetworkStack, NetworkStack]]:
    settings = TransportSettings(prefer_websocket=True, backoff_initial=0.2, backoff_max=1.0)
    stacks = [
        NetworkStack(IdentityKeys.from_seeds(os.urandom(32), os.urandom(32)), settings=settings)
        for _ in range(2)
    ]
    for stack in stacks:
        await stack.start("127.0.0.1", 0)
    await stacks[1].join_via(stacks[0].endpoints())
    for stack in stacks:
        await stack.publish_presence()
    yield stacks[0], stacks[1]
    for stack in stacks:
        await stack.stop()


class Policy:
    def __init__(self, allowed: set[str], roots: set[bytes]) -> None:
        self.allowed, self.roots = allowed, roots

    async def may_serve(self, address: str, root: bytes, cid: bytes) -> bool:
        return address in self.allowed and root in self.roots

    def served(self, address: str, root: bytes, cid: bytes, size: int) -> None:
        pass


class StrictHook(PassThroughHook):
    """A frame hook that says it shapes in strict mode."""

    mode = "strict"


@pytest.mark.asyncio
async def test_tickets_over_the_authenticated_connection(
    pair: tuple[NetworkStack, NetworkStack], tmp_path: Path
) -> None:
    alice, bob = pair
    store = Blockstore(tmp_path / "alice")
    manifest, data = await shared(tmp_path, 3 * MiB, store)
    server = BulkServer(store, Served())
    await server.start("127.0.0.1")
    try:
        BlockExchange(alice, store, Policy({bob.address}, {manifest.root_cid}), server).start()
        exchange = BlockExchange(bob, Blockstore(tmp_path / "bob"), Policy(set(), set()))
        exchange.start()
        await bob.manager.connect(alice.address)
        root = manifest.root_cid

        ticket = await exchange.bulk_ticket(alice.address, root)
        assert ticket is not None and ticket.host == "127.0.0.1" and ticket.port == server.port
        assert await exchange.bulk_ticket(alice.address, os.urandom(36)) is None  # not a CID
        other, _ = await shared(tmp_path, MiB, store)
        assert await exchange.bulk_ticket(alice.address, other.root_cid) is None  # not allowed

        saved = await receive_file(
            manifest,
            Blockstore(tmp_path / "bob-2"),
            tmp_path / "downloads",
            {"alice": exchange.source(alice.address, root)},
        )
        assert saved.read_bytes() == data
        stream = BulkStream(ticket)  # the ticket handed out above is still good, once
        assert (await asyncio.to_thread(stream.run, EmptySink())).leaves == 0
    finally:
        await server.stop()


class EmptySink:
    def take_fresh(self) -> list[bytes]:
        return []

    def accept_sync(self, cid: bytes, data: bytes | memoryview) -> bool:
        raise AssertionError("nothing was asked for")


@pytest.mark.asyncio
async def test_no_tickets_in_strict_shaping(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # an answer that never came would now wait 10 minutes, not 5 s: the generous bound
    # below tells a refusal from a time-out without timing anything
    monkeypatch.setattr(block_exchange, "TICKET_TIMEOUT", 600.0)
    settings = TransportSettings(prefer_websocket=True, backoff_initial=0.2, backoff_max=1.0)
    keys = [IdentityKeys.from_seeds(os.urandom(32), os.urandom(32)) for _ in range(2)]
    alice = NetworkStack(keys[0], settings=settings)
    bob = NetworkStack(keys[1], settings=settings, hook=StrictHook())
    for stack in (alice, bob):
        await stack.start("127.0.0.1", 0)
    await bob.join_via(alice.endpoints())
    for stack in (alice, bob):
        await stack.publish_presence()
    store = Blockstore(tmp_path / "alice")
    manifest, _ = await shared(tmp_path, MiB, store)
    server = BulkServer(store, Served())
    await server.start("127.0.0.1")
    try:
        root = manifest.root_cid
        alice_exchange = BlockExchange(alice, store, Policy({bob.address}, {root}), server)
        bob_exchange = BlockExchange(bob, store, Policy({alice.address}, {root}), server)
        for exchange in (alice_exchange, bob_exchange):
            exchange.start()
        await bob.manager.connect(alice.address)
        # Bob shapes strictly: he does not ask, and refuses (no waiting for a time-out)
        assert await asyncio.wait_for(bob_exchange.bulk_ticket(alice.address, root), 60) is None
        assert await asyncio.wait_for(alice_exchange.bulk_ticket(bob.address, root), 60) is None
    finally:
        await server.stop()
        for stack in (alice, bob):
            await stack.stop()


@pytest.mark.asyncio
async def test_the_accept_thread_sleeps_until_a_connection_and_stop_wakes_it(
    tmp_path: Path,
) -> None:
    """Found by a soak test: the accept thread polled twice a second for the node's
    lifetime (a fifth of an idle node's wake-ups). It now blocks in accept, and `stop`
    wakes it."""
    store = Blockstore(tmp_path / "store")
    server = BulkServer(store, Served())
    await server.start("127.0.0.1")
    assert server._listening is not None and server._listening.gettimeout() is None
    threads = list(server._threads)
    await asyncio.wait_for(server.stop(), 5)
    assert threads and not any(t.is_alive() for t in threads)


@pytest.mark.asyncio
async def test_early_tickets_serve_leaves_by_index_as_they_are_written(
    pair: tuple[NetworkStack, NetworkStack], tmp_path: Path
) -> None:
    """A file offered before its root is known (protocol.md 10.6): BULK_ASK_EARLY gets a
    ticket only for a transfer the sender's policy serves to that contact, and the
    stream by index carries each leaf once the sender has written it."""
    alice, bob = pair
    store = Blockstore(tmp_path / "alice")
    source = tmp_path / "film.bin"
    source.write_bytes(os.urandom(3 * MiB + 7))
    size = source.stat().st_size
    offered = FileManifest(
        root_cid=b"",
        file_key=os.urandom(32),
        padded_size=padded_size(size),
        size=size,
        name="film.bin",
        mime_type="application/octet-stream",
    )
    tid = os.urandom(16).hex()
    share = StreamingShare(tid, source, offered)
    told: list[int] = []
    asked: list[tuple[str, str]] = []

    async def early_policy(address: str, transfer_id: str) -> Any:
        asked.append((address, transfer_id))
        if address == bob.address and transfer_id == tid:
            return share.block_sync, told.extend
        return None

    server = BulkServer(store, Served())
    await server.start("127.0.0.1")
    try:
        serving = BlockExchange(alice, store, Policy(set(), set()), server)
        serving.early_policy = early_policy
        serving.start()
        exchange = BlockExchange(bob, Blockstore(tmp_path / "bob"), Policy(set(), set()))
        exchange.start()
        await bob.manager.connect(alice.address)
        assert await exchange.early_ticket(alice.address, os.urandom(16).hex()) is None
        assert await exchange.early_ticket(alice.address, "not hex") is None  # never sent
        ticket = await exchange.early_ticket(alice.address, tid)
        assert ticket is not None and ticket.by_index and ticket.port == server.port
        assert asked[-1] == (bob.address, tid) and len(asked) == 2
        part = PartFile(offered, tmp_path / "downloads", tid)
        cids: dict[int, bytes] = {}
        # the stream starts before a single leaf is written; it waits for each
        streaming = asyncio.ensure_future(
            asyncio.to_thread(BulkStream(ticket).run, EarlySink(part, cids))
        )
        made = await asyncio.to_thread(share.run_sync, store)
        outcome = await asyncio.wait_for(streaming, 60)
        assert outcome.leaves == made.chunk_count and not outcome.tampered
        check_tree(made, part, cids)
        assert part.publish().read_bytes() == source.read_bytes()
        await until(lambda: len(told) == made.chunk_count, "the leaves served were told")
    finally:
        await server.stop()
