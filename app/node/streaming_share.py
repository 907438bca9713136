"""A file offered while it is still being encrypted (docs/protocol.md section 10.6).

Sharing a large file used to encrypt, hash and store all of it before the offer left:
the receiver could only start once the sender had finished (1 GiB: ~1.3 s of the
sender's time, then the whole fetch). A `StreamingShare` encrypts the file into its
pack in a worker thread (`share_file_sync`, the same blocks and root as any share)
while the offer is already out; its leaves can be served by chunk index as soon as each
is in the pack (`block_sync`, from the bulk stream's threads), and `run_sync` returns
the manifest with its root once the pack is durable.

Leaves are read back with `pread` from the pack being written: only leaves the share
reported written (`on_leaf`) are read, so a reader never sees a half-written block.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

from app.core.file_crypto import FileManifest
from app.node.block_packs import PackWriter
from app.node.blockstore import Blockstore
from app.node.file_io import share_file_sync
from app.node.files_errors import FilesError, SourceFileChanged
from app.node.fsutil import BINARY, pread

WAIT_FOR_LEAF = 30.0
"""Seconds a stream waits for one leaf before answering that it is not held (the
share is stuck: a source file on a hung network mount)."""


class ShareStopped(FilesError):
    """The transfer ended while its file was being encrypted."""


class StreamingShare:
    """One file being encrypted for an offer already sent (see the module docstring)."""

    def __init__(self, transfer_id: str, path: Path, manifest: FileManifest) -> None:
        self.transfer_id = transfer_id
        self.path = path
        self.manifest = manifest
        """The offered manifest (no root yet)."""
        self._cond = threading.Condition()
        self._leaves: list[tuple[int, int]] = []
        """(offset, length) in the pack of each leaf written, in file order."""
        self._pack: Path | None = None
        self._over = False
        """The share ended (done, failed or stopped): no more leaves will come."""
        self._stopped = False

    # ------------------------------------------------------------------ writing

    def run_sync(self, store: Blockstore) -> FileManifest:
        """Encrypt the file into `store` (worker thread); the manifest with its root.
        `SourceFileChanged` if the file is not the one offered (another size), what
        `share_file_sync` raises, or `ShareStopped` after `stop`."""
        try:
            if os.stat(self.path).st_size != self.manifest.size:
                raise SourceFileChanged(f"{self.path.name} changed since it was offered")
            made = share_file_sync(
                self.path,
                store,
                self.manifest.file_key,
                name=self.manifest.name,
                mime_type=self.manifest.mime_type,
                folder=self.manifest.folder,
                on_leaf=self._written,
                drop_behind=True,  # its leaves are read back as they come, or not at all
            )
        except OSError as exc:
            raise FilesError(f"cannot read {self.path.name}: {exc.strerror}") from exc
        finally:
            with self._cond:
                self._over = True
                self._cond.notify_all()
        if not made.same_file(self.manifest):
            raise SourceFileChanged(f"{self.path.name} changed since it was offered")
        return made

    def _written(self, pack: PackWriter, cid: bytes, offset: int, data: bytes) -> None:
        with self._cond:
            if self._stopped:
                raise ShareStopped("the transfer ended")
            if self._pack is None:
                self._pack = pack.path
            self._leaves.append((offset, len(data)))
            self._cond.notify_all()

    def stop(self) -> None:
        """End the share (any thread): encryption stops at its next leaf, and readers
        waiting for a leaf are answered that it is not held."""
        with self._cond:
            self._stopped = True
            self._over = True
            self._cond.notify_all()

    # ------------------------------------------------------------------ reading

    def block_sync(self, index: int, timeout: float = WAIT_FOR_LEAF) -> bytes | None:
        """Leaf `index` once it is written (a bulk stream's thread); None if it will
        not be (the share failed or stopped, the index is past the end, or it took
        longer than `timeout`)."""
        if not 0 <= index < self.manifest.chunk_count:
            return None
        with self._cond:
            ready = self._cond.wait_for(
                lambda: index < len(self._leaves) or self._over, timeout=timeout
            )
            if not ready or index >= len(self._leaves) or self._stopped:
                return None
            offset, length = self._leaves[index]
            pack = self._pack
        if pack is None:
            return None
        try:  # opened per leaf: no descriptor to close under another reader
            reader = os.open(pack, os.O_RDONLY | BINARY)
            try:
                data = pread(reader, length, offset)
            finally:
                os.close(reader)
        except OSError:  # the pack is gone (the transfer ended)
            return None
        return data if len(data) == length else None


__all__ = ["WAIT_FOR_LEAF", "ShareStopped", "StreamingShare"]
