"""The profile's embedded blockstore: encrypted file blocks, addressed by CID, on disk.

Layout (under ``<profile>/blocks/``), modelled on go-ds-flatfs ``next-to-last/2``:

* ``<XY>/<cid>``: one file per block, named by its base32 CID, in a shard folder named
  by the two characters before the CID's last one (CIDs share their first characters,
  their ends are uniformly spread);
* ``pins/<cid>``: an empty marker per pinned root (a file the user still shares);
* ``packs/``: the blocks of files this profile shared, one pack per file
  (`app.node.block_packs`): one sequential write and one fsync instead of a file each.

Blocks are only ever ciphertext. Each is written to a temporary file and renamed into
place (fsynced unless the caller can fetch it again), so a killed process leaves either
the whole block or nothing. Every read re-hashes the
block; one that no longer matches its CID is deleted and reported as `BlockCorrupt`.
One exception: serving a raw leaf to a peer (`get_block`) skips the hash when this
process already hashed those bytes (it wrote the block, or read and verified it), up to
`MAX_VOUCHED` leaves. The peer checks every block against its CID anyway, and the re-hash
cost the sender a third of its CPU during a transfer (decision 0009).

`Blockstore` has synchronous methods (``*_sync``, for worker threads that stream whole
files) and coroutine wrappers that run them in a thread, so the event loop never blocks.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import threading
import weakref
from collections.abc import Iterable
from pathlib import Path

from app.core.unixfs import (
    CODEC_RAW,
    InvalidBlock,
    block_matches,
    cid_codec,
    cid_from_str,
    cid_to_str,
    decode_file_node,
)
from app.node.block_packs import (
    INDEX_SUFFIX,
    PACK_SUFFIX,
    PackedBlock,
    PackWriter,
    encode_index,
    load_packs,
    remove_pack,
    store_error,
)
from app.node.files_errors import BlockCorrupt, BlockNotFound, BlockPinned, FilesError
from app.node.fsutil import BINARY, atomic_write, fsync_dir, pread
from app.node.paths import make_private_dir

BLOCKS_DIR_NAME = "blocks"
PINS_DIR_NAME = "pins"
PACKS_DIR_NAME = "packs"
MAX_VOUCHED = 65_536
"""Raw leaves (16 GiB of 256 KiB blocks, ~4 MB of CIDs) whose hash this process knows."""


def blockstore_dir(profile_root: Path) -> Path:
    """Where a profile keeps its blocks."""
    return profile_root / BLOCKS_DIR_NAME


class Blockstore:
    """Content-addressed block storage in one folder; safe to use from several threads.

    One instance per folder at a time (the profile lock sees to it): opening removes
    packs without an index, which is what another instance's unfinished pack looks like.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self._shards: set[str] = set()
        self._vouched: dict[bytes, None] = {}  # insertion-ordered: the oldest go first
        make_private_dir(root)
        make_private_dir(root / PINS_DIR_NAME)
        self._packs_dir = root / PACKS_DIR_NAME
        make_private_dir(self._packs_dir)
        self._packs = load_packs(self._packs_dir)
        self._packed: dict[bytes, PackedBlock] = {
            cid: where for entries in self._packs.values() for cid, where in entries.items()
        }
        self._pack_fds: dict[str, int] = {}
        self._packs_lock = threading.Lock()
        weakref.finalize(self, _close_all, self._pack_fds)

    # ----------------------------------------------------------------- paths

    def path_for(self, cid: bytes) -> Path:
        """The file holding the block named `cid`."""
        text = cid_to_str(cid)
        return self.root / text[-3:-1] / text

    def _pin_path(self, cid: bytes) -> Path:
        return self.root / PINS_DIR_NAME / cid_to_str(cid)

    # ----------------------------------------------------------------- sync API

    def put_sync(
        self, cid: bytes, data: bytes, *, durable: bool = True, verified: bool = False
    ) -> None:
        """Store `data` under `cid` (verified first, unless the caller just did); a block
        already held is kept.

        `durable=False` skips the fsyncs (a block survives a killed process, not
        necessarily a power cut): for blocks that can be fetched again, since every
        read re-verifies and drops a damaged block. Call `sync` to make them durable."""
        if not verified and not block_matches(cid, data):
            raise BlockCorrupt("refusing to store a block that does not match its CID")
        path = self.path_for(cid)
        if cid in self._packed or path.exists():
            return
        if path.parent.name not in self._shards:  # created once per shard and process
            make_private_dir(path.parent)
            self._shards.add(path.parent.name)
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
        try:
            try:
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | BINARY, 0o600)
            except FileNotFoundError:  # the shard folder was removed meanwhile
                make_private_dir(path.parent)
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | BINARY, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                if durable:
                    os.fsync(fh.fileno())
            os.replace(tmp, path)
            self._vouch(cid)
        except OSError as exc:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise store_error(exc) from exc
        if durable:
            fsync_dir(path.parent)

    def get_sync(self, cid: bytes) -> bytes:
        """The block named `cid`, verified; `BlockNotFound` or `BlockCorrupt` otherwise."""
        data = self._read(cid)
        if not block_matches(cid, data):
            self._drop_damaged(cid)
            raise BlockCorrupt(f"block {cid_to_str(cid)} was damaged on disk and was removed")
        self._vouch(cid)
        return data

    def _read(self, cid: bytes) -> bytes:
        """The stored bytes of `cid`, unverified (from its pack or its own file)."""
        where = self._packed.get(cid)
        try:
            if where is None:
                return self.path_for(cid).read_bytes()
            data = pread(self._pack_fd(where.pack), where.length, where.offset)
        except FileNotFoundError:
            raise BlockNotFound(f"block {cid_to_str(cid)} is not stored here") from None
        except OSError as exc:
            raise FilesError(f"could not read a file block: {exc.strerror}") from exc
        if len(data) != where.length:  # the pack was cut short under us
            self._drop_damaged(cid)
            raise BlockCorrupt(f"block {cid_to_str(cid)} was damaged on disk and was removed")
        return data

    def _pack_fd(self, pack: str) -> int:
        fd = self._pack_fds.get(pack)
        if fd is None:
            with self._packs_lock:
                fd = self._pack_fds.get(pack)
                if fd is None:
                    fd = os.open(self._packs_dir / f"{pack}{PACK_SUFFIX}", os.O_RDONLY | BINARY)
                    self._pack_fds[pack] = fd
        return fd

    def _drop_damaged(self, cid: bytes) -> None:
        with contextlib.suppress(OSError):  # it is reported as damaged either way
            self._drop(cid)

    def _drop(self, cid: bytes) -> bool:
        """Forget a stored block (damaged or deleted); False if it was not held."""
        return bool(self._drop_many([cid]))

    def _drop_many(self, cids: Iterable[bytes]) -> int:
        """Forget stored blocks; how many were held. Each pack they were in has its
        index rewritten once, or goes with its last block."""
        dropped = 0
        touched: set[str] = set()
        shards: set[Path] = set()
        with self._packs_lock:
            for cid in cids:
                self._vouched.pop(cid, None)
                where = self._packed.pop(cid, None)
                if where is not None:
                    self._packs[where.pack].pop(cid, None)
                    touched.add(where.pack)
                    dropped += 1
                    continue
                path = self.path_for(cid)
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
                    dropped += 1
                    shards.add(path.parent)
            for shard in shards:  # emptied shard folders go (`put_sync` makes them again)
                with contextlib.suppress(OSError):  # not empty: kept
                    shard.rmdir()
                    self._shards.discard(shard.name)
            for pack in touched:
                entries = self._packs[pack]
                if entries:
                    atomic_write(self._packs_dir / f"{pack}{INDEX_SUFFIX}", encode_index(entries))
                    continue
                del self._packs[pack]
                fd = self._pack_fds.pop(pack, None)
                if fd is not None:
                    os.close(fd)
                remove_pack(self._packs_dir, pack)
        return dropped

    def dag_sync(self, root: bytes) -> frozenset[bytes]:
        """Every block CID named by the held nodes of the file DAG under `root` (the
        root included; leaves and nodes that are not held included too)."""
        found: set[bytes] = {root}
        stack = [root]
        while stack:
            cid = stack.pop()
            if cid_codec(cid) == CODEC_RAW or not self.has_sync(cid):
                continue
            try:
                node = decode_file_node(self.get_sync(cid))
            except (InvalidBlock, FilesError):
                continue
            for link in node.links:
                if link.cid not in found:
                    found.add(link.cid)
                    stack.append(link.cid)
        return frozenset(found)

    def release_sync(self, root: bytes) -> int:
        """The file rooted at `root` is no longer shared nor fetched: unpin it and delete
        every block of it held here; how many blocks were deleted."""
        self.unpin_sync(root)
        return self._drop_many(self.dag_sync(root))

    def open_pack(self, *, drop_behind: bool = False) -> PackWriter:
        """A new pack to write the blocks of one file into (then `commit_pack`);
        `drop_behind`: see `PackWriter`."""
        return PackWriter(self._packs_dir, drop_behind=drop_behind)

    def commit_pack(self, pack: PackWriter) -> None:
        """Make `pack` durable and its blocks readable (their bytes were hashed by the
        caller: every leaf is vouched for)."""
        pack.finish()
        with self._packs_lock:
            self._packs[pack.name] = dict(pack.entries)
            for cid, where in pack.entries.items():
                self._packed.setdefault(cid, where)
        for cid in pack.entries:
            self._vouch(cid)

    def locate_sync(self, cid: bytes) -> tuple[Path, int, int]:
        """Where `cid`'s bytes are on disk: (file, offset, length); `BlockNotFound`."""
        where = self._packed.get(cid)
        if where is not None:
            return self._packs_dir / f"{where.pack}{PACK_SUFFIX}", where.offset, where.length
        path = self.path_for(cid)
        try:
            return path, 0, path.stat().st_size
        except FileNotFoundError:
            raise BlockNotFound(f"block {cid_to_str(cid)} is not stored here") from None

    def _vouch(self, cid: bytes) -> None:
        """Remember that this process hashed the raw leaf `cid` (see the module docstring)."""
        if cid_codec(cid) != CODEC_RAW:
            return
        self._vouched[cid] = None
        if len(self._vouched) > MAX_VOUCHED:
            with contextlib.suppress(StopIteration, KeyError, RuntimeError):
                del self._vouched[next(iter(self._vouched))]

    def serve_sync(self, cid: bytes) -> bytes:
        """`get_sync`, without the re-hash of a leaf this process already hashed (for
        peers, which verify every block themselves)."""
        if cid not in self._vouched:
            return self.get_sync(cid)
        return self._read(cid)

    def has_sync(self, cid: bytes) -> bool:
        """Whether a block named `cid` is stored (not re-verified; `get` verifies)."""
        return cid in self._packed or self.path_for(cid).exists()

    def cids_sync(self) -> set[bytes]:
        """Every block held (in a pack or in a file of its own)."""
        held = set(self._packed)
        for shard in self.root.iterdir():
            if not shard.is_dir() or shard.name in (PINS_DIR_NAME, PACKS_DIR_NAME):
                continue
            for entry in shard.iterdir():
                if not entry.name.startswith("."):  # not a write in progress
                    with contextlib.suppress(InvalidBlock):
                        held.add(cid_from_str(entry.name))
        return held

    def held_sync(self, cids: Iterable[bytes]) -> set[bytes]:
        """Which of `cids` are stored."""
        return {cid for cid in cids if self.has_sync(cid)}

    def delete_sync(self, cid: bytes) -> bool:
        """Remove a block; False if it was absent. A pinned root raises `BlockPinned`."""
        if self._pin_path(cid).exists():
            raise BlockPinned("this block is the root of a file that is still shared")
        return self._drop(cid)

    def pin_sync(self, cid: bytes) -> None:
        """Record that the file rooted at `cid` is shared (its blocks must be kept)."""
        path = self._pin_path(cid)
        if not path.exists():
            fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
            os.close(fd)
            fsync_dir(path.parent)

    def unpin_sync(self, cid: bytes) -> None:
        """Forget the pin on `cid` (no error if it was not pinned)."""
        with contextlib.suppress(FileNotFoundError):
            self._pin_path(cid).unlink()

    def pins_sync(self) -> set[bytes]:
        """Every pinned root CID."""
        pins: set[bytes] = set()
        for entry in (self.root / PINS_DIR_NAME).iterdir():
            with contextlib.suppress(InvalidBlock):
                pins.add(cid_from_str(entry.name))
        return pins

    # ----------------------------------------------------------------- async API

    async def put(
        self, cid: bytes, data: bytes, *, durable: bool = True, verified: bool = False
    ) -> None:
        """`put_sync` in a worker thread."""
        await asyncio.to_thread(
            lambda: self.put_sync(cid, data, durable=durable, verified=verified)
        )

    async def get(self, cid: bytes) -> bytes:
        """`get_sync` in a worker thread."""
        return await asyncio.to_thread(self.get_sync, cid)

    async def has(self, cid: bytes) -> bool:
        """`has_sync` in a worker thread."""
        return await asyncio.to_thread(self.has_sync, cid)

    async def held(self, cids: Iterable[bytes]) -> set[bytes]:
        """`held_sync` in a worker thread."""
        return await asyncio.to_thread(self.held_sync, list(cids))

    async def delete(self, cid: bytes) -> bool:
        """`delete_sync` in a worker thread."""
        return await asyncio.to_thread(self.delete_sync, cid)

    async def pin(self, cid: bytes) -> None:
        """`pin_sync` in a worker thread."""
        await asyncio.to_thread(self.pin_sync, cid)

    async def unpin(self, cid: bytes) -> None:
        """`unpin_sync` in a worker thread."""
        await asyncio.to_thread(self.unpin_sync, cid)

    async def pins(self) -> set[bytes]:
        """`pins_sync` in a worker thread."""
        return await asyncio.to_thread(self.pins_sync)

    async def release(self, root: bytes) -> int:
        """`release_sync` in a worker thread."""
        return await asyncio.to_thread(self.release_sync, root)

    async def get_block(self, cid: bytes) -> bytes | None:
        """Serve a block to a peer: its bytes, or None if not held (a `BlockSource`)."""
        try:
            return await asyncio.to_thread(self.serve_sync, cid)
        except (BlockNotFound, BlockCorrupt):
            return None


def _close_all(fds: dict[str, int]) -> None:
    """Close the read handles of a blockstore that is gone."""
    for fd in fds.values():
        with contextlib.suppress(OSError):
            os.close(fd)
    fds.clear()
