"""Checks of settings that only this machine can answer: can the node listen on an
address, can it save received files in a folder, does an IPFS daemon answer at the IPFS
API address, does the TURN server take the user name and password. They run when a
setting is changed, so a value that would stop the next start (a listen address), fail
every received file (a downloads folder) or every share (an IPFS address where no daemon
answers), or leave the relay path unusable (TURN credentials the server refuses), is
refused at once, naming the setting and why
(docs/decisions/0016-settings-checked-when-set.md, 0031-ipfs-and-turn-checked-when-set.md).

Blocking I/O: call them off the event loop. A value that is malformed is left to the
syntax checks in `app.node.service.config_problems` (these return None for it).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from app.node.api import InvalidArgument
from app.node.dht import parse_host_port
from app.node.files_errors import IpfsRejected, IpfsUnavailable
from app.node.fsutil import read_only
from app.node.ipfs import PROBE_TIMEOUT, IpfsBackend, api_address_problem
from app.node.storage import vault
from app.node.transport.ice_urls import BadIceUrl, parse_ice_url
from app.node.transport.turn_probe import turn_refusal


def listen_problem(listen: str) -> str | None:
    """Why this machine can't listen on `listen` (HOST:PORT), if it can't.

    Only the host is probed, by binding port 0 on it (UDP for the DHT, TCP for the
    WebSocket path): the port itself may be the one the running node holds, or one that
    is busy now and free at the next start."""
    try:
        host, _ = parse_host_port(listen, allow_port_zero=True)
    except InvalidArgument:
        return None
    cant = f"The listen address {listen!r} can't be used:"
    for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
        try:
            found = socket.getaddrinfo(host, 0, type=kind, flags=socket.AI_PASSIVE)
        except (OSError, UnicodeError):
            return f"{cant} this machine can't look up the name {host}."
        failure: OSError | None = None
        for family, socktype, proto, _, address in found:
            try:
                with socket.socket(family, socktype, proto) as probe:
                    probe.bind(address)
                break
            except OSError as exc:
                failure = failure or exc
        else:
            why = f" ({failure.strerror})" if failure and failure.strerror else ""
            return f"{cant} {host} is not an address of this machine{why}."
    return None


def downloads_problem(text: str) -> str | None:
    """Why received files can't be saved in the folder `text` names, if they can't.

    A folder that does not exist yet is fine if it can be created: it is created to be
    sure, and removed again (the node creates it when the first file arrives)."""
    if not text or vault.not_plain_text(text):
        return None
    folder = Path(os.path.expanduser(text))
    if not folder.is_absolute():
        return None
    missing: list[Path] = []
    existing = folder
    while not os.path.lexists(existing) and existing.parent != existing:
        missing.append(existing)
        existing = existing.parent
    if not missing:
        if os.path.exists(folder) and not folder.is_dir():
            return None  # "is a file, not a folder": said by the syntax checks
        if not folder.is_dir():
            return f"The downloads folder {folder} is a link to nothing."
        if not os.access(folder, os.W_OK | os.X_OK):
            # a read-only disk fails the same check: "permission denied" sent the user to
            # the folder's permissions
            why = "a read-only file system" if read_only(folder) else "permission denied"
            return f"The downloads folder {folder} can't be written to ({why})."
        return None
    if not existing.is_dir():
        what = "a file, not a folder" if existing.is_file() else "not a folder"
        return f"The downloads folder {folder} can't be created: {existing} is {what}."
    try:
        folder.mkdir(parents=True)
    except OSError as exc:
        return f"The downloads folder {folder} can't be created ({exc.strerror or exc})."
    finally:
        for made in missing:  # deepest first; only what did not exist before
            with contextlib.suppress(OSError):
                made.rmdir()
    return None


def ipfs_api_problem(api_addr: str) -> str | None:
    """Why no IPFS daemon can be used at `api_addr`, if none can: nothing answers there,
    or what answers is not an IPFS daemon's API (asked for its version, once).

    Every share puts its blocks on that daemon and fails when it can't, so an address
    where none answers would fail every share from now on. Empty (no daemon) is fine."""
    if not api_addr or vault.not_plain_text(api_addr) or api_address_problem(api_addr):
        return None
    cant = f"The IPFS API address {api_addr} can't be used:"
    try:
        backend = IpfsBackend(api_addr, timeout=PROBE_TIMEOUT)
    except IpfsUnavailable:
        return None  # malformed: said by the syntax checks
    try:
        backend.version_sync()
    except IpfsUnavailable:
        return (
            f"{cant} no IPFS daemon answers there. Start the daemon (or check the port "
            "its API listens on), then set the address."
        )
    except IpfsRejected:
        return f"{cant} what answers there is not an IPFS daemon's API (a wrong port?)."
    finally:
        backend.close()
    return None


def ice_servers_problem(texts: list[str]) -> str | None:
    """Why the TURN server in `texts` can't be used, if it says so itself: it refuses
    the user name and password (asked for one allocation, which is deleted again).

    aioice drops a TURN failure silently, so this was never said. A server that does not
    answer is accepted: it may be down for a while, and connections come up without it."""
    for text in texts:
        try:
            server = parse_ice_url(text)
        except BadIceUrl:
            return None  # said by the syntax checks
        if server.relay:
            return asyncio.run(turn_refusal(server, text))
    return None


PROBES: dict[str, Callable[[Any], str | None]] = {
    "listen": listen_problem,
    "ice_servers": ice_servers_problem,
    "ipfs_api": ipfs_api_problem,
    "downloads_folder": downloads_problem,
}
"""The settings checked on this machine, by name (the names of `UpdateSettings`)."""


def machine_problems(values: Mapping[str, object]) -> dict[str, str]:
    """Setting name -> sentence, for each setting in `values` this machine can't use."""
    found: dict[str, str] = {}
    for name, probe in PROBES.items():
        value = values.get(name)
        problem = probe(value) if isinstance(value, (str, list)) else None
        if problem:
            found[name] = problem
    return found
