"""Sharing a local file as encrypted blocks, fetching them, and saving what was received.

Sharing (`share_file`, `share_paths`): read the file in chunk-sized pieces, pad and
encrypt them (`app.core.file_crypto`), address every ciphertext block and build the
UnixFS DAG (`app.core.unixfs`), store the blocks in the profile's blockstore (and, when
the user configured one, put them on the IPFS daemon and pin the root), and return the
`FileManifest` to send. Only one chunk is in memory at a time.

Receiving: `fetch_blocks` drives the want-list (`app.core.transfer`) against any
`BlockSource` (peers, the blockstore of another node, an IPFS daemon) and stores every
block that verifies (not fsynced: a block damaged by a power cut fails verification on
read, is dropped and fetched again); blocks already held are not asked for again, so an interrupted
transfer resumes. `assemble_file` walks the DAG from the blockstore (each block
re-verified), decrypts into a ``.part`` file in the destination folder, fsyncs it and
only then links it under a sanitised, unique name (never replacing an existing file).
On any failure the ``.part`` file is removed: no file ever appears under the final name
unless it is complete and authentic. Resuming relies on the blockstore, not the part.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import mimetypes
import os
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import BinaryIO, Protocol

from app.core.errors import DecryptionFailed, LocalProtocolError
from app.core.file_crypto import (
    CHUNK_PLAINTEXT_SIZE,
    ChunkDecryptor,
    ChunkEncryptor,
    FileManifest,
    ciphertext_size,
)
from app.core.filenames import sanitize_filename, unique_destination
from app.core.transfer import BlockAccepted, PeerBanned, RequestTimedOut, WantList
from app.core.unixfs import (
    BLOCK_SIZE,
    CODEC_DAG_PB,
    MAX_TREE_DEPTH,
    Block,
    InvalidBlock,
    UnixfsFileBuilder,
    cid_codec,
    decode_file_node,
    iter_leaves,
)
from app.node.blockstore import Blockstore
from app.node.files_errors import (
    BlocksUnavailable,
    DiskFull,
    DownloadPermissionDenied,
    FilesError,
    SourceFileChanged,
    TransferFailed,
)
from app.node.fsutil import fsync_dir
from app.node.ipfs import IpfsBackend

log = logging.getLogger(__name__)

FILE_KEY_SIZE = 32
DEFAULT_MIME_TYPE = "application/octet-stream"
PART_SUFFIX = ".part"
MAX_PENDING_PUTS = 8
"""Received blocks being written at once (8 x 256 KiB)."""
_NO_SPACE = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}
_NO_PERMISSION = {errno.EACCES, errno.EPERM, errno.EROFS}
# link() errors meaning "this file system has no hard links": fall back to rename.
_NO_HARD_LINKS = {
    errno.EPERM,
    errno.EOPNOTSUPP,
    errno.ENOTSUP,
    errno.EXDEV,
    errno.EMLINK,
    errno.ENOSYS,
}

PartOpener = Callable[[Path], BinaryIO]


class BlockSource(Protocol):
    """Anything that can serve blocks by CID: a peer, another blockstore, IPFS."""

    async def get_block(self, cid: bytes) -> bytes | None:
        """The block's bytes (unverified: the caller checks), or None if not held."""
        ...


# --------------------------------------------------------------------------- sharing


def random_file_key() -> bytes:
    """A fresh per-file key."""
    return os.urandom(FILE_KEY_SIZE)


def share_file_sync(
    path: Path,
    store: Blockstore,
    file_key: bytes,
    *,
    name: str | None = None,
    mime_type: str | None = None,
    folder: tuple[str, ...] = (),
    ipfs: IpfsBackend | None = None,
) -> FileManifest:
    """Encrypt `path` into `store` (and `ipfs`), block by block; return its manifest."""
    name = _portable(path.name if name is None else name)
    folder = tuple(_portable(part) for part in folder)
    if mime_type is None:
        mime_type = mimetypes.guess_type(name)[0] or DEFAULT_MIME_TYPE
    try:
        fh = path.open("rb", buffering=0)
    except OSError as exc:
        raise FilesError(f"cannot read {path.name}: {exc.strerror}") from exc
    with fh:
        size = os.fstat(fh.fileno()).st_size
        encryptor = ChunkEncryptor(file_key, size)
        builder = UnixfsFileBuilder()
        remaining = size
        while remaining:
            piece = fh.read(min(CHUNK_PLAINTEXT_SIZE, remaining))
            if not piece:
                raise SourceFileChanged(f"{path.name} became shorter while it was being shared")
            remaining -= len(piece)
            for block in encryptor.update(piece):
                _store_all(builder.add_block(block), store, ipfs)
        if fh.read(1):
            raise SourceFileChanged(f"{path.name} grew while it was being shared")
    for block in encryptor.finish():
        _store_all(builder.add_block(block), store, ipfs)
    root, nodes = builder.finish()
    _store_all(nodes, store, ipfs)
    store.sync()  # every block on disk before the file is pinned and offered
    store.pin_sync(root)
    if ipfs is not None:
        ipfs.pin_add_sync(root)
    return FileManifest(
        root_cid=root,
        file_key=file_key,
        padded_size=encryptor.padded_size,
        size=size,
        name=name,
        mime_type=mime_type,
        folder=folder,
    )


def _portable(name: str) -> str:
    """A name that encodes as UTF-8 (undecodable bytes in POSIX file names become U+FFFD)."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _store_all(blocks: Sequence[Block], store: Blockstore, ipfs: IpfsBackend | None) -> None:
    for block in blocks:
        store.put_sync(block.cid, block.data, durable=False)
        if ipfs is not None:
            ipfs.block_put_sync(block.cid, block.data)


async def share_file(
    path: Path,
    store: Blockstore,
    file_key: bytes,
    *,
    name: str | None = None,
    mime_type: str | None = None,
    folder: tuple[str, ...] = (),
    ipfs: IpfsBackend | None = None,
) -> FileManifest:
    """`share_file_sync` in a worker thread."""
    return await asyncio.to_thread(
        share_file_sync,
        path,
        store,
        file_key,
        name=name,
        mime_type=mime_type,
        folder=folder,
        ipfs=ipfs,
    )


async def share_paths(
    paths: Sequence[Path],
    store: Blockstore,
    *,
    new_key: Callable[[], bytes] = random_file_key,
    ipfs: IpfsBackend | None = None,
) -> list[FileManifest]:
    """Share several files and/or folders; a folder's files keep their relative folders.

    Symbolic links are not followed (a shared folder cannot leak files outside it).
    """
    manifests: list[FileManifest] = []
    for path in paths:
        if path.is_symlink():
            continue
        if path.is_dir():
            for file_path, folder in _walk_folder(path):
                manifests.append(
                    await share_file(file_path, store, new_key(), folder=folder, ipfs=ipfs)
                )
        else:
            manifests.append(await share_file(path, store, new_key(), ipfs=ipfs))
    return manifests


def _walk_folder(root: Path) -> list[tuple[Path, tuple[str, ...]]]:
    found: list[tuple[Path, tuple[str, ...]]] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames.sort()
        rel = Path(dirpath).relative_to(root.parent).parts
        for filename in sorted(filenames):
            file_path = Path(dirpath) / filename
            if file_path.is_file() and not file_path.is_symlink():
                found.append((file_path, tuple(rel)))
    return found


# --------------------------------------------------------------------------- fetching


async def fetch_blocks(
    manifest: FileManifest,
    store: Blockstore,
    sources: Mapping[str, BlockSource],
    *,
    max_in_flight: int = 16,
    max_per_peer: int = 8,
    timeout: float = 30.0,
    clock: Callable[[], float] = time.monotonic,
    on_leaf: Callable[[int], None] | None = None,
    banned: set[str] | None = None,
) -> None:
    """Fetch every block of `manifest` not yet in `store` from `sources` (resumable).

    Each block is verified against its CID before it is stored; a source that serves a
    tampered block is not asked again. `TransferFailed` if some block cannot be had;
    whatever was fetched stays in the store for the next attempt. `on_leaf(size)` is
    called for every leaf stored; sources that served tampered blocks are added to
    `banned` (and sources already in it are not asked).
    """
    wants = WantList(max_in_flight=max_in_flight, max_per_peer=max_per_peer, timeout=timeout)
    plan = _FetchPlan(manifest, store, wants, on_leaf)
    await asyncio.to_thread(plan.discover, [(manifest.root_cid, manifest.ciphertext_size, 0)])
    for peer in sources:
        if banned is None or peer not in banned:
            wants.add_peer(peer)
    tasks: dict[asyncio.Task[bytes | None], tuple[str, bytes]] = {}
    try:
        while not wants.is_complete:
            for req in wants.requests_to_send(clock()):
                task = asyncio.create_task(sources[req.peer].get_block(req.cid))
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
                    data = task.result()
                except Exception as exc:  # a failing source is a source that lacks the block
                    log.info("block source %s failed: %s", peer, type(exc).__name__)
                    data = None
                if data is None:
                    wants.peer_lacks(peer, cid, clock())
                else:
                    wants.receive_block(peer, cid, data, clock())
            wants.handle_timer(clock())
            await plan.handle_events(tasks)
        await plan.flush()
    finally:
        for task in tasks:
            task.cancel()
        plan.cancel()
        if banned is not None:
            banned.update(wants.banned_peers)


class _FetchPlan:
    """Walks the file's DAG as blocks become available and checks its shape.

    Every block is wanted with the number of file bytes its parent says it covers and its
    depth; nodes must match, leaves must have exactly that size, the tree may not be
    deeper than `MAX_TREE_DEPTH` nor have more leaves than the manifest's chunk count.
    """

    def __init__(
        self,
        manifest: FileManifest,
        store: Blockstore,
        wants: WantList,
        on_leaf: Callable[[int], None] | None = None,
    ) -> None:
        self._on_leaf = on_leaf
        self._store = store
        self._wants = wants
        self._max_leaves = manifest.chunk_count
        self._leaves = 0
        self._expected: dict[bytes, tuple[int, int]] = {}  # cid -> (size, depth)
        self._puts: set[asyncio.Task[None]] = set()

    def discover(self, pending: list[tuple[bytes, int, int]]) -> None:
        """Want every block under `pending` that is not held; read held nodes to go on."""
        stack = list(reversed(pending))
        while stack:
            cid, size, depth = stack.pop()
            is_node = cid_codec(cid) == CODEC_DAG_PB
            if not is_node:
                self._leaves += 1
                if self._leaves > self._max_leaves or size > BLOCK_SIZE:
                    raise TransferFailed("the shared file's block tree is larger than announced")
            if not self._store.has_sync(cid):
                self._expected[cid] = (size, depth)
                self._wants.want([cid])
            elif is_node:
                stack.extend(reversed(self._children(self._store.get_sync(cid), size, depth)))

    @staticmethod
    def _children(node_bytes: bytes, size: int, depth: int) -> list[tuple[bytes, int, int]]:
        try:
            node = decode_file_node(node_bytes)
        except InvalidBlock as exc:
            raise TransferFailed(f"the shared file's block tree is malformed: {exc}") from exc
        if node.filesize != size or 0 in node.blocksizes or depth >= MAX_TREE_DEPTH:
            raise TransferFailed("the shared file's block tree does not match its size")
        return [
            (link.cid, child_size, depth + 1)
            for link, child_size in zip(node.links, node.blocksizes, strict=True)
        ]

    async def _store_leaf(self, cid: bytes, data: bytes, size: int) -> None:
        """Write a leaf in the background (requests keep flowing meanwhile); at most
        `MAX_PENDING_PUTS` writes are pending, so memory stays bounded."""
        while len(self._puts) >= MAX_PENDING_PUTS:
            done, _ = await asyncio.wait(self._puts, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                self._puts.discard(task)
                task.result()  # a failed write (disk full) ends the fetch

        async def put() -> None:
            await self._store.put(cid, data, durable=False)
            if self._on_leaf is not None:
                self._on_leaf(size)

        self._puts.add(asyncio.ensure_future(put()))

    async def flush(self) -> None:
        """Wait for every pending write; raise the first failure."""
        while self._puts:
            task = self._puts.pop()
            await task

    def cancel(self) -> None:
        """Abandon pending writes (the fetch failed or was cancelled)."""
        for task in self._puts:
            task.cancel()

    async def handle_events(
        self, tasks: dict[asyncio.Task[bytes | None], tuple[str, bytes]]
    ) -> None:
        """Store accepted blocks, expand accepted nodes, cancel timed-out requests."""
        while (event := self._wants.next_event()) is not None:
            if isinstance(event, BlockAccepted):
                size, depth = self._expected.pop(event.cid)
                if cid_codec(event.cid) == CODEC_DAG_PB:
                    children = self._children(event.data, size, depth)
                    await self._store.put(event.cid, event.data, durable=False)
                    await asyncio.to_thread(self.discover, children)
                else:
                    if len(event.data) != size:
                        raise TransferFailed("a block of the shared file has the wrong size")
                    await self._store_leaf(event.cid, event.data, size)
            elif isinstance(event, PeerBanned):
                log.warning("peer %s served a tampered block; not asking it again", event.peer)
            elif isinstance(event, RequestTimedOut):
                for task, (peer, cid) in list(tasks.items()):
                    if peer == event.peer and cid == event.cid:
                        task.cancel()
                        del tasks[task]


# --------------------------------------------------------------------------- assembly


def _open_part(path: Path) -> BinaryIO:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o600)
    return os.fdopen(fd, "wb")


def destination_folder(downloads: Path, folder: tuple[str, ...]) -> Path:
    """The sanitised sub-folder of `downloads` a file of a shared folder goes to."""
    target = downloads
    for part in folder:
        target = target / sanitize_filename(part)
    root = os.path.realpath(downloads)
    real = os.path.realpath(target)
    if real != root and not real.startswith(root + os.sep):
        raise TransferFailed("the shared folder would be saved outside the downloads folder")
    return target


def assemble_file_sync(
    manifest: FileManifest,
    store: Blockstore,
    downloads: Path,
    *,
    open_part: PartOpener = _open_part,
) -> Path:
    """Verify, decrypt and save a fully fetched file; return where it was saved."""
    part: Path | None = None
    try:
        dest_dir = destination_folder(downloads, manifest.folder)
        dest_dir.mkdir(parents=True, exist_ok=True)
        name = sanitize_filename(manifest.name)
        part = dest_dir / f".{name[:100]}.{secrets.token_hex(4)}{PART_SUFFIX}"
        with open_part(part) as out:
            _decrypt_into(manifest, store, out)
            out.flush()
            os.fsync(out.fileno())
        final = _publish(part, dest_dir, name)
        part = None
        fsync_dir(dest_dir)
        return final
    except OSError as exc:
        raise _user_error(exc, downloads) from exc
    except (DecryptionFailed, InvalidBlock, LocalProtocolError) as exc:
        raise TransferFailed(f"{manifest.name!r} failed verification: {exc}") from exc
    finally:
        if part is not None:
            with contextlib.suppress(OSError):
                part.unlink()


async def assemble_file(
    manifest: FileManifest,
    store: Blockstore,
    downloads: Path,
    *,
    open_part: PartOpener = _open_part,
) -> Path:
    """`assemble_file_sync` in a worker thread."""
    return await asyncio.to_thread(
        assemble_file_sync, manifest, store, downloads, open_part=open_part
    )


async def receive_file(
    manifest: FileManifest,
    store: Blockstore,
    downloads: Path,
    sources: Mapping[str, BlockSource],
    *,
    timeout: float = 30.0,
) -> Path:
    """Fetch the missing blocks of `manifest`, then save the file into `downloads`."""
    await fetch_blocks(manifest, store, sources, timeout=timeout)
    return await assemble_file(manifest, store, downloads)


def _decrypt_into(manifest: FileManifest, store: Blockstore, out: BinaryIO) -> None:
    decryptor = ChunkDecryptor(manifest.file_key, manifest.padded_size, manifest.size)
    leaves = iter_leaves(
        manifest.root_cid,
        store.get_sync,
        ciphertext_size(manifest.padded_size),
        manifest.chunk_count,
    )
    for cid, _size in leaves:
        out.write(decryptor.decrypt_next(store.get_sync(cid)))
    if not decryptor.is_complete:
        raise DecryptionFailed("the file ends before its final chunk")


def _publish(part: Path, dest_dir: Path, name: str) -> Path:
    """Give the finished `part` a free name without ever replacing an existing file."""
    for _ in range(1000):
        final = dest_dir / unique_destination(lambda n: os.path.lexists(dest_dir / n), name)
        try:
            os.link(part, final)  # fails if `final` appeared meanwhile: no clobbering
        except FileExistsError:
            continue
        except OSError as exc:
            if exc.errno not in _NO_HARD_LINKS:
                raise
            # No hard links here (FAT, some network shares): rename instead. Windows'
            # rename refuses an existing target; elsewhere the lexists check above is it.
            if os.path.lexists(final):
                continue
            try:
                os.rename(part, final)
            except FileExistsError:
                continue
            return final
        part.unlink()
        return final
    raise TransferFailed("could not find a free name in the downloads folder")


def _user_error(exc: OSError, downloads: Path) -> FilesError:
    if exc.errno in _NO_SPACE:
        return DiskFull(f"not enough free space in {downloads} to save the file; nothing was saved")
    if exc.errno in _NO_PERMISSION or isinstance(exc, PermissionError):
        return DownloadPermissionDenied(
            f"cannot write to {downloads} (permission denied); nothing was saved"
        )
    return FilesError(f"could not save the file: {exc.strerror or exc}")


__all__ = [
    "BlockSource",
    "assemble_file",
    "assemble_file_sync",
    "destination_folder",
    "fetch_blocks",
    "random_file_key",
    "receive_file",
    "share_file",
    "share_file_sync",
    "share_paths",
]
