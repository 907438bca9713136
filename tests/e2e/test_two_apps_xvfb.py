"""Two real apps (`python -m app`) side by side on one Xvfb display talk to each other.

Each profile is made with `scrambled-eggs init` and set to listen on loopback (through the
node API, before its app starts). The apps add each other by invite through their control
sockets (as a user pasting an invite while the app runs would end up doing), then text is
TYPED into each window with xdotool and read back with `scrambled-eggs messages --json`.
Screenshots of the screen are kept in test-artifacts/.

Loopback only: `SCRAMBLED_EGGS_ICE_LOOPBACK=1` lets aioice use 127.0.0.1 candidates.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from xvfb_helpers import ARTIFACTS, ROOT, app_env, run_cli, xvfb_display

pytestmark = pytest.mark.slow


@pytest.fixture
def xvfb() -> Iterator[str]:
    with xvfb_display() as display:
        yield display


SCREEN_W, SCREEN_H = 1280, 800
WINDOW_W = SCREEN_W // 2
# where the first contact row is, in window coordinates (menu bar, sidebar header, search)
CONTACT_ROW = (150, 150)

LOOPBACK_SETTINGS = """
import asyncio, os, sys
from pathlib import Path
from app.node import api

async def main() -> None:
    passphrase = os.environ[api.PASSPHRASE_ENV]
    async with api.open_node(Path(sys.argv[1]), lambda: passphrase) as node:
        await node.update_settings(
            api.UpdateSettings(listen="127.0.0.1:0", lan_discovery=False, ice_servers=[])
        )

asyncio.run(main())
"""


def _wait(predicate: Callable[[], Any], what: str, timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(0.3)
    raise AssertionError(f"{what}: not within {timeout} s (last: {last!r})")


def _xdotool(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        ["xdotool", *args], env=env, capture_output=True, text=True, timeout=30, check=False
    )
    assert done.returncode == 0, f"xdotool {' '.join(args)}: {done.stderr}"
    return done.stdout


class App:
    """One `python -m app --profile DIR` process and its window."""

    def __init__(self, profile: Path, env: dict[str, str]) -> None:
        self.profile = profile
        self.env = env
        self.process = subprocess.Popen(
            [sys.executable, "-m", "app", "--profile", str(profile)],
            env=env,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.window = ""

    def cli(self, *args: str) -> Any:
        done = run_cli(self.profile, self.env, *args, "--json")
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    def wait_running(self) -> dict[str, Any]:
        def running() -> dict[str, Any] | None:
            assert self.process.poll() is None, self.output()
            done = run_cli(self.profile, self.env, "status", "--json")
            status: dict[str, Any] = json.loads(done.stdout) if done.returncode == 0 else {}
            return status if status.get("running") else None

        status: dict[str, Any] = _wait(running, "the app's node came up")
        return status

    def find_window(self) -> str:
        def visible() -> str:
            done = subprocess.run(
                ["xdotool", "search", "--onlyvisible", "--pid", str(self.process.pid)],
                env=self.env,
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
            )
            ids = done.stdout.split()
            return ids[0] if len(ids) == 1 else ""

        self.window = _wait(visible, "the app's window was mapped")
        return self.window

    def place(self, x: int) -> None:
        _xdotool(self.env, "windowsize", "--sync", self.window, str(WINDOW_W), str(SCREEN_H))
        _xdotool(self.env, "windowmove", "--sync", self.window, str(x), "0")

    def focus(self) -> None:
        # no window manager on Xvfb: raise and give the window the input focus directly
        _xdotool(self.env, "windowraise", self.window)
        _xdotool(self.env, "windowfocus", "--sync", self.window)

    def click(self, x: int, y: int) -> None:
        _xdotool(self.env, "mousemove", "--window", self.window, str(x), str(y))
        _xdotool(self.env, "click", "1")

    def type_line(self, text: str) -> None:
        _xdotool(self.env, "type", "--delay", "30", "--window", self.window, text)
        _xdotool(self.env, "key", "--window", self.window, "Return")

    def messages(self, contact: str) -> list[dict[str, Any]]:
        return list(self.cli("messages", contact))

    def output(self) -> str:
        return self.process.stdout.read() if self.process.stdout else ""

    def quit(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise


@pytest.fixture
def apps(xvfb: str, tmp_path: Path) -> Iterator[tuple[App, App]]:
    if shutil.which("xdotool") is None:
        pytest.skip("xdotool is not installed (apt-get install xdotool)")
    env = {**app_env(xvfb), "SCRAMBLED_EGGS_ICE_LOOPBACK": "1"}
    started: list[App] = []
    for name in ("Alice", "Bob"):
        profile = tmp_path / name.lower()
        made = run_cli(profile, env, "init", "--name", name, "--json")
        assert made.returncode == 0, made.stderr
        configured = subprocess.run(
            [sys.executable, "-c", LOOPBACK_SETTINGS, str(profile)],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert configured.returncode == 0, configured.stderr
        settings = json.loads((profile / "config.json").read_text("utf-8"))
        assert settings["listen"] == "127.0.0.1:0" and settings["lan_discovery"] is False
        started.append(App(profile, env))
    try:
        yield started[0], started[1]
    finally:
        codes = [app.quit() for app in started]
        assert codes == [0, 0], [app.output() for app in started]


def _screenshot(env: dict[str, str], name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / name
    grab = subprocess.run(
        [sys.executable, str(Path(__file__).with_name("grab_screen.py")), str(shot)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert grab.returncode == 0, grab.stderr
    assert int(grab.stdout.split("distinct=")[1].split()[0]) > 8, grab.stdout
    return shot


def _texts(app: App, contact: str, text: str) -> list[dict[str, Any]]:
    return [m for m in app.messages(contact) if m["text"] == text]


def _type_message(sender: App, text: str) -> None:
    sender.focus()
    sender.click(*CONTACT_ROW)  # opens the conversation and focuses the composer
    time.sleep(0.5)
    sender.type_line(text)


def _exchange(sender: App, receiver: App, to: str, back: str, text: str) -> None:
    """`sender` types `text` into its window; it must arrive once and be delivered."""
    _type_message(sender, text)
    _wait(lambda: _texts(receiver, back, text), f"{text!r} arrived")
    time.sleep(1.0)  # a duplicate would show up by now
    got = _texts(receiver, back, text)
    assert len(got) == 1 and got[0]["status"] == "received", got
    assert got[0]["from"] == sender.cli("whoami")["address"], got
    _wait(
        lambda: [m["status"] for m in _texts(sender, to, text)] == ["delivered"],
        f"{text!r} delivered",
    )


def test_two_apps_message_each_other_through_their_windows(apps: tuple[App, App]) -> None:
    alice, bob = apps
    for app in apps:
        app.wait_running()
    for app, x in ((alice, 0), (bob, WINDOW_W)):
        app.find_window()
        app.place(x)
    a_me, b_me = alice.cli("whoami"), bob.cli("whoami")
    assert (a_me["name"], b_me["name"]) == ("Alice", "Bob")
    assert all(e.startswith("127.0.0.1:") for e in alice.cli("status")["endpoints"])
    alice.cli("contacts", "add", b_me["invite"])
    bob.cli("contacts", "add", a_me["invite"])
    time.sleep(1.0)  # the windows list the new contacts
    _screenshot(alice.env, "two-apps-contacts.png")

    _exchange(alice, bob, "Bob", "Alice", "Hello Bob, typed into a real window")
    _exchange(bob, alice, "Alice", "Bob", "Hi Alice! Got it on the other side")
    assert [m["text"] for m in alice.messages("Bob")] == [
        "Hello Bob, typed into a real window",
        "Hi Alice! Got it on the other side",
    ]
    time.sleep(4.0)  # one status/peers poll: the online dots and headers
    shot = _screenshot(alice.env, "two-apps.png")
    assert shot.stat().st_size > 20000
    peers = alice.cli("peers")
    assert any(p["address"] == b_me["address"] and p["state"] == "connected" for p in peers)
