"""A friend reachable only through one's own TURN server, with that server down when the
node starts (hosts and firewall of tests/integration/test_netns_turn.py: only the DHT's
and TURN's datagrams cross the link). `status` says the TURN server does not answer, and
when it is started again the node finds it within its retry and connects over the relay
by itself: no restart, no command."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from cli_helpers import Daemon, cli_json, wait_for
from test_netns_turn import (
    DHT_PORT,
    PASS,
    PASSWORD,
    RELAY_PORTS,
    TURN_PORT,
    Hosts,
    connected,
    natted_hosts,  # noqa: F401 (a fixture)
    pytestmark,  # noqa: F401 (root, iproute2, nftables and coturn, or skipped)
)


def start_coturn(h: Hosts) -> subprocess.Popen[bytes]:
    args = [
        *("ip", "netns", "exec", h.a, "turnserver", "-n"),
        *(f"--listening-ip={h.ip_a}", f"--relay-ip={h.ip_a}", f"--listening-port={TURN_PORT}"),
        *(f"--min-port={RELAY_PORTS[0]}", f"--max-port={RELAY_PORTS[1]}"),
        *("--lt-cred-mech", f"--user=u:{PASSWORD}", "--realm=test"),
        *("--no-tls", "--no-dtls", "--no-cli", "--fingerprint"),
    ]
    return subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


@pytest.mark.timeout(400)
def test_a_pair_that_needs_the_relay_gets_it_when_the_turn_server_is_back(
    tmp_path: Path,
    natted_hosts: Hosts,  # noqa: F811 (the fixture imported above)
) -> None:
    h = natted_hosts
    a, b = tmp_path / "a", tmp_path / "b"
    cli_json(a, "init", "--name", "Alice", passphrase=PASS)
    cli_json(b, "init", "--name", "Bob", passphrase=PASS)
    entry = f"turn:u:{PASSWORD}@{h.ip_a}"
    for profile in (a, b):  # both use it (set in the file: the server is down now)
        (profile / "config.json").write_text(f'{{"version": 1, "ice_servers": ["{entry}"]}}')
    alice_node = Daemon(a, "--listen", f"{h.ip_a}:{DHT_PORT}", "--no-lan", passphrase=PASS,
                        prefix=("ip", "netns", "exec", h.a))  # fmt: skip
    daemons = [alice_node]
    coturn: subprocess.Popen[bytes] | None = None
    try:
        alice_node.wait_ready()
        bob_node = Daemon(b, "--listen", f"{h.ip_b}:{DHT_PORT}", "--no-lan",
                          "--bootstrap", f"{h.ip_a}:{DHT_PORT}", passphrase=PASS,
                          prefix=("ip", "netns", "exec", h.b))  # fmt: skip
        daemons.append(bob_node)
        bob_node.wait_ready()
        alice, bob = cli_json(a, "whoami"), cli_json(b, "whoami")
        cli_json(a, "contacts", "add", bob["invite"])
        cli_json(b, "contacts", "add", alice["invite"])

        told = wait_for(lambda: cli_json(b, "status")["turn"], timeout=60)
        assert "does not answer" in told and PASSWORD not in told
        assert connected(b, alice["address"]) is None  # no path without the relay

        coturn = start_coturn(h)  # back
        peer = wait_for(lambda: connected(b, alice["address"]), timeout=150)
        assert peer["path"] == "turn"
        assert cli_json(b, "status")["turn"] == ""
        for profile in (a, b):
            assert PASSWORD not in (profile / "logs" / "node.log").read_text()
    finally:
        for daemon in daemons:
            daemon.stop()
        if coturn is not None:
            coturn.terminate()
            coturn.wait(10)
