"""Receiving a file offered before its root was known (docs/protocol.md section 10.6).

The sender's offer (``file_soon``) carries the file key, sizes and name, but not the
root CID: the sender is still encrypting. The receiver fetches the leaves by chunk index
over a bulk stream from the sender (`EarlySink`), each as soon as the sender has written
it. Each leaf is authenticated by AES-256-GCM under the file key with its index and
position bound in (`PartFile.write_chunk`: a leaf that does not decrypt ends the stream
and fails the transfer), and hashed into its CID as it arrives. Once every chunk is in
and the root has come (the ``file`` event), `check_tree` rebuilds the UnixFS tree from
those CIDs and requires its root to be the announced one: the file is saved only if it
is exactly the file the sender committed to. A chunk received before a restart (its CID
was not kept) is encrypted again from the part (encryption is deterministic per key and
index) and hashed.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from app.core.file_crypto import TAG_SIZE, ChunkEncryptor, FileManifest, chunk_plaintext_length
from app.core.unixfs import UnixfsFileBuilder, raw_cid
from app.node.files_errors import TransferFailed
from app.node.part_file import PartFile


class EarlySink:
    """Where a stream by index puts the leaves (`IndexSink`; see the module docstring).
    `cids` keeps each leaf's CID, by index, for `check_tree`."""

    def __init__(
        self,
        part: PartFile,
        cids: dict[int, bytes],
        on_leaf: Callable[[], None] | None = None,
    ) -> None:
        self._part = part
        self._cids = cids
        self._on_leaf = on_leaf
        self._padded = part.manifest.padded_size
        self._fresh = [i for i in range(part.manifest.chunk_count) if not part.is_held(i)]
        self._lock = threading.Lock()

    def take_fresh(self) -> list[int]:
        """Every chunk not held, the first time; nothing after."""
        with self._lock:
            fresh, self._fresh = self._fresh, []
        return fresh

    def accept_sync(self, index: int, data: bytes | memoryview) -> bool:
        """Hash, decrypt and write one leaf (a checking thread); False if it does not
        authenticate. Raises what writing raises (disk full...)."""
        if len(data) != chunk_plaintext_length(self._padded, index) + TAG_SIZE:
            return False
        cid = raw_cid(data)
        try:
            self._part.write_chunk(index, data)
        except TransferFailed:  # does not decrypt: not the sender's file
            return False
        self._cids[index] = cid
        self._part.mark(index)
        if self._on_leaf is not None:
            self._on_leaf()
        return True


def check_tree(manifest: FileManifest, part: PartFile, cids: dict[int, bytes]) -> None:
    """Require the complete `part` to be the file rooted at `manifest.root_cid` (worker
    thread); `TransferFailed` if not. Chunks without a CID in `cids` are re-encrypted
    from the part and hashed."""
    builder = UnixfsFileBuilder()
    encryptor = ChunkEncryptor(manifest.file_key, manifest.size)
    padded = manifest.padded_size
    for index in range(manifest.chunk_count):
        size = chunk_plaintext_length(padded, index) + TAG_SIZE
        cid = cids.get(index)
        if cid is None:
            cid = raw_cid(encryptor.encrypt_chunk(index, part.read_chunk(index)))
            cids[index] = cid
        builder.add_addressed(cid, size)
    root, _ = builder.finish()
    if root != manifest.root_cid:
        raise TransferFailed(
            f"{manifest.name!r} failed verification: the blocks received do not make the "
            "file its sender announced"
        )


__all__ = ["EarlySink", "check_tree"]
