"""The profile's settings as the node uses them: `config.json` with the secrets kept
sealed in the database put back (decision 0034).

A TURN server's password is the one secret setting: `config.json` holds its entry as
`turn:USER:•••@HOST:PORT`, the database (`sealed_settings`) the entry itself. Every write
is ordered so that a crash at any point loses nothing: the sealed entries are saved
first (with those the file on disk still refers to), then the file, then the sealed
entries it no longer refers to are dropped.
"""

from __future__ import annotations

import logging

from app.node.api import ProfileUnreadable, StorageFailed
from app.node.config import Config, load_config, save_config, secrets_of, with_secrets
from app.node.storage.database import guarded
from app.node.storage.store import ProfileStore

log = logging.getLogger(__name__)

ICE_SERVERS = "ice_servers"
"""The sealed setting holding the `ice_servers` entries that have a password."""


def load_settings(store: ProfileStore) -> Config:
    """The settings with their secrets; `ProfileUnreadable` if `config.json` is corrupt.
    On the thread that owns the store's connection (or before anyone else uses it)."""
    config = load_config(store.paths.config)
    return with_secrets(config, store.sealed_settings.texts(ICE_SERVERS))


def save_settings(store: ProfileStore, config: Config) -> None:
    """Save `config`: its secrets sealed, the rest in `config.json` (`StorageFailed`,
    nothing lost, if the disk can't take it). Use through `store.call`."""
    kept = store.sealed_settings.texts(ICE_SERVERS)
    wanted = secrets_of(config)
    both = wanted + [text for text in kept if text not in wanted]
    if both != kept:  # the file still on disk may refer to what was kept
        store.sealed_settings.keep(ICE_SERVERS, both)
    save_config(store.paths.config, config)
    if wanted != both:
        store.sealed_settings.keep(ICE_SERVERS, wanted)


def seal_secrets_at_rest(store: ProfileStore) -> bool:
    """Move passwords found in clear in `config.json` (a profile from before decision
    0034, or a hand-edited file) into the sealed store and rewrite the file without
    them, and drop sealed ones the file no longer refers to (a write cut short by a
    crash); whether it wrote. A file it can't read is left for the node to report; a
    disk that can't take the writes leaves everything as it was, tried again next time."""
    try:
        on_disk = load_config(store.paths.config)
    except ProfileUnreadable:
        return False
    kept = store.sealed_settings.texts(ICE_SERVERS)
    config = with_secrets(on_disk, kept)
    if not secrets_of(on_disk) and secrets_of(config) == kept:
        return False
    try:
        guarded(store.paths.database, lambda: save_settings(store, config))
    except StorageFailed:
        log.warning("a TURN password stays in config.json for now: the disk refused the write")
        return False
    log.info("the settings' secrets are kept in the sealed store only")
    return True
