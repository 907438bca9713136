"""Three daemons on loopback, one of them with a wrong clock (libfaketime), as a user sees
them: what works? (docs/decisions/0020-wrong-clocks.md)

    python -m tools.clock_skew --alice=+1h           # Alice's clock an hour ahead
    python -m tools.clock_skew --bob=-1d             # Bob's a day behind
    python -m tools.clock_skew --steps=-1h,+1d       # Alice's clock stepped while running
    python -m tools.clock_skew --app=/other/checkout --alice=+1h   # a baseline
    python -m tools.clock_skew --alice=+3h --warning   # is Alice told her clock is off?

Needs `faketime` (apt-get install faketime). Carol keeps the DHT with the right time.
One run: add by invite, Bob -> Alice, Alice -> Bob with its receipt, a 300 kB file
Alice -> Bob; then Bob stopped, messages from Alice, Alice stopped, Bob started: how many
arrive within 45 s. With `--steps`, the offline part is run after each step of Alice's
clock (a relative offset, as faketime reads it: "+1d", "-1h", "+2m"). Prints JSON: the
outcomes, each side's messages with their shown time minus the real time (seconds),
and the warnings and errors the daemons logged. Profiles under /tmp/clock-skew/.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

PASS = "a passphrase for clock tests"
LIBFAKETIME = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1"


class Run:
    """The three profiles, their clocks and the daemons of one run."""

    def __init__(self, app: Path, root: Path, alice: str, bob: str) -> None:
        sys.path.insert(0, str(app / "tests" / "integration"))
        import cli_helpers  # the checkout's own helpers: its `app` runs

        self.helpers: Any = cli_helpers
        self.root = root
        self.envs = {"alice": self._faketime("alice", alice), "bob": self._faketime("bob", bob)}
        self.daemons: list[Any] = []

    def _faketime(self, name: str, offset: str) -> dict[str, str]:
        if offset in ("", "0"):
            return {}
        (self.root / f"ts_{name}").write_text(offset + "\n")
        return {
            "LD_PRELOAD": LIBFAKETIME,
            "FAKETIME_TIMESTAMP_FILE": str(self.root / f"ts_{name}"),
            "FAKETIME_DONT_FAKE_MONOTONIC": "1",  # as after an NTP step: monotonic is right
            "FAKETIME_CACHE_DURATION": "1",
        }

    def step(self, name: str, offset: str) -> None:
        (self.root / f"ts_{name}").write_text(offset + "\n")

    def cli(self, profile: Path, *args: str) -> Any:
        env = {
            **self.helpers._with_app(self.helpers.cli_env(PASS)),
            **self.envs.get(profile.name, {}),
        }
        done = subprocess.run(
            [sys.executable, "-m", "app", "--profile", str(profile), *args, "--json"],
            capture_output=True,
            text=True,
            env=env,
            stdin=subprocess.DEVNULL,
            timeout=60,
            check=False,
        )
        if done.returncode != 0:
            raise AssertionError(f"{args}: {done.stderr[-2000:]}")
        return json.loads(done.stdout)

    def start(self, profile: Path, *args: str) -> tuple[Any, str]:
        daemon = self.helpers.Daemon(
            profile,
            "--listen",
            "127.0.0.1:0",
            "--no-lan",
            *args,
            passphrase=PASS,
            env=self.envs.get(profile.name, {}),
        )
        self.daemons.append(daemon)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if daemon.process.poll() is not None:
                raise AssertionError(daemon.process.stderr.read()[-3000:])
            try:
                status = self.cli(profile, "status")
            except AssertionError:
                status = {}
            if status.get("running"):
                return daemon, str(status["endpoints"][0])
            time.sleep(0.3)
        raise AssertionError("a daemon did not come up")

    def stop(self, daemon: Any) -> None:
        daemon.stop()
        self.daemons.remove(daemon)

    def messages(self, profile: Path, contact: str) -> list[dict[str, Any]]:
        return list(self.cli(profile, "messages", contact))

    def arrived(self, profile: Path, contact: str, text: str) -> bool:
        return any(m["text"] == text for m in self.messages(profile, contact))

    def timed(self, result: dict[str, Any], key: str, check: Any, timeout: float) -> None:
        started = time.monotonic()
        try:
            self.helpers.wait_for(check, timeout=timeout)
            result[key] = round(time.monotonic() - started, 1)
        except AssertionError:
            result[key] = "FAIL"


def run(
    app: Path, alice_clock: str, bob_clock: str, steps: list[str], warning: bool = False
) -> dict[str, Any]:
    os.environ["SCRAMBLED_EGGS_ICE_LOOPBACK"] = "1"
    os.environ["PYTHON_KEYRING_BACKEND"] = "keyring.backends.fail.Keyring"
    label = f"{app.name}_{alice_clock}_{bob_clock}_{'_'.join(steps)}"
    root = Path("/tmp/clock-skew") / label.replace("+", "p").replace("-", "m")
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    r = Run(app, root, alice_clock, bob_clock)
    a, b, c = root / "alice", root / "bob", root / "carol"
    result: dict[str, Any] = {"app": str(app), "alice": alice_clock, "bob": bob_clock}
    try:
        for profile, name in ((a, "Alice"), (b, "Bob"), (c, "Carol")):
            r.cli(profile, "init", "--name", name)
        join = ("--bootstrap", r.start(c)[1])
        alice_daemon, bob_daemon = r.start(a, *join)[0], r.start(b, *join)[0]
        alice, bob = r.cli(a, "whoami"), r.cli(b, "whoami")
        r.cli(a, "contacts", "add", bob["invite"])
        r.cli(b, "contacts", "add", alice["invite"])
        r.cli(b, "send", "Alice", "hello from Bob")
        r.timed(result, "bob_to_alice_s", lambda: r.arrived(a, "Bob", "hello from Bob"), 40)
        hi = r.cli(a, "send", "Bob", "hi from Alice")["id"]
        r.timed(result, "alice_to_bob_s", lambda: r.arrived(b, "Alice", "hi from Alice"), 40)

        def receipt() -> bool:
            return any(
                m["id"] == hi and m["status"] in ("delivered", "read") for m in r.messages(a, "Bob")
            )

        r.timed(result, "receipt_s", receipt, 20)
        shared = root / "report.bin"
        shared.write_bytes(os.urandom(300_000))
        r.cli(a, "share", "Bob", str(shared))

        def file_done() -> bool:
            return any(t["state"] == "done" and not t["outgoing"] for t in r.cli(b, "transfers"))

        r.timed(result, "file_s", file_done, 40)
        for step in steps or [""]:
            if step:
                r.step("alice", step)
                time.sleep(5)
            r.stop(bob_daemon)
            texts = [f"offline {step} {i}" for i in range(3)]
            for text in texts:
                r.cli(a, "send", "Bob", text)
            time.sleep(5)  # the slots are being stored on Carol
            r.stop(alice_daemon)
            bob_daemon = r.start(b, *join)[0]

            def offline(texts: list[str] = texts) -> bool:
                got = {m["text"] for m in r.messages(b, "Alice")}
                return all(t in got for t in texts)

            r.timed(result, f"offline{step}_s", offline, 45)
            alice_daemon = r.start(a, *join)[0]
        if warning:
            # Carol becomes Alice's second contact: two contacts' clocks against hers
            carol = r.cli(c, "whoami")
            r.cli(a, "contacts", "add", carol["invite"])
            r.cli(c, "contacts", "add", alice["invite"])
            r.timed(result, "warned_s", lambda: r.cli(a, "status").get("clock"), 30)
            for name, profile in (("alice", a), ("bob", b), ("carol", c)):
                result[f"{name}_clock_status"] = r.cli(profile, "status").get("clock", "")
        now = time.time()
        for side, profile, contact in (("alice_sees", a, "Bob"), ("bob_sees", b, "Alice")):
            result[side] = [
                (m["text"], round(m["time"] - now), m["status"])
                for m in r.messages(profile, contact)
            ]
    finally:
        for daemon in list(r.daemons):
            r.stop(daemon)
        for profile in (a, b, c):
            for log in profile.glob("**/*.log"):
                lines = [
                    line[:240]
                    for line in log.read_text(errors="replace").splitlines()
                    if ("WARNING" in line or "ERROR" in line) and "ICE_LOOPBACK" not in line
                ]
                if lines:
                    result.setdefault("logged", {})[profile.name] = lines[-8:]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--app", type=Path, default=Path(__file__).resolve().parents[1])
    parser.add_argument("--alice", default="0", help="Alice's clock offset, e.g. +1h")
    parser.add_argument("--bob", default="0", help="Bob's clock offset, e.g. -1d")
    parser.add_argument(
        "--steps", type=lambda text: text.split(","), default=[], help="e.g. -1h,+1d"
    )
    parser.add_argument(
        "--warning",
        action="store_true",
        help="at the end, make Carol Alice's second contact: is Alice told her clock is off?",
    )
    args = parser.parse_args()
    if args.steps and args.alice in ("", "0"):
        args.alice = "+0"  # faketime must be loaded to be stepped
    print(
        json.dumps(
            run(args.app.resolve(), args.alice, args.bob, args.steps, args.warning), indent=1
        )
    )


if __name__ == "__main__":
    main()
