"""Two hosts (network namespaces this test creates) with UDP blocked between them: no
DHT, no ICE, so the connection must come up over the Noise-secured WebSocket path.

Host A: 10.231.N.1 in namespace se-a-PID, host B: 10.231.N.2 in se-b-PID, joined by a
veth pair; nftables in both namespaces drops every UDP packet on the link. Traffic never leaves the
namespaces. The CLI talks to each daemon through its profile's Unix control socket,
which namespaces don't affect.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cli_helpers import Daemon, cli_json, wait_for

PASS = "a passphrase for tests"
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        os.geteuid() != 0 or shutil.which("ip") is None or shutil.which("nft") is None,
        reason="needs root, iproute2 and nftables to create the hosts",
    ),
]


def sh(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True, timeout=30)


@dataclass(frozen=True)
class Hosts:
    a: str
    b: str
    ip_a: str
    ip_b: str

    def run(self, ns: str, *command: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["ip", "netns", "exec", ns, *command], capture_output=True, text=True, timeout=30
        )


@pytest.fixture
def udp_blocked_hosts() -> Iterator[Hosts]:
    yield from make_hosts(block_udp=True)


@pytest.fixture
def lan_hosts() -> Iterator[Hosts]:
    yield from make_hosts(block_udp=False)


def make_hosts(*, block_udp: bool) -> Iterator[Hosts]:
    n = os.getpid() % 250 + 1
    hosts = Hosts(f"se-a-{os.getpid()}", f"se-b-{os.getpid()}", f"10.231.{n}.1", f"10.231.{n}.2")
    veth_a, veth_b = f"sea{os.getpid()}"[:15], f"seb{os.getpid()}"[:15]
    try:
        sh("ip", "netns", "add", hosts.a)
        sh("ip", "netns", "add", hosts.b)
        sh("ip", "link", "add", veth_a, "type", "veth", "peer", "name", veth_b)
        for ns, dev, ip in ((hosts.a, veth_a, hosts.ip_a), (hosts.b, veth_b, hosts.ip_b)):
            sh("ip", "link", "set", dev, "netns", ns)
            sh("ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", dev)
            sh("ip", "-n", ns, "link", "set", dev, "up")
            sh("ip", "-n", ns, "link", "set", "lo", "up")
            if not block_udp:
                continue
            # drop every UDP packet crossing the link, both ways
            nft = ("ip", "netns", "exec", ns, "nft")
            sh(*nft, "add", "table", "inet", "eggs")
            for chain, hook, iface in (("in", "input", "iifname"), ("out", "output", "oifname")):
                sh(*nft, f"add chain inet eggs {chain} {{ type filter hook {hook} priority 0; }}")
                sh(*nft, "add", "rule", "inet", "eggs", chain, iface, dev, "meta", "l4proto",
                   "udp", "drop")  # fmt: skip
        yield hosts
    finally:
        for ns in (hosts.a, hosts.b):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=30)


PROBE = """
import socket, sys
kind = socket.SOCK_DGRAM if sys.argv[1] == "udp" else socket.SOCK_STREAM
s = socket.socket(socket.AF_INET, kind); s.settimeout(2)
try:
    if kind == socket.SOCK_DGRAM:
        s.bind((sys.argv[2], 9999)); s.recvfrom(10); print("got")
    else:
        s.bind((sys.argv[2], 9998)); s.listen(); s.accept(); print("got")
except OSError:
    print("nothing")
"""


def test_the_namespaces_really_block_udp_and_pass_tcp(udp_blocked_hosts: Hosts) -> None:
    h = udp_blocked_hosts
    for proto, port, kind in (("udp", 9999, socket.SOCK_DGRAM), ("tcp", 9998, socket.SOCK_STREAM)):
        listener = subprocess.Popen(
            ["ip", "netns", "exec", h.a, "python3", "-c", PROBE, proto, h.ip_a],
            stdout=subprocess.PIPE,
            text=True,
        )
        time.sleep(0.5)
        send = (
            f"import socket; s=socket.socket(socket.AF_INET, {int(kind)}); s.settimeout(2)\n"
            f"try:\n s.connect(('{h.ip_a}', {port})); s.send(b'x')\nexcept OSError: pass"
        )
        h.run(h.b, "python3", "-c", send)
        out, _ = listener.communicate(timeout=10)
        assert out.strip() == ("nothing" if proto == "udp" else "got")


def peer_of(profile: Path, address: str) -> dict[str, Any] | None:
    for peer in cli_json(profile, "peers", passphrase=PASS):
        if peer["address"] == address and peer["state"] == "connected":
            return dict(peer)
    return None


def test_connection_comes_up_over_websocket_when_udp_is_blocked(
    tmp_path: Path, udp_blocked_hosts: Hosts
) -> None:
    exchange_over_the_direct_path(tmp_path, udp_blocked_hosts, udp_works=False)


def test_peers_on_one_lan_take_the_faster_direct_path(tmp_path: Path, lan_hosts: Hosts) -> None:
    """UDP works (the DHT joins, WebRTC could connect), but both hosts share a LAN:
    the direct WebSocket path is tried first because it is the faster one there."""
    exchange_over_the_direct_path(tmp_path, lan_hosts, udp_works=True)


def exchange_over_the_direct_path(tmp_path: Path, h: Hosts, *, udp_works: bool) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    extra = ("--bootstrap", f"{h.ip_a}:47000") if udp_works else ()
    cli_json(a, "init", "--name", "Alice", passphrase=PASS)
    cli_json(b, "init", "--name", "Bob", passphrase=PASS)
    daemons = [
        Daemon(a, "--listen", f"{h.ip_a}:47000", "--no-lan", passphrase=PASS,
               prefix=("ip", "netns", "exec", h.a)),
        Daemon(b, "--listen", f"{h.ip_b}:0", "--no-lan", *extra, passphrase=PASS,
               prefix=("ip", "netns", "exec", h.b)),
    ]  # fmt: skip
    try:
        for daemon in daemons:
            daemon.wait_ready()
        alice, bob = cli_json(a, "whoami"), cli_json(b, "whoami")
        assert f"{h.ip_a}%3A" in alice["invite"]  # the invite carries A's endpoint
        cli_json(a, "contacts", "add", bob["invite"])
        cli_json(b, "contacts", "add", alice["invite"])
        sent = cli_json(b, "send", "Alice", "over TCP only")
        peer = wait_for(lambda: peer_of(b, alice["address"]))
        assert peer["path"] == "websocket"

        def arrived() -> bool:
            return any(m["text"] == "over TCP only" for m in cli_json(a, "messages", "Bob"))

        wait_for(arrived)
        wait_for(
            lambda: any(
                m["id"] == sent["id"] and m["status"] == "delivered"
                for m in cli_json(b, "messages", "Alice")
            )
        )
        if udp_works:  # the DHT joined over UDP: WebRTC was possible, the LAN path won
            wait_for(lambda: cli_json(b, "status")["dht_peers"] >= 1)
        else:
            assert cli_json(a, "status")["dht_peers"] == 0  # UDP really was blocked
    finally:
        for daemon in daemons:
            daemon.stop()
