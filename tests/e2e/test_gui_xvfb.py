"""The real app (`python -m app`) under Xvfb: it starts, shows its window, serves the
control socket beside it, and quits cleanly on SIGTERM. A screenshot is kept in
test-artifacts/ for people to look at."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
PASSPHRASE = "correct horse battery"

pytestmark = pytest.mark.slow


def _free_display() -> int:
    for number in range(90, 200):
        if (
            not Path(f"/tmp/.X{number}-lock").exists()
            and not Path(f"/tmp/.X11-unix/X{number}").exists()
        ):
            return number
    raise RuntimeError("no free X display number")


@pytest.fixture
def xvfb() -> Iterator[str]:
    if shutil.which("Xvfb") is None:
        pytest.skip("Xvfb is not installed (apt-get install xvfb xauth libxkbcommon-x11-0 ...)")
    display = f":{_free_display()}"
    proc = subprocess.Popen(
        ["Xvfb", display, "-screen", "0", "1280x800x24", "-nolisten", "tcp"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while not Path(f"/tmp/.X11-unix/X{display[1:]}").exists():
        if time.monotonic() > deadline or proc.poll() is not None:
            proc.kill()
            pytest.fail("Xvfb did not start")
        time.sleep(0.05)
    try:
        yield display
    finally:
        proc.terminate()
        proc.wait(10)


def _env(display: str) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("QT_QPA_PLATFORM", None)
    env.update(
        DISPLAY=display,
        SCRAMBLED_EGGS_PASSPHRASE=PASSPHRASE,
        PYTHON_KEYRING_BACKEND="keyring.backends.fail.Keyring",
        ORT_DISABLE_TELEMETRY="1",
    )
    return env


def _cli(profile: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app", "--profile", str(profile), *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_app_window_appears_under_xvfb(xvfb: str, tmp_path: Path) -> None:
    env = _env(xvfb)
    profile = tmp_path / "profile"
    made = _cli(profile, env, "init", "--name", "Xavier", "--json")
    assert made.returncode == 0, made.stderr
    app = subprocess.Popen(
        [sys.executable, "-m", "app", "--profile", str(profile)],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        status: dict[str, object] = {}
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert app.poll() is None, app.stdout.read() if app.stdout else ""
            result = _cli(profile, env, "status", "--json")
            if result.returncode == 0:
                status = json.loads(result.stdout)
                if status.get("running"):
                    break
            time.sleep(0.3)
        assert status.get("running") is True, status
        time.sleep(1.5)  # let the window map and paint
        ARTIFACTS.mkdir(exist_ok=True)
        shot = ARTIFACTS / "e2e-main-window.png"
        grab = subprocess.run(
            [sys.executable, str(Path(__file__).with_name("grab_screen.py")), str(shot)],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert grab.returncode == 0, grab.stderr
        distinct = int(grab.stdout.split("distinct=")[1].split()[0])
        assert distinct > 8, f"the screen looks blank: {grab.stdout}"
        assert shot.stat().st_size > 5000
        whoami = _cli(profile, env, "whoami", "--json")  # answered by the GUI's node
        assert json.loads(whoami.stdout)["name"] == "Xavier"
    finally:
        app.send_signal(signal.SIGTERM)
        try:
            code = app.wait(30)
        except subprocess.TimeoutExpired:
            app.kill()
            raise
    assert code == 0
    assert _cli(profile, env, "status", "--json").returncode == 0
    assert json.loads(_cli(profile, env, "status", "--json").stdout)["running"] is False
