"""Settings and fixtures shared by every test tier.

No real keyring, no telemetry, offscreen Qt; loopback-only ICE for WebRTC tests; a
digest of a profile folder to prove that failed operations changed nothing.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import socket
import struct
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import aioice.ice
import pytest

# Tests must never touch the user's real keyring: the "fail" backend means "no keyring",
# so --no-passphrase profiles use the 0600 key file. Tests that need a keyring inject one.
os.environ["PYTHON_KEYRING_BACKEND"] = "keyring.backends.fail.Keyring"
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.pop("SCRAMBLED_EGGS_PASSPHRASE", None)
os.environ.pop("SCRAMBLED_EGGS_PROFILE", None)


def digest_tree(root: Path) -> dict[str, str]:
    """Content of every file that holds data (SQLite's -shm index and an empty -wal
    are transient artifacts of opening the database, not data)."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
        and p.name != "lock"
        and not p.name.endswith("-shm")
        and not (p.name.endswith("-wal") and p.stat().st_size == 0)
    }


@pytest.fixture
def tree_digest() -> Callable[[Path], dict[str, str]]:
    """`digest_tree`: compare before/after to prove nothing was changed."""
    return digest_tree


class _NoMdns:
    """Stands in for aioice's mDNS protocol so no multicast query ever leaves the host."""

    async def resolve(self, hostname: str, timeout: float = 1.0) -> None:
        return None

    async def close(self) -> None:
        return None


@pytest.fixture
def loopback_ice(monkeypatch: pytest.MonkeyPatch) -> None:
    """aioice gathers only non-loopback host candidates: use 127.0.0.1 for tests, no mDNS.

    Test-only: production code never patches aioice silently."""

    def host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        return ["127.0.0.1"] if use_ipv4 else []

    async def no_mdns(subscriber: object) -> _NoMdns:
        return _NoMdns()

    monkeypatch.setattr(aioice.ice, "get_host_addresses", host_addresses)
    monkeypatch.setattr(aioice.ice, "get_or_create_mdns_protocol", no_mdns)


@pytest.fixture(autouse=True)
def _downloads_stay_in_tmp(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A node in this process that was not given a downloads folder saves under a
    temporary one, never in the user's real downloads folder."""
    from app.node import config

    folder = tmp_path_factory.mktemp("downloads") / "Scrambled Eggs"
    monkeypatch.setattr(config, "default_downloads_folder", lambda: folder)


TURN_PASSWORD = "p@ss:w0rd"
"""The `coturn` fixture's password for user `u`: it holds the characters that separate
the other parts of a `turn:USER:PASSWORD@HOST:PORT` entry."""


@dataclass(frozen=True)
class Coturn:
    """A running coturn: its UDP port on 127.0.0.1, and its process (to stop it early)."""

    port: int
    process: subprocess.Popen[bytes]


@contextlib.contextmanager
def running_coturn() -> Iterator[Coturn]:
    """coturn on 127.0.0.1 (skipped when not installed), user `u`, `TURN_PASSWORD`."""
    binary = shutil.which("turnserver")
    if binary is None:
        pytest.skip("coturn (turnserver) is not installed")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    proc = start_coturn(binary, port)
    try:
        yield Coturn(port, proc)
    finally:
        proc.terminate()
        proc.wait(5)


def start_coturn(binary: str, port: int) -> subprocess.Popen[bytes]:
    """coturn on 127.0.0.1:`port` (user `u`, `TURN_PASSWORD`), once it answers."""
    args = [
        *(binary, "-n", "--listening-ip=127.0.0.1", "--relay-ip=127.0.0.1"),
        *(f"--listening-port={port}", "--lt-cred-mech", f"--user=u:{TURN_PASSWORD}"),
        *("--realm=test", "--no-tls", "--no-dtls", "--no-cli", "--allow-loopback-peers"),
        "--fingerprint",
    ]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    # it answers before the test asks it anything (a fixed 0.5 s could be too short
    # on a loaded machine, and a TURN server that does not answer is accepted)
    if not _answers_stun(port, time.monotonic() + 30):
        proc.terminate()
        proc.wait(5)
        raise AssertionError("coturn did not start")
    return proc


def _answers_stun(port: int, deadline: float) -> bool:
    """Whether a STUN server on 127.0.0.1:`port` answers a Binding request before
    `deadline` (time.monotonic)."""
    request = struct.pack(">HHI12s", 0x0001, 0, 0x2112A442, os.urandom(12))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(0.2)
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                sock.sendto(request, ("127.0.0.1", port))
                answer, _ = sock.recvfrom(2048)
                if answer[:2] == b"\x01\x01":  # Binding success response
                    return True
    return False


@pytest.fixture
def coturn() -> Iterator[int]:
    """coturn on 127.0.0.1 (skipped when not installed), user `u`, `TURN_PASSWORD`: its port."""
    with running_coturn() as server:
        yield server.port


@pytest.fixture
def coturn_server() -> Iterator[Coturn]:
    """`coturn`, with its process, for a test that stops it."""
    with running_coturn() as server:
        yield server
