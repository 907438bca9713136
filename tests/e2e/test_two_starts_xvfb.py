"""Two starts of the real app on one new profile under Xvfb (a double click on its icon):
one first-run dialog, not two (decision 0032). The second start ends, quietly, the first
one's dialog keeps the focus, and Quit still ends the first cleanly. (Without a window
manager nothing else can take the focus here: that the dialog comes forward is checked
in tests/gui/test_second_start.py.)"""

from __future__ import annotations

import contextlib
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from xvfb_helpers import ROOT, app_env, xvfb_display

pytestmark = pytest.mark.slow

WELCOME = "Welcome to Scrambled Eggs"


@pytest.fixture
def xvfb() -> Iterator[str]:
    with xvfb_display() as display:
        yield display


def xdotool(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(["xdotool", *args], env=env, capture_output=True, text=True, timeout=30)
    return done.stdout.strip()


def mapped(env: dict[str, str], title: str) -> list[str]:
    return xdotool(env, "search", "--onlyvisible", "--name", f"^{title}$").split()


def wait_for_welcome(env: dict[str, str], app: subprocess.Popen[str]) -> None:
    """Until `app` shows its first-run dialog (it must not end meanwhile)."""
    deadline = time.monotonic() + 60
    while not mapped(env, WELCOME):
        assert app.poll() is None and time.monotonic() < deadline
        time.sleep(0.3)


def start(profile: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "app", "--profile", str(profile)],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


@contextlib.contextmanager
def at_first_run(profile: Path, env: dict[str, str]) -> Iterator[subprocess.Popen[str]]:
    """The real app started on a new `profile`, showing its first-run dialog; killed at
    the end if it is still running."""
    first = start(profile, env)
    try:
        wait_for_welcome(env, first)
        yield first
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()


def test_a_second_start_at_the_first_run_dialog_ends_and_leaves_one_dialog(
    xvfb: str, tmp_path: Path
) -> None:
    if shutil.which("xdotool") is None:
        pytest.skip("xdotool is not installed")
    env = app_env(xvfb)
    profile = tmp_path / "profile"
    with at_first_run(profile, env) as first:
        (dialog,) = mapped(env, WELCOME)
        second = start(profile, env)
        output, _ = second.communicate(timeout=120)
        assert second.returncode == 0, output
        assert "Traceback" not in output
        assert mapped(env, WELCOME) == [dialog]  # no second first-run dialog
        assert xdotool(env, "getwindowfocus") == dialog  # coming forward: test_second_start
        xdotool(env, "key", "--window", dialog, "Escape")  # Quit
        code = first.wait(60)
    output = first.stdout.read() if first.stdout else ""
    assert code == 0, output
    assert "Traceback" not in output and "destroyed but it is pending" not in output
    assert not (profile / "eggs.db").exists()


def test_sigterm_at_the_first_run_dialog_ends_the_app_cleanly(xvfb: str, tmp_path: Path) -> None:
    """Stopped (a logout, `kill`) while it shows its first-run dialog, the app ends with
    what it started stopped: before, the signal stopped the event loop under it, which
    logged its task "destroyed but it is pending" and left its control socket behind."""
    if shutil.which("xdotool") is None:
        pytest.skip("xdotool is not installed")
    env = app_env(xvfb)
    profile = tmp_path / "profile"
    with at_first_run(profile, env) as first:
        assert (profile / "control.sock").exists()  # answering a second start
        first.send_signal(signal.SIGTERM)
        code = first.wait(60)
    output = first.stdout.read() if first.stdout else ""
    assert code == 130, output
    assert "destroyed but it is pending" not in output and "Traceback" not in output
    assert not (profile / "control.sock").exists()
