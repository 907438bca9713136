"""The real app under Xvfb gets a clicked invite link from a second start
(`scrambled-eggs eggs:...`, as the desktop entry's `Exec=scrambled-eggs %u` runs it):
its Add contact window is mapped on the X display, nothing is added, and the app still
quits cleanly. The screen is kept in test-artifacts/e2e-invite-link.png."""

from __future__ import annotations

import json
import shutil
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


def mapped_windows(env: dict[str, str], title: str) -> list[str]:
    """Ids of the visible X windows named `title` exactly."""
    found = subprocess.run(
        ["xdotool", "search", "--onlyvisible", "--name", f"^{title}$"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    return found.stdout.split()


def test_a_second_start_with_a_link_opens_the_dialog_in_the_running_window(
    xvfb: str, tmp_path: Path
) -> None:
    if shutil.which("xdotool") is None:
        pytest.skip("xdotool is not installed")
    env = app_env(xvfb)
    profile = tmp_path / "profile"
    assert run_cli(profile, env, "init", "--name", "Xavier").returncode == 0
    loopback = ("settings", "--listen", "127.0.0.1:0", "--no-lan")
    assert run_cli(profile, env, *loopback).returncode == 0
    bob = run_cli(tmp_path / "bob", env, "init", "--name", "Bob", "--no-passphrase", "--json")
    invite = json.loads(bob.stdout)["invite"]
    app = subprocess.Popen(
        [sys.executable, "-m", "app", "--profile", str(profile)],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not mapped_windows(env, "Scrambled Eggs"):
            assert app.poll() is None and time.monotonic() < deadline
            time.sleep(0.3)
        assert not mapped_windows(env, "Add contact")
        desktop = {k: v for k, v in env.items() if k != "SCRAMBLED_EGGS_PASSPHRASE"}
        clicked = run_cli(profile, desktop, invite)  # as a desktop runs it: no passphrase
        assert clicked.returncode == 0, clicked.stderr
        assert "open in the Scrambled Eggs window" in clicked.stdout
        deadline = time.monotonic() + 20
        while not mapped_windows(env, "Add contact"):
            assert time.monotonic() < deadline, "no Add contact window was mapped"
            time.sleep(0.2)
        time.sleep(1.0)  # let it paint
        ARTIFACTS.mkdir(exist_ok=True)
        shot = ARTIFACTS / "e2e-invite-link.png"
        grab = subprocess.run(
            [sys.executable, str(Path(__file__).with_name("grab_screen.py")), str(shot)],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert grab.returncode == 0, grab.stderr
        contacts = run_cli(profile, env, "contacts", "list", "--json")  # the window's node
        assert contacts.returncode == 0 and json.loads(contacts.stdout) == []
    finally:
        app.send_signal(signal.SIGTERM)
        try:
            code = app.wait(30)
        except subprocess.TimeoutExpired:
            app.kill()
            raise
    output = app.stdout.read() if app.stdout else ""
    assert code == 0, output
    assert "Traceback" not in output
    assert "destroyed but it is pending" not in output  # the dialog's task ended too
