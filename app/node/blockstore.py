"""The profile's embedded blockstore: encrypted file blocks, addressed by CID, on disk.

Layout (under ``<profile>/blocks/``), modelled on go-ds-flatfs ``next-to-last/2``:

* ``<XY>/<cid>``: one file per block, named by its base32 CID, in a shard folder named
  by the two characters before the CID's last one (CIDs share their first characters,
  their ends are uniformly spread);
* ``pins/<cid>``: an empty marker per pinned root (a file the user still shares).

Blocks are only ever ciphertext. Each is written to a temporary file and renamed into
place (fsynced unless the caller can fetch it again), so a killed process leaves either
the whole block or nothing. Every read re-hashes the
block; one that no longer matches its CID is deleted and reported as `BlockCorrupt`.

`Blockstore` has synchronous methods (``*_sync``, for worker threads that stream whole
files) and coroutine wrappers that run them in a thread, so the event loop never blocks.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import secrets
from collections.abc import Iterable
from pathlib import Path

from app.core.unixfs import InvalidBlock, block_matches, cid_from_str, cid_to_str
from app.node.files_errors import BlockCorrupt, BlockNotFound, BlockPinned, DiskFull, FilesError
from app.node.fsutil import fsync_dir
from app.node.paths import make_private_dir

BLOCKS_DIR_NAME = "blocks"
PINS_DIR_NAME = "pins"


def blockstore_dir(profile_root: Path) -> Path:
    """Where a profile keeps its blocks."""
    return profile_root / BLOCKS_DIR_NAME


class Blockstore:
    """Content-addressed block storage in one folder; safe to use from several threads."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._shards: set[str] = set()
        make_private_dir(root)
        make_private_dir(root / PINS_DIR_NAME)

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
        if path.exists():
            return
        if path.parent.name not in self._shards:  # created once per shard and process
            make_private_dir(path.parent)
            self._shards.add(path.parent.name)
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
        try:
            try:
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileNotFoundError:  # the shard folder was removed meanwhile
                make_private_dir(path.parent)
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                if durable:
                    os.fsync(fh.fileno())
            os.replace(tmp, path)
        except OSError as exc:
            with contextlib.suppress(OSError):
                tmp.unlink()
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise DiskFull("not enough disk space in the profile to store file blocks") from exc
            raise FilesError(f"could not store a file block: {exc.strerror}") from exc
        if durable:
            fsync_dir(path.parent)

    def sync(self) -> None:
        """Flush blocks written with ``durable=False`` to disk (the whole file system)."""
        os.sync()

    def get_sync(self, cid: bytes) -> bytes:
        """The block named `cid`, verified; `BlockNotFound` or `BlockCorrupt` otherwise."""
        path = self.path_for(cid)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise BlockNotFound(f"block {cid_to_str(cid)} is not stored here") from None
        if not block_matches(cid, data):
            with contextlib.suppress(OSError):
                path.unlink()
            raise BlockCorrupt(f"block {cid_to_str(cid)} was damaged on disk and was removed")
        return data

    def has_sync(self, cid: bytes) -> bool:
        """Whether a block named `cid` is stored (not re-verified; `get` verifies)."""
        return self.path_for(cid).exists()

    def held_sync(self, cids: Iterable[bytes]) -> set[bytes]:
        """Which of `cids` are stored."""
        return {cid for cid in cids if self.has_sync(cid)}

    def delete_sync(self, cid: bytes) -> bool:
        """Remove a block; False if it was absent. A pinned root raises `BlockPinned`."""
        if self._pin_path(cid).exists():
            raise BlockPinned("this block is the root of a file that is still shared")
        try:
            self.path_for(cid).unlink()
        except FileNotFoundError:
            return False
        return True

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

    async def get_block(self, cid: bytes) -> bytes | None:
        """Serve a block to a peer: its bytes, or None if not held (a `BlockSource`)."""
        try:
            return await self.get(cid)
        except (BlockNotFound, BlockCorrupt):
            return None
