"""File blocks between contacts over the authenticated connection (docs/protocol.md,
section 10).

Three payloads, told apart from ratchet messages (0x01/0x02) and the bundle exchange
(0xb0/0xb1) by their first byte; request ids are 4 bytes, big-endian, chosen by the
asker:

* ``0xb2 WANT``: ``0xb2 || id || root CID (36) || block CID (36)``;
* ``0xb3 BLOCK``: ``0xb3 || id || block bytes`` (at most 256 KiB: under the 1 MiB cap);
* ``0xb4 DONT_HAVE``: ``0xb4 || id``.

The server answers a WANT only if its `ServePolicy` allows it (a contact, a file it
holds whose root the asker named, a block of that file's DAG) and it holds the block;
otherwise DONT_HAVE. The asker never trusts a BLOCK: the want-list re-hashes it against
its CID (`app.core.transfer`). Blocks are ciphertext; the connection is encrypted too.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Protocol

from app.core.unixfs import CID_SIZE, InvalidBlock, cid_codec
from app.node.blockstore import Blockstore
from app.node.network import NetworkStack
from app.node.transport.base import TransportError

log = logging.getLogger(__name__)

WANT = 0xB2
BLOCK = 0xB3
DONT_HAVE = 0xB4
_ID = 4
_WANT_SIZE = 1 + _ID + 2 * CID_SIZE
MAX_SERVING = 32
"""WANTs of one peer served concurrently; more wait (the peer's own window is 16)."""


class ServePolicy(Protocol):
    """Decides whether a peer may have a block, and hears about blocks served."""

    async def may_serve(self, address: str, root: bytes, cid: bytes) -> bool: ...

    def served(self, address: str, root: bytes, cid: bytes, size: int) -> None: ...


class BlockExchange:
    """Serves WANTs from peers and asks peers for blocks (see the module docstring)."""

    def __init__(self, network: NetworkStack, store: Blockstore, policy: ServePolicy) -> None:
        self._network = network
        self._store = store
        self._policy = policy
        self._next_id = 0
        self._pending: dict[tuple[str, int], asyncio.Future[bytes | None]] = {}
        self._serving: dict[str, asyncio.Semaphore] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.stats: dict[str, int] = {"served": 0, "refused": 0, "received": 0}

    def start(self) -> None:
        """Take the three tags from the network stack."""
        for tag in (WANT, BLOCK, DONT_HAVE):
            self._network.on_tagged(tag, self._on_payload)

    def peer_gone(self, address: str) -> None:
        """The connection to `address` closed: its pending requests fail at once."""
        for (peer, rid), waiting in list(self._pending.items()):
            if peer == address and not waiting.done():
                waiting.set_result(None)
                self._pending.pop((peer, rid), None)

    # ------------------------------------------------------------------ asking

    def source(self, address: str, root: bytes) -> PeerBlocks:
        """A `BlockSource` asking `address` for blocks of the file rooted at `root`."""
        return PeerBlocks(self, address, root)

    async def request(self, address: str, root: bytes, cid: bytes) -> bytes | None:
        """Ask `address` for `cid`; the unverified bytes, or None if it lacks them."""
        conn = self._network.manager.connection(address)
        if conn is None:
            return None
        self._next_id = (self._next_id + 1) % (1 << 32)
        rid = self._next_id
        waiting: asyncio.Future[bytes | None] = asyncio.get_running_loop().create_future()
        self._pending[(address, rid)] = waiting
        try:
            await conn.send(bytes([WANT]) + rid.to_bytes(_ID, "big") + root + cid)
            return await waiting
        except TransportError:
            return None
        finally:
            self._pending.pop((address, rid), None)

    # ------------------------------------------------------------------ receiving

    async def _on_payload(self, address: str, payload: bytes) -> None:
        try:
            if payload[0] == WANT:
                # served concurrently (disk reads overlap sends), bounded per peer
                gate = self._serving.setdefault(address, asyncio.Semaphore(MAX_SERVING))
                await gate.acquire()
                task = asyncio.ensure_future(self._serve_released(address, payload, gate))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
            elif len(payload) >= 1 + _ID:
                rid = int.from_bytes(payload[1 : 1 + _ID], "big")
                waiting = self._pending.get((address, rid))
                if waiting is not None and not waiting.done():
                    data = payload[1 + _ID :] if payload[0] == BLOCK else None
                    self.stats["received"] += data is not None
                    waiting.set_result(data)
        except Exception:  # a peer's bad input or our bug must not break the connection
            log.exception("handling a block exchange message failed")

    async def _serve_released(self, address: str, payload: bytes, gate: asyncio.Semaphore) -> None:
        try:
            await self._serve(address, payload)
        except Exception:  # our bug must not go unnoticed, nor break serving
            log.exception("serving a block failed")
        finally:
            gate.release()

    async def stop(self) -> None:
        """Stop serving (pending requests of ours fail)."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for waiting in self._pending.values():
            if not waiting.done():
                waiting.set_result(None)

    async def _serve(self, address: str, payload: bytes) -> None:
        if len(payload) != _WANT_SIZE:
            return
        rid = payload[1 : 1 + _ID]
        root = payload[1 + _ID : 1 + _ID + CID_SIZE]
        cid = payload[1 + _ID + CID_SIZE :]
        data: bytes | None = None
        try:
            cid_codec(root)
            cid_codec(cid)
            allowed = await self._policy.may_serve(address, root, cid)
        except InvalidBlock:
            allowed = False
        if allowed:
            data = await self._store.get_block(cid)
        else:
            self.stats["refused"] += 1
        conn = self._network.manager.connection(address)
        if conn is None:
            return
        with contextlib.suppress(TransportError):
            if data is None:
                await conn.send(bytes([DONT_HAVE]) + rid)
            else:
                await conn.send(bytes([BLOCK]) + rid + data)
                self.stats["served"] += 1
                self._policy.served(address, root, cid, len(data))


class PeerBlocks:
    """One peer as a `BlockSource` for one file."""

    def __init__(self, exchange: BlockExchange, address: str, root: bytes) -> None:
        self._exchange = exchange
        self.address = address
        self._root = root

    async def get_block(self, cid: bytes) -> bytes | None:
        return await self._exchange.request(self.address, self._root, cid)
