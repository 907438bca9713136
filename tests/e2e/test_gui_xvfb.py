"""The real app (`python -m app`) under Xvfb: it starts, shows its window, serves the
control socket beside it, and quits cleanly on SIGTERM. A screenshot is kept in
test-artifacts/ for people to look at."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from xvfb_helpers import ARTIFACTS, ROOT, app_env, run_cli, xvfb_display

pytestmark = pytest.mark.slow


@pytest.fixture
def xvfb() -> Iterator[str]:
    with xvfb_display() as display:
        yield display


def test_app_window_appears_under_xvfb(xvfb: str, tmp_path: Path) -> None:
    env = app_env(xvfb)
    profile = tmp_path / "profile"
    made = run_cli(profile, env, "init", "--name", "Xavier", "--json")
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
            result = run_cli(profile, env, "status", "--json")
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
        whoami = run_cli(profile, env, "whoami", "--json")  # answered by the GUI's node
        assert json.loads(whoami.stdout)["name"] == "Xavier"
    finally:
        app.send_signal(signal.SIGTERM)
        try:
            code = app.wait(30)
        except subprocess.TimeoutExpired:
            app.kill()
            raise
    assert code == 0
    assert run_cli(profile, env, "status", "--json").returncode == 0
    assert json.loads(run_cli(profile, env, "status", "--json").stdout)["running"] is False
