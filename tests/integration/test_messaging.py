"""End-to-end encrypted messaging between two daemons in separate processes.

Loopback only; `SCRAMBLED_EGGS_ICE_LOOPBACK=1` is the documented test setting that lets
aioice use 127.0.0.1 host candidates.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import time
from pathlib import Path
from typing import Any

import pytest
from cli_helpers import Daemon, cli_json, run_cli, wait_for

from app.core.identity import IdentityKeys
from app.node.transport import TransportSettings
from app.node.transport.websocket import dial_websocket

pytestmark = pytest.mark.usefixtures("ice_loopback_env")
PASS = "a passphrase for tests"
LOOPBACK = ("--no-lan",)


def start(profile: Path, port: int = 0) -> tuple[Daemon, str]:
    daemon = Daemon(profile, "--listen", f"127.0.0.1:{port}", *LOOPBACK, passphrase=PASS)
    return daemon, daemon.wait_ready()["endpoints"][0]


def send(profile: Path, contact: str, text: str) -> str:
    done = run_cli(profile, "send", contact, text, "--json", passphrase=PASS)
    assert done.returncode == 0, done.stderr
    return str(json.loads(done.stdout)["id"])


def messages(profile: Path, contact: str) -> list[dict[str, Any]]:
    return list(cli_json(profile, "messages", contact, passphrase=PASS))


def all_delivered(profile: Path, contact: str, ids: list[str]) -> bool:
    status = {m["id"]: m["status"] for m in messages(profile, contact)}
    return all(status.get(i) == "delivered" for i in ids)


def received_texts(profile: Path, contact: str) -> list[str]:
    return [m["text"] for m in messages(profile, contact)]


def head(profile: Path, contact: str) -> list[str]:
    return list(cli_json(profile, "history", "verify", contact, passphrase=PASS)["heads"])


@pytest.fixture
def pair(tmp_path: Path, daemons: list[Daemon]) -> tuple[Path, Path, int]:
    """Alice and Bob, each running, who added each other by invite. Returns Bob's port."""
    a, b = tmp_path / "alice", tmp_path / "bob"
    cli_json(a, "init", "--name", "Alice", passphrase=PASS)
    cli_json(b, "init", "--name", "Bob", passphrase=PASS)
    daemons.append(start(a)[0])
    daemon_b, b_endpoint = start(b)
    daemons.append(daemon_b)
    alice = cli_json(a, "whoami", passphrase=PASS)
    bob = cli_json(b, "whoami", passphrase=PASS)
    cli_json(a, "contacts", "add", bob["invite"], passphrase=PASS)
    cli_json(b, "contacts", "add", alice["invite"], passphrase=PASS)
    return a, b, int(b_endpoint.rpartition(":")[2])


@pytest.mark.slow
def test_messages_arrive_once_in_order_and_histories_agree(
    pair: tuple[Path, Path, int], tmp_path: Path
) -> None:
    a, b, _ = pair
    texts = [f"message {i}" for i in range(8)]
    ids = [send(a, "Bob", t) for t in texts]
    wait_for(lambda: received_texts(b, "Alice") == texts)
    wait_for(lambda: all_delivered(a, "Bob", ids))
    got = messages(b, "Alice")
    assert [m["id"] for m in got] == ids and {m["status"] for m in got} == {"received"}
    # a reply travels the other way on the same session
    reply = send(b, "Alice", "got them")
    wait_for(lambda: received_texts(a, "Bob")[-1:] == ["got them"])
    wait_for(lambda: all_delivered(b, "Alice", [reply]))
    assert len(head(a, "Bob")) == 1
    wait_for(lambda: head(a, "Bob") == head(b, "Alice"))

    exported = tmp_path / "history.cbor"
    done = run_cli(a, "history", "export", "Bob", str(exported), passphrase=PASS)
    assert done.returncode == 0, done.stderr
    report = cli_json(a, "history", "verify", "--file", str(exported))
    assert report["heads"] == head(a, "Bob") and report["events"] == len(texts) + 1
    # an export never overwrites, nor writes into the profile (found by a tester: a
    # mistyped name replaced the running node's database)
    before = exported.read_bytes()
    again = run_cli(a, "history", "export", "Bob", str(exported), passphrase=PASS)
    assert again.returncode != 0 and "already exists" in again.stderr
    assert exported.read_bytes() == before
    inside = run_cli(a, "history", "export", "Bob", str(a / "eggs.db"), passphrase=PASS)
    assert inside.returncode != 0 and "already exists" in inside.stderr
    into = run_cli(a, "history", "export", "Bob", str(a / "new.cbor"), passphrase=PASS)
    assert into.returncode != 0 and "inside the profile" in into.stderr
    assert not (a / "new.cbor").exists()
    tampered = tmp_path / "tampered.cbor"
    data = exported.read_bytes()
    assert data.count(b"message 3") == 1
    tampered.write_bytes(data.replace(b"message 3", b"massage 3"))
    done = run_cli(a, "history", "verify", "--file", str(tampered))
    assert done.returncode == 1
    assert "does not verify" in done.stderr and "event #3 bafy" in done.stderr


@pytest.mark.slow
def test_reading_on_the_receiver_shows_read_on_the_sender(pair: tuple[Path, Path, int]) -> None:
    a, b, _ = pair
    ids = [send(a, "Bob", t) for t in ("first", "second")]
    wait_for(lambda: received_texts(b, "Alice") == ["first", "second"])
    wait_for(lambda: all_delivered(a, "Bob", ids))
    done = run_cli(b, "read", "Alice", "--json", passphrase=PASS)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"read": True}

    def all_read() -> bool:
        return [m["status"] for m in messages(a, "Bob")] == ["read", "read"]

    wait_for(all_read)
    # the reader's own copies stay "received"; a later message is delivered, not read,
    # and the earlier ones stay read (never downgraded)
    assert {m["status"] for m in messages(b, "Alice")} == {"received"}
    later = send(a, "Bob", "third")
    wait_for(lambda: all_delivered(a, "Bob", [later]))
    assert [m["status"] for m in messages(a, "Bob")] == ["read", "read", "delivered"]


@pytest.mark.slow
@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGKILL], ids=["term", "kill"])
def test_restarting_the_receiver_loses_and_duplicates_nothing(
    pair: tuple[Path, Path, int], daemons: list[Daemon], stop_signal: int
) -> None:
    a, b, b_port = pair
    first = [f"before {i}" for i in range(3)]
    ids = [send(a, "Bob", t) for t in first]
    wait_for(lambda: all_delivered(a, "Bob", ids))
    # stop Bob in the middle of a burst, keep sending while he is away
    burst = [f"burst {i}" for i in range(6)]
    for i, text in enumerate(burst):
        ids.append(send(a, "Bob", text))
        if i == 2:
            daemons[1].stop(stop_signal)
    statuses = {m["status"] for m in messages(a, "Bob")[-3:]}
    assert "delivered" not in statuses  # Bob is down: those can't have arrived
    daemons[1] = start(b, b_port)[0]
    expected = first + burst
    wait_for(lambda: received_texts(b, "Alice") == expected, timeout=50)
    wait_for(lambda: all_delivered(a, "Bob", ids), timeout=30)
    got = messages(b, "Alice")
    assert [m["id"] for m in got] == ids  # exactly once, in order
    wait_for(lambda: head(a, "Bob") == head(b, "Alice"))


async def authenticated_garbage(address: str, endpoint: str) -> None:
    """A stranger with a valid identity connects and sends nonsense payloads."""
    stranger = IdentityKeys.from_seeds(os.urandom(32), os.urandom(32))
    conn = await dial_websocket(stranger, address, endpoint, settings=TransportSettings())
    for payload in (b"", b"\x01" + os.urandom(100), b"\x02" + os.urandom(400), os.urandom(60000)):
        await conn.send(payload)
    await conn.ping()
    await conn.close()


@pytest.mark.slow
def test_hostile_input_does_not_stop_the_node(pair: tuple[Path, Path, int]) -> None:
    a, b, _ = pair
    endpoint = cli_json(a, "status")["endpoints"][0]
    host, port = endpoint.rpartition(":")[0], int(endpoint.rpartition(":")[2])
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:  # DHT port
        for payload in (b"\x00" * 3, b"\xff" * 8000, b"garbage" * 100):
            udp.sendto(payload, (host, port))
    for payload in (b"GET / HTTP/1.1\r\n\r\n", b"\x00\x01\x02" * 1000):  # WebSocket port
        with socket.create_connection((host, port), timeout=5) as tcp:
            tcp.sendall(payload)
            tcp.settimeout(2)
            with contextlib.suppress(TimeoutError, ConnectionError):
                tcp.recv(100)
    alice = cli_json(a, "whoami", passphrase=PASS)["address"]
    asyncio.run(authenticated_garbage(alice, endpoint))
    assert cli_json(a, "status")["running"]
    ident = send(a, "Bob", "still alive")
    wait_for(lambda: received_texts(b, "Alice") == ["still alive"])
    wait_for(lambda: all_delivered(a, "Bob", [ident]))


@pytest.mark.slow
def test_offline_delivery_through_a_dht_mailbox(tmp_path: Path, daemons: list[Daemon]) -> None:
    """Bob is offline when Alice writes, Alice is offline when Bob comes back: the
    envelopes wait in the DHT (on a third node) under their daily mailbox key."""
    a, b, relay = tmp_path / "alice", tmp_path / "bob", tmp_path / "relay"
    for profile, name in ((a, "Alice"), (b, "Bob"), (relay, "Relay")):
        cli_json(profile, "init", "--name", name, passphrase=PASS)
    daemon_r, relay_endpoint = start(relay)
    daemons.append(daemon_r)
    join = ("--bootstrap", relay_endpoint)
    alice = cli_json(a, "whoami", passphrase=PASS)
    bob = cli_json(b, "whoami", passphrase=PASS)
    cli_json(a, "contacts", "add", bob["invite"], passphrase=PASS)
    cli_json(b, "contacts", "add", alice["invite"], passphrase=PASS)

    # Bob was online once (his prekey bundle is in the DHT), then left
    daemon_b = Daemon(b, "--listen", "127.0.0.1:0", *LOOPBACK, *join, passphrase=PASS)
    daemon_b.wait_ready()
    wait_for(lambda: cli_json(b, "status")["dht_peers"] >= 1)
    time.sleep(1.0)  # the join publishes presence and prekey bundle right after
    daemon_b.stop()

    daemon_a = Daemon(a, "--listen", "127.0.0.1:0", *LOOPBACK, *join, passphrase=PASS)
    daemon_a.wait_ready()
    daemons.append(daemon_a)
    ids = [send(a, "Bob", f"while you were away {i}") for i in range(3)]
    # nobody can deliver them yet, but they left the node: into Bob's mailbox
    wait_for(lambda: {m["status"] for m in messages(a, "Bob")} == {"sent"})
    daemon_a.stop()

    daemon_b = Daemon(b, "--listen", "127.0.0.1:0", *LOOPBACK, *join, passphrase=PASS)
    daemon_b.wait_ready()
    daemons.append(daemon_b)
    expected = [f"while you were away {i}" for i in range(3)]
    wait_for(lambda: received_texts(b, "Alice") == expected, timeout=30)
    # once Alice is back, Bob's heads acknowledge them
    daemons.append(Daemon(a, "--listen", "127.0.0.1:0", *LOOPBACK, *join, passphrase=PASS))
    daemons[-1].wait_ready()
    wait_for(lambda: all_delivered(a, "Bob", ids), timeout=40)
    assert [m["id"] for m in messages(b, "Alice")] == ids
