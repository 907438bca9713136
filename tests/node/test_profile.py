"""Profile creation, unlocking, key protection and failure modes."""

from __future__ import annotations

import contextlib
import os
import re
import sqlite3
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from keyring.backend import KeyringBackend

from app.node.api import (
    InvalidArgument,
    PassphraseRequired,
    ProfileExists,
    ProfileLocked,
    ProfileNotFound,
    ProfileUnreadable,
    Protection,
    StorageFailed,
    WrongPassphrase,
)
from app.node.lock import ProfileLock, waiting_lock
from app.node.paths import ProfilePaths
from app.node.profile import create_profile, inspect, open_store
from app.node.storage import vault
from app.node.storage.database import connect, schema_version
from app.node.storage.schema import MIGRATIONS

Digest = Callable[[Path], dict[str, str]]
SmallTmpfs = Callable[[Path, str], contextlib.AbstractContextManager[Path]]
PASS = "correct horse battery"


class MemoryKeyring(KeyringBackend):
    """A real keyring backend that keeps secrets in memory (for tests)."""

    priority = 1  # type: ignore[assignment]

    def __init__(self) -> None:
        super().__init__()
        self.secrets: dict[tuple[str, str], str] = {}

    def get_password(self, service: str, username: str) -> str | None:
        return self.secrets.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        self.secrets[(service, username)] = password

    def delete_password(self, service: str, username: str) -> None:
        self.secrets.pop((service, username), None)


def test_create_and_open_with_passphrase(tmp_path: Path) -> None:
    root = tmp_path / "p"
    result = create_profile(root, "Alice", PASS)
    assert result.protection is Protection.PASSPHRASE and result.warning is None
    info = inspect(root)
    assert info.exists and info.address == result.whoami.address and not info.in_use
    assert stat.S_IMODE(root.stat().st_mode) == 0o700
    assert stat.S_IMODE(ProfilePaths(root).database.stat().st_mode) == 0o600
    with ProfileLock(ProfilePaths(root).lock):
        store = open_store(root, lambda: PASS)
        try:
            assert store.name == "Alice"
            assert store.identity.public.address == result.whoami.address
        finally:
            store.close()


def test_wrong_passphrase_changes_nothing(tmp_path: Path, tree_digest: Digest) -> None:
    root = tmp_path / "p"
    create_profile(root, "Alice", PASS)
    before = tree_digest(root)
    with pytest.raises(WrongPassphrase):
        open_store(root, lambda: "not the passphrase")
    with pytest.raises(PassphraseRequired):
        open_store(root, None)
    assert tree_digest(root) == before


def test_no_keyring_falls_back_to_private_key_file_with_warning(tmp_path: Path) -> None:
    root = tmp_path / "p"
    result = create_profile(root, "Bob", None)
    assert result.protection is Protection.KEY_FILE
    assert result.warning and "data.key" in result.warning
    assert "scrambled-eggs passphrase" in result.warning  # how to set one, not only why
    key_file = ProfilePaths(root).key_file
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    store = open_store(root, None)
    store.close()


def test_keyring_protection_round_trip(tmp_path: Path) -> None:
    backend = MemoryKeyring()
    key = os.urandom(32)
    protection, warning = vault.protect_without_passphrase(
        key, "eggaddress", tmp_path / "data.key", backend
    )
    assert protection.protection is Protection.KEYRING and warning is None
    assert not (tmp_path / "data.key").exists()
    unlocked = vault.unlock(protection, "eggaddress", tmp_path / "data.key", None, backend)
    assert unlocked.raw == key
    with pytest.raises(ProfileUnreadable):
        vault.unlock(protection, "eggaddress", tmp_path / "data.key", None, MemoryKeyring())


def test_key_file_of_another_profile_is_refused(tmp_path: Path) -> None:
    create_profile(tmp_path / "a", "A", None)
    create_profile(tmp_path / "b", "B", None)
    other = ProfilePaths(tmp_path / "b").key_file.read_bytes()
    ProfilePaths(tmp_path / "a").key_file.write_bytes(other)
    with pytest.raises(ProfileUnreadable, match="another profile"):
        open_store(tmp_path / "a", None)


def test_init_never_overwrites(tmp_path: Path, tree_digest: Digest) -> None:
    root = tmp_path / "p"
    create_profile(root, "Alice", PASS)
    before = tree_digest(root)
    with pytest.raises(ProfileExists):
        create_profile(root, "Mallory", PASS)
    assert tree_digest(root) == before


@pytest.mark.parametrize(("name", "passphrase"), [("", PASS), ("A\u202eB", PASS), ("A", "short")])
def test_bad_init_input_creates_nothing(tmp_path: Path, name: str, passphrase: str) -> None:
    with pytest.raises(InvalidArgument):
        create_profile(tmp_path / "p", name, passphrase)
    assert not (tmp_path / "p" / "eggs.db").exists()


def test_missing_profile(tmp_path: Path) -> None:
    with pytest.raises(ProfileNotFound):
        open_store(tmp_path / "nothing", None)
    assert not inspect(tmp_path / "nothing").exists


def test_corrupt_database_is_reported_and_left_alone(tmp_path: Path, tree_digest: Digest) -> None:
    root = tmp_path / "p"
    create_profile(root, "Alice", None)
    db = ProfilePaths(root).database
    db.write_bytes(b"this is not a database" * 100)
    before = tree_digest(root)
    with pytest.raises(ProfileUnreadable, match="unreadable or corrupt"):
        open_store(root, None)
    with pytest.raises(ProfileUnreadable):
        inspect(root)
    assert tree_digest(root) == before


def test_a_full_disk_is_named_as_such_and_the_profile_opens_once_space_is_freed(
    tmp_path: Path, tree_digest: Digest, small_tmpfs: SmallTmpfs
) -> None:
    """On a full disk SQLite can't open its write-ahead log and says "disk I/O error":
    the user is told the disk is full (not to restore a backup), the lock is still
    taken (its pid is only informative), and nothing is changed."""
    with small_tmpfs(tmp_path / "disk", "2m") as disk:
        root = disk / "p"
        create_profile(root, "Alice", None)
        filler = disk / "filler"
        with filler.open("wb") as fh, contextlib.suppress(OSError):
            while True:
                fh.write(bytes(64 * 1024))
                fh.flush()
        before = tree_digest(root)
        with (
            ProfileLock(ProfilePaths(root).lock),
            pytest.raises(StorageFailed, match="the disk is full"),
        ):
            open_store(root, None)
        assert tree_digest(root) == before
        filler.unlink()
        open_store(root, None).close()


def test_a_profile_made_on_a_full_disk_fails_clearly_and_leaves_nothing(
    tmp_path: Path,
    small_tmpfs: SmallTmpfs,
    fill_disk: Callable[[Path], Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Found running `init` on a nearly full disk: a traceback ending in
    "sqlite3.OperationalError: database or disk is full", and the key file of a profile
    that was never made stayed in the folder (also when the error was clear)."""
    from app.node.storage.repositories import ProfileRepository

    def full(*args: object) -> None:
        raise sqlite3.OperationalError("database or disk is full")

    root = tmp_path / "p"
    with monkeypatch.context() as patched:
        patched.setattr(ProfileRepository, "create", full)
        with pytest.raises(StorageFailed, match="the disk is full"):
            create_profile(root, "Alice", None)
    assert sorted(p.name for p in root.iterdir()) == ["lock"]
    with small_tmpfs(tmp_path / "disk", "1m") as disk:
        (disk / "p").mkdir()
        filler = fill_disk(disk)
        with pytest.raises(StorageFailed, match="the disk is full"):
            create_profile(disk / "p", "Alice", None)
        assert sorted(p.name for p in (disk / "p").iterdir()) == ["lock"]
        filler.unlink()
    create_profile(root, "Alice", None)  # once there is space, it is made
    assert inspect(root).exists


def _remount(disk: Path, mode: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{mode}", str(disk)], check=True)


def test_a_read_only_disk_is_named_as_such_and_nothing_is_changed(
    tmp_path: Path, tree_digest: Digest, small_tmpfs: SmallTmpfs
) -> None:
    """Found by starting a daemon on a profile whose disk had gone read-only: it said
    "error: Read-only file system (.../lock)", and past the lock (or in `status`) the
    database was "unreadable or corrupt ... restore the folder from a backup", the worst
    advice for an intact profile. Now the disk is named as read-only, `status` still
    reads the profile, and nothing is changed."""
    with small_tmpfs(tmp_path / "disk", "2m") as disk:
        root = disk / "p"
        address = create_profile(root, "Alice", None).whoami.address
        before = tree_digest(root)
        _remount(disk, "ro")
        try:
            info = inspect(root)  # what `status` shows: the profile, not running
            assert (info.exists, info.address, info.in_use) == (True, address, False)
            with pytest.raises(StorageFailed, match="the disk is read-only"):
                ProfileLock(ProfilePaths(root).lock).acquire()
            with pytest.raises(StorageFailed, match="the disk is read-only"):
                open_store(root, None)
        finally:
            _remount(disk, "rw")
        assert tree_digest(root) == before
        with ProfileLock(ProfilePaths(root).lock):
            open_store(root, None).close()


def test_a_profile_folder_that_cannot_be_made_is_named_with_the_reason(
    tmp_path: Path, small_tmpfs: SmallTmpfs
) -> None:
    """Found creating a profile in the window on a read-only disk: "A file or network
    operation failed: Read-only file system", naming no folder (the command line said
    "error: Read-only file system (<folder>)"), and under a file "Not a directory". Now
    the folder and the reason are said in words, and nothing is made."""
    blocker = tmp_path / "blocker"
    blocker.write_text("")
    with pytest.raises(InvalidArgument, match=re.escape(f"{blocker} is a file, not a folder")):
        create_profile(blocker / "p", "Alice", PASS)
    with small_tmpfs(tmp_path / "disk", "1m") as disk:
        _remount(disk, "ro")
        try:
            where = re.escape(f"profile in {disk / 'p'}: the disk is read-only")
            with pytest.raises(StorageFailed, match=where):
                create_profile(disk / "p", "Alice", None)
        finally:
            _remount(disk, "rw")
        assert list(disk.iterdir()) == []


def test_a_disk_the_kernel_turned_read_only_is_recognised(
    tmp_path: Path, small_tmpfs: SmallTmpfs, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ext4 with errors=remount-ro still lists its mount as "rw" (statvfs has no
    ST_RDONLY) once it refuses writes: found live, the user was told "the disk reported
    an error" and to free space. Only a write shows it; the probe leaves nothing."""
    from app.node import fsutil

    real_statvfs = os.statvfs

    class ListedWritable:
        def __init__(self, path: Path) -> None:
            self.f_flag = real_statvfs(path).f_flag & ~os.ST_RDONLY

    monkeypatch.setattr(fsutil.os, "statvfs", ListedWritable)
    with small_tmpfs(tmp_path / "disk", "1m") as disk:
        assert not fsutil.read_only(disk)
        assert list(disk.iterdir()) == []
        _remount(disk, "ro")
        try:
            assert fsutil.read_only(disk)
        finally:
            _remount(disk, "rw")
        assert list(disk.iterdir()) == []


def test_a_write_on_a_disk_gone_read_only_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A running node's disk goes read-only (ext4 after an error): SQLite reports a
    "disk I/O error", and the user was told the disk "reported an error" and to free
    space. A disk mounted busy can't be remounted read-only here, so the mount flag is
    what is faked; the SQLite error is the one seen on ext4."""
    from app.node.storage import database

    failure = sqlite3.OperationalError("disk I/O error")
    failure.sqlite_errorcode = 778  # type: ignore[attr-defined]  # SQLITE_IOERR_WRITE

    def write() -> None:
        raise failure

    path = tmp_path / "eggs.db"
    with pytest.raises(StorageFailed, match="the disk reported an error"):
        database.guarded(path, write)
    monkeypatch.setattr(database, "read_only", lambda folder: folder == tmp_path)
    with pytest.raises(StorageFailed, match=r"eggs\.db: the disk is read-only\. Nothing was"):
        database.guarded(path, write)


def test_tampered_sealed_value_is_detected(tmp_path: Path) -> None:
    root = tmp_path / "p"
    create_profile(root, "Alice", None)
    conn = sqlite3.connect(ProfilePaths(root).database)
    conn.execute("UPDATE profile SET name_enc = identity_enc")
    conn.commit()
    conn.close()
    with pytest.raises(ProfileUnreadable, match="integrity"):
        open_store(root, None)


def test_database_is_a_directory(tmp_path: Path) -> None:
    root = tmp_path / "p"
    create_profile(root, "Alice", None)
    db = ProfilePaths(root).database
    db.unlink()
    db.mkdir()
    with pytest.raises(ProfileUnreadable):
        open_store(root, None)


def test_lock_is_exclusive(tmp_path: Path) -> None:
    root = tmp_path / "p"
    create_profile(root, "Alice", None)
    with ProfileLock(ProfilePaths(root).lock):
        assert inspect(root).in_use
        with pytest.raises(ProfileLocked, match="in use"):
            ProfileLock(ProfilePaths(root).lock).acquire()
    assert not inspect(root).in_use


def test_migrations_are_versioned_and_idempotent(tmp_path: Path) -> None:
    conn = connect(tmp_path / "x.db", create=True)
    assert schema_version(conn) == len(MIGRATIONS)
    conn.close()
    conn = connect(tmp_path / "x.db")
    assert schema_version(conn) == len(MIGRATIONS)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.execute(f"PRAGMA user_version={len(MIGRATIONS) + 1}")
    conn.close()
    with pytest.raises(ProfileUnreadable, match="newer version"):
        connect(tmp_path / "x.db")


def test_profile_location_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from app.node.api import PROFILE_ENV, default_profile_dir, resolve_profile

    monkeypatch.delenv(PROFILE_ENV, raising=False)
    assert resolve_profile(None) == default_profile_dir()
    assert default_profile_dir().name == "scrambled-eggs"
    monkeypatch.setenv(PROFILE_ENV, str(tmp_path / "from-env"))
    assert resolve_profile(None) == tmp_path / "from-env"
    assert resolve_profile(str(tmp_path / "flag")) == tmp_path / "flag"


@pytest.mark.asyncio
async def test_a_lock_held_for_a_moment_is_waited_for(tmp_path: Path) -> None:
    """Found by a tester: the window refused to start ("in use by another process")
    while a command without a node held the profile for a moment."""
    import asyncio

    from app.node.lock import waiting_lock

    root = tmp_path / "p"
    create_profile(root, "Alice", None)
    path = ProfilePaths(root).lock
    brief = ProfileLock(path)
    brief.acquire()
    asyncio.get_running_loop().call_later(0.3, brief.release)
    async with waiting_lock(path, wait=5.0) as lock:
        assert lock is not None and inspect(root).in_use
    with ProfileLock(path), pytest.raises(ProfileLocked, match="in use"):
        async with waiting_lock(path, wait=0.3):
            pass

    async def node_answers() -> bool:  # a node that was starting serves it now
        return True

    with ProfileLock(path):
        async with waiting_lock(path, meanwhile=node_answers) as lock:
            assert lock is None


@pytest.mark.parametrize("passphrase", ["\x00" * 10, "tab\there-12", "\ud800" * 10])
def test_a_passphrase_nobody_can_type_is_refused(tmp_path: Path, passphrase: str) -> None:
    """Found by a tester: ten NULs were taken as a new passphrase, locking the profile."""
    with pytest.raises(InvalidArgument):
        create_profile(tmp_path / "p", "Alice", passphrase)
    assert not (tmp_path / "p" / "eggs.db").exists()


def test_settings_holding_control_characters_are_refused() -> None:
    """Found by a tester: a NUL in the downloads folder was saved, and every transfer
    then stayed "running" for good."""
    from app.node.api import UpdateSettings, check_settings

    for change in (
        UpdateSettings(downloads_folder="/tmp/dl/al\x00ice"),
        UpdateSettings(ice_servers=["stun:\ud800x"]),
        UpdateSettings(listen="127.0.0.1:0\n"),
    ):
        assert any("control characters" in p for p in check_settings(change)), change
    assert check_settings(UpdateSettings(downloads_folder="/tmp/dl/alice")) == []


HOLD_IN_TURN = """
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o600)
fcntl.flock(fd, fcntl.LOCK_EX)  # waits for its turn, as a command does
os.ftruncate(fd, 0)
os.pwrite(fd, str(os.getpid()).encode(), 0)
print("holding", flush=True)
time.sleep(float(sys.argv[2]))
"""


@pytest.mark.asyncio
async def test_commands_waiting_for_the_profile_in_turn_all_get_it(tmp_path: Path) -> None:
    """Six `send`s run at once on a profile without a node: one failed with "in use by
    another Scrambled Eggs process ... Stop it first" while the others took their turns
    (each holds the profile for a moment; the wait for it ended 5 s after it began). The
    wait now starts again whenever the profile changes hands."""
    lock = tmp_path / "lock"
    holders = [
        subprocess.Popen(
            [sys.executable, "-c", HOLD_IN_TURN, str(lock), "0.6"], stdout=subprocess.PIPE
        )
    ]
    assert holders[0].stdout is not None and holders[0].stdout.readline() == b"holding\n"
    holders += [
        subprocess.Popen([sys.executable, "-c", HOLD_IN_TURN, str(lock), "0.6"]) for _ in range(3)
    ]  # queued behind the first: 2.4 s in all, with each turn shorter than the wait
    try:
        async with waiting_lock(lock, wait=1.0) as held:
            assert held is not None
    finally:
        for holder in holders:
            holder.kill()
            holder.wait()


@pytest.mark.asyncio
async def test_a_command_refused_the_profile_does_not_send_the_user_to_stop_a_command(
    tmp_path: Path,
) -> None:
    """`messages Bob` while a long `share` without a node held the profile: "in use by
    another Scrambled Eggs process ... Stop it first; while it runs, commands go through
    it"; the holder was a command, which takes no commands and ends by itself."""
    from app.node.local import open_node_api

    create_profile(tmp_path / "me", "Me", None)
    with ProfileLock(ProfilePaths(tmp_path / "me").lock), pytest.raises(ProfileLocked) as refused:
        async with open_node_api(tmp_path / "me", None):
            pass
    said = str(refused.value)
    assert f"in use by another Scrambled Eggs command (process {os.getpid()})" in said
    assert "node that is still starting" in said and "Stop it first" not in said
