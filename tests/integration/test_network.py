"""Three daemons in separate processes find each other through the DHT and connect.

Loopback only: every DHT bootstraps from the other local daemons, ICE servers are the
empty default, and `SCRAMBLED_EGGS_ICE_LOOPBACK=1` (the documented test setting) lets
aioice use 127.0.0.1 host candidates.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from cli_helpers import Daemon, cli_json, run_cli, wait_for

pytestmark = pytest.mark.usefixtures("ice_loopback_env")
PASS = "a passphrase for tests"
LOOPBACK = ("--listen", "127.0.0.1:0", "--no-lan")


def connected_to(profile: Path, address: str) -> dict[str, Any] | None:
    for peer in cli_json(profile, "peers", passphrase=PASS):
        if peer["address"] == address and peer["state"] == "connected" and peer["rtt_ms"]:
            return dict(peer)
    return None


@pytest.mark.slow
def test_peers_found_by_address_through_the_dht(tmp_path: Path, daemons: list[Daemon]) -> None:
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    me = {p: cli_json(p, "init", "--name", n, passphrase=PASS) for p, n in
          ((a, "Alice"), (b, "Bob"), (c, "Carol"))}  # fmt: skip
    # B and C know only A's bare address: no endpoints, no keys
    for profile in (b, c):
        cli_json(profile, "contacts", "add", me[a]["address"], "--name", "Alice", passphrase=PASS)

    daemons.append(Daemon(a, *LOOPBACK, passphrase=PASS))
    a_endpoint = daemons[-1].wait_ready()["endpoints"][0]
    daemons.append(Daemon(b, *LOOPBACK, "--bootstrap", a_endpoint, passphrase=PASS))
    b_endpoint = daemons[-1].wait_ready()["endpoints"][0]
    # C does not even bootstrap from A: it must learn A's presence through B's DHT
    daemons.append(Daemon(c, *LOOPBACK, "--bootstrap", b_endpoint, passphrase=PASS))
    daemons[-1].wait_ready()

    for profile in (b, c):
        peer = wait_for(lambda p=profile: connected_to(p, me[a]["address"]), timeout=40)
        assert peer["contact"] == "Alice"
        assert peer["path"] in ("webrtc", "websocket", "turn")
        assert peer["rtt_ms"] > 0
    # A has not added them: it lists both, by address only
    seen = {p["address"]: p for p in cli_json(a, "peers", passphrase=PASS)}
    for profile in (b, c):
        assert seen[me[profile]["address"]]["state"] == "connected"
        assert seen[me[profile]["address"]]["contact"] is None
    status = cli_json(c, "status")
    assert status["running"] and status["dht_peers"] >= 1
    text = run_cli(b, "peers", passphrase=PASS)
    assert text.returncode == 0 and "Alice" in text.stdout and "ms" in text.stdout
