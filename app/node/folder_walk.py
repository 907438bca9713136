"""What sharing a folder takes from it: its regular files, in a stable order, and what it
leaves out (links, pipes, sockets, devices), so that the user can be told.

No link is followed: a link inside a shared folder could point anywhere on the disk
(the user's whole home folder, a device), which the user did not choose to share.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path


def regular_files(root: Path) -> list[tuple[Path, tuple[str, ...]]]:
    """Every regular file under the folder `root` with the folder parts it lies in
    (from `root`'s own name down), folders and files in name order."""
    found: list[tuple[Path, tuple[str, ...]]] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames.sort()
        rel = Path(dirpath).relative_to(root.parent).parts
        for filename in sorted(filenames):
            file_path = Path(dirpath) / filename
            if file_path.is_file() and not file_path.is_symlink():
                found.append((file_path, tuple(rel)))
    return found


def left_out(paths: Iterable[str | Path]) -> list[str]:
    """What sharing `paths` leaves out of the folders among them: each entry that is not
    a regular file or a folder (a link, even to a file or a folder; a pipe, a socket, a
    device), as a "/"-separated path from the shared folder's own name (a link to a
    folder given by itself: the link's, as it is shared), sorted."""
    skipped: list[str] = []
    for path in paths:
        root = Path(path)
        if not root.is_dir():
            continue  # a file given by itself is shared as given (or refused), not walked
        for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
            rel = Path(dirpath).relative_to(root.parent)
            for name in dirnames:
                if (Path(dirpath) / name).is_symlink():  # listed, never walked
                    skipped.append((rel / name).as_posix())
            for name in filenames:
                entry = Path(dirpath) / name
                if entry.is_symlink() or not entry.is_file():
                    skipped.append((rel / name).as_posix())
    return sorted(skipped)


def left_out_sentence(skipped: list[str], shown: int = 3) -> str | None:
    """The user's sentence for what `left_out` found (None if nothing)."""
    if not skipped:
        return None
    names = ", ".join(skipped[:shown])
    more = f" and {len(skipped) - shown} more" if len(skipped) > shown else ""
    what = (
        "item that is not a regular file"
        if len(skipped) == 1
        else "items that are not regular files"
    )
    return (
        f"Not shared: {len(skipped)} {what} (links, pipes or devices are never shared "
        f"from a folder): {names}{more}."
    )
