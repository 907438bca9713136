"""Block exchange (0xb2-0xb4) between real NetworkStacks on loopback: blocks are served
only under the policy, and a peer serving tampered blocks is banned while the file is
fetched from an honest one."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import pytest_asyncio

from app.core.identity import IdentityKeys
from app.core.unixfs import raw_cid
from app.node.block_exchange import BLOCK, WANT, BlockExchange
from app.node.blockstore import Blockstore
from app.node.file_fetch import receive_file
from app.node.file_io import share_file
from app.node.files_errors import BlocksUnavailable
from app.node.network import NetworkStack
from app.node.transport import TransportSettings
from app.node.transport.websocket import dial_websocket


class Policy:
    """Serves the blocks of `roots` to `allowed` peers; remembers what it served."""

    def __init__(self, allowed: set[str], roots: set[bytes]) -> None:
        self.allowed = allowed
        self.roots = roots
        self.served_cids: list[bytes] = []

    async def may_serve(self, address: str, root: bytes, cid: bytes) -> bool:
        return address in self.allowed and root in self.roots

    def served(self, address: str, root: bytes, cid: bytes, size: int) -> None:
        self.served_cids.append(cid)


class TamperingStore(Blockstore):
    """A blockstore that flips a bit in every block it serves (a malicious peer)."""

    async def get_block(self, cid: bytes) -> bytes | None:
        data = await super().get_block(cid)
        return None if data is None else bytes([data[0] ^ 1]) + data[1:]


@pytest_asyncio.fixture
async def stacks() -> AsyncIterator[list[NetworkStack]]:
    started: list[NetworkStack] = []
    settings = TransportSettings(prefer_websocket=True, backoff_initial=0.2, backoff_max=1.0)
    for _ in range(3):
        stack = NetworkStack(IdentityKeys.from_seeds(os.urandom(32), os.urandom(32)),
                             settings=settings)  # fmt: skip
        await stack.start("127.0.0.1", 0)
        started.append(stack)
    for stack in started[1:]:
        await stack.join_via(started[0].endpoints())
    for stack in started:
        await stack.publish_presence()
    yield started
    for stack in started:
        await stack.stop()


@pytest.mark.asyncio
async def test_tampered_blocks_are_rejected_and_fetched_elsewhere(
    stacks: list[NetworkStack], tmp_path: Path
) -> None:
    bob, alice, mallory = stacks
    source = tmp_path / "file.bin"
    data = os.urandom(3 * 256 * 1024 + 77)
    source.write_bytes(data)
    alice_store = Blockstore(tmp_path / "alice")
    manifest = await share_file(source, alice_store, os.urandom(32))
    mallory_store = TamperingStore(tmp_path / "mallory")
    for cid in alice_store.cids_sync():
        mallory_store.put_sync(cid, alice_store.get_sync(cid))
    roots = {manifest.root_cid}
    alice_policy = Policy({bob.address}, roots)
    mallory_policy = Policy({bob.address}, roots)
    BlockExchange(alice, alice_store, alice_policy).start()
    mallory_exchange = BlockExchange(mallory, mallory_store, mallory_policy)
    mallory_exchange.start()
    bob_store = Blockstore(tmp_path / "bob")
    exchange = BlockExchange(bob, bob_store, Policy(set(), set()))
    exchange.start()
    await bob.manager.connect(alice.address)
    await bob.manager.connect(mallory.address)

    # not a peer Alice serves, or not a file she shares: DONT_HAVE, nothing served
    await mallory.manager.connect(alice.address)
    root = manifest.root_cid
    assert await mallory_exchange.request(alice.address, root, root) is None
    other = raw_cid(b"another file")
    assert await exchange.request(alice.address, other, other) is None
    assert alice_policy.served_cids == []
    assert await exchange.request(alice.address, root, root) == alice_store.get_sync(root)

    # Mallory first in the source order: her tampered blocks are rejected, she is banned
    banned: set[str] = set()
    sources = {
        "mallory": exchange.source(mallory.address, manifest.root_cid),
        "alice": exchange.source(alice.address, manifest.root_cid),
    }
    downloads = tmp_path / "downloads"
    saved = await receive_file(
        manifest, bob_store, downloads, sources, max_per_peer=2, banned=banned
    )
    assert banned == {"mallory"} and mallory_policy.served_cids
    assert saved.read_bytes() == data

    # Mallory alone: nothing she serves is accepted, so the fetch reports the blocks
    # unavailable and saves and stores nothing
    empty = Blockstore(tmp_path / "empty")
    with pytest.raises(BlocksUnavailable):
        await receive_file(
            manifest,
            empty,
            downloads,
            {"mallory": exchange.source(mallory.address, manifest.root_cid)},
        )
    assert not [p for p in (tmp_path / "empty").rglob("*") if p.is_file()]
    assert [p.name for p in downloads.iterdir()] == [saved.name]


class _Conn:
    """A connection that records what is sent and can be closed by the test."""

    def __init__(self) -> None:
        self.sent: list[bytes] = []
        self.closed = asyncio.Event()

    async def send(self, payload: bytes, *, awaits_answer: bool = False) -> None:
        self.sent.append(payload)

    async def wait_closed(self) -> None:
        await self.closed.wait()


@pytest.mark.asyncio
async def test_a_request_lost_with_a_closed_duplicate_connection_is_sent_again(
    tmp_path: Path,
) -> None:
    """Two nodes dialling each other at once keep one connection of the two; a WANT
    sent over the other was lost with it and waited its whole timeout (a file queued
    while the sender was offline arrived 20 s late, found by a tester). It is sent
    again over the connection that stays, and that answer is taken."""
    first, second = _Conn(), _Conn()
    current: list[_Conn] = [first]
    network: Any = SimpleNamespace(manager=SimpleNamespace(connection=lambda _a: current[0]))
    exchange = BlockExchange(network, Blockstore(tmp_path / "store"), Policy(set(), set()))
    block = b"the block"
    cid = raw_cid(block)
    asking = asyncio.ensure_future(exchange.request("eggpeer", cid, cid))
    while not first.sent:
        await asyncio.sleep(0.01)
    current[0] = second  # the duplicate closes; the other connection stays
    first.closed.set()
    while not second.sent:
        await asyncio.sleep(0.01)
    assert second.sent == first.sent  # the same request, the same id
    rid = second.sent[0][1:5]
    await exchange._on_payload("eggpeer", bytes([BLOCK]) + rid + block)
    assert await asyncio.wait_for(asking, 5) == block


@pytest.mark.asyncio
async def test_strangers_who_asked_for_blocks_leave_nothing_behind(
    stacks: list[NetworkStack], tmp_path: Path
) -> None:
    """Each peer that sent a WANT kept its serving semaphore for the node's lifetime,
    and a stranger's address costs nothing to make up (a new identity per connection):
    the table grew by one entry per made-up identity. A peer's entry now lives while
    its requests wait or are served."""
    alice = stacks[0]
    exchange = BlockExchange(alice, Blockstore(tmp_path / "alice"), Policy(set(), set()))
    exchange.start()
    endpoint = alice.endpoints()[0]
    strangers = 12
    for n in range(strangers):
        keys = IdentityKeys.from_seeds(os.urandom(32), os.urandom(32))
        conn = await dial_websocket(keys, alice.address, endpoint)
        root, cid = raw_cid(os.urandom(16)), raw_cid(os.urandom(16))
        await conn.send(bytes([WANT]) + n.to_bytes(4, "big") + root + cid)
        async with asyncio.timeout(10):
            while exchange.stats["refused"] <= n:
                await asyncio.sleep(0.01)
        await conn.close()
    await asyncio.sleep(0.1)  # the last answers' tasks end
    assert exchange.stats["refused"] == strangers
    assert exchange._serving == {}
