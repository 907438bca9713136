"""Which blocks a contact may fetch from us, and the sender's view of its progress.

The rule (docs/protocol.md section 10): a contact, naming the root of a file we hold
that is not cancelled, asking for a block of that file's DAG. The root CID comes from
ciphertext under a random per-file key: only those given the manifest can name it.
Decisions and block lists are cached for `MEMBERS_STALE` seconds; `forget` drops them.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from app.core.file_crypto import CHUNK_PLAINTEXT_SIZE
from app.core.unixfs import CODEC_RAW, cid_codec
from app.node.api import NodeEvent, StorageFailed, TransferChanged, TransferState
from app.node.blockstore import Blockstore
from app.node.storage.store import ProfileStore
from app.node.storage.transfers import TransferRecord
from app.node.transfer_progress import Progress, public

log = logging.getLogger(__name__)

_SERVING = (TransferState.OFFERED, TransferState.RUNNING)
MEMBERS_STALE = 2.0
"""Cached serving decisions and block lists are rebuilt after this many seconds."""
MAX_DECISIONS = 1024
"""Serving decisions cached at once: one per peer and root it names, and a peer (a
stranger's identity costs nothing) can make up both; stale ones go as new ones come."""


class FileServing:
    """The `ServePolicy` of the block exchange (see the module docstring)."""

    def __init__(
        self,
        store: ProfileStore,
        blockstore: Blockstore,
        publish: Callable[[NodeEvent], None],
        progress: dict[str, Progress],
        spawn: Callable[[Coroutine[Any, Any, object]], None],
        monotonic: Callable[[], float],
    ) -> None:
        self.store = store
        self.blockstore = blockstore
        self._publish = publish
        self._progress = progress
        self._spawn = spawn
        self._monotonic = monotonic
        self._members: dict[bytes, tuple[float, frozenset[bytes]]] = {}
        self._walks: dict[bytes, asyncio.Future[frozenset[bytes]]] = {}
        self._allowed: dict[tuple[str, bytes], tuple[float, bool]] = {}
        self._outgoing: dict[tuple[str, object], tuple[float, list[TransferRecord]]] = {}
        self._served: dict[str, set[object]] = {}
        self._generation = 0
        """Bumped by `forget`: a row read before it may show a state that changed."""
        self._earlier: dict[str, int] = {}
        """Bytes an outgoing transfer had served in earlier runs, when this run began."""
        self.blocks_served = 0

    def forget(self, record: TransferRecord) -> None:
        """A transfer changed state: drop every cached decision about its file."""
        self._members.pop(record.root, None)
        self._allowed.clear()
        self._outgoing.clear()
        self._generation += 1

    def served_count(self, transfer_id: str) -> int:
        """Distinct leaves of an outgoing transfer served in this run (then forgotten)."""
        self._earlier.pop(transfer_id, None)
        return len(self._served.pop(transfer_id, ()))

    async def may_serve(self, address: str, root: bytes, cid: bytes) -> bool:
        """A contact may have a block of a file we hold (not cancelled) whose root it
        named: the root CID is known only to those the file's manifest was given to.
        Decisions are cached for `MEMBERS_STALE` seconds (one query per file, not per
        block); cancelling drops the cache at once."""
        now = self._monotonic()
        cached = self._allowed.get((address, root))
        if cached is None or now - cached[0] >= MEMBERS_STALE:
            allowed = await self.store.call(self.store.contacts.get, address) is not None
            if allowed:
                records = await self.store.call(self.store.transfers.with_root, root)
                allowed = any(r.state is not TransferState.CANCELLED for r in records)
            cached = (now, allowed)
            self._remember((address, root), cached)
        return cached[1] and await self.is_member(root, cid)

    def _remember(self, key: tuple[str, bytes], decision: tuple[float, bool]) -> None:
        """Cache a decision, dropping stale ones (the oldest come first) and, past
        `MAX_DECISIONS`, the oldest."""
        decisions = self._allowed
        decisions.pop(key, None)
        now = decision[0]
        while decisions:
            oldest = next(iter(decisions))
            if len(decisions) < MAX_DECISIONS and now - decisions[oldest][0] < MEMBERS_STALE:
                break
            del decisions[oldest]
        decisions[key] = decision

    async def is_member(self, root: bytes, cid: bytes) -> bool:
        """Whether `cid` is the root or a block named by a held node of its DAG."""
        if cid == root:
            return True
        cached = self._members.get(root)
        now = self._monotonic()
        if cached is not None and (cid in cached[1] or now - cached[0] < MEMBERS_STALE):
            return cid in cached[1]
        walking = self._walks.get(root)
        if walking is None:  # one walk at a time per file, however many WANTs wait on it
            walking = asyncio.ensure_future(asyncio.to_thread(self.walk_held, root))
            self._walks[root] = walking
            walking.add_done_callback(functools.partial(self._walked, root, now))
        members = await asyncio.shield(walking)
        return cid in members

    def _walked(self, root: bytes, started: float, walk: asyncio.Future[frozenset[bytes]]) -> None:
        """A walk ended: its result is cached as the walk stops being shared, in one
        step (a WANT in between, cached nothing and no walk to join, walked again)."""
        self._walks.pop(root, None)
        if not walk.cancelled() and walk.exception() is None:
            self._members[root] = (started, walk.result())

    def walk_held(self, root: bytes) -> frozenset[bytes]:
        """Every block CID named by the held nodes of the DAG under `root`."""
        return self.blockstore.dag_sync(root)

    def served(self, address: str, root: bytes, cid: bytes, size: int) -> None:
        """Count a block served (the sender's progress)."""
        self.blocks_served += 1
        if cid_codec(cid) != CODEC_RAW:
            return
        self._spawn(self._count_served(address, root, cid))

    def served_index(self, address: str, transfer_id: str, indices: list[int]) -> None:
        """Count leaves served by chunk index (a file offered before its root was
        known, docs/protocol.md section 10.6) to the sender's progress: one task for
        the batch a stream reports."""
        self.blocks_served += len(indices)
        get = self.store.transfers.get

        def rows() -> list[TransferRecord]:
            row = get(transfer_id)
            return [] if row is None else [row]

        leaves = [("index", index) for index in indices]
        self._spawn(self._count(address, ("id", transfer_id), leaves, rows))

    async def _count_served(self, address: str, root: bytes, cid: bytes) -> None:
        await self._count(address, root, [cid], self.store.transfers.with_root, root)

    async def _count(
        self,
        address: str,
        key: object,
        leaves: Sequence[object],
        rows: Callable[..., list[TransferRecord]],
        *args: object,
    ) -> None:
        """Count `leaves` (CIDs, or indices) served to `address` of the transfers
        `rows` reads (cached under `key` for `MEMBERS_STALE` seconds)."""
        now = self._monotonic()
        cached = self._outgoing.get((address, key))
        while cached is None or now - cached[0] >= MEMBERS_STALE:
            generation = self._generation
            records = await self.store.call(rows, *args)
            if generation != self._generation:
                continue  # a state changed while we read (`forget`): read again
            running = [
                r for r in records if r.outgoing and r.contact == address and r.state in _SERVING
            ]
            cached = (now, running)
            self._outgoing[(address, key)] = cached
        generation = self._generation
        for i, record in enumerate(cached[1]):
            if generation != self._generation:
                return  # a state changed at one of the awaits below: the rows are stale
            seen = self._served.setdefault(record.id, set())
            before = len(seen)
            seen.update(leaves)
            if len(seen) == before:
                continue
            if record.state is TransferState.OFFERED:  # it is being fetched: accepted
                record = dataclasses.replace(record, state=TransferState.RUNNING)
                cached[1][i] = record
                await self._store_quietly(self.store.transfers.update, record)
            progress = self._progress.get(record.id)
            if progress is None:
                # what earlier runs served (persisted) counts too: after a restart the
                # receiver asks only for what it lacks, and the bar must not jump back
                progress = Progress(record.done_bytes, record.size, self._monotonic)
                self._progress[record.id] = progress
                self._earlier[record.id] = record.done_bytes
            served = self._earlier.get(record.id, 0) + len(seen) * CHUNK_PLAINTEXT_SIZE
            progress.done = max(progress.done, min(record.size, served))
            if progress.event_due():
                shown = dataclasses.replace(record, done_bytes=progress.done)
                self._publish(TransferChanged(public(shown, progress.speed())))
            if progress.persist_due():
                await self._store_quietly(
                    self.store.transfers.set_progress, record.id, progress.done
                )

    async def _store_quietly(self, step: Callable[..., object], *args: object) -> None:
        """Store the sender's view of a transfer; if the disk can't take it (full) it is
        only shown: the next checkpoint stores the count, and the receiver's state
        signal the state (this runs in a background task nobody awaits)."""
        try:
            await self.store.call(step, *args)
        except StorageFailed as exc:
            log.warning("could not store a transfer's progress: %s", exc)
