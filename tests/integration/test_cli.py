"""The README's user journey, each command in its own process."""

from __future__ import annotations

import signal
import socket
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from cli_helpers import Daemon, Terminal, cli_json, run_cli, wait_for

from app import __version__
from app.node.clean_stop import NOTE_NAME
from app.node.lock import ProfileLock
from app.node.paths import ProfilePaths
from app.node.profile import open_store

Digest = Callable[[Path], dict[str, str]]
PASS = "a passphrase for tests"
LOOPBACK = ("--listen", "127.0.0.1:0", "--no-lan")
NEW = "SCRAMBLED_EGGS_NEW_PASSPHRASE"


def one_line_error(done: object) -> str:
    stderr = done.stderr.strip()  # type: ignore[attr-defined]
    assert done.returncode != 0  # type: ignore[attr-defined]
    assert stderr.startswith("error: ") and "\n" not in stderr and "Traceback" not in stderr
    return str(stderr)


def test_version() -> None:
    done = run_cli(Path("/nonexistent"), "--version")
    assert done.returncode == 0 and __version__ in done.stdout


def test_profile_commands_without_a_daemon(tmp_path: Path) -> None:
    alice, bob = tmp_path / "alice", tmp_path / "bob"
    created = cli_json(alice, "init", "--name", "Alice", passphrase=PASS)
    me = cli_json(alice, "whoami", passphrase=PASS)
    assert me == created and set(me) == {"name", "address", "invite", "fingerprint"}
    assert me["invite"].startswith("eggs:" + me["address"])
    done = run_cli(bob, "init", "--name", "Bob", "--no-passphrase")
    assert done.returncode == 0 and "warning:" in done.stderr  # no keyring here: key file
    bob_me = cli_json(bob, "whoami")
    added = cli_json(alice, "contacts", "add", bob_me["invite"], passphrase=PASS)
    assert added == {
        "name": "Bob",
        "address": bob_me["address"],
        "verified": False,
        "key_changed": False,
        "unread": 0,
        "not_added_back": False,
        "updated": False,
    }
    listed = {k: v for k, v in added.items() if k != "updated"}
    assert cli_json(alice, "contacts", "list", passphrase=PASS) == [listed]
    status = cli_json(alice, "status")  # no passphrase needed to ask
    assert status == {
        "running": False,
        "address": me["address"],
        "endpoints": [],
        "dht_peers": 0,
        "storage": "",
        "clock": "",
        "not_added_back": [],
        "ipfs": "",
        "turn": "",
    }
    assert run_cli(alice, "contacts", "remove", "Bob", passphrase=PASS).returncode == 0
    assert cli_json(alice, "contacts", "list", passphrase=PASS) == []


def test_commands_go_through_the_running_daemon(tmp_path: Path, daemons: list[Daemon]) -> None:
    alice, bob = tmp_path / "alice", tmp_path / "bob"
    cli_json(alice, "init", "--name", "Alice", passphrase=PASS)
    bob_me = cli_json(bob, "init", "--name", "Bob", "--no-passphrase")
    daemons.append(Daemon(alice, *LOOPBACK, passphrase=PASS))
    status = daemons[0].wait_ready()
    assert status["running"] and status["endpoints"][0].startswith("127.0.0.1:")
    # no passphrase given: these can only work through the daemon's control socket
    me = cli_json(alice, "whoami")
    assert status["endpoints"][0].replace(":", "%3A") in me["invite"]
    cli_json(alice, "contacts", "add", bob_me["invite"], "--name", "Bob")
    assert cli_json(alice, "contacts", "rename", "bob", "Bobby")["name"] == "Bobby"
    assert [c["name"] for c in cli_json(alice, "contacts", "list")] == ["Bobby"]
    second = run_cli(alice, "daemon", *LOOPBACK, passphrase=PASS)
    assert "in use" in one_line_error(second)
    assert daemons[0].stop() == 0
    assert not ProfilePaths(alice).control_socket.exists()
    # after the daemon, the same data is there when opened directly
    assert [c["name"] for c in cli_json(alice, "contacts", "list", passphrase=PASS)] == ["Bobby"]


def test_daemons_join_each_other(tmp_path: Path, daemons: list[Daemon]) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    cli_json(a, "init", "--name", "A", "--no-passphrase")
    cli_json(b, "init", "--name", "B", "--no-passphrase")
    daemons.append(Daemon(a, *LOOPBACK))
    a_status = daemons[0].wait_ready()
    daemons.append(Daemon(b, *LOOPBACK, "--bootstrap", a_status["endpoints"][0]))
    daemons[1].wait_ready()
    for _ in range(50):
        if cli_json(a, "status")["dht_peers"] >= 1 and cli_json(b, "status")["dht_peers"] >= 1:
            break
    assert cli_json(a, "status")["dht_peers"] >= 1
    assert cli_json(b, "status")["dht_peers"] >= 1


def test_a_fresh_invite_fixes_a_contact_whose_port_changed(
    tmp_path: Path, daemons: list[Daemon]
) -> None:
    """Bob's node moved to another port; Alice, with no DHT to find him in, can't reach
    him until she adds his fresh invite, which updates his endpoints and reconnects."""
    a, b = tmp_path / "a", tmp_path / "b"
    alice = cli_json(a, "init", "--name", "Alice", "--no-passphrase")
    cli_json(b, "init", "--name", "Bob", "--no-passphrase")
    cli_json(b, "contacts", "add", alice["invite"])  # no endpoints: Bob can't dial Alice
    old_bob = Daemon(b, *LOOPBACK)
    old_bob.wait_ready()
    stale_invite = cli_json(b, "whoami")["invite"]
    assert old_bob.stop() == 0
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        new_port = probe.getsockname()[1]
    daemons.append(Daemon(b, "--listen", f"127.0.0.1:{new_port}", "--no-lan"))
    daemons[-1].wait_ready()
    fresh_invite = cli_json(b, "whoami")["invite"]
    assert fresh_invite != stale_invite
    cli_json(a, "contacts", "add", stale_invite, "--name", "Bobby")
    daemons.append(Daemon(a, *LOOPBACK))
    daemons[-1].wait_ready()
    cli_json(a, "send", "Bobby", "hello")
    time.sleep(1.5)
    assert not any(p["state"] == "connected" for p in cli_json(a, "peers"))
    updated = run_cli(a, "contacts", "add", fresh_invite)
    assert updated.returncode == 0, updated.stderr
    assert "Bobby is already in your contacts; updated" in updated.stdout
    assert [c["name"] for c in cli_json(a, "contacts", "list")] == ["Bobby"]
    wait_for(lambda: [m["text"] for m in cli_json(b, "messages", "Alice")] == ["hello"])
    again = run_cli(a, "contacts", "add", fresh_invite)
    assert "already in your contacts" in one_line_error(again)


def test_a_killed_daemon_leaves_nothing_that_blocks_a_restart(
    tmp_path: Path, daemons: list[Daemon]
) -> None:
    a = tmp_path / "a"
    cli_json(a, "init", "--name", "A", "--no-passphrase")
    first = Daemon(a, *LOOPBACK)
    first.wait_ready()
    assert first.stop(signal.SIGKILL) != 0
    assert ProfilePaths(a).control_socket.exists()  # stale, left by the kill
    daemons.append(Daemon(a, *LOOPBACK))
    assert daemons[0].wait_ready()["running"]


def test_a_daemon_whose_terminal_closes_stops_cleanly(tmp_path: Path) -> None:
    """Closing the terminal of a daemon run in the foreground (the README's way) sends it
    SIGHUP: it died at once, as with a SIGKILL (no "node stopped", the control socket
    left behind, no note of a clean stop, so the next start reloaded every
    conversation). It now stops as on Ctrl+C or SIGTERM."""
    a = tmp_path / "a"
    cli_json(a, "init", "--name", "A", "--no-passphrase")
    daemon = Daemon(a, *LOOPBACK)
    daemon.wait_ready()
    assert daemon.stop(signal.SIGHUP) == 0
    assert not ProfilePaths(a).control_socket.exists()
    assert (a / NOTE_NAME).exists()


def signals_of(pid: int) -> dict[str, set[int]]:
    """Which signals a process ignores ("SigIgn") and catches ("SigCgt"): Linux's /proc."""
    masks = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("SigIgn", "SigCgt"):
            bits = int(value, 16)
            masks[key] = {n for n in range(1, 65) if bits >> (n - 1) & 1}
    return masks


def test_a_daemon_started_under_nohup_outlives_its_terminal(tmp_path: Path) -> None:
    """`nohup scrambled-eggs daemon &` ignores SIGHUP so that closing the terminal does
    not end it; the daemon took SIGHUP over as a stop anyway (so it stopped cleanly with
    the terminal). Signals ignored by whoever started it stay ignored."""
    a = tmp_path / "a"
    cli_json(a, "init", "--name", "A", "--no-passphrase")
    daemon = Daemon(a, *LOOPBACK, prefix=("nohup",))
    try:
        daemon.wait_ready()
        masks = signals_of(daemon.process.pid)
        assert signal.SIGHUP in masks["SigIgn"] and signal.SIGHUP not in masks["SigCgt"]
        assert signal.SIGTERM in masks["SigCgt"]
        daemon.process.send_signal(signal.SIGHUP)  # the terminal closes
        assert cli_json(a, "status")["running"] and daemon.process.poll() is None
    finally:
        assert daemon.stop() == 0  # SIGTERM still stops it, cleanly
    assert (a / NOTE_NAME).exists()


def test_the_passphrase_is_set_and_changed_from_the_command_line(
    tmp_path: Path, daemons: list[Daemon], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A profile made with --no-passphrase and no keyring keeps its key in a file; the
    CLI warned "set a passphrase to prevent that", and only the window could."""
    a = tmp_path / "a"
    cli_json(a, "init", "--name", "A", "--no-passphrase")
    assert ProfilePaths(a).key_file.exists()
    assert NEW in one_line_error(run_cli(a, "passphrase"))  # no terminal: say where from
    monkeypatch.setenv(NEW, "short")
    assert "at least" in one_line_error(run_cli(a, "passphrase"))
    monkeypatch.setenv(NEW, PASS)
    assert run_cli(a, "passphrase").returncode == 0
    assert not ProfilePaths(a).key_file.exists()  # a copy of the folder holds no key now
    assert "needs its passphrase" in one_line_error(run_cli(a, "whoami"))
    assert cli_json(a, "whoami", passphrase=PASS)["name"] == "A"
    # through the running node: the current passphrase is needed, and checked
    daemons.append(Daemon(a, *LOOPBACK, passphrase=PASS))
    daemons[0].wait_ready()
    monkeypatch.setenv(NEW, "another passphrase")
    assert "current passphrase" in one_line_error(run_cli(a, "passphrase"))
    wrong = run_cli(a, "passphrase", passphrase="not the one at all")
    assert "not your current passphrase" in one_line_error(wrong)
    assert run_cli(a, "passphrase", passphrase=PASS).returncode == 0
    assert daemons.pop().stop() == 0
    assert "does not unlock" in one_line_error(run_cli(a, "whoami", passphrase=PASS))
    assert cli_json(a, "whoami", passphrase="another passphrase")["name"] == "A"


def test_relative_paths_name_files_in_the_users_folder_not_the_daemons(
    tmp_path: Path, daemons: list[Daemon]
) -> None:
    alice, bob = tmp_path / "alice", tmp_path / "bob"
    cli_json(alice, "init", "--name", "Alice", "--no-passphrase")
    bob_me = cli_json(bob, "init", "--name", "Bob", "--no-passphrase")
    cli_json(alice, "contacts", "add", bob_me["invite"])
    (daemon_dir := tmp_path / "daemon-cwd").mkdir()
    (user_dir := tmp_path / "user" / "docs").mkdir(parents=True)
    (daemon_dir / "notes.txt").write_text("private, next to wherever the daemon started\n")
    (user_dir / "notes.txt").write_text("the file the user meant\n")
    (user_dir.parent / "other.txt").write_text("one folder up\n")
    daemons.append(Daemon(alice, *LOOPBACK, cwd=daemon_dir))
    daemons[0].wait_ready()
    ids = cli_json(alice, "share", "Bob", "notes.txt", "../other.txt", cwd=user_dir)["transfers"]
    paths = {t["id"]: t["path"] for t in cli_json(alice, "transfers")}
    assert [paths[i] for i in ids] == [
        str(user_dir / "notes.txt"),
        str(user_dir.parent / "other.txt"),
    ]
    missing = run_cli(alice, "share", "Bob", "nowhere.txt", cwd=daemon_dir.parent)
    assert "nowhere.txt" in one_line_error(missing)


def test_bad_input_gives_one_clear_line_and_loses_nothing(
    tmp_path: Path, tree_digest: Digest
) -> None:
    alice = tmp_path / "alice"
    cli_json(alice, "init", "--name", "Alice", passphrase=PASS)
    before = tree_digest(alice)
    assert "invite" in one_line_error(
        run_cli(alice, "contacts", "add", "eggs:bad", passphrase=PASS)
    )
    assert "passphrase" in one_line_error(run_cli(alice, "whoami", passphrase="wrong passphrase"))
    assert "passphrase" in one_line_error(run_cli(alice, "whoami"))
    assert "already exists" in one_line_error(
        run_cli(alice, "init", "--name", "Mallory", passphrase=PASS)
    )
    assert "no profile" in one_line_error(run_cli(tmp_path / "none", "whoami")).lower()
    bad_listen = run_cli(alice, "daemon", "--listen", "nonsense", passphrase=PASS)
    assert "HOST:PORT" in one_line_error(bad_listen)
    assert tree_digest(alice) == before
    with ProfileLock(ProfilePaths(alice).lock):
        assert "in use" in one_line_error(run_cli(alice, "contacts", "list", passphrase=PASS))
    db = ProfilePaths(alice).database
    db.write_bytes(db.read_bytes()[:100] + b"\x00garbage" * 500)
    corrupted = tree_digest(alice)
    assert "corrupt" in one_line_error(run_cli(alice, "contacts", "list", passphrase=PASS))
    assert "corrupt" in one_line_error(run_cli(alice, "status"))
    assert tree_digest(alice) == corrupted


def test_ctrl_c_at_the_passphrase_prompt_ends_the_command(tmp_path: Path) -> None:
    """Found by a tester: the prompt was read by the thread that opens the profile, so
    Ctrl+C (twice, too) left `whoami` or `daemon` hanging until Enter was pressed.
    A daemon told to stop exits 0, as after start-up (test_stop_while_starting.py)."""
    alice = tmp_path / "alice"
    cli_json(alice, "init", "--name", "Alice", passphrase=PASS)
    for command, code in ((("whoami",), 130), (("daemon", *LOOPBACK), 0)):
        terminal = Terminal(alice, *command)
        terminal.read_until("Passphrase: ")
        terminal.type(b"\x03")
        assert terminal.exit_code() == code, terminal.output
        assert b"Traceback" not in terminal.output
    terminal = Terminal(alice, "whoami")  # typed, it still opens the profile
    terminal.read_until("Passphrase: ")
    terminal.type(PASS.encode() + b"\n")
    assert "Name:        Alice" in terminal.read_until("Invite:")
    assert terminal.exit_code() == 0


def test_a_mistyped_passphrase_is_asked_for_again(tmp_path: Path) -> None:
    """A typo at the passphrase prompt ended the command: `daemon` with its options, or
    a message being sent, had to be typed again (`init` asks again since a tester
    found the same)."""
    alice = tmp_path / "alice"
    cli_json(alice, "init", "--name", "Alice", passphrase=PASS)
    daemon = Terminal(alice, "daemon", *LOOPBACK)
    daemon.read_until("Passphrase: ")
    daemon.type(b"a typo in it\n")
    refused = b"does not unlock this profile. Try again."
    daemon.read_until(refused.decode())
    # what came after the refusal, in the same read or later: the prompt again
    daemon.output = daemon.output.split(refused, 1)[1]
    daemon.read_until("Passphrase: ")  # asked again (typed before, it would be dropped)
    daemon.type(PASS.encode() + b"\n")
    daemon.read_until("node running:")
    daemon.type(b"\x03")  # Ctrl+C: it stops
    assert daemon.exit_code() == 0, daemon.output
    whoami = Terminal(alice, "whoami")
    for _ in range(3):
        whoami.read_until("Passphrase: ")
        whoami.output = b""
        whoami.type(b"not it at all\n")
    assert whoami.exit_code() == 1
    said = whoami.output.decode()
    assert "error: That passphrase does not unlock this profile." in said
    assert "Traceback" not in said and "Passphrase" not in said  # three tries, no more


def test_daemon_options_it_cant_use_are_refused_before_the_passphrase(tmp_path: Path) -> None:
    """Asking for the passphrase first (to let Ctrl+C end the prompt) must not make the
    user type it only to hear that --listen was mistyped."""
    alice = tmp_path / "alice"
    cli_json(alice, "init", "--name", "Alice", passphrase=PASS)
    terminal = Terminal(alice, "daemon", "--listen", "nonsense")
    assert terminal.exit_code() == 1
    assert b"'nonsense' is not HOST:PORT" in terminal.output
    assert b"Passphrase" not in terminal.output


CANARY = "CanaryZebra7731"


def test_copied_profile_reveals_no_names_text_or_keys(
    tmp_path: Path, daemons: list[Daemon]
) -> None:
    alice, other = tmp_path / "alice", tmp_path / "other"
    cli_json(alice, "init", "--name", f"Alice{CANARY}", passphrase=PASS)
    invite = cli_json(other, "init", "--name", "Other", "--no-passphrase")["invite"]
    cli_json(alice, "contacts", "add", invite, "--name", CANARY, passphrase=PASS)
    cli_json(alice, "send", CANARY, f"secret text {CANARY}", passphrase=PASS)
    daemons.append(Daemon(alice, *LOOPBACK, passphrase=PASS))
    daemons[0].wait_ready()
    cli_json(alice, "send", CANARY, f"through the daemon {CANARY}")
    assert daemons[0].stop() == 0

    with ProfileLock(ProfilePaths(alice).lock):
        store = open_store(alice, lambda: PASS)
        secrets = [store.identity.signing_seed, store.identity.dh_secret, store.key.raw]
        store.close()
    needles = [CANARY.encode(), CANARY.encode("utf-16-le"), CANARY.lower().encode()]
    for secret in secrets:
        needles += [secret, secret.hex().encode(), secret[:16]]
    files = [p for p in alice.rglob("*") if p.is_file()]
    assert {p.name for p in files} >= {"eggs.db", "config.json"}
    for path in files:
        data = path.read_bytes()
        for needle in needles:
            assert needle not in data, f"{path.name} leaks a secret"
    # and the database really holds the data, sealed
    rows = sqlite3.connect(ProfilePaths(alice).database).execute("SELECT count(*) FROM messages")
    assert rows.fetchone()[0] == 2


def test_settings_the_node_cant_use_are_refused_when_set(
    tmp_path: Path, daemons: list[Daemon]
) -> None:
    """They used to be saved, and then the next start refused them (the listen address)
    or every received file failed (the downloads folder)."""
    me = tmp_path / "me"
    cli_json(me, "init", "--name", "Me", "--no-passphrase")
    notes = tmp_path / "notes.txt"
    notes.write_text("x")
    refusals = [
        (("--listen", "256.1.1.1:0"), "The listen address '256.1.1.1:0'"),
        (("--listen", "192.0.2.1:0"), "192.0.2.1 is not an address of this machine"),
        (("--downloads-folder", f"{notes}/Downloads"), f"{notes} is a file, not a folder"),
    ]
    for args, why in refusals:  # the profile opened by the CLI itself
        assert why in one_line_error(run_cli(me, "settings", *args, "--theme", "dark"))
    daemons.append(Daemon(me, *LOOPBACK))
    port = daemons[0].wait_ready()["endpoints"][0].rpartition(":")[2]
    for args, why in refusals:  # through the running node
        assert why in one_line_error(run_cli(me, "settings", *args, "--theme", "dark"))
    before = cli_json(me, "settings")
    assert before["theme"] == "system" and before["listen"] == "0.0.0.0:0"
    # the address the node listens on (its port in use, by the node) can be set
    listen = f"127.0.0.1:{port}"
    assert cli_json(me, "settings", "--listen", listen)["listen"] == listen
    assert daemons[0].stop() == 0
    daemons.append(Daemon(me, "--no-lan"))  # the setting, not --listen
    assert daemons[1].wait_ready()["endpoints"] == [listen]


def test_an_invite_made_before_the_node_ever_ran_says_it_holds_no_address(
    tmp_path: Path, daemons: list[Daemon]
) -> None:
    """`init` then `whoami`, as README shows: that invite has no endpoint (no port was
    picked yet), and a contact who added it with no DHT in common never connected. The
    user is told, and the invite of the running node holds an address."""
    a = tmp_path / "a"
    cli_json(a, "init", "--name", "Alice", "--no-passphrase")
    before = run_cli(a, "whoami")
    assert before.returncode == 0 and "Invite:" in before.stdout
    assert "no node runs for this profile" in before.stderr
    assert "run whoami again" in before.stderr
    daemons.append(Daemon(a, *LOOPBACK))
    daemons[-1].wait_ready()
    running = run_cli(a, "whoami")
    assert running.returncode == 0 and running.stderr == ""
    assert running.stdout != before.stdout  # the running node's invite carries its address
