"""File blocks between contacts over the authenticated connection (docs/protocol.md,
section 10).

Five payloads, told apart from ratchet messages (0x01/0x02) and the bundle exchange
(0xb0/0xb1) by their first byte; request ids are 4 bytes, big-endian, chosen by the
asker:

* ``0xb2 WANT``: ``0xb2 || id || root CID (36) || block CID (36)``;
* ``0xb3 BLOCK``: ``0xb3 || id || block bytes`` (at most 256 KiB: under the 1 MiB cap);
* ``0xb4 DONT_HAVE``: ``0xb4 || id`` (also the refusal of a BULK_ASK);
* ``0xb5 BULK_ASK``: ``0xb5 || id || root CID (36)``: a ticket for a bulk stream;
* ``0xb6 BULK_TICKET``: ``0xb6 || id || port (2) || secret (32)``;
* ``0xb7 BULK_ASK_EARLY``: ``0xb7 || id || transfer id (16)``: a ticket for a bulk
  stream by chunk index of a file offered before its root was known (section 10.6),
  answered like a BULK_ASK.

The server answers a WANT only if its `ServePolicy` allows it (a contact, a file it
holds whose root the asker named, a block of that file's DAG) and it holds the block;
otherwise DONT_HAVE. The asker never trusts a BLOCK: the want-list re-hashes it against
its CID (`app.core.transfer`). Blocks are ciphertext; the connection is encrypted too.

A BULK_ASK gets a ticket when the policy allows the file's root, the connection is a
direct one, neither side shapes traffic in ``strict`` mode, and a `BulkServer` runs;
the asker then fetches over the stream (`app.node.bulk_fetch`, `app.core.bulk`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from app.core.bulk import SECRET_SIZE
from app.core.unixfs import CID_SIZE, InvalidBlock, cid_codec
from app.node.blockstore import Blockstore
from app.node.bulk_fetch import BulkTicket
from app.node.bulk_server import BulkServer, LeafByIndex, ServedIndex
from app.node.network import NetworkStack
from app.node.transport.base import TransportError

log = logging.getLogger(__name__)

WANT = 0xB2
BLOCK = 0xB3
DONT_HAVE = 0xB4
BULK_ASK = 0xB5
BULK_TICKET = 0xB6
BULK_ASK_EARLY = 0xB7
_ID = 4
_TRANSFER_ID = 16
_WANT_SIZE = 1 + _ID + 2 * CID_SIZE
_BULK_ASK_SIZE = 1 + _ID + CID_SIZE
_BULK_TICKET_SIZE = 1 + _ID + 2 + SECRET_SIZE
TICKET_TIMEOUT = 5.0
"""Seconds to wait for a BULK_TICKET before fetching block by block."""
NO_BULK_MODE = "strict"
"""The shaping mode in which no bulk stream is offered nor asked for (it would bypass
the shaper's schedules)."""
ASK_ATTEMPTS = 3
"""Connections a request is sent over before it counts as unanswered (see `_ask`)."""
MAX_SERVING = 32
"""WANTs of one peer served concurrently; more wait (the peer's own window is 16)."""


class ServePolicy(Protocol):
    """Decides whether a peer may have a block, and hears about blocks served."""

    async def may_serve(self, address: str, root: bytes, cid: bytes) -> bool: ...

    def served(self, address: str, root: bytes, cid: bytes, size: int) -> None: ...


EarlyPolicy = Callable[[str, str], Awaitable[tuple[LeafByIndex, ServedIndex] | None]]
"""`(address, transfer id)`: how to serve that contact the leaves of a file we offered
it before its root was known, by chunk index; None if not (section 10.6)."""


@dataclass
class _Gate:
    """One peer's serving slots, kept while any of its requests waits or is served."""

    slots: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(MAX_SERVING))
    users: int = 0


class BlockExchange:
    """Serves WANTs from peers and asks peers for blocks (see the module docstring)."""

    def __init__(
        self,
        network: NetworkStack,
        store: Blockstore,
        policy: ServePolicy,
        bulk: BulkServer | None = None,
    ) -> None:
        self._network = network
        self._store = store
        self._policy = policy
        self._bulk = bulk
        self._next_id = 0
        self._pending: dict[tuple[str, int], tuple[int, asyncio.Future[bytes | None]]] = {}
        self._serving: dict[str, _Gate] = {}
        """Peers with requests waiting or being served (dropped when none is left: a
        peer's address costs nothing to make up)."""
        self._tasks: set[asyncio.Task[None]] = set()
        self.stats: dict[str, int] = {"served": 0, "refused": 0, "received": 0}
        self.early_policy: EarlyPolicy | None = None

    def start(self) -> None:
        """Take the six tags from the network stack."""
        for tag in (WANT, BLOCK, DONT_HAVE, BULK_ASK, BULK_TICKET, BULK_ASK_EARLY):
            self._network.on_tagged(tag, self._on_payload)

    def peer_gone(self, address: str) -> None:
        """The connection to `address` closed: its pending requests fail at once."""
        for (peer, rid), (_, waiting) in list(self._pending.items()):
            if peer == address and not waiting.done():
                waiting.set_result(None)
                self._pending.pop((peer, rid), None)

    # ------------------------------------------------------------------ asking

    def source(self, address: str, root: bytes) -> PeerBlocks:
        """A `BlockSource` asking `address` for blocks of the file rooted at `root`."""
        return PeerBlocks(self, address, root)

    async def request(self, address: str, root: bytes, cid: bytes) -> bytes | None:
        """Ask `address` for `cid`; the unverified bytes, or None if it lacks them."""
        return await self._ask(address, WANT, BLOCK, root + cid)

    async def bulk_ticket(self, address: str, root: bytes) -> BulkTicket | None:
        """A ticket for a bulk stream of the file rooted at `root` from `address`, or
        None (no direct connection, strict shaping, refused, or no answer in time)."""
        return await self._bulk_ticket(address, BULK_ASK, root)

    async def early_ticket(self, address: str, transfer_id: str) -> BulkTicket | None:
        """A ticket for a bulk stream by chunk index of the file `address` offered us
        as `transfer_id` before its root was known, or None (as `bulk_ticket`)."""
        try:
            key = bytes.fromhex(transfer_id)
        except ValueError:
            return None
        if len(key) != _TRANSFER_ID:
            return None
        ticket = await self._bulk_ticket(address, BULK_ASK_EARLY, key)
        return None if ticket is None else replace(ticket, by_index=True)

    async def _bulk_ticket(self, address: str, kind: int, body: bytes) -> BulkTicket | None:
        conn = self._network.manager.connection(address)
        if conn is None or conn.remote_host is None:
            return None
        if self._network.shaping_mode == NO_BULK_MODE:
            return None
        try:
            answer = await asyncio.wait_for(
                self._ask(address, kind, BULK_TICKET, body), TICKET_TIMEOUT
            )
        except TimeoutError:
            return None
        if answer is None or len(answer) != _BULK_TICKET_SIZE - 1 - _ID:
            return None
        port = int.from_bytes(answer[:2], "big")
        return BulkTicket(conn.remote_host, port, answer[2:]) if port else None

    async def _ask(self, address: str, kind: int, answer: int, body: bytes) -> bytes | None:
        """Send a `kind` request; the `answer` payload's body, or None (DONT_HAVE, gone).

        If the connection it went over closes while the peer is still (or again)
        connected — two nodes dialling each other at once keep one of the two
        connections — it is sent again over the current one: it was lost with the
        closed one, and the want-list would wait its whole timeout for it."""
        self._next_id = (self._next_id + 1) % (1 << 32)
        rid = self._next_id
        waiting: asyncio.Future[bytes | None] = asyncio.get_running_loop().create_future()
        self._pending[(address, rid)] = (answer, waiting)
        try:
            for _ in range(ASK_ATTEMPTS):
                conn = self._network.manager.connection(address)
                if conn is None:
                    return None
                await conn.send(bytes([kind]) + rid.to_bytes(_ID, "big") + body, awaits_answer=True)
                closed: asyncio.Future[None] = asyncio.ensure_future(conn.wait_closed())
                either: set[asyncio.Future[Any]] = {waiting, closed}
                try:
                    await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    closed.cancel()
                if waiting.done():
                    return waiting.result()
            return None
        except TransportError:
            return None
        finally:
            self._pending.pop((address, rid), None)

    # ------------------------------------------------------------------ receiving

    async def _on_payload(self, address: str, payload: bytes) -> None:
        try:
            if payload[0] in (WANT, BULK_ASK, BULK_ASK_EARLY):
                # served concurrently (disk reads overlap sends), bounded per peer
                gate = self._serving.get(address)
                if gate is None:
                    gate = self._serving[address] = _Gate()
                gate.users += 1
                try:
                    await gate.slots.acquire()
                except BaseException:
                    self._leave(address, gate)
                    raise
                task = asyncio.ensure_future(self._serve_released(address, payload, gate))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
            elif len(payload) >= 1 + _ID:
                rid = int.from_bytes(payload[1 : 1 + _ID], "big")
                pending = self._pending.get((address, rid))
                if pending is not None and not pending[1].done():
                    data = payload[1 + _ID :] if payload[0] == pending[0] else None
                    if data is not None and payload[0] == BLOCK:
                        self.stats["received"] += 1
                    pending[1].set_result(data)
        except Exception:  # a peer's bad input or our bug must not break the connection
            log.exception("handling a block exchange message failed")

    def _leave(self, address: str, gate: _Gate) -> None:
        gate.users -= 1
        if not gate.users and self._serving.get(address) is gate:
            del self._serving[address]

    async def _serve_released(self, address: str, payload: bytes, gate: _Gate) -> None:
        try:
            if payload[0] in (BULK_ASK, BULK_ASK_EARLY):
                await self._issue_ticket(address, payload)

            else:
                with self._network.serving_to(address):
                    await self._serve(address, payload)
        except Exception:  # our bug must not go unnoticed, nor break serving
            log.exception("serving a block failed")
        finally:
            gate.slots.release()
            self._leave(address, gate)

    async def stop(self) -> None:
        """Stop serving (pending requests of ours fail)."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for _, waiting in self._pending.values():
            if not waiting.done():
                waiting.set_result(None)

    async def _issue_ticket(self, address: str, payload: bytes) -> None:
        """Answer a BULK_ASK (by root CID) or a BULK_ASK_EARLY (by transfer id)."""
        early = payload[0] == BULK_ASK_EARLY
        if len(payload) != (1 + _ID + _TRANSFER_ID if early else _BULK_ASK_SIZE):
            return
        rid = payload[1 : 1 + _ID]
        key = payload[1 + _ID :]
        conn = self._network.manager.connection(address)
        if conn is None:
            return
        secret = None
        if (
            self._bulk is not None
            and conn.remote_host is not None
            and self._network.shaping_mode != NO_BULK_MODE
        ):
            issue = self._early_secret if early else self._root_secret
            secret = await issue(self._bulk, address, key)
        with contextlib.suppress(TransportError):
            if secret is None:
                await conn.send(bytes([DONT_HAVE]) + rid)
            else:
                port = self._bulk.port if self._bulk is not None else 0
                await conn.send(bytes([BULK_TICKET]) + rid + port.to_bytes(2, "big") + secret)

    async def _root_secret(self, bulk: BulkServer, address: str, root: bytes) -> bytes | None:
        try:
            cid_codec(root)
        except InvalidBlock:
            return None
        if not await self._policy.may_serve(address, root, root):
            return None
        return bulk.issue(address, root)

    async def _early_secret(self, bulk: BulkServer, address: str, key: bytes) -> bytes | None:
        if self.early_policy is None:
            return None
        serving = await self.early_policy(address, key.hex())
        return None if serving is None else bulk.issue(address, key, serving)

    def revoke_early(self, transfer_id: str) -> None:
        """The transfer ended: close its streams by index and drop their tickets."""
        if self._bulk is not None:
            self._bulk.revoke(bytes.fromhex(transfer_id))

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

    async def bulk_ticket(self) -> BulkTicket | None:
        """A ticket for a bulk stream of this file from this peer (`BulkCapable`)."""
        return await self._exchange.bulk_ticket(self.address, self._root)
