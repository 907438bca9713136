"""The profile's settings file (`config.json`): non-secret preferences only.

Secrets never go here: names, keys and history live encrypted in the database, and so
does a TURN server's password: `config.json` holds the entry as `turn:USER:•••@HOST:PORT`
(`public`), the database the entry itself (`secrets_of`, `with_secrets`; see
`app.node.settings_store` and decision 0034).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from app.node.api import InvalidArgument, ProfileUnreadable, StorageFailed
from app.node.fsutil import atomic_write, write_failure

CONFIG_VERSION = 1


@dataclass(frozen=True)
class Config:
    """User settings persisted in the profile."""

    listen: str = "0.0.0.0:0"
    bootstrap: list[str] = field(default_factory=list)
    lan_discovery: bool = True
    ice_servers: list[str] = field(default_factory=list)
    ipfs_api: str = ""
    shaping_mode: str = "balanced"
    theme: str = "system"
    notifications: bool = True
    auto_accept_bytes: int = 25 * 1024 * 1024
    downloads_folder: str = ""
    """Where received files are saved; empty means `default_downloads_folder()`."""
    kept_ports: list[str] = field(default_factory=list)
    """`HOST:PORT` per host: the port picked for a `daemon --listen HOST:0`, tried first
    the next time (see `app.node.daemon`); not a user setting."""

    def updated(self, **changes: Any) -> Config:
        """A copy with `changes` applied, type-checked like a loaded file."""
        return _from_dict({**asdict(self), **changes})


def _from_dict(raw: dict[str, Any]) -> Config:
    defaults = Config()
    values: dict[str, Any] = {}
    for f in fields(Config):
        if f.name not in raw:
            continue
        value, default = raw[f.name], getattr(defaults, f.name)
        if type(value) is not type(default) or (
            isinstance(value, list) and not all(isinstance(v, str) for v in value)
        ):
            raise InvalidArgument(f"setting '{f.name}' has the wrong type")
        values[f.name] = value
    return replace(defaults, **values)


def load_config(path: Path) -> Config:
    """Read the settings file; a missing file means defaults."""
    try:
        raw = json.loads(path.read_text("utf-8"))
    except FileNotFoundError:
        return Config()
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ProfileUnreadable(
            f"The settings file {path} is unreadable or corrupt ({exc.__class__.__name__}). "
            "Fix or delete it; deleting restores the default settings."
        ) from None
    if not isinstance(raw, dict):
        raise ProfileUnreadable(f"The settings file {path} is corrupt (not a JSON object).")
    try:
        return _from_dict(raw)
    except InvalidArgument as exc:
        raise ProfileUnreadable(f"The settings file {path} is corrupt: {exc}.") from None


def _shown(text: str) -> str:
    """An `ice_servers` entry with its password (if any) as `•••`."""
    if "@" not in text:
        return text  # no credentials: the transport's parser is not even loaded
    from app.node.api import ice_server_shown

    return ice_server_shown(text)


def secrets_of(config: Config) -> list[str]:
    """The `ice_servers` entries that hold a password, as they are."""
    return [text for text in config.ice_servers if _shown(text) != text]


def public(config: Config) -> Config:
    """`config` without its secrets: each password of `ice_servers` as `•••`."""
    return replace(config, ice_servers=[_shown(text) for text in config.ice_servers])


def with_secrets(config: Config, secrets: list[str]) -> Config:
    """`config` (as `public` left it) with each hidden password put back from `secrets`
    (the first entry of `secrets` shown as it is). An entry with its password in clear
    (a hand-edited file, a profile from before decision 0034) is kept as it is; one
    whose password is known nowhere is kept hidden, and refused when used."""
    found: dict[str, str] = {}
    for secret in secrets:
        found.setdefault(_shown(secret), secret)
    return replace(config, ice_servers=[found.get(text, text) for text in config.ice_servers])


def save_config(path: Path, config: Config) -> None:
    """Write the settings file atomically, readable only by the owner, without secrets
    (`public`: keep them with `app.node.settings_store.save_settings`); `StorageFailed`
    (the old file kept) if the disk can't take it."""
    data = {"version": CONFIG_VERSION, **asdict(public(config))}
    try:
        # as UTF-8, not \u escapes: a hand-edited file shows `turn:USER:•••@HOST:PORT`
        text = json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
        atomic_write(path, text.encode("utf-8"))
    except OSError as exc:
        reason = write_failure(exc, path.parent) or exc.strerror or str(exc)
        raise StorageFailed(
            f"Couldn't save the settings to {path}: {reason}. The settings were not "
            "changed; free some space (or fix the disk) and try again."
        ) from None


def default_downloads_folder() -> Path:
    """The user's downloads folder (platformdirs), sub-folder "Scrambled Eggs"."""
    import platformdirs

    return Path(platformdirs.user_downloads_dir()) / "Scrambled Eggs"


def downloads_folder(config: Config) -> Path:
    """Where received files go: the configured folder, else the default one."""
    if config.downloads_folder:
        return Path(config.downloads_folder).expanduser()
    return default_downloads_folder()
