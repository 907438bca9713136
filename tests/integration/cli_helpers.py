"""Running `scrambled-eggs` in separate processes, as a user would."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any


def cli_env(passphrase: str | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("SCRAMBLED_EGGS_PASSPHRASE", None)
    if passphrase is not None:
        env["SCRAMBLED_EGGS_PASSPHRASE"] = passphrase
    return env


def run_cli(
    profile: Path,
    *args: str,
    passphrase: str | None = None,
    timeout: float = 60,
    cwd: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app", "--profile", str(profile), *args],
        capture_output=True,
        text=True,
        env=_with_app(cli_env(passphrase)),
        stdin=subprocess.DEVNULL,
        timeout=timeout,
        cwd=cwd,
    )


def _with_app(env: dict[str, str]) -> dict[str, str]:
    """`python -m app` runs this checkout's `app`, whatever the working folder."""
    root = str(Path(__file__).resolve().parents[2])
    return {**env, "PYTHONPATH": os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))}


def cli_json(
    profile: Path, *args: str, passphrase: str | None = None, cwd: Path | None = None
) -> Any:
    done = run_cli(profile, *args, "--json", passphrase=passphrase, cwd=cwd)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


class Daemon:
    """`scrambled-eggs daemon` in its own process."""

    def __init__(
        self,
        profile: Path,
        *args: str,
        passphrase: str | None = None,
        prefix: tuple[str, ...] = (),
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
    ) -> None:
        """`prefix` runs the daemon under another command (e.g. `ip netns exec NS`)."""
        self.profile = profile
        self.process = subprocess.Popen(
            [*prefix, sys.executable, "-m", "app", "--profile", str(profile), "daemon", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=_with_app({**cli_env(passphrase), **(env or {})}),
            stdin=subprocess.DEVNULL,
            cwd=cwd,
        )

    def wait_ready(self, timeout: float = 30) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"daemon exited: {self.process.stderr.read()}")  # type: ignore[union-attr]
            done = run_cli(self.profile, "status", "--json")
            if done.returncode == 0:
                status: dict[str, Any] = json.loads(done.stdout)
                if status["running"]:
                    return status
            time.sleep(0.2)
        raise AssertionError("daemon did not come up")

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            return self.process.wait(timeout=20)
        finally:
            for stream in (self.process.stdout, self.process.stderr):
                if stream:
                    stream.close()


def wait_for(predicate: Any, timeout: float = 40.0, interval: float = 0.3) -> Any:
    """Poll `predicate` until it returns something truthy (returned) or time runs out."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"condition not met in {timeout} s; last value: {last!r}")
