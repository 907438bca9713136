"""Running `scrambled-eggs` in separate processes, as a user would."""

from __future__ import annotations

import contextlib
import json
import os
import pty
import select
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


class Terminal:
    """`scrambled-eggs ARGS` on a pseudo-terminal of its own (its controlling terminal,
    so a passphrase prompt reads from it and Ctrl+C typed into it interrupts it)."""

    def __init__(self, profile: Path, *args: str) -> None:
        argv = [sys.executable, "-m", "app", "--profile", str(profile), *args]
        env = _with_app(cli_env())
        self.pid, self.fd = pty.fork()
        if self.pid == 0:  # the child: the pty is its stdin, stdout and stderr
            os.execve(sys.executable, argv, env)
        self.output = b""

    def read_until(self, text: str, timeout: float = 30) -> str:
        """What it printed until `text` appeared (AssertionError if it never did)."""
        deadline = time.monotonic() + timeout
        while text.encode() not in self.output and time.monotonic() < deadline:
            if select.select([self.fd], [], [], 0.1)[0]:
                try:
                    chunk = os.read(self.fd, 65536)
                except OSError:  # the child closed the terminal
                    break
                if not chunk:
                    break
                self.output += chunk
        assert text.encode() in self.output, self.output.decode(errors="replace")
        return self.output.decode(errors="replace")

    def type(self, keys: bytes) -> None:
        os.write(self.fd, keys)

    def exit_code(self, timeout: float = 30) -> int | None:
        """Its exit code, or None if it had not exited after `timeout` seconds (it is then
        killed)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if select.select([self.fd], [], [], 0.1)[0]:
                with contextlib.suppress(OSError):
                    self.output += os.read(self.fd, 65536)
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self._drain()
                os.close(self.fd)
                return os.waitstatus_to_exitcode(status)
        os.kill(self.pid, signal.SIGKILL)
        os.waitpid(self.pid, 0)
        os.close(self.fd)
        return None

    def _drain(self) -> None:
        """Read what is left on the terminal of an exited process."""
        while select.select([self.fd], [], [], 0)[0]:
            try:
                chunk = os.read(self.fd, 65536)
            except OSError:  # closed: all was read
                return
            if not chunk:
                return
            self.output += chunk
