"""Make the profile fixtures of an older version: tests/data/profiles/<commit>/.

    .venv/bin/python -m tools.old_profiles COMMIT [COMMIT...]   (from the repository root)

For each commit, that version (a detached git worktree in a temporary folder, run with
this checkout's Python environment) makes three profiles the way a user would: Alice
(passphrase), Bob (no passphrase: a key file) and Carol (passphrase) add each other from
invites, exchange messages, Bob reads Alice's, Alice shares a small file Bob receives
(auto-accepted) and a larger one he is offered, Carol goes offline and Alice and Bob
queue messages to her, settings are changed. Daemons run on loopback only, bootstrapped
from Alice. The profiles are copied without their lock, control socket and logs, the
database's log folded in (`wal_checkpoint`); `facts.json` says what they must hold.
The passphrases are throwaway ones, written in `facts.json`.

tests/node/test_profiles_from_older_versions.py opens every fixture with this version.
docs/decisions/0019-profile-compatibility.md says what is promised.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
FIXTURES = REPO / "tests" / "data" / "profiles"
PASSPHRASES: dict[str, str | None] = {
    "alice": "alice throwaway passphrase",
    "bob": None,
    "carol": "carol throwaway passphrase",
}
SMALL_BYTES = 15_000  # received at once
OFFERED_BYTES = 40_000  # over Bob's auto-accept size: offered
BOB_AUTO_ACCEPT = 20_000
LEFT_OUT = {"lock", "control.sock", "logs", "window.ini"}


class OldVersion:
    """The profiles of one older version, run from `code` in `work`."""

    def __init__(self, code: Path, work: Path) -> None:
        self.code, self.work = code, work
        self.daemons: dict[str, subprocess.Popen[bytes]] = {}

    def env(self, name: str) -> dict[str, str]:
        env = dict(
            os.environ,
            PYTHONPATH=str(self.code),
            SCRAMBLED_EGGS_ICE_LOOPBACK="1",
            PYTHON_KEYRING_BACKEND="keyring.backends.fail.Keyring",
        )
        env.pop("SCRAMBLED_EGGS_PASSPHRASE", None)
        passphrase = PASSPHRASES[name]
        if passphrase is not None:
            env["SCRAMBLED_EGGS_PASSPHRASE"] = passphrase
        return env

    def cli(self, name: str, *args: str) -> Any:
        """Run `scrambled-eggs --profile NAME ARGS --json`; its JSON answer."""
        done = subprocess.run(
            [sys.executable, "-m", "app", "--profile", str(self.work / name), *args, "--json"],
            env=self.env(name),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            cwd=self.work,  # `-m` puts the working folder first on the path: not this code
        )
        if done.returncode:
            raise RuntimeError(f"{name} {' '.join(args)}: {done.stderr.strip()}")
        return json.loads(done.stdout)

    def start(self, name: str, *extra: str) -> str:
        """Start NAME's daemon on loopback; its first endpoint."""
        log = open(self.work / f"{name}.out", "ab")  # noqa: SIM115 (the daemon's)
        command = [sys.executable, "-m", "app", "--profile", str(self.work / name), "daemon"]
        self.daemons[name] = subprocess.Popen(
            [*command, "--listen", "127.0.0.1:0", "--no-lan", *extra],
            env=self.env(name),
            stdout=log,
            stderr=log,
            cwd=self.work,
        )
        status = wait(lambda: self._running(name), f"{name}'s daemon")
        return str(status["endpoints"][0])

    def _running(self, name: str) -> Any:
        try:
            status = self.cli(name, "status")
        except RuntimeError:
            return None
        return status if status.get("running") and status.get("endpoints") else None

    def stop(self, name: str) -> None:
        daemon = self.daemons.pop(name)
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(60)

    def stop_all(self) -> None:
        for name in list(self.daemons):
            self.stop(name)


def wait(check: Callable[[], Any], what: str, timeout: float = 120.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.5)
    raise RuntimeError(f"timed out waiting for {what}")


def build(old: OldVersion) -> dict[str, Any]:
    """Make the three profiles in `old.work`; the facts the fixture test checks."""
    facts: dict[str, Any] = {"passphrases": PASSPHRASES, "sent": []}
    for name, passphrase in PASSPHRASES.items():
        init = ["init", "--name", name.capitalize()]
        old.cli(name, *(init if passphrase else [*init, "--no-passphrase"]))
        config_path = old.work / name / "config.json"
        config = json.loads(config_path.read_text()) if config_path.exists() else {}
        config.update(
            listen="127.0.0.1:0",
            lan_discovery=False,
            downloads_folder=str(old.work / f"downloads-{name}"),
            auto_accept_bytes=BOB_AUTO_ACCEPT if name == "bob" else 10**9,
        )
        config_path.write_text(json.dumps(config))
    first = old.start("alice")
    old.start("bob", "--bootstrap", first)
    old.start("carol", "--bootstrap", first)
    invites = {name: old.cli(name, "whoami")["invite"] for name in PASSPHRASES}
    for one, other in (("alice", "bob"), ("alice", "carol"), ("bob", "carol")):
        old.cli(one, "contacts", "add", invites[other])
        old.cli(other, "contacts", "add", invites[one])

    def send(sender: str, to: str, text: str) -> str:
        message_id = str(old.cli(sender, "send", to.capitalize(), text)["id"])
        facts["sent"].append({"from": sender, "to": to, "text": text, "id": message_id})
        return message_id

    def delivered(sender: str, to: str, message_id: str) -> bool:
        messages = old.cli(sender, "messages", to.capitalize())
        return any(m["id"] == message_id and m["status"] in ("delivered", "read") for m in messages)

    for n in range(2):
        last = [
            ("alice", "bob", send("alice", "bob", f"Alice to Bob {n}: ünïcode ✓")),
            ("bob", "alice", send("bob", "alice", f"Bob to Alice {n}")),
            ("alice", "carol", send("alice", "carol", f"Alice to Carol {n}")),
            ("carol", "alice", send("carol", "alice", f"Carol to Alice {n}")),
        ]
    last.append(("bob", "carol", send("bob", "carol", "Bob to Carol")))
    for sender, to, message_id in last:
        wait(lambda s=sender, t=to, m=message_id: delivered(s, t, m), f"{sender} to {to}")
    old.cli("bob", "read", "Alice")

    def bobs(transfer_id: str, state: str) -> bool:
        return any(
            t["id"] == transfer_id and t["state"] == state for t in old.cli("bob", "transfers")
        )

    small, offered = old.work / "report.txt", old.work / "holiday.bin"
    small.write_bytes(b"a small report\n" * (SMALL_BYTES // 15))
    offered.write_bytes(os.urandom(OFFERED_BYTES))
    facts["received"] = old.cli("alice", "share", "Bob", str(small))["transfers"][0]
    wait(lambda: bobs(facts["received"], "done"), "the small file received")
    facts["offered"] = old.cli("alice", "share", "Bob", str(offered))["transfers"][0]
    wait(lambda: bobs(facts["offered"], "offered"), "the larger file offered")

    old.stop("carol")
    facts["queued"] = [
        send("alice", "carol", "Alice queued for Carol 0"),
        send("alice", "carol", "Alice queued for Carol 1"),
        send("bob", "carol", "Bob queued for Carol"),
    ]
    old.stop_all()
    facts["settings"] = {"alice": {"theme": "dark"}, "carol": {"shaping_mode": "strict"}}
    for name, changes in facts["settings"].items():
        config_path = old.work / name / "config.json"
        config_path.write_text(json.dumps({**json.loads(config_path.read_text()), **changes}))
    return facts


def save(work: Path, target: Path, facts: dict[str, Any]) -> None:
    """Copy the profiles (without what a running node leaves) and the facts."""
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    for name in PASSPHRASES:
        database = sqlite3.connect(work / name / "eggs.db")
        database.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        database.close()
        shutil.copytree(
            work / name,
            target / name,
            ignore=lambda folder, names: [
                n for n in names if n in LEFT_OUT or n.endswith(("-wal", "-shm"))
            ],
        )
    (target / "facts.json").write_text(json.dumps(facts, indent=1, ensure_ascii=False) + "\n")


def make(commit: str) -> Path:
    """The fixture of `commit` (a commit of this repository) in `FIXTURES`."""
    full = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", commit],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    with tempfile.TemporaryDirectory(prefix="old-profiles-") as temporary:
        code, work = Path(temporary) / "code", Path(temporary) / "work"
        subprocess.run(
            ["git", "-C", str(REPO), "worktree", "add", "--detach", str(code), full],
            check=True,
            capture_output=True,
        )
        work.mkdir()
        old = OldVersion(code, work)
        try:
            facts = {"commit": full, **build(old)}
            target = FIXTURES / full[:7]
            save(work, target, facts)
        finally:
            old.stop_all()
            subprocess.run(
                ["git", "-C", str(REPO), "worktree", "remove", "--force", str(code)],
                check=False,
            )
    return target


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    for commit in argv:
        print(make(commit))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
