"""Sharing a local file as encrypted blocks (receiving is `app.node.file_fetch`).

Sharing (`share_file`, `share_paths`): read the file in chunk-sized pieces, pad and
encrypt them (`app.core.file_crypto`), address every ciphertext block and build the
UnixFS DAG (`app.core.unixfs`), store the blocks in the profile's blockstore (and, when
the user configured one, put them on the IPFS daemon and pin the root), and return the
`FileManifest` to send. Only one chunk is in memory at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import mimetypes
import os
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import BinaryIO

from app.core.file_crypto import CHUNK_PLAINTEXT_SIZE, ChunkEncryptor, FileManifest
from app.core.unixfs import Block, UnixfsFileBuilder, raw_cid
from app.node.block_packs import PackWriter
from app.node.blockstore import Blockstore
from app.node.files_errors import FilesError, SourceFileChanged
from app.node.folder_walk import regular_files
from app.node.ipfs import IpfsBackend

FILE_KEY_SIZE = 32
DEFAULT_MIME_TYPE = "application/octet-stream"
SHARE_WORKERS = 3
"""Threads hashing the blocks of a file being shared and writing them into its pack
(hashing and file writes release the GIL, so they run on every core)."""
MAX_PENDING_BLOCKS = 12
"""Blocks being hashed and written at once (12 x 256 KiB in memory)."""
SMALL_FILE_BYTES = 1 << 20
"""A folder's files up to this size are shared `SMALL_FILES_AT_ONCE` at a time: each
costs a few fsyncs (its pack, its index, its pin) and next to no CPU, and fsyncs made at
the same time share the file system's journal commits. 600 files of 2 kB took 2.0-8.5 s
one after another on this machine, 1.0 s eight at a time. Larger files go one at a
time, as each already keeps every core busy."""
SMALL_FILES_AT_ONCE = 8

LeafWritten = Callable[[PackWriter, bytes, int, bytes], None]
"""`on_leaf(pack, cid, offset, data)`: a leaf is in the pack (see `share_file_sync`)."""


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
    on_leaf: LeafWritten | None = None,
    drop_behind: bool = False,
) -> FileManifest:
    """Encrypt `path` into `store` (and `ipfs`), block by block; return its manifest.

    `on_leaf(pack, cid, offset, data)` is told of every leaf once it is in the pack, in
    file order (a file offered while it is encrypted serves them from there); what it
    raises stops the share (the pack is deleted). `drop_behind`: the pack's pages are
    dropped from the page cache once flushed (`PackWriter`)."""
    name = portable(path.name if name is None else name)
    folder = tuple(portable(part) for part in folder)
    if mime_type is None:
        mime_type = guess_type(path, name)
    try:
        fh = path.open("rb", buffering=0)
    except OSError as exc:
        raise FilesError(f"cannot read {path.name}: {exc.strerror}") from exc
    with fh:
        pack = store.open_pack(drop_behind=drop_behind)
        try:
            root, size, padded_size = _encrypt_into(path, fh, pack, file_key, ipfs, on_leaf)
            store.commit_pack(pack)  # every block on disk before the file is pinned and offered
        except BaseException:
            pack.discard()
            raise
    store.pin_sync(root)
    if ipfs is not None:
        ipfs.pin_add_sync(root)
    return FileManifest(
        root_cid=root,
        file_key=file_key,
        padded_size=padded_size,
        size=size,
        name=name,
        mime_type=mime_type,
        folder=folder,
    )


def guess_type(path: Path, name: str) -> str:
    """The MIME type a file is shared with (a link named without an extension: its
    target's type)."""
    return mimetypes.guess_type(name)[0] or mimetypes.guess_type(path.name)[0] or DEFAULT_MIME_TYPE


def _encrypt_into(
    path: Path,
    fh: BinaryIO,
    pack: PackWriter,
    file_key: bytes,
    ipfs: IpfsBackend | None,
    on_leaf: LeafWritten | None = None,
) -> tuple[bytes, int, int]:
    """Encrypt the open file into `pack`: its root CID, size and padded size."""
    size = os.fstat(fh.fileno()).st_size
    encryptor = ChunkEncryptor(file_key, size)
    builder = UnixfsFileBuilder()
    with ThreadPoolExecutor(SHARE_WORKERS, thread_name_prefix="share") as pool:
        pending: deque[tuple[int, Future[Block]]] = deque()

        def add(blocks: Iterable[bytes]) -> None:
            """Hash and write `blocks` in the pool; build the DAG in order here."""
            for data in blocks:
                offset = pack.reserve(len(data))
                pending.append((offset, pool.submit(_pack_leaf, data, pack, offset)))
                while len(pending) >= MAX_PENDING_BLOCKS:
                    take(*pending.popleft())

        def take(offset: int, done: Future[Block]) -> None:
            leaf = done.result()
            pack.record(leaf.cid, offset, len(leaf.data))
            if on_leaf is not None:
                on_leaf(pack, leaf.cid, offset, leaf.data)
            if ipfs is not None:
                ipfs.block_put_sync(leaf.cid, leaf.data)
            _store_nodes(builder.add_leaf(leaf), pack, ipfs)

        remaining = size
        while remaining:
            piece = fh.read(min(CHUNK_PLAINTEXT_SIZE, remaining))
            if not piece:
                raise SourceFileChanged(f"{path.name} became shorter while it was being shared")
            remaining -= len(piece)
            add(encryptor.update(piece))
        if fh.read(1):
            raise SourceFileChanged(f"{path.name} grew while it was being shared")
        add(encryptor.finish())
        while pending:
            take(*pending.popleft())
    root, nodes = builder.finish()
    _store_nodes(nodes, pack, ipfs)
    return root, size, encryptor.padded_size


def portable(name: str) -> str:
    """A name that encodes as UTF-8 (undecodable bytes in POSIX file names become U+FFFD)."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _pack_leaf(data: bytes, pack: PackWriter, offset: int) -> Block:
    """Address a ciphertext block and write it at its place in the pack (a pool thread)."""
    pack.write_at(offset, data)
    return Block(raw_cid(data), data)


def _store_nodes(nodes: Sequence[Block], pack: PackWriter, ipfs: IpfsBackend | None) -> None:
    """Write DAG nodes (and upload them to the IPFS daemon)."""
    for block in nodes:
        pack.add(block.cid, block.data)
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
    names: Sequence[str] | None = None,
) -> list[FileManifest]:
    """Share several files and/or folders; a folder's files keep their relative folders.

    `names`: the name each path is shared under (default: its own). A link the user
    named is given as its target with the link's name: the contact sees the name the
    user chose, not the target's (which may say more than the user meant to).

    Symbolic links are not followed (a shared folder cannot leak files outside it). If
    one file cannot be shared, the blocks of those shared before it in this call are
    deleted (`release_shared`) and the error is raised.
    """
    manifests: list[FileManifest] = []
    chosen = [path.name for path in paths] if names is None else names
    try:
        for path, name in zip(paths, chosen, strict=True):
            if path.is_symlink():
                continue
            if path.is_dir():
                await _share_folder(path, store, new_key, ipfs, manifests, name)
            else:
                manifests.append(await share_file(path, store, new_key(), name=name, ipfs=ipfs))
    except BaseException:
        await release_shared(store, manifests)
        raise
    return manifests


async def _share_folder(
    root: Path,
    store: Blockstore,
    new_key: Callable[[], bytes],
    ipfs: IpfsBackend | None,
    made: list[FileManifest],
    name: str,
) -> None:
    """Share the files under `root` into `made` (their folders start with `name`, not
    `root`'s own), in the order of the walk: runs of small
    files several at a time (`SMALL_FILE_BYTES`), in threads of their own (the default
    executor stays free for the node). With an IPFS daemon, one at a time (its client
    is not shared between threads). On the first failure the files of the same run that
    succeeded are in `made` too (for the caller to release), and the error is raised."""
    at_once = 1 if ipfs is not None else SMALL_FILES_AT_ONCE
    loop = asyncio.get_running_loop()
    with ThreadPoolExecutor(at_once, thread_name_prefix="share-small") as pool:
        files = [(path, (name, *parts[1:])) for path, parts in regular_files(root)]
        for run in _runs(files, at_once):
            if len(run) == 1:
                file_path, folder = run[0]
                made.append(await share_file(file_path, store, new_key(), folder=folder, ipfs=ipfs))
                continue
            outcomes = await asyncio.gather(
                *(
                    loop.run_in_executor(
                        pool,
                        functools.partial(
                            share_file_sync, path, store, new_key(), folder=folder, ipfs=ipfs
                        ),
                    )
                    for path, folder in run
                ),
                return_exceptions=True,
            )
            made.extend(o for o in outcomes if isinstance(o, FileManifest))
            for outcome in outcomes:
                if isinstance(outcome, BaseException):
                    raise outcome


def _runs(
    files: list[tuple[Path, tuple[str, ...]]], at_once: int
) -> list[list[tuple[Path, tuple[str, ...]]]]:
    """`files` cut into runs of up to `at_once` small files; a larger file is a run of
    its own."""
    runs: list[list[tuple[Path, tuple[str, ...]]]] = []
    joinable = False  # the last run is of small files, with room left
    for entry in files:
        try:
            small = entry[0].stat().st_size <= SMALL_FILE_BYTES
        except OSError:  # sharing it says why
            small = True
        if small and joinable:
            runs[-1].append(entry)
        else:
            runs.append([entry])
        joinable = small and len(runs[-1]) < at_once
    return runs


async def release_shared(store: Blockstore, manifests: Sequence[FileManifest]) -> None:
    """Delete the blocks of files shared into `store` that will not be offered (a share
    that failed part-way). Failing to delete is not raised: the caller reports why the
    share failed, and the node's start deletes pinned blocks no transfer names."""
    for manifest in manifests:
        with contextlib.suppress(FilesError, OSError):
            await store.release(manifest.root_cid)


__all__ = [
    "LeafWritten",
    "guess_type",
    "portable",
    "random_file_key",
    "release_shared",
    "share_file",
    "share_file_sync",
    "share_paths",
]
