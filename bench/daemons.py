"""What the benchmarks share: the real CLI and real daemons of a code tree, on loopback.

Every benchmark that runs `scrambled-eggs daemon` processes starts them the same way
(loopback ICE candidates only, no LAN discovery, no keyring, no onnxruntime telemetry)
and waits the same way until each answers `status`; before this module each had its own
copy of those loops.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from app.node.control import ControlClient, connect_control
from app.node.paths import ProfilePaths

ROOT = Path(__file__).resolve().parents[1]
PROFILE_PREFIX = os.environ.get("BENCH_PROFILE")
"""If set, each daemon runs under cProfile, writing PREFIX-<profile name> at exit."""
LOG_DIR = os.environ.get("BENCH_DAEMON_LOGS")
"""If set, each daemon's stderr (what it prints when it fails; the node logs to
<profile>/logs/node.log) goes to DIR/<profile name>.log instead of nowhere."""


def node_env(code: Path = ROOT, passphrase: str | None = None) -> dict[str, str]:
    """The environment of a CLI command or daemon of the tree `code`: the profile's
    passphrase if given (else none: profiles made with --no-passphrase), loopback only."""
    env = dict(os.environ)
    env.pop("SCRAMBLED_EGGS_PASSPHRASE", None)
    if passphrase is not None:
        env["SCRAMBLED_EGGS_PASSPHRASE"] = passphrase
    env.update(
        PYTHONPATH=str(code),
        SCRAMBLED_EGGS_ICE_LOOPBACK="1",
        PYTHON_KEYRING_BACKEND="keyring.backends.fail.Keyring",
    )
    env.setdefault("ORT_DISABLE_TELEMETRY", "1")
    return env


def run_cli(profile: Path, *args: str, env: dict[str, str], timeout: float = 300) -> Any:
    """`scrambled-eggs --profile PROFILE ARGS --json` of the tree in env's PYTHONPATH;
    its JSON answer, or RuntimeError with what it printed on stderr."""
    done = subprocess.run(
        [sys.executable, "-m", "app", "--profile", str(profile), *args, "--json"],
        capture_output=True,
        text=True,
        env=env,
        cwd=env.get("PYTHONPATH", ROOT),
        stdin=subprocess.DEVNULL,
        timeout=timeout,
    )
    if done.returncode != 0:
        raise RuntimeError(f"scrambled-eggs {' '.join(args)} failed: {done.stderr.strip()}")
    return json.loads(done.stdout)


def spawn_daemon(profile: Path, shaping: str, env: dict[str, str]) -> subprocess.Popen[bytes]:
    """`scrambled-eggs daemon` on 127.0.0.1 (any port, no LAN discovery), output
    discarded (or its log kept, see LOG_DIR); under cProfile if BENCH_PROFILE is set."""
    runner = [sys.executable, "-m", "app"]
    if PROFILE_PREFIX:
        runner[2:2] = ["cProfile", "-o", f"{PROFILE_PREFIX}-{profile.name}", "-m"]
    with contextlib.ExitStack() as stack:
        log: Any = subprocess.DEVNULL
        if LOG_DIR:  # the child keeps its own descriptor; ours closes after the start
            log = stack.enter_context(open(Path(LOG_DIR) / f"{profile.name}.log", "ab"))
        return subprocess.Popen(
            [
                *runner,
                *("--profile", str(profile), "daemon", "--listen", "127.0.0.1:0", "--no-lan"),
                *("--shaping", shaping),
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=log,
            cwd=env.get("PYTHONPATH", ROOT),
            env=env,
        )


def start_daemon(
    profile: Path, shaping: str, env: dict[str, str], timeout: float = 60
) -> subprocess.Popen[bytes]:
    """A daemon whose `status` (asked with the CLI) says it runs."""
    process = spawn_daemon(profile, shaping, env)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the daemon for {profile.name} exited")
        with contextlib.suppress(RuntimeError):
            if run_cli(profile, "status", env=env)["running"]:
                return process
        time.sleep(0.2)
    process.kill()
    raise RuntimeError(f"the daemon for {profile.name} did not start")


async def start_daemon_client(
    profile: Path, shaping: str, env: dict[str, str], timeout: float = 60, poll: float = 0.2
) -> tuple[subprocess.Popen[bytes], ControlClient]:
    """A daemon and a control-socket client of it, once its `status` says it runs."""
    process = spawn_daemon(profile, shaping, env)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the daemon for {profile.name} exited")
        client = await connect_control(ProfilePaths(profile), timeout=1.0)
        if client is not None:
            with contextlib.suppress(Exception):
                if (await client.status()).running:
                    return process, client
            await client.close()
        await asyncio.sleep(poll)
    process.kill()
    raise RuntimeError(f"the daemon for {profile.name} did not come up")
