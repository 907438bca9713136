"""A TURN server's password is kept in the sealed store, never in clear in the profile
folder (decision 0034): set through the settings, moved there from a `config.json` that
holds it (a profile from before, a hand-edited file) at the next unlock without losing it
to a crash at any point, and used from there by the node (a real coturn on loopback)."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from app.node.api import DaemonOptions, PassphraseSource, UpdateSettings
from app.node.config import load_config
from app.node.daemon import hosted_node
from app.node.paths import ProfilePaths
from app.node.profile import create_profile, open_store
from app.node.service import NodeService
from app.node.settings_store import ICE_SERVERS, load_settings, seal_secrets_at_rest
from tests.conftest import TURN_PASSWORD as PASSWORD
from tests.conftest import Coturn
from tests.node.conftest import SmallTmpfs

PASS = "a passphrase 123"
REPO = Path(__file__).resolve().parents[2]


def _in_clear(root: Path, secret: str) -> list[str]:
    """The files under `root` that hold `secret`'s bytes."""
    return [
        str(path.relative_to(root))
        for path in root.rglob("*")
        if path.is_file() and secret.encode() in path.read_bytes()
    ]


def _profile(tmp_path: Path, passphrase: str | None = PASS) -> Path:
    root = tmp_path / "profile"
    create_profile(root, "Alice", passphrase)
    return root


def _unlock(passphrase: str | None) -> PassphraseSource | None:
    return None if passphrase is None else (lambda: passphrase)


async def _settings_of(root: Path, passphrase: str | None = PASS) -> list[str]:
    store = open_store(root, _unlock(passphrase))
    try:
        return (await NodeService(store).get_settings()).ice_servers
    finally:
        store.close()


def _write_as_before(root: Path, entries: list[str]) -> bytes:
    """`config.json` as a build before decision 0034 wrote it (the password in clear)."""
    path = ProfilePaths(root).config
    data = json.loads(path.read_text("utf-8"))
    data["ice_servers"] = entries
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", "utf-8")
    return path.read_bytes()


@pytest.mark.asyncio
@pytest.mark.parametrize("passphrase", [PASS, None], ids=["passphrase", "key-file"])
async def test_a_turn_password_set_is_in_no_file_of_the_profile(
    tmp_path: Path, coturn: int, passphrase: str | None
) -> None:
    root = _profile(tmp_path, passphrase)
    entry = f"turn:u:{PASSWORD}@127.0.0.1:{coturn}"
    store = open_store(root, _unlock(passphrase))
    try:
        node = NodeService(store)
        stun = "stun:127.0.0.1:3478"
        saved = await node.update_settings(UpdateSettings(ice_servers=[stun, entry]))
        assert saved.ice_servers == [stun, entry]
        assert _in_clear(root, PASSWORD) == []  # while the profile is open (WAL) too
    finally:
        store.close()
    assert _in_clear(root, PASSWORD) == []
    on_disk = load_config(ProfilePaths(root).config).ice_servers
    assert on_disk == [stun, f"turn:u:•••@127.0.0.1:{coturn}"]
    assert await _settings_of(root, passphrase) == [stun, entry]


@pytest.mark.asyncio
async def test_a_changed_or_removed_turn_password_leaves_nothing_behind(
    tmp_path: Path, coturn: int
) -> None:
    root = _profile(tmp_path)
    store = open_store(root, lambda: PASS)
    try:
        node = NodeService(store)
        first = f"turn:u:{PASSWORD}@127.0.0.1:{coturn}"
        await node.update_settings(UpdateSettings(ice_servers=[first]))
        await node.update_settings(UpdateSettings(ice_servers=["stun:127.0.0.1:3478"]))
        assert await store.call(store.sealed_settings.texts, ICE_SERVERS) == []
        await node.update_settings(UpdateSettings(ice_servers=[first]))
    finally:
        store.close()
    assert await _settings_of(root) == [first]


@pytest.mark.asyncio
async def test_a_password_in_config_json_moves_into_the_sealed_store_at_the_next_unlock(
    tmp_path: Path,
) -> None:
    root = _profile(tmp_path)
    entry = f"turns:bob:{PASSWORD}@turn.example.org:5349?transport=tcp"
    _write_as_before(root, [entry])
    assert _in_clear(root, PASSWORD) == ["config.json"]
    assert await _settings_of(root) == [entry]
    assert _in_clear(root, PASSWORD) == []
    assert load_config(ProfilePaths(root).config).ice_servers == [
        "turns:bob:•••@turn.example.org:5349?transport=tcp"
    ]
    assert await _settings_of(root) == [entry]  # and again, from the sealed store


def test_a_full_disk_keeps_the_password_where_it_is_until_there_is_room(
    tmp_path: Path, small_tmpfs: SmallTmpfs, fill_disk: Callable[[Path], Path]
) -> None:
    """A disk with no room for the move (the database opened, then the disk filled):
    nothing changes, the password is still used, and the move is made once there is
    room (at the next unlock; called here on the open store)."""
    entry = f"turn:u:{PASSWORD}@127.0.0.1:3478"
    with small_tmpfs(tmp_path / "disk", "4m") as disk:
        root = _profile(disk)
        store = open_store(root, lambda: PASS)
        try:
            before = _write_as_before(root, [entry])
            filler = fill_disk(disk)
            assert seal_secrets_at_rest(store) is False
            assert ProfilePaths(root).config.read_bytes() == before
            assert load_settings(store).ice_servers == [entry]
            filler.unlink()
            assert seal_secrets_at_rest(store) is True
            assert load_settings(store).ice_servers == [entry]
        finally:
            store.close()
        assert _in_clear(root, PASSWORD) == []


FIXTURES = REPO / "tests" / "data" / "profiles"


@pytest.mark.asyncio
@pytest.mark.parametrize("name", ["alice", "bob"], ids=["passphrase", "key-file"])
async def test_a_profile_of_an_older_version_with_a_turn_password_is_moved_too(
    tmp_path: Path, name: str
) -> None:
    """A profile made by 4b64401 (schema 9), its TURN entry as that version saved it."""
    facts = json.loads((FIXTURES / "4b64401" / "facts.json").read_text("utf-8"))
    root = tmp_path / name
    shutil.copytree(FIXTURES / "4b64401" / name, root)
    entry = f"turn:u:{PASSWORD}@127.0.0.1:3478?transport=tcp"
    _write_as_before(root, [entry])
    passphrase = facts["passphrases"][name]
    assert await _settings_of(root, passphrase) == [entry]
    assert _in_clear(root, PASSWORD) == []
    config = load_config(ProfilePaths(root).config)
    assert config.ice_servers == ["turn:u:•••@127.0.0.1:3478?transport=tcp"]
    assert "•••" in ProfilePaths(root).config.read_text("utf-8")  # readable when edited
    for key, value in facts["settings"].get(name, {}).items():
        assert getattr(config, key) == value  # the other settings kept


CRASH = """
import os, sys
from app.node import config, settings_store
from app.node.storage.sealed_settings import SealedSettingRepository
from app.node.profile import open_store

where = sys.argv[2]
keep = SealedSettingRepository.keep
calls = []

def crashing_keep(self, name, texts):
    calls.append(name)
    if where == "before-sealing" or (where == "before-dropping" and len(calls) == 2):
        os._exit(9)
    keep(self, name, texts)

def crashing_write(path, data):
    os._exit(9)

SealedSettingRepository.keep = crashing_keep
if where == "before-config":
    config.atomic_write = crashing_write
open_store(__import__("pathlib").Path(sys.argv[1]), lambda: "a passphrase 123")
sys.exit(3)  # not reached: the process died in the middle of the move
"""


@pytest.mark.asyncio
@pytest.mark.parametrize("where", ["before-sealing", "before-config", "before-dropping"])
async def test_a_crash_while_the_password_moves_loses_nothing(tmp_path: Path, where: str) -> None:
    """The process dies (exit without cleanup, as a kill) at each step of the move."""
    root = _profile(tmp_path)
    old = f"turn:u:old-{PASSWORD}@127.0.0.1:3478"
    entry = f"turn:u:{PASSWORD}@127.0.0.1:3478"
    if where == "before-dropping":
        # a password sealed before, which the file no longer refers to: dropped last
        store = open_store(root, lambda: PASS)
        store.sealed_settings.keep(ICE_SERVERS, [old])
        store.close()
    before = _write_as_before(root, [entry])
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    crashed = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(CRASH), str(root), where], env=env, check=False
    )
    assert crashed.returncode == 9
    config = ProfilePaths(root).config
    if where == "before-dropping":
        assert PASSWORD not in config.read_text("utf-8")  # the file was written...
    else:
        assert config.read_bytes() == before  # ...or is as it was
    assert await _settings_of(root) == [entry]
    assert _in_clear(root, PASSWORD) == []
    store = open_store(root, lambda: PASS)
    try:
        assert store.sealed_settings.texts(ICE_SERVERS) == [entry]
    finally:
        store.close()


@pytest.mark.asyncio
@pytest.mark.timeout(60)
@pytest.mark.usefixtures("loopback_ice")
async def test_the_daemon_uses_the_sealed_password(tmp_path: Path, coturn_server: Coturn) -> None:
    """The node's WebRTC configuration and its TURN watch get the entry with its password
    (from the sealed store, `config.json` holding `•••`): once the server stops, the watch
    says it does not answer (an entry without its password is left out: no word)."""
    root = _profile(tmp_path)
    entry = f"turn:u:{PASSWORD}@127.0.0.1:{coturn_server.port}"
    store = open_store(root, lambda: PASS)
    try:
        await NodeService(store).update_settings(UpdateSettings(ice_servers=[entry]))
    finally:
        store.close()
    assert _in_clear(root, PASSWORD) == []
    coturn_server.process.terminate()
    coturn_server.process.wait(5)
    options = DaemonOptions(root, listen="127.0.0.1:0", lan=False)
    async with hosted_node(options, lambda: PASS, log_to_profile=False) as node:
        assert node.config.ice_servers == [entry]
        status = await node.status()
        while not status.turn:
            await asyncio.sleep(0.1)
            status = await node.status()
        assert "does not answer" in status.turn or "no answer" in status.turn
        assert PASSWORD not in status.turn
