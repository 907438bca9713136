"""The listen port a daemon picks for port 0 is kept in the profile (README, "Headless"):
invites handed out stay valid across restarts. Loopback only."""

from __future__ import annotations

import socket
from dataclasses import replace
from pathlib import Path

import pytest

from app.node.api import DaemonOptions, InvalidArgument, UpdateSettings
from app.node.config import load_config, save_config
from app.node.daemon import hosted_node
from app.node.paths import ProfilePaths
from app.node.profile import create_profile, open_store
from app.node.service import NodeService

PASS = "a passphrase 123"


def _profile(tmp_path: Path) -> Path:
    create_profile(tmp_path / "p", "P", PASS)
    return tmp_path / "p"


async def _port_of_run(options: DaemonOptions) -> int:
    async with hosted_node(options, lambda: PASS, log_to_profile=False) as node:
        return int((await node.status()).endpoints[0].rpartition(":")[2])


@pytest.mark.asyncio
async def test_an_explicit_host_port_zero_keeps_the_picked_port(tmp_path: Path) -> None:
    profile = _profile(tmp_path)
    options = DaemonOptions(profile, listen="127.0.0.1:0", lan=False)
    first = await _port_of_run(options)
    config = load_config(ProfilePaths(profile).config)
    assert config.kept_ports == [f"127.0.0.1:{first}"]
    assert config.listen == "0.0.0.0:0"  # the setting used without --listen is not touched
    assert await _port_of_run(options) == first


@pytest.mark.asyncio
async def test_a_taken_kept_port_is_replaced_by_another_one(tmp_path: Path) -> None:
    profile = _profile(tmp_path)
    options = DaemonOptions(profile, listen="127.0.0.1:0", lan=False)
    first = await _port_of_run(options)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as squatter:
        squatter.bind(("127.0.0.1", first))
        second = await _port_of_run(options)
    assert second != first
    assert load_config(ProfilePaths(profile).config).kept_ports == [f"127.0.0.1:{second}"]
    assert await _port_of_run(options) == second


@pytest.mark.asyncio
async def test_an_explicit_port_is_used_as_given_and_not_kept(tmp_path: Path) -> None:
    profile = _profile(tmp_path)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    options = DaemonOptions(profile, listen=f"127.0.0.1:{port}", lan=False)
    assert await _port_of_run(options) == port
    assert load_config(ProfilePaths(profile).config).kept_ports == []


@pytest.mark.asyncio
async def test_the_picked_port_survives_a_settings_change_while_running(tmp_path: Path) -> None:
    """Without --listen the picked port goes into the `listen` setting; a settings change
    made while the node runs must not write the port-0 setting read at start back."""
    profile = _profile(tmp_path)
    paths = ProfilePaths(profile)
    save_config(paths.config, load_config(paths.config).updated(listen="127.0.0.1:0"))
    options = DaemonOptions(profile, lan=False)
    async with hosted_node(options, lambda: PASS, log_to_profile=False) as node:
        port = int((await node.status()).endpoints[0].rpartition(":")[2])
        await node.update_settings(UpdateSettings(theme="dark"))
    config = load_config(paths.config)
    assert config.listen == f"127.0.0.1:{port}" and config.theme == "dark"
    assert await _port_of_run(options) == port


@pytest.mark.asyncio
async def test_the_window_uses_the_port_a_daemon_kept_for_the_same_host(tmp_path: Path) -> None:
    """Found by a tester: after `daemon --listen 127.0.0.1:0`, the window (no --listen,
    setting 127.0.0.1:0) picked another port, so the invites given out went stale."""
    profile = _profile(tmp_path)
    paths = ProfilePaths(profile)
    save_config(paths.config, replace(load_config(paths.config), listen="127.0.0.1:0"))
    first = await _port_of_run(DaemonOptions(profile, listen="127.0.0.1:0", lan=False))
    assert await _port_of_run(DaemonOptions(profile, lan=False)) == first
    assert load_config(paths.config).listen == f"127.0.0.1:{first}"


@pytest.mark.asyncio
async def test_a_listen_address_this_machine_cannot_use_is_refused_when_set(
    tmp_path: Path,
) -> None:
    """It used to be saved and then stop the next start ("Can't listen on ...")."""
    profile = _profile(tmp_path)
    options = DaemonOptions(profile, listen="127.0.0.1:0", lan=False)
    async with hosted_node(options, lambda: PASS, log_to_profile=False) as node:
        before = (await node.get_settings()).listen
        for bad, why in [
            ("256.1.1.1:0", "256.1.1.1 is not an IP address"),
            ("192.0.2.1:4000", "192.0.2.1 is not an address of this machine"),  # TEST-NET-1
            ("nowhere.invalid:0", "can't look up the name nowhere.invalid"),
        ]:
            with pytest.raises(InvalidArgument, match=why) as refused:
                await node.update_settings(UpdateSettings(listen=bad, theme="dark"))
            assert repr(bad) in str(refused.value)
            assert (await node.get_settings()).listen == before  # nothing changed
            assert (await node.get_settings()).theme == "system"
        # the port this node listens on is in use (by the node): the address stays valid
        port = int((await node.status()).endpoints[0].rpartition(":")[2])
        saved = await node.update_settings(UpdateSettings(listen=f"127.0.0.1:{port}"))
        assert saved.listen == f"127.0.0.1:{port}"
    assert load_config(ProfilePaths(profile).config).listen == f"127.0.0.1:{port}"


@pytest.mark.asyncio
async def test_a_listen_address_that_stopped_working_does_not_block_other_changes(
    tmp_path: Path,
) -> None:
    """Only what changes is probed: a saved address of a network left since can't keep
    the user from changing the theme (the start says what is wrong with it)."""
    profile = _profile(tmp_path)
    paths = ProfilePaths(profile)
    save_config(paths.config, replace(load_config(paths.config), listen="192.0.2.1:4000"))
    store = open_store(profile, lambda: PASS)
    service = NodeService(store)
    try:
        assert (await service.update_settings(UpdateSettings(theme="dark"))).theme == "dark"
    finally:
        service.close()
        store.close()


@pytest.mark.asyncio
async def test_a_node_whose_disk_went_read_only_still_stops_in_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found stopping a daemon whose profile disk had gone read-only (ext4 after an
    error): removing the control socket failed, so it printed "error: Read-only file
    system" and skipped the rest of its shutdown (network, database). Now it stops in
    order and lets go of the profile."""
    import errno
    import os

    from app.node.lock import ProfileLock

    root = _profile(tmp_path)
    options = DaemonOptions(profile=root, listen="127.0.0.1:0", lan=False)
    real_unlink = Path.unlink

    def refused_unlink(path: Path, missing_ok: bool = False) -> None:
        if path.parent == root:
            raise OSError(errno.EROFS, "Read-only file system", str(path))
        real_unlink(path, missing_ok)

    def refused_truncate(fd: int, length: int) -> None:
        raise OSError(errno.EROFS, "Read-only file system")

    async with hosted_node(options, lambda: PASS, log_to_profile=False) as node:
        assert isinstance(node, NodeService)
        store = node.store
        monkeypatch.setattr(Path, "unlink", refused_unlink)
        monkeypatch.setattr(os, "ftruncate", refused_truncate)
    monkeypatch.undo()
    with pytest.raises(Exception, match="closed"):  # the database was closed
        store.profile.header()
    with ProfileLock(ProfilePaths(root).lock):  # and the profile let go of
        pass
