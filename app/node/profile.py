"""Creating, inspecting and opening a profile folder.

A profile is created whole or not at all: the database is built under a temporary name
and renamed into place only once complete.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from pathlib import Path

from app.core.errors import InvalidInvite
from app.core.identity import IdentityKeys, fingerprint, make_invite, validate_display_name
from app.node.api import (
    InitResult,
    InvalidArgument,
    PassphraseSource,
    ProfileExists,
    ProfileInfo,
    ProfileNotFound,
    ProfileUnreadable,
    StorageFailed,
    Whoami,
)
from app.node.config import load_config, save_config
from app.node.fsutil import read_only, write_failure
from app.node.lock import ProfileLock, lock_holder
from app.node.paths import ProfilePaths, make_private_dir
from app.node.settings_store import seal_secrets_at_rest
from app.node.storage import database, vault
from app.node.storage.repositories import ProfileHeader, ProfileRepository
from app.node.storage.store import ProfileStore


def checked_name(name: str) -> str:
    """A display name accepted by the core rules, as a user-facing error otherwise."""
    try:
        return validate_display_name(name)
    except InvalidInvite as exc:
        raise InvalidArgument(f"That name can't be used: {exc}.") from None


def whoami_of(keys: IdentityKeys, name: str, endpoints: list[str]) -> Whoami:
    """The `Whoami` value for an identity reachable at `endpoints`."""
    public = keys.public
    return Whoami(
        name=name,
        address=public.address,
        invite=make_invite(keys, name, endpoints),
        fingerprint=fingerprint(public),
    )


def inspect(root: Path) -> ProfileInfo:
    """What the folder holds, without unlocking or locking it."""
    paths = ProfilePaths(root)
    holder = lock_holder(paths.lock)
    in_use, pid = holder is not None, holder or ""
    if not paths.database.is_file():
        return ProfileInfo(str(root), False, None, None, in_use, holder=pid)
    try:
        header = _read_header(paths.database, "")
    except sqlite3.Error as exc:
        # On a read-only disk SQLite can't make the shared-memory file a WAL database
        # needs even to read, and nobody can write there: read the file as it is.
        if not read_only(root):
            raise database.unreadable(paths.database, exc) from None
        try:
            header = _read_header(paths.database, "&immutable=1")
        except sqlite3.Error as again:
            raise database.unreadable(paths.database, again) from None
    if header is None:
        raise ProfileUnreadable(f"The profile database {paths.database} has no identity.")
    try:
        theme = load_config(paths.config).theme
    except ProfileUnreadable:
        theme = "system"  # said when the node starts; the look can wait
    return ProfileInfo(str(root), True, header.key.protection, header.address, in_use, theme, pid)


def _read_header(database: Path, options: str) -> ProfileHeader | None:
    conn = sqlite3.connect(f"file:{database}?mode=ro{options}", uri=True)
    try:
        return ProfileRepository(conn).header()
    finally:
        conn.close()


def check_new_profile(root: Path, name: str) -> str:
    """The display name checked, if a profile named `name` can be made in `root`
    (`InvalidArgument` or `ProfileExists` otherwise); said before a passphrase is asked."""
    name = checked_name(name)
    if ProfilePaths(root).database.exists():
        raise ProfileExists(f"A profile already exists in {root}; it was left untouched.")
    return name


def _make_profile_folder(root: Path) -> None:
    """Create the profile folder (and its parents), or say in words why it can't be:
    the OS's bare "Read-only file system" reached the user without the folder's name."""
    try:
        make_private_dir(root)
    except OSError as exc:
        existing = root
        while not os.path.lexists(existing) and existing.parent != existing:
            existing = existing.parent
        if os.path.lexists(existing) and not existing.is_dir():
            what = "a file, not a folder" if existing.is_file() else "not a folder"
            raise InvalidArgument(
                f"The profile folder {root} can't be created: {existing} is {what}."
            ) from None
        reason = write_failure(exc, existing)
        if reason is None:
            raise InvalidArgument(
                f"The profile folder {root} can't be created ({exc.strerror or exc})."
            ) from None
        raise StorageFailed(
            f"Couldn't create the profile in {root}: {reason}. Nothing was made; choose "
            "another folder, or fix the disk (or free some space) and try again.",
            reason,
        ) from None


def create_profile(root: Path, name: str, passphrase: str | None) -> InitResult:
    """Make a new profile with a fresh identity, all or nothing."""
    name = check_new_profile(root, name)
    paths = ProfilePaths(root)
    if passphrase is not None:
        vault.check_new_passphrase(passphrase)
    _make_profile_folder(root)
    with ProfileLock(paths.lock):
        if paths.database.exists():
            raise ProfileExists(f"A profile already exists in {root}; it was left untouched.")
        identity = IdentityKeys.from_seeds(os.urandom(32), os.urandom(32))
        address = identity.public.address
        data_key = os.urandom(32)
        warning = None
        tmp = paths.database.with_name(paths.database.name + ".init")
        # A key file written for a profile that then could not be made (a full disk) is
        # removed with it: the next attempt makes another key.
        leftovers = [tmp, Path(f"{tmp}-wal"), Path(f"{tmp}-shm"), paths.key_file]
        try:
            if passphrase is not None:
                protection = vault.protect_with_passphrase(data_key, passphrase, address)
            else:
                protection, warning = vault.protect_without_passphrase(
                    data_key, address, paths.key_file
                )
            conn = database.connect(tmp, create=True)
            try:
                database.guarded(
                    tmp,
                    lambda: ProfileRepository(conn).create(
                        vault.DataKey(data_key), protection, identity, name, int(time.time())
                    ),
                )
                checkpoint = "PRAGMA wal_checkpoint(TRUNCATE)"
                database.guarded(tmp, lambda: conn.execute(checkpoint).fetchone())
            finally:
                conn.close()
            if not paths.config.exists():
                save_config(paths.config, load_config(paths.config))
            os.replace(tmp, paths.database)
        except BaseException as exc:
            for leftover in leftovers:
                with contextlib.suppress(FileNotFoundError):
                    leftover.unlink()
            if isinstance(exc, OSError):  # the key file or the rename
                reason = write_failure(exc, root) or exc.strerror or str(exc)
                raise StorageFailed(
                    f"Couldn't create the profile in {root}: {reason}. Nothing was kept; "
                    "free some space (or fix the disk) and try again.",
                    reason,
                ) from None
            raise
    return InitResult(whoami_of(identity, name, []), protection.protection, warning)


def open_store(root: Path, passphrase: PassphraseSource | None) -> ProfileStore:
    """Open and unlock an existing profile. The caller must already hold its lock.

    A TURN password found in clear in `config.json` is moved into the sealed store now
    (`seal_secrets_at_rest`)."""
    paths = ProfilePaths(root)
    if not paths.database.exists():
        raise ProfileNotFound(
            f"There is no profile in {root} yet. Create one with: scrambled-eggs init --name NAME"
        )
    conn = database.connect(paths.database)
    try:
        header = database.guarded(paths.database, ProfileRepository(conn).header)
        if header is None:
            raise ProfileUnreadable(f"The profile database {paths.database} has no identity.")
        key = vault.unlock(header.key, header.address, paths.key_file, passphrase)
        store = database.guarded(paths.database, lambda: ProfileStore(paths, conn, key, header))
    except BaseException:
        conn.close()
        raise
    try:
        database.guarded(paths.database, lambda: seal_secrets_at_rest(store))
    except BaseException:
        store.close()
        raise
    return store
