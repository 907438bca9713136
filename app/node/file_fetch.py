"""Receiving a shared file: the want-list against block sources, straight into the part.

`fetch_into` first lets one source that offers a bulk stream (`BulkCapable`: a sender
reached directly, `app.node.bulk_fetch`) bring what it can, then drives the want-list
(`app.core.transfer`) against every `BlockSource` (a peer, another node's blockstore,
an IPFS daemon) for the rest. Each request's task fetches the block,
checks it against its CID and, for a leaf, decrypts it into the `PartFile` at its
chunk's offset, all in a worker thread, so the event loop only routes requests and
several blocks are verified and written at once. The DAG's nodes are kept in the
profile's blockstore (small; a resumed transfer walks them again). Chunks the part
already holds are not asked for again; leaves already in the local blockstore (a file
this profile shared, or blocks kept by an older version) are copied from there.

`assemble_file_sync` saves a file whose blocks are all held locally; `receive_file`
fetches and saves in one call. On failure they remove the part: no file ever appears
under its final name unless it is complete and authentic.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

from app.core.errors import CoreError
from app.core.file_crypto import FileManifest
from app.core.transfer import (
    DEFAULT_MAX_IN_FLIGHT,
    BlockAccepted,
    PeerBanned,
    PeerLacksFile,
    RequestTimedOut,
    WantList,
)
from app.core.unixfs import (
    BLOCK_SIZE,
    CODEC_DAG_PB,
    MAX_TREE_DEPTH,
    InvalidBlock,
    block_matches,
    cid_codec,
    decode_file_node,
)
from app.node.blockstore import Blockstore
from app.node.bulk_fetch import BulkOutcome, BulkSink, BulkStream, BulkTicket, IndexSink
from app.node.files_errors import (
    BlockCorrupt,
    BlockNotFound,
    BlocksUnavailable,
    FilesError,
    TransferFailed,
)
from app.node.futures import retrieve
from app.node.part_file import PartFile, PartOpener, open_part

log = logging.getLogger(__name__)


class BlockSource(Protocol):
    """Anything that can serve blocks by CID: a peer, another blockstore, IPFS."""

    async def get_block(self, cid: bytes) -> bytes | None:
        """The block's bytes (unverified: the caller checks), or None if not held."""
        ...


@runtime_checkable
class BulkCapable(Protocol):
    """A source that may open a bulk stream for the file (`app.node.bulk_fetch`)."""

    async def bulk_ticket(self) -> BulkTicket | None:
        """A ticket for this file's blocks, or None if the source offers no stream."""
        ...


BULK_MIN_CHUNKS = 4
"""Files of fewer chunks are fetched block by block (a stream costs a round trip)."""
_STREAMS = ThreadPoolExecutor(4, thread_name_prefix="bulk-fetch")
"""Runs bulk streams (each holds its thread for the whole stream): kept apart from the
event loop's default executor, which the node's short blocking calls need."""


@dataclass(frozen=True)
class _Wanted:
    """Where a wanted block sits in the file's DAG."""

    size: int
    """File bytes (ciphertext) it covers, as its parent says."""
    depth: int
    offset: int
    """Ciphertext offset of its first byte: a leaf's chunk index is offset / BLOCK_SIZE."""


async def fetch_into(
    manifest: FileManifest,
    store: Blockstore,
    part: PartFile,
    sources: Mapping[str, BlockSource],
    *,
    max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
    max_per_peer: int = DEFAULT_MAX_IN_FLIGHT,
    timeout: float = 30.0,
    clock: Callable[[], float] = time.monotonic,
    on_leaf: Callable[[], None] | None = None,
    banned: set[str] | None = None,
) -> None:
    """Fetch every chunk of `manifest` that `part` lacks from `sources` (resumable).

    Each block is verified against its CID before it is used; a source that serves a
    tampered block is not asked again. `BlocksUnavailable` if some block cannot be had
    from any source (what was written stays in the part). `on_leaf()` is called for
    every chunk written; sources that served tampered blocks are added to `banned`
    (and sources already in it are not asked).
    """
    wants = WantList(max_in_flight=max_in_flight, max_per_peer=max_per_peer, timeout=timeout)
    plan = _FetchPlan(manifest, store, part, wants, on_leaf)
    await asyncio.to_thread(plan.discover_root)
    if banned is None:
        banned = set()
    if manifest.chunk_count >= BULK_MIN_CHUNKS and plan.outstanding():
        await _bulk_phase(plan, sources, banned, on_leaf)
    plan.take_fresh()  # the want-list takes everything still wanted, asked for or not
    wants.want(plan.outstanding())
    for peer in sources:
        if peer not in banned:
            wants.add_peer(peer)
    tasks: dict[asyncio.Task[bool | None], tuple[str, bytes]] = {}
    try:
        while not wants.is_complete:
            for req in wants.requests_to_send(clock()):
                task = asyncio.create_task(plan.fetch(req.peer, sources[req.peer], req.cid))
                tasks[task] = (req.peer, req.cid)
            await plan.handle_events(tasks)
            if wants.is_complete:
                break
            if not tasks:
                raise BlocksUnavailable(
                    f"{len(wants.needed)} blocks of {manifest.name!r} are not available from "
                    "any source; what was received is kept for a later attempt"
                )
            deadline = wants.get_timer()
            wait = None if deadline is None else max(0.0, deadline - clock())
            done, _ = await asyncio.wait(tasks, timeout=wait, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                peer, cid = tasks.pop(task)
                try:
                    matches = task.result()
                except FilesError:
                    raise  # the file cannot be completed (undecryptable, disk full)
                except Exception:  # our bug must not end the transfer: ask elsewhere
                    log.exception("checking a block from %s failed", peer)
                    matches = None
                if matches is None:
                    wants.peer_lacks(peer, cid, clock())
                else:
                    wants.receive_block(peer, cid, plan.taken(cid), clock(), verified=matches)
            wants.handle_timer(clock())
            await plan.handle_events(tasks)
    finally:
        for task in tasks:
            task.cancel()
        banned.update(wants.banned_peers)


async def run_stream(stream: BulkStream, sink: BulkSink | IndexSink) -> BulkOutcome:
    """Run `stream` into `sink` in a stream thread; cancelled, it aborts the stream and
    returns only once nothing more can be written into the part. Raises what the
    stream raises (`OSError`, `CoreError`, the sink's `FilesError`)."""
    running = asyncio.get_running_loop().run_in_executor(_STREAMS, stream.run, sink)
    try:
        return await asyncio.shield(running)
    except asyncio.CancelledError:
        # The cancelled shield drops its callback on `running`, so nothing else
        # retrieves the error our abort makes it end with (reset, cut record):
        # expected here, so retrieve it rather than have asyncio log it unretrieved.
        running.add_done_callback(retrieve)
        stream.abort()  # nothing may write into the part once we return
        await asyncio.wait([running])
        raise


async def _bulk_phase(
    plan: _FetchPlan,
    sources: Mapping[str, BlockSource],
    banned: set[str],
    on_leaf: Callable[[], None] | None,
) -> None:
    """Fetch what `plan` wants over one sender's bulk stream, if one offers it; what
    the stream did not bring stays wanted for the want-list. A sender whose stream
    carried a tampered block joins `banned`."""
    for name, source in sources.items():
        if name in banned or not isinstance(source, BulkCapable):
            continue
        ticket = await source.bulk_ticket()
        if ticket is None:
            continue
        try:
            outcome = await run_stream(BulkStream(ticket), plan)
        except (OSError, CoreError) as exc:
            log.info("bulk stream from %s failed (%s); block by block", name, exc)
            return
        log.info("bulk stream from %s: %d blocks", name, outcome.leaves)
        if on_leaf is not None:
            for _ in range(outcome.leaves):
                on_leaf()
        if outcome.tampered:
            log.warning("peer %s served a tampered block; not asking it again", name)
            banned.add(name)
        return


class _FetchPlan:
    """Walks the file's DAG as blocks become available and checks its shape.

    Every block is wanted with the number of file bytes its parent says it covers, its
    depth and its offset; nodes must match, leaves must have exactly that size and sit
    on a chunk boundary, the tree may not be deeper than `MAX_TREE_DEPTH` nor have more
    leaves than the manifest's chunk count, and no block may appear twice.
    """

    def __init__(
        self,
        manifest: FileManifest,
        store: Blockstore,
        part: PartFile,
        wants: WantList,
        on_leaf: Callable[[], None] | None = None,
    ) -> None:
        self._manifest = manifest
        self._on_leaf = on_leaf
        self._store = store
        self._part = part
        self._wants = wants
        self._leaves = 0
        self._seen: set[bytes] = set()
        self._expected: dict[bytes, _Wanted] = {}
        self._fresh: list[bytes] = []
        self._nodes: dict[bytes, bytes] = {}  # verified node bytes waiting for the loop

    def discover_root(self) -> None:
        """Start from the manifest's root (worker thread)."""
        self.discover([(self._manifest.root_cid, _Wanted(self._manifest.ciphertext_size, 0, 0))])

    def discover(self, pending: list[tuple[bytes, _Wanted]]) -> None:
        """Want every block under `pending` that is not held; read held nodes to go on
        and copy held leaves into the part (worker thread)."""
        stack = list(reversed(pending))
        while stack:
            cid, where = stack.pop()
            if cid in self._seen:
                raise TransferFailed("the shared file's block tree names a block twice")
            self._seen.add(cid)
            if cid_codec(cid) == CODEC_DAG_PB:
                if self._store.has_sync(cid):
                    try:
                        stack.extend(reversed(self._children(self._store.get_sync(cid), where)))
                        continue
                    except BlockCorrupt:
                        pass  # dropped from the store: fetch it again
                self._want(cid, where)
                continue
            index = self._leaf_index(where)
            if self._part.is_held(index) or self._copy_held_leaf(cid, index, where):
                continue
            self._want(cid, where)

    def _want(self, cid: bytes, where: _Wanted) -> None:
        self._expected[cid] = where
        self._fresh.append(cid)

    def take_fresh(self) -> list[bytes]:
        """CIDs wanted since the last call, in order (`BulkSink`)."""
        fresh, self._fresh = self._fresh, []
        return fresh

    def outstanding(self) -> list[bytes]:
        """Every CID wanted and not yet received."""
        return list(self._expected)

    def accept_sync(self, cid: bytes, data: bytes | memoryview) -> bool:
        """Verify and use one block from a bulk stream (`BulkSink`, worker thread): a
        leaf is written and marked; a node is stored and its children wanted (call
        those from one thread at a time). False if `data` does not match `cid`."""
        if cid_codec(cid) == CODEC_DAG_PB:
            data = bytes(data)
            if not block_matches(cid, data):
                return False
            where = self._expected.pop(cid, None)
            if where is not None:
                self._expand_node(cid, data, where)
            return True
        if not self._check(cid, data):
            return False
        where = self._expected.pop(cid, None)
        if where is not None:
            self._part.mark(where.offset // BLOCK_SIZE)
        return True

    def _expand_node(self, cid: bytes, data: bytes, where: _Wanted) -> None:
        """Keep a verified node and want its children (worker thread)."""
        children = self._children(data, where)
        self._store.put_sync(cid, data, durable=False, verified=True)
        self.discover(children)

    def _leaf_index(self, where: _Wanted) -> int:
        self._leaves += 1
        if (
            self._leaves > self._manifest.chunk_count
            or where.size > BLOCK_SIZE
            or where.offset % BLOCK_SIZE
        ):
            raise TransferFailed("the shared file's block tree is larger than announced")
        return where.offset // BLOCK_SIZE

    def _copy_held_leaf(self, cid: bytes, index: int, where: _Wanted) -> bool:
        try:
            data = self._store.get_sync(cid)
        except (BlockNotFound, BlockCorrupt):
            return False
        self._write_leaf(index, data, where)
        self._part.mark(index)
        return True

    def _write_leaf(self, index: int, data: bytes | memoryview, where: _Wanted) -> None:
        if len(data) != where.size:
            raise TransferFailed("a block of the shared file has the wrong size")
        self._part.write_chunk(index, data)

    @staticmethod
    def _children(node_bytes: bytes, where: _Wanted) -> list[tuple[bytes, _Wanted]]:
        try:
            node = decode_file_node(node_bytes)
        except InvalidBlock as exc:
            raise TransferFailed(f"the shared file's block tree is malformed: {exc}") from exc
        if node.filesize != where.size or 0 in node.blocksizes or where.depth >= MAX_TREE_DEPTH:
            raise TransferFailed("the shared file's block tree does not match its size")
        children: list[tuple[bytes, _Wanted]] = []
        offset = where.offset
        for link, child_size in zip(node.links, node.blocksizes, strict=True):
            children.append((link.cid, _Wanted(child_size, where.depth + 1, offset)))
            offset += child_size
        return children

    # ------------------------------------------------------------------ per request

    async def fetch(self, name: str, source: BlockSource, cid: bytes) -> bool | None:
        """Ask `source` for `cid`; None if it lacks it, else whether it matched its CID.
        A matching leaf is already in the part; a matching node waits in `taken`.
        `FilesError` only if the part cannot take the block (undecryptable, disk full)."""
        try:
            data = await source.get_block(cid)
        except Exception as exc:  # a failing source is a source that lacks the block
            log.info("block source %s failed: %s", name, type(exc).__name__)
            return None
        if data is None:
            return None
        return await asyncio.to_thread(self._check, cid, data)

    def _check(self, cid: bytes, data: bytes | memoryview) -> bool:
        if not block_matches(cid, data):
            return False
        where = self._expected.get(cid)
        if where is None:
            return True  # no longer wanted (a late answer): the want-list ignores it
        if cid_codec(cid) == CODEC_DAG_PB:
            self._nodes[cid] = bytes(data)
        else:
            self._write_leaf(where.offset // BLOCK_SIZE, data, where)
        return True

    def taken(self, cid: bytes) -> bytes:
        """What the want-list is told it received (the bytes were checked off the loop:
        a node's come back in `BlockAccepted`; a leaf's are already in the part)."""
        return self._nodes.pop(cid, b"")

    async def handle_events(
        self, tasks: dict[asyncio.Task[bool | None], tuple[str, bytes]]
    ) -> None:
        """Mark written chunks, store and expand accepted nodes, cancel timed-out requests."""
        while (event := self._wants.next_event()) is not None:
            if isinstance(event, BlockAccepted):
                where = self._expected.pop(event.cid)
                if cid_codec(event.cid) == CODEC_DAG_PB:
                    await asyncio.to_thread(self._expand_node, event.cid, event.data, where)
                    self._wants.want(self.take_fresh())
                else:
                    self._part.mark(where.offset // BLOCK_SIZE)
                    if self._on_leaf is not None:
                        self._on_leaf()
            elif isinstance(event, PeerBanned):
                log.warning("peer %s served a tampered block; not asking it again", event.peer)
            elif isinstance(event, PeerLacksFile):
                log.info("%s does not hold the file; not asking it for the rest", event.peer)
            elif isinstance(event, RequestTimedOut):
                for task, (peer, cid) in list(tasks.items()):
                    if peer == event.peer and cid == event.cid:
                        task.cancel()
                        del tasks[task]


# --------------------------------------------------------------------------- saving


def assemble_file_sync(
    manifest: FileManifest,
    store: Blockstore,
    downloads: Path,
    *,
    opener: PartOpener = open_part,
) -> Path:
    """Save a file whose blocks are all held in `store`; return where it was saved."""
    part = PartFile(manifest, downloads, secrets.token_hex(8), opener=opener)
    try:
        plan = _FetchPlan(manifest, store, part, WantList())
        plan.discover_root()
        if missing := plan.outstanding():
            raise TransferFailed(f"{len(missing)} blocks of {manifest.name!r} are not held here")
        path = part.publish()
        part.sync_folder()
        return path
    finally:
        part.discard()  # after publishing: only the part's own name


async def receive_file(
    manifest: FileManifest,
    store: Blockstore,
    downloads: Path,
    sources: Mapping[str, BlockSource],
    *,
    timeout: float = 30.0,
    banned: set[str] | None = None,
    max_per_peer: int = DEFAULT_MAX_IN_FLIGHT,
) -> Path:
    """Fetch `manifest` from `sources` and save it into `downloads` (nothing on failure)."""
    part = await asyncio.to_thread(PartFile, manifest, downloads, secrets.token_hex(8))
    try:
        await fetch_into(
            manifest,
            store,
            part,
            sources,
            timeout=timeout,
            banned=banned,
            max_per_peer=max_per_peer,
        )
        path = await asyncio.to_thread(part.publish)
        await asyncio.to_thread(part.sync_folder)
        return path
    finally:
        part.discard()  # after publishing: only the part's own name


__all__ = [
    "BlockSource",
    "assemble_file_sync",
    "fetch_into",
    "receive_file",
]
