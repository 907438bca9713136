"""A backlog larger than one DHT record reaches an offline contact through its mailbox.

Three daemons in separate processes on loopback: C only keeps the DHT alive; A writes 50
messages while B is down and then leaves for good; B comes back and reads them all from
the mailbox slots A left in the DHT (see `app.node.mailbox`). And the same with C's record
store filled beforehand by a hostile node (`tools/fuzz/record_flood.py`).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cli_helpers import Daemon, _with_app, cli_env, cli_json, run_cli, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("ice_loopback_env")]
PASS = "a passphrase for tests"
COUNT = 50
DEADLINE = 30.0


def start(profile: Path, *args: str) -> tuple[Daemon, str]:
    daemon = Daemon(profile, "--listen", "127.0.0.1:0", "--no-lan", *args, passphrase=PASS)
    return daemon, daemon.wait_ready()["endpoints"][0]


def send(profile: Path, contact: str, text: str) -> str:
    done = run_cli(profile, "send", contact, text, "--json", passphrase=PASS)
    assert done.returncode == 0, done.stderr
    return str(json.loads(done.stdout)["id"])


def messages(profile: Path, contact: str) -> list[dict[str, Any]]:
    return list(cli_json(profile, "messages", contact, passphrase=PASS))


def status(profile: Path, contact: str, ident: str) -> str | None:
    found: str | None = {m["id"]: m["status"] for m in messages(profile, contact)}.get(ident)
    return found


def texts_from(profile: Path, contact: str, sender: str) -> list[str]:
    return [m["text"] for m in messages(profile, contact) if m["from"] == sender]


@dataclass
class Trio:
    """A and B, contacts of each other, and C keeping the DHT alive; B has just stopped."""

    a: Path
    b: Path
    c: Path
    daemon_a: Daemon
    alice: dict[str, Any]
    join: tuple[str, str]
    c_endpoint: str


def alice_and_bob_then_bob_away(tmp_path: Path, daemons: list[Daemon]) -> Trio:
    """Three daemons: C, then A and B (bootstrapping from C), who add each other by
    invite; B says hello, A answers and sees it delivered; then B stops."""
    a, b, c = tmp_path / "alice", tmp_path / "bob", tmp_path / "carol"
    for profile, name in ((a, "Alice"), (b, "Bob"), (c, "Carol")):
        cli_json(profile, "init", "--name", name, passphrase=PASS)
    daemon_c, c_endpoint = start(c)
    daemons.append(daemon_c)
    join = ("--bootstrap", c_endpoint)
    daemon_a = start(a, *join)[0]
    daemons.append(daemon_a)
    daemon_b = start(b, *join)[0]
    alice = cli_json(a, "whoami", passphrase=PASS)
    bob = cli_json(b, "whoami", passphrase=PASS)
    cli_json(a, "contacts", "add", bob["invite"], passphrase=PASS)
    cli_json(b, "contacts", "add", alice["invite"], passphrase=PASS)
    send(b, "Alice", "hello")
    wait_for(lambda: texts_from(a, "Bob", bob["address"]) == ["hello"], timeout=40)
    hi = send(a, "Bob", "hi")
    wait_for(lambda: texts_from(b, "Alice", alice["address"]) == ["hi"], timeout=40)
    wait_for(lambda: status(a, "Bob", hi) == "delivered")
    assert daemon_b.stop() == 0
    return Trio(a, b, c, daemon_a, alice, join, c_endpoint)


def test_fifty_messages_reach_an_offline_contact_through_the_dht(
    tmp_path: Path, daemons: list[Daemon]
) -> None:
    trio = alice_and_bob_then_bob_away(tmp_path, daemons)
    a, b, daemon_a, alice, join = trio.a, trio.b, trio.daemon_a, trio.alice, trio.join

    # B is down: A writes 50 messages; they go into B's mailbox, split over slots
    sent = [f"while you were away {i:02d}: " + "x" * 200 for i in range(COUNT)]
    ids = [send(a, "Bob", text) for text in sent]
    wait_for(lambda: all(status(a, "Bob", i) == "sent" for i in ids), timeout=60)
    time.sleep(2.0)  # the last post's slots are being stored on C
    assert daemon_a.stop() == 0
    daemons.remove(daemon_a)

    # A never comes back; B starts (bootstrapping from C) and reads its mailbox
    started = time.monotonic()
    daemon_b = start(b, *join)[0]
    daemons.append(daemon_b)
    expected = ["hi", *sent]
    wait_for(lambda: texts_from(b, "Alice", alice["address"]) == expected, timeout=DEADLINE)
    elapsed = time.monotonic() - started
    print(f"{COUNT} messages arrived in {elapsed:.1f} s")
    assert elapsed < DEADLINE
    received = [m for m in messages(b, "Alice") if m["from"] == alice["address"]]
    assert [m["id"] for m in received[1:]] == ids  # exactly once, in order
    time.sleep(3.0)  # a second poll or a re-read changes nothing
    assert texts_from(b, "Alice", alice["address"]) == expected


def flood(endpoint: str, target: str, cases: int) -> dict[str, int]:
    """The `records` campaign of a hostile node (its own process, from 127.0.0.2)."""
    done = subprocess.run(
        [sys.executable, "-m", "tools.fuzz.hostile_peer", "records", "--endpoint", endpoint,
         "--target", target, "--cases", str(cases)],
        capture_output=True, text=True, env=_with_app(cli_env()), timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    outcomes: dict[str, int] = json.loads(done.stdout)["outcomes"]
    return outcomes


def test_an_offline_message_survives_a_hostile_node_filling_the_dht_store(
    tmp_path: Path, daemons: list[Daemon]
) -> None:
    """A hostile node fills C's record store (4,096 records) with valid records under
    made-up identities before A writes to B, who is offline. C must still keep A's
    mailbox records: it was the only node left to hold them. (Before the per-source
    share of the store, C refused them as "full" and the messages were lost.)"""
    trio = alice_and_bob_then_bob_away(tmp_path, daemons)
    a, b, daemon_a, alice, join = trio.a, trio.b, trio.daemon_a, trio.alice, trio.join
    carol = cli_json(trio.c, "whoami", passphrase=PASS)
    c_endpoint = trio.c_endpoint

    outcomes = flood(c_endpoint, carol["address"], 4096 + 256)
    print("flood:", outcomes)
    assert outcomes.get("kept", 0) >= 4000  # the store is full of the hostile node's records

    sent = [f"while the DHT was flooded {i}" for i in range(3)]
    ids = [send(a, "Bob", text) for text in sent]
    wait_for(lambda: all(status(a, "Bob", i) == "sent" for i in ids), timeout=60)
    time.sleep(2.0)  # the last post's slots are being stored on C
    assert daemon_a.stop() == 0
    daemons.remove(daemon_a)

    daemon_b = start(b, *join)[0]
    daemons.append(daemon_b)
    wait_for(lambda: texts_from(b, "Alice", alice["address"]) == ["hi", *sent], timeout=DEADLINE)
