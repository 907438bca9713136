"""`scrambled-eggs settings` prints a TURN password as ••• (also with --json, same keys)
unless --show-secrets is given; an entry copied back from that output, with its hidden
password, is refused instead of being saved with ••• as the password."""

from __future__ import annotations

import json
from pathlib import Path

from cli_helpers import cli_json, run_cli

PASS = "a passphrase for tests"
SECRET = "p@ss:w0rd"
ENTRY = f"turn:u:{SECRET}@127.0.0.1:3478"
HIDDEN = "turn:u:•••@127.0.0.1:3478"


def test_settings_hide_the_turn_password_unless_asked(tmp_path: Path) -> None:
    me = tmp_path / "me"
    cli_json(me, "init", "--name", "Me", passphrase=PASS)
    config = me / "config.json"
    saved = json.loads(config.read_text()) if config.exists() else {"version": 1}
    config.write_text(json.dumps({**saved, "ice_servers": ["stun:127.0.0.1:3478", ENTRY]}))

    shown = run_cli(me, "settings", passphrase=PASS)
    assert shown.returncode == 0, shown.stderr
    assert f"ice_servers: stun:127.0.0.1:3478, {HIDDEN}" in shown.stdout
    assert SECRET not in shown.stdout
    as_json = cli_json(me, "settings", passphrase=PASS)
    assert as_json["ice_servers"] == ["stun:127.0.0.1:3478", HIDDEN]
    assert cli_json(me, "settings", "--show-secrets", passphrase=PASS)["ice_servers"] == [
        "stun:127.0.0.1:3478",
        ENTRY,
    ]

    copied = run_cli(me, "settings", "--ice-server", HIDDEN, passphrase=PASS)
    assert copied.returncode == 1 and "password is hidden" in copied.stderr
    kept = cli_json(me, "settings", "--show-secrets", passphrase=PASS)
    assert kept["ice_servers"] == ["stun:127.0.0.1:3478", ENTRY]
