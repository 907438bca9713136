"""Where things live inside a profile folder."""

from __future__ import annotations

import hashlib
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

# AF_UNIX paths are limited to ~104-108 bytes; beyond this we use a short runtime path.
_MAX_UNIX_SOCKET_PATH = 100


@dataclass(frozen=True)
class ProfilePaths:
    """The files of one profile folder."""

    root: Path

    @property
    def database(self) -> Path:
        return self.root / "eggs.db"

    @property
    def config(self) -> Path:
        return self.root / "config.json"

    @property
    def lock(self) -> Path:
        return self.root / "lock"

    @property
    def key_file(self) -> Path:
        return self.root / "data.key"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def control_token(self) -> Path:
        """Windows: port and secret token of the localhost control endpoint."""
        return self.root / "control.json"

    @property
    def control_socket(self) -> Path:
        """POSIX: the control socket (a short per-user runtime path if the profile's is long)."""
        direct = self.root / "control.sock"
        if len(os.fsencode(direct)) <= _MAX_UNIX_SOCKET_PATH:
            return direct
        digest = hashlib.sha256(os.fsencode(self.root)).hexdigest()[:24]
        return runtime_dir() / f"{digest}.sock"


def runtime_dir() -> Path:
    """A per-user folder only its owner can enter, for sockets with long profile paths."""
    base = os.environ.get("XDG_RUNTIME_DIR") or tempfile.gettempdir()
    uid = os.getuid() if hasattr(os, "getuid") else 0
    folder = Path(base) / f"scrambled-eggs-{uid}"
    folder.mkdir(mode=0o700, exist_ok=True)
    if sys.platform != "win32":
        st = folder.stat()
        if st.st_uid != uid or st.st_mode & 0o077:
            os.chmod(folder, 0o700)
            if folder.stat().st_uid != uid:
                raise PermissionError(f"{folder} belongs to another user")
    return folder


def make_private_dir(path: Path) -> None:
    """Create `path` (and parents) so only the owner can read or enter it."""
    path.mkdir(parents=True, exist_ok=True)
    if sys.platform != "win32":
        os.chmod(path, 0o700)
