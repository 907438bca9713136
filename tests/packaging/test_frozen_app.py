"""The frozen one-folder app works as a user would run it: version, self-test (node and
window, offscreen), and two frozen daemons that find each other on loopback and exchange
messages."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from app import __version__

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]

PASS = "a passphrase for the frozen app"
LOOPBACK = ("--listen", "127.0.0.1:0", "--no-lan")


def frozen_env(passphrase: str | None = None) -> dict[str, str]:
    """The environment of a user's shell, minus anything that would make the frozen app
    read this checkout instead of its bundle."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env["PYTHON_KEYRING_BACKEND"] = "keyring.backends.fail.Keyring"  # never the real keyring
    env["QT_QPA_PLATFORM"] = "offscreen"
    env.pop("SCRAMBLED_EGGS_PASSPHRASE", None)
    env.pop("SCRAMBLED_EGGS_PROFILE", None)
    if passphrase is not None:
        env["SCRAMBLED_EGGS_PASSPHRASE"] = passphrase
    return env


def run_frozen(
    exe: Path, *args: str, passphrase: str | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(exe), *args],
        capture_output=True,
        text=True,
        env=frozen_env(passphrase),
        stdin=subprocess.DEVNULL,
        timeout=timeout,
        cwd="/",  # nowhere near the source tree
    )


def frozen_json(exe: Path, profile: Path, *args: str, passphrase: str | None = None) -> Any:
    done = run_frozen(exe, "--profile", str(profile), *args, "--json", passphrase=passphrase)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


class FrozenDaemon:
    """`scrambled-eggs daemon` of the frozen app, in its own process."""

    def __init__(self, exe: Path, profile: Path, *args: str) -> None:
        self.exe, self.profile = exe, profile
        self.process = subprocess.Popen(
            [str(exe), "--profile", str(profile), "daemon", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=frozen_env(PASS),
            stdin=subprocess.DEVNULL,
            cwd="/",
        )

    def status(self) -> dict[str, Any]:
        status: dict[str, Any] = frozen_json(self.exe, self.profile, "status")
        return status

    def wait_ready(self, timeout: float = 60) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                _, err = self.process.communicate()
                raise AssertionError(f"frozen daemon exited: {err}")
            done = run_frozen(self.exe, "--profile", str(self.profile), "status", "--json")
            if done.returncode == 0 and json.loads(done.stdout)["running"]:
                return self.status()
            time.sleep(0.2)
        raise AssertionError("frozen daemon did not come up")

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=30)
        finally:
            self.process.communicate()


@pytest.fixture
def daemons() -> Iterator[list[FrozenDaemon]]:
    started: list[FrozenDaemon] = []
    yield started
    for daemon in started:
        if daemon.process.poll() is None:
            daemon.process.send_signal(signal.SIGTERM)
    for daemon in started:
        daemon.stop()


def two_daemons_that_know_each_other(
    exe: Path, tmp_path: Path, daemons: list[FrozenDaemon]
) -> tuple[FrozenDaemon, FrozenDaemon]:
    alice, bob = tmp_path / "alice", tmp_path / "bob"
    frozen_json(exe, alice, "init", "--name", "Alice", passphrase=PASS)
    frozen_json(exe, bob, "init", "--name", "Bob", passphrase=PASS)
    daemons.append(FrozenDaemon(exe, alice, *LOOPBACK))
    first = daemons[0].wait_ready()
    daemons.append(FrozenDaemon(exe, bob, *LOOPBACK, "--bootstrap", first["endpoints"][0]))
    daemons[1].wait_ready()
    return daemons[0], daemons[1]


def wait_for(predicate: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.25)
    return bool(predicate())


# --------------------------------------------------------------------------- tests


def test_version(frozen_exe: Path) -> None:
    done = run_frozen(frozen_exe, "--version")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"scrambled-eggs {__version__}"


def test_selftest_offscreen(frozen_exe: Path) -> None:
    done = run_frozen(frozen_exe, "--selftest")
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert "(frozen)" in lines[0]
    for check in ("resources", "qr", "models", "profile", "node", "window", "cleanup"):
        assert any(line.startswith(f"PASS {check}:") for line in lines), done.stdout
    assert not any(line.startswith("FAIL") for line in lines)
    # resources came from the bundle, not from this checkout
    resources = next(line for line in lines if line.startswith("PASS resources:"))
    assert str(frozen_exe.parent) in resources
    assert re.search(r"^first window: \d+\.\d+ s", done.stdout, re.MULTILINE)
    # the temporary profile is gone
    profile = re.search(r"temporary profile (\S+) removed", done.stdout)
    assert profile is not None and not Path(profile.group(1)).exists()


def test_selftest_on_an_x_display(frozen_exe: Path) -> None:
    """The bundled xcb platform plugin and its libraries work on a real X server."""
    if shutil.which("xvfb-run") is None:
        pytest.skip("xvfb-run is not installed (apt-get install xvfb xauth)")
    env = frozen_env()
    del env["QT_QPA_PLATFORM"]
    done = subprocess.run(
        ["xvfb-run", "-a", "-s", "-screen 0 1280x800x24", str(frozen_exe), "--selftest"],
        capture_output=True,
        text=True,
        env=env,
        stdin=subprocess.DEVNULL,
        timeout=180,
        cwd="/",
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "on Qt platform 'xcb'" in done.stdout, done.stdout


def test_bundle_holds_what_the_app_needs_and_nothing_it_does_not(frozen_app: Path) -> None:
    internal = frozen_app / "_internal"
    resources = internal / "resources"
    assert (resources / "icons" / "scrambled-eggs.svg").is_file()
    assert sorted((resources / "themes").glob("*.qss"))
    qt_modules = {p.name.split(".")[0] for p in (internal / "PySide6").glob("Qt*.so")}
    assert {"QtCore", "QtGui", "QtWidgets", "QtSvg"} <= qt_modules
    assert not qt_modules & {"QtQml", "QtQuick", "QtNetwork", "QtSql", "QtTest", "QtOpenGL"}
    for unwanted in ("sklearn", "skl2onnx", "onnx", "torch", "scipy", "pytest", "hypothesis"):
        assert not (internal / unwanted).exists(), unwanted
    assert not list(internal.glob("libQt6Quick*")) and not list(
        (internal / "PySide6" / "Qt" / "lib").glob("libQt6Qml*")
    )
    # Qt reads SVG through plugins (icons, theme arrows), JPEG, GIF and WebP (pictures of
    # invite QR codes); PNG and BMP are built in; no other format
    plugins = internal / "PySide6" / "Qt" / "plugins"
    assert sorted(p.name for p in (plugins / "imageformats").iterdir()) == [
        "libqgif.so",
        "libqjpeg.so",
        "libqsvg.so",
        "libqwebp.so",
    ]
    assert (plugins / "iconengines" / "libqsvgicon.so").is_file()
    # av stays whole but for what `import av` never loads; numpy without its optional parts
    assert list((internal / "av.libs").glob("libavcodec-*.so*")) and (internal / "av").is_dir()
    for unwanted in ("av/subtitles", "numpy/random", "numpy/fft", "trio", "psutil"):
        assert not (internal / unwanted).exists(), unwanted


def test_runtime_hook_for_onnxruntime_telemetry_is_in_the_executable(frozen_exe: Path) -> None:
    """The hook runs before any app code: ORT_DISABLE_TELEMETRY=1 even if the user's
    environment says otherwise."""
    from PyInstaller.archive.readers import CArchiveReader  # type: ignore[import-untyped]

    entries = CArchiveReader(str(frozen_exe)).toc
    assert "ort_telemetry" in entries, sorted(entries)


def test_two_frozen_daemons_find_each_other_and_exchange_messages(
    frozen_exe: Path, tmp_path: Path, daemons: list[FrozenDaemon]
) -> None:
    alice, bob = two_daemons_that_know_each_other(frozen_exe, tmp_path, daemons)
    assert wait_for(
        lambda: alice.status()["dht_peers"] >= 1 and bob.status()["dht_peers"] >= 1, 30
    ), (alice.status(), bob.status())
    for daemon in (alice, bob):
        status = daemon.status()
        assert status["running"] and status["endpoints"][0].startswith("127.0.0.1:")

    # Exchange invites, then messages, through the frozen CLI (it talks to each running
    # daemon over its control socket).
    alice_me = frozen_json(frozen_exe, alice.profile, "whoami")
    bob_me = frozen_json(frozen_exe, bob.profile, "whoami")
    frozen_json(frozen_exe, alice.profile, "contacts", "add", bob_me["invite"])
    frozen_json(frozen_exe, bob.profile, "contacts", "add", alice_me["invite"])

    def exchange(sender: FrozenDaemon, receiver: FrozenDaemon, to: str, back: str) -> None:
        me = frozen_json(frozen_exe, sender.profile, "whoami")
        text = f"hello from the frozen {me['name']}"
        sent = frozen_json(frozen_exe, sender.profile, "send", to, text)

        def received() -> list[dict[str, Any]]:
            inbox = frozen_json(frozen_exe, receiver.profile, "messages", back)
            return [m for m in inbox if m["id"] == sent["id"]]

        assert wait_for(lambda: bool(received()), 30), "message not delivered"
        (copy,) = received()
        assert copy["text"] == text and copy["from"] == me["address"]
        assert copy["status"] == "received"

        def delivered() -> bool:
            outbox = frozen_json(frozen_exe, sender.profile, "messages", to)
            return any(m["id"] == sent["id"] and m["status"] == "delivered" for m in outbox)

        assert wait_for(delivered, 30), "sender never saw the delivery receipt"

    exchange(alice, bob, "Bob", "Alice")
    exchange(bob, alice, "Alice", "Bob")
    assert alice.stop() == 0 and bob.stop() == 0
