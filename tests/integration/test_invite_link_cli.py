"""`scrambled-eggs eggs:...` (how a desktop opens a clicked invite link) beside a
headless daemon, and with links that can't be invites: one clear line, nothing added.
The window's side is tests/gui/test_invite_links.py."""

from __future__ import annotations

from pathlib import Path

from cli_helpers import Daemon, cli_json, run_cli

PASS = "a passphrase for tests"
LOOPBACK = ("--listen", "127.0.0.1:0", "--no-lan")


def error_line(done: object) -> str:
    stderr: str = done.stderr.strip()  # type: ignore[attr-defined]
    assert done.returncode == 1, stderr  # type: ignore[attr-defined]
    assert stderr.startswith("error: ") and "\n" not in stderr and "Traceback" not in stderr
    return stderr


def test_a_link_beside_a_headless_daemon_says_to_use_contacts_add(
    tmp_path: Path, daemons: list[Daemon]
) -> None:
    alice, bob = tmp_path / "alice", tmp_path / "bob"
    cli_json(alice, "init", "--name", "Alice", passphrase=PASS)
    invite = cli_json(bob, "init", "--name", "Bob", "--no-passphrase")["invite"]
    daemons.append(Daemon(alice, *LOOPBACK, passphrase=PASS))
    daemons[0].wait_ready()
    said = error_line(run_cli(alice, invite))
    assert "headless daemon" in said and f"(process {daemons[0].process.pid})" in said
    assert f"scrambled-eggs contacts add '{invite}'" in said
    assert cli_json(alice, "contacts", "list") == []
    # what it says works as it is
    assert cli_json(alice, "contacts", "add", invite)["name"] == "Bob"


def test_links_that_cant_be_invites_are_refused_before_anything_opens(tmp_path: Path) -> None:
    alice = tmp_path / "alice"
    cli_json(alice, "init", "--name", "Alice", "--no-passphrase")
    for link, words in (
        ("eggs:" + "a" * 100_000, "too long to be an invite"),
        ("https://example.invalid/x", "not an invite link"),
        ("eggs:egg\x1b]0;pwned\x07", "control characters"),
    ):
        said = error_line(run_cli(alice, link, timeout=30))
        assert words in said and "\x1b" not in said and len(said) < 300
    # an eggs: link with a bad signature is the window's to explain (it opens the
    # dialog); with a command, a link is an argument like any other
    usage = run_cli(alice, "eggs:x", "status")
    assert usage.returncode == 2 and "opened alone" in usage.stderr
    assert cli_json(alice, "contacts", "list") == []
