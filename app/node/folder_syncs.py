"""One fsync of a folder for every file given a name in it meanwhile.

A received file is done only once its name is on disk: an fsync of its folder after the
link (`PartFile.sync_folder`). A folder of small files names dozens at once, and each
fsync of the folder made durable the names of the others linked before it started.
`FolderSyncs.sync` runs one fsync per folder at a time and returns once an fsync that
*started after* it was called has ended, so that the caller's own name is in it; the
callers that come while one runs share the next (a group commit, in the worker threads
that publish the files: no hop back to the event loop in between).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

from app.node.fsutil import fsync_dir


class _Folder:
    """One folder's fsyncs: numbered in the order they start, one at a time."""

    def __init__(self) -> None:
        self.turn = threading.Condition()
        self.started = 0
        self.finished = 0
        self.running = False
        self.errors: dict[int, OSError] = {}
        """The fsyncs that failed, by number (read by every caller they served)."""
        self.users = 0


class FolderSyncs:
    """Shared fsyncs of folders (see the module docstring); thread-safe."""

    def __init__(self, sync: Callable[[Path], None] = fsync_dir) -> None:
        """`sync` makes a folder's entries durable."""
        self._sync = sync
        self._lock = threading.Lock()
        self._folders: dict[Path, _Folder] = {}

    def sync(self, folder: Path) -> None:
        """Return once an fsync of `folder` that started after this call has ended
        (blocks the calling thread); raises its `OSError` (to every caller it served)."""
        with self._lock:
            state = self._folders.setdefault(folder, _Folder())
            state.users += 1
        try:
            self._one_after(state, folder)
        finally:
            with self._lock:
                state.users -= 1
                if not state.users:
                    del self._folders[folder]

    def _one_after(self, state: _Folder, folder: Path) -> None:
        with state.turn:
            wanted = state.started + 1  # the next to start: it starts after this call
            while state.finished < wanted:
                if state.running:
                    state.turn.wait()
                    continue
                state.running = True
                state.started += 1
                number = state.started
                state.turn.release()
                try:
                    self._sync(folder)
                except OSError as exc:
                    state.errors[number] = exc
                finally:
                    state.turn.acquire()
                    state.running = False
                    state.finished = number
                    state.turn.notify_all()
            error = state.errors.get(wanted)
        if error is not None:
            raise error


__all__ = ["FolderSyncs"]
