"""The profile's data key and how it is protected at rest.

A random 32-byte data key seals every sensitive column (AES-256-GCM, `app.core.sealing`)
with the table, column and row bound in as associated data, so a value moved to another
row or column fails to open. The data key itself is either

* wrapped by a key derived from the user's passphrase with Argon2id (PyNaCl), or
* kept in the OS keyring (`keyring`), or, where there is none, in a 0600 key file
  inside the profile (weaker: a copy of the folder includes the key; the user is warned).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nacl.pwhash

from app.core.domains import Domain
from app.core.errors import DecryptionFailed
from app.core.sealing import NONCE_SIZE, SealingKey, derive_key, open_sealed, seal
from app.node.api import (
    PassphraseRequired,
    PassphraseSource,
    ProfileUnreadable,
    Protection,
    WrongPassphrase,
)
from app.node.fsutil import atomic_write

KEYRING_SERVICE = "scrambled-eggs"
KDF_OPSLIMIT = 3
KDF_MEMLIMIT = 64 * 1024 * 1024
_KEY_CHECK = b"scrambled-eggs data key"
MIN_PASSPHRASE_CHARS = 8


class DataKey:
    """The unlocked data key: seals and opens column values, computes lookup tags."""

    def __init__(self, key: bytes) -> None:
        self._sealing = SealingKey(derive_key(key, Domain.STORAGE_FIELD, b"seal"))
        self._tag_key = derive_key(key, Domain.STORAGE_FIELD, b"tag")
        self.raw = key

    def __repr__(self) -> str:
        return "DataKey(<secret>)"

    def seal(self, context: str, plaintext: bytes) -> bytes:
        """Seal a value for one place in the database (e.g. ``contacts/name/<tag>``)."""
        return self._sealing.seal(
            os.urandom(NONCE_SIZE), Domain.STORAGE_FIELD, context.encode(), plaintext
        )

    def open(self, context: str, box: bytes) -> bytes:
        """Open a value sealed for `context`; a tampered or moved value is an error."""
        try:
            return self._sealing.open(Domain.STORAGE_FIELD, context.encode(), box)
        except DecryptionFailed:
            raise ProfileUnreadable(
                f"A stored value ({context.split('/')[0]}) failed its integrity check: "
                "the profile database was modified outside the app."
            ) from None

    def tag(self, purpose: str, value: str) -> bytes:
        """A keyed hash of `value`, for unique indexes and lookups of sealed values."""
        return hmac.new(
            self._tag_key, purpose.encode() + b"\x00" + value.encode(), hashlib.sha256
        ).digest()


@dataclass(frozen=True)
class KeyProtection:
    """What the profile header stores about how the data key is protected."""

    protection: Protection
    key_check: bytes
    kdf_salt: bytes | None = None
    kdf_ops: int | None = None
    kdf_mem: int | None = None
    wrapped_key: bytes | None = None


def _kek(passphrase: str, salt: bytes, ops: int, mem: int) -> bytes:
    return nacl.pwhash.argon2id.kdf(
        32, passphrase.encode("utf-8"), salt, opslimit=ops, memlimit=mem
    )


def check_new_passphrase(passphrase: str) -> None:
    """Reject passphrases too short to resist guessing, and ones no keyboard types
    (control characters such as NUL, lone surrogates): accepted, they locked the
    profile for good (found by a tester)."""
    from app.node.api import InvalidArgument

    if len(passphrase) < MIN_PASSPHRASE_CHARS:
        raise InvalidArgument(f"Choose a passphrase of at least {MIN_PASSPHRASE_CHARS} characters.")
    if not_plain_text(passphrase):
        raise InvalidArgument("A passphrase can't hold control characters.")


def not_plain_text(text: str) -> bool:
    """Whether `text` holds a control character (a NUL...) or a lone surrogate: nothing
    a keyboard types, a path or an address holds."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return any(ord(char) < 0x20 or ord(char) == 0x7F for char in text)


def protect_with_passphrase(key: bytes, passphrase: str, address: str) -> KeyProtection:
    """Wrap the data key under Argon2id(passphrase)."""
    check_new_passphrase(passphrase)
    salt = os.urandom(nacl.pwhash.argon2id.SALTBYTES)
    kek = _kek(passphrase, salt, KDF_OPSLIMIT, KDF_MEMLIMIT)
    wrapped = seal(kek, os.urandom(NONCE_SIZE), Domain.DATA_KEY_WRAP, address.encode(), key)
    return KeyProtection(
        Protection.PASSPHRASE, _key_check(key), salt, KDF_OPSLIMIT, KDF_MEMLIMIT, wrapped
    )


def protect_without_passphrase(
    key: bytes, address: str, key_file: Path, backend: Any | None = None
) -> tuple[KeyProtection, str | None]:
    """Store the data key in the OS keyring, else in a 0600 key file (with a warning)."""
    if _keyring_store(key, address, backend):
        return KeyProtection(Protection.KEYRING, _key_check(key)), None
    atomic_write(key_file, base64.b64encode(key) + b"\n", mode=0o600)
    warning = (
        f"No OS keyring is available, so the profile key was saved in {key_file} "
        "(readable only by you). Anyone who copies the profile folder can read your "
        "messages; set a passphrase to prevent that (the window's Settings, or "
        "`scrambled-eggs passphrase`)."
    )
    return KeyProtection(Protection.KEY_FILE, _key_check(key)), warning


def unlock(
    header: KeyProtection,
    address: str,
    key_file: Path,
    passphrase: PassphraseSource | None,
    backend: Any | None = None,
) -> DataKey:
    """Recover the data key; `WrongPassphrase`/`ProfileUnreadable` leave nothing changed."""
    if header.protection is Protection.PASSPHRASE:
        if passphrase is None:
            raise PassphraseRequired(
                "This profile is protected by a passphrase. Type it when asked, or set "
                "SCRAMBLED_EGGS_PASSPHRASE."
            )
        assert header.kdf_salt and header.kdf_ops and header.kdf_mem and header.wrapped_key
        kek = _kek(passphrase(), header.kdf_salt, header.kdf_ops, header.kdf_mem)
        try:
            key = open_sealed(kek, Domain.DATA_KEY_WRAP, address.encode(), header.wrapped_key)
        except DecryptionFailed:
            raise WrongPassphrase("That passphrase does not unlock this profile.") from None
    elif header.protection is Protection.KEYRING:
        key = _keyring_load(address, backend)
    else:
        key = _key_file_load(key_file)
    if not _key_matches(key, header.key_check):
        raise ProfileUnreadable(
            "The stored profile key does not match this profile's database "
            "(the key file or keyring entry belongs to another profile)."
        )
    return DataKey(key)


def change_passphrase(key: DataKey, new_passphrase: str, address: str) -> KeyProtection:
    """Protection for a changed passphrase (the data key, and so all data, stays the same)."""
    return protect_with_passphrase(key.raw, new_passphrase, address)


def forget_stored_key(
    protection: Protection, address: str, key_file: Path, backend: Any | None = None
) -> None:
    """Remove the key copy of the old protection once a passphrase protects the key."""
    if protection is Protection.KEY_FILE:
        key_file.unlink(missing_ok=True)
    elif protection is Protection.KEYRING:
        with contextlib.suppress(Exception):  # an entry already gone is fine
            _backend(backend).delete_password(KEYRING_SERVICE, address)


def _key_check(key: bytes) -> bytes:
    return seal(key, os.urandom(NONCE_SIZE), Domain.DATA_KEY_WRAP, b"key-check", _KEY_CHECK)


def _key_matches(key: bytes, check: bytes) -> bool:
    try:
        return open_sealed(key, Domain.DATA_KEY_WRAP, b"key-check", check) == _KEY_CHECK
    except DecryptionFailed:
        return False


def _backend(backend: Any | None) -> Any:
    if backend is not None:
        return backend
    import keyring

    return keyring.get_keyring()


def _keyring_store(key: bytes, address: str, backend: Any | None) -> bool:
    try:
        kr = _backend(backend)
        if getattr(kr, "priority", 1) <= 0:
            return False
        secret = base64.b64encode(key).decode("ascii")
        kr.set_password(KEYRING_SERVICE, address, secret)
        return bool(kr.get_password(KEYRING_SERVICE, address) == secret)
    except Exception:  # any backend failure means "no usable keyring"
        return False


def _keyring_load(address: str, backend: Any | None) -> bytes:
    try:
        secret = _backend(backend).get_password(KEYRING_SERVICE, address)
    except Exception as exc:
        raise ProfileUnreadable(f"The OS keyring could not be read ({exc}).") from None
    if not secret:
        raise ProfileUnreadable(
            "This profile's key is not in the OS keyring of this account; it cannot be opened."
        )
    return base64.b64decode(secret)


def _key_file_load(path: Path) -> bytes:
    try:
        key = base64.b64decode(path.read_bytes().strip(), validate=True)
    except (OSError, ValueError):
        raise ProfileUnreadable(f"The profile key file {path} is missing or corrupt.") from None
    if len(key) != 32:
        raise ProfileUnreadable(f"The profile key file {path} is corrupt.")
    return key
