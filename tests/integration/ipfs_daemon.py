"""Start and stop a real, loopback-only, offline IPFS daemon for integration tests.

No Kubo binary can be installed on the CI machines, so this uses the JavaScript
implementation (npm ``ipfs@0.66.1``), which serves the same HTTP RPC API. Its
package.json (with the dependency overrides it needs to install) lives in
``tools/ipfs/``; the packages are installed into ``tools/ipfs/node_modules`` (git-ignored)
on first use with::

    npm --prefix tools/ipfs install --no-audit --no-fund

which takes about three minutes and 300 MB. Tests skip only when ``npm`` is absent.

The daemon is configured before it starts so it never leaves loopback: no bootstrap
peers, no MDNS, no webRTCStar, no delegates, no routing, no pubsub, every listener on
127.0.0.1, and it runs with ``--offline --enable-preload=false``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
IPFS_TOOL_DIR = REPO_ROOT / "tools" / "ipfs"
JSIPFS = IPFS_TOOL_DIR / "node_modules" / ".bin" / "jsipfs"
INSTALL_COMMAND = ["npm", "--prefix", str(IPFS_TOOL_DIR), "install", "--no-audit", "--no-fund"]
READY_TIMEOUT = 60.0


@dataclass(frozen=True)
class IpfsDaemon:
    """A running daemon: its API multiaddr, repo folder and process."""

    api_addr: str
    repo: Path
    process: subprocess.Popen[bytes]
    log: Path


def ensure_installed() -> Path:
    """Install the pinned js-ipfs into tools/ipfs/node_modules if needed; skip without npm."""
    if JSIPFS.exists():
        return JSIPFS
    if shutil.which("npm") is None:
        pytest.skip("npm is not installed: cannot install the JavaScript IPFS daemon")
    subprocess.run(INSTALL_COMMAND, check=True, cwd=IPFS_TOOL_DIR, timeout=1800)
    return JSIPFS


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def configure_loopback_only(repo: Path, api_port: int) -> None:
    """Rewrite the repo's config so the daemon talks to nothing but loopback."""
    config_path = repo / "config"
    config = json.loads(config_path.read_text())
    addresses = config["Addresses"]
    addresses["Swarm"] = [f"/ip4/127.0.0.1/tcp/{free_port()}"]
    addresses["API"] = f"/ip4/127.0.0.1/tcp/{api_port}"
    addresses["Gateway"] = f"/ip4/127.0.0.1/tcp/{free_port()}"
    addresses["RPC"] = f"/ip4/127.0.0.1/tcp/{free_port()}"
    addresses["Announce"] = []
    addresses["Delegates"] = []
    config["Bootstrap"] = []
    config["Discovery"] = {
        "MDNS": {"Enabled": False, "Interval": 10},
        "webRTCStar": {"Enabled": False},
    }
    config["Routing"] = {"Type": "none"}
    config["Pubsub"] = {"Router": "gossipsub", "Enabled": False}
    config.setdefault("Swarm", {})["DisableNatPortMap"] = True
    config_path.write_text(json.dumps(config, indent=2))


def _api_ready(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
        return True
    return False


@contextlib.contextmanager
def running_ipfs_daemon(workdir: Path) -> Iterator[IpfsDaemon]:
    """Init a fresh repo under `workdir`, start the daemon offline, stop it on exit."""
    with restartable_ipfs_daemon(workdir) as daemon:
        yield daemon.start()


class RestartableIpfsDaemon:
    """A repo whose daemon a test stops and starts again (same repo, same API port)."""

    def __init__(self, workdir: Path) -> None:
        self._jsipfs = ensure_installed()
        self.repo = workdir / "ipfs-repo"
        self._env = {**os.environ, "IPFS_PATH": str(self.repo)}
        subprocess.run(
            [str(self._jsipfs), "init", "--empty-repo"],
            check=True,
            env=self._env,
            capture_output=True,
            timeout=120,
        )
        self.api_port = free_port()
        configure_loopback_only(self.repo, self.api_port)
        self.api_addr = f"/ip4/127.0.0.1/tcp/{self.api_port}/http"
        self.log = workdir / "ipfs-daemon.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> IpfsDaemon:
        """Start the daemon and wait until its API takes connections."""
        with self.log.open("ab") as log_fh:
            process = subprocess.Popen(
                [str(self._jsipfs), "daemon", "--offline", "--enable-preload=false"],
                env=self._env,
                stdout=log_fh,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.process = process
        deadline = time.monotonic() + READY_TIMEOUT
        while not _api_ready(self.api_port):
            if process.poll() is not None:
                raise RuntimeError(f"IPFS daemon exited early:\n{self.log.read_text()[-4000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"IPFS daemon not ready:\n{self.log.read_text()[-4000:]}")
            time.sleep(0.2)
        return IpfsDaemon(self.api_addr, self.repo, process, self.log)

    def stop(self) -> None:
        """Stop the daemon (the repo stays)."""
        if self.process is not None:
            _stop(self.process)
            self.process = None


@contextlib.contextmanager
def restartable_ipfs_daemon(workdir: Path) -> Iterator[RestartableIpfsDaemon]:
    """A fresh repo under `workdir`, not started yet; its daemon is stopped on exit."""
    daemon = RestartableIpfsDaemon(workdir)
    try:
        yield daemon
    finally:
        daemon.stop()


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=15)
