"""The note a node leaves when it stops cleanly, so the next start can skip work.

At start, the messenger reconciles each conversation with its stored history (received
events become messages, queued messages get their events, what the peer holds is worked
out), which needs the whole history in memory. After a clean stop nothing of that is left
to repair except in conversations that still had something on its way, so the node notes
those (by the keyed tag the database uses for a contact: the note names nobody) and the
next start reconciles only them, and those with messages not yet delivered; the others
are loaded, and reconciled, when first used. No note (a crash, a kill, an older version):
every conversation is reconciled at start, as before. The note is removed as the node
starts, so a crash later in that run leaves none.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from pathlib import Path

from app.node.fsutil import atomic_write, fsync_dir
from app.node.paths import ProfilePaths

NOTE_NAME = "stopped-cleanly"
_HEADER = b"scrambled-eggs clean stop v1\n"


def _path(paths: ProfilePaths) -> Path:
    return paths.root / NOTE_NAME


def take_note(paths: ProfilePaths) -> set[bytes] | None:
    """The tags of the conversations the last run noted as unsettled, or None if it did
    not stop cleanly (no note, or an unreadable one). Removes the note (durably)."""
    path = _path(paths)
    try:
        data = path.read_bytes()
        path.unlink()  # not removable: treated as no note (everything reconciled)
    except OSError:
        return None
    with contextlib.suppress(OSError):
        fsync_dir(paths.root)
    if not data.startswith(_HEADER):
        return None
    try:
        return {bytes.fromhex(line) for line in data[len(_HEADER) :].decode().split()}
    except ValueError:
        return None


def leave_note(paths: ProfilePaths, unsettled: Iterable[bytes]) -> None:
    """Note a clean stop, naming (by tag) the conversations still unsettled."""
    body = b"".join(tag.hex().encode() + b"\n" for tag in sorted(unsettled))
    atomic_write(_path(paths), _HEADER + body)
