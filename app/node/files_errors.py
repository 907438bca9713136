"""Errors of file sharing in the node layer, each with a message written for the user.

They subclass `app.node.api.NodeError` (or `NetworkError` for the IPFS daemon) so front
ends handle them like every other node error.
"""

from __future__ import annotations

from app.node.api import NetworkError, NodeError


class FilesError(NodeError):
    """A file could not be shared or received."""

    code = "files_error"


class BlockNotFound(FilesError):
    """A block of a shared file is not in the local blockstore (yet)."""

    code = "block_not_found"


class BlockCorrupt(FilesError):
    """A stored block no longer matches its CID (disk corruption); it has been dropped."""

    code = "block_corrupt"


class BlockPinned(FilesError):
    """The block belongs to a file that is still shared and cannot be deleted."""

    code = "block_pinned"


class IpfsUnavailable(NetworkError):
    """The configured IPFS daemon cannot be reached (wrong address, not running, timeout)."""

    code = "ipfs_unavailable"


class IpfsRejected(FilesError):
    """The IPFS daemon refused a request or answered with data that does not verify."""

    code = "ipfs_rejected"


class DiskFull(FilesError):
    """There is not enough free space to save the file; nothing was saved."""

    code = "disk_full"


class DownloadPermissionDenied(FilesError):
    """The downloads folder cannot be written to; nothing was saved."""

    code = "download_permission_denied"


class SourceFileChanged(FilesError):
    """The file changed size while it was being shared; share it again."""

    code = "source_file_changed"


class TransferFailed(FilesError):
    """A received file could not be completed: blocks are missing, tampered or malformed."""

    code = "transfer_failed"


class BlocksUnavailable(TransferFailed):
    """No source reachable right now has the missing blocks (the sender is offline)."""

    code = "blocks_unavailable"
