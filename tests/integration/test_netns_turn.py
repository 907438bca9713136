"""Reaching a friend behind a NAT through one's own TURN server, as a user sets it up.

Two hosts (network namespaces this test creates, joined by a veth pair) that can only
exchange the DHT's datagrams and TURN traffic: nftables on the link drops every other
packet (TCP, so no WebSocket path; UDP between ICE host candidates, so no direct
WebRTC). A real coturn runs on host A. Bob (host B) sets his TURN server with the CLI,
as README says (`settings --ice-server turn:USER:PASSWORD@HOST`, no port, a password
with '@' and ':'): credentials coturn refuses are refused at once; the right ones are
kept, and after his next start the two connect over the relay, and a message and a file
go through. Traffic never leaves the namespaces.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cli_helpers import Daemon, cli_json, run_cli, wait_for

PASS = "a passphrase for tests"
TURN_PORT, RELAY_PORTS, DHT_PORT = 3478, (49160, 49200), 47000
PASSWORD = "p@ss:w0rd"
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        os.geteuid() != 0 or None in (shutil.which(c) for c in ("ip", "nft", "turnserver")),
        reason="needs root, iproute2, nftables and coturn",
    ),
]


def sh(*args: str, stdin: str | None = None) -> None:
    subprocess.run(args, check=True, capture_output=True, timeout=30, input=stdin, text=True)


@dataclass(frozen=True)
class Hosts:
    a: str
    b: str
    ip_a: str
    ip_b: str


def _only_dht_and_turn(dev: str) -> str:
    """nftables rules for one end of the link: the DHT's port, TURN's port and coturn's
    relay ports pass (either way, UDP only); every other packet on the link is dropped."""
    ports = f"{{ {DHT_PORT}, {TURN_PORT}, {RELAY_PORTS[0]}-{RELAY_PORTS[1]} }}"
    chains = []
    for chain, hook, iface in (("in", "input", "iifname"), ("out", "output", "oifname")):
        chains.append(
            f"chain {chain} {{ type filter hook {hook} priority 0; policy accept;\n"
            f'  {iface} "{dev}" udp dport {ports} accept\n'
            f'  {iface} "{dev}" udp sport {ports} accept\n'
            f'  {iface} "{dev}" drop\n}}'
        )
    return "table inet eggs {\n" + "\n".join(chains) + "\n}\n"


@pytest.fixture
def natted_hosts() -> Iterator[Hosts]:
    pid = os.getpid()
    n = pid % 250 + 1
    hosts = Hosts(f"se-ta-{pid}", f"se-tb-{pid}", f"10.233.{n}.1", f"10.233.{n}.2")
    veth_a, veth_b = f"sta{pid}"[:15], f"stb{pid}"[:15]
    try:
        sh("ip", "netns", "add", hosts.a)
        sh("ip", "netns", "add", hosts.b)
        sh("ip", "link", "add", veth_a, "type", "veth", "peer", "name", veth_b)
        for ns, dev, ip in ((hosts.a, veth_a, hosts.ip_a), (hosts.b, veth_b, hosts.ip_b)):
            sh("ip", "link", "set", dev, "netns", ns)
            sh("ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", dev)
            sh("ip", "-n", ns, "link", "set", dev, "up")
            sh("ip", "-n", ns, "link", "set", "lo", "up")
            sh("ip", "netns", "exec", ns, "nft", "-f", "-", stdin=_only_dht_and_turn(dev))
        yield hosts
    finally:
        for ns in (hosts.a, hosts.b):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=30)


@pytest.fixture
def coturn_on_a(natted_hosts: Hosts) -> Iterator[str]:
    """coturn on host A, user `u` with `PASSWORD`: its address."""
    h = natted_hosts
    args = [
        *("ip", "netns", "exec", h.a, "turnserver", "-n"),
        *(f"--listening-ip={h.ip_a}", f"--relay-ip={h.ip_a}", f"--listening-port={TURN_PORT}"),
        *(f"--min-port={RELAY_PORTS[0]}", f"--max-port={RELAY_PORTS[1]}"),
        *("--lt-cred-mech", f"--user=u:{PASSWORD}", "--realm=test"),
        *("--no-tls", "--no-dtls", "--no-cli", "--fingerprint"),
    ]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield h.ip_a
    finally:
        proc.terminate()
        proc.wait(10)


def connected(profile: Path, address: str) -> dict[str, Any] | None:
    for peer in cli_json(profile, "peers", passphrase=PASS):
        if peer["address"] == address and peer["state"] == "connected":
            return dict(peer)
    return None


def state_of(profile: Path, address: str) -> str | None:
    for peer in cli_json(profile, "peers", passphrase=PASS):
        if peer["address"] == address:
            return str(peer["state"])
    return None


@pytest.mark.timeout(300)
def test_a_friend_behind_a_nat_is_reached_through_ones_own_turn_server(
    tmp_path: Path, natted_hosts: Hosts, coturn_on_a: str
) -> None:
    h = natted_hosts
    a, b = tmp_path / "a", tmp_path / "b"
    cli_json(a, "init", "--name", "Alice", passphrase=PASS)
    cli_json(b, "init", "--name", "Bob", passphrase=PASS)
    (tmp_path / "received").mkdir()

    def start_bob() -> Daemon:
        bob = Daemon(b, "--listen", f"{h.ip_b}:{DHT_PORT}", "--no-lan",
                     "--bootstrap", f"{h.ip_a}:{DHT_PORT}", passphrase=PASS,
                     prefix=("ip", "netns", "exec", h.b))  # fmt: skip
        bob.wait_ready()
        return bob

    alice_node = Daemon(a, "--listen", f"{h.ip_a}:{DHT_PORT}", "--no-lan", passphrase=PASS,
                        prefix=("ip", "netns", "exec", h.a))  # fmt: skip
    daemons = [alice_node]
    try:
        alice_node.wait_ready()
        daemons.append(start_bob())
        cli_json(a, "settings", "--downloads-folder", str(tmp_path / "received"))
        alice, bob = cli_json(a, "whoami"), cli_json(b, "whoami")
        cli_json(a, "contacts", "add", bob["invite"])
        cli_json(b, "contacts", "add", alice["invite"])

        wrong = run_cli(b, "settings", "--ice-server", f"turn:u:not-{PASSWORD}@{coturn_on_a}")
        assert wrong.returncode == 1
        assert "refused the user name and password" in wrong.stderr
        assert PASSWORD not in wrong.stderr
        right = f"turn:u:{PASSWORD}@{coturn_on_a}"
        hidden = f"turn:u:•••@{coturn_on_a}"  # printed without the password...
        assert cli_json(b, "settings", "--ice-server", right)["ice_servers"] == [hidden]
        assert cli_json(b, "settings", "--show-secrets")["ice_servers"] == [right]  # or asked
        # kept sealed in the database: in no file of Bob's folder (decision 0034); the
        # restart below reaches coturn with it
        in_clear = [p for p in b.rglob("*") if p.is_file() and PASSWORD.encode() in p.read_bytes()]
        assert in_clear == []
        # no path without the relay: Bob's dial failed and waits to retry
        wait_for(lambda: state_of(b, alice["address"]) == "waiting-to-retry", timeout=90)

        daemons.pop().stop()  # STUN/TURN servers are used from the next start
        daemons.append(start_bob())
        peer = wait_for(lambda: connected(b, alice["address"]), timeout=90)
        assert peer["path"] == "turn"
        cli_json(b, "send", "Alice", "through the relay")
        wait_for(
            lambda: any(m["text"] == "through the relay" for m in cli_json(a, "messages", "Bob"))
        )
        sent = tmp_path / "relayed.bin"
        sent.write_bytes(os.urandom(300_000))
        [transfer] = cli_json(b, "share", "Alice", str(sent))["transfers"]

        def saved() -> bool:
            return any(
                t["id"] == transfer and t["state"] == "done" for t in cli_json(a, "transfers")
            )

        wait_for(saved, timeout=90)
        assert (tmp_path / "received" / "relayed.bin").read_bytes() == sent.read_bytes()
        for profile in (a, b):
            assert PASSWORD not in (profile / "logs" / "node.log").read_text()
    finally:
        for daemon in daemons:
            daemon.stop()
