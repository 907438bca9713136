"""Benchmark: a WebRTC dial while the configured TURN server is down. Prints ONE JSON object.

Both sides have a real coturn on loopback configured (the entry as a user types it,
parsed by the node), and coturn is stopped (the server or its port went away). Each
round dials once with the old configuration (the TURN server always in it: aioice waits
up to 5 s per side for its allocation) and once with the node's `RelayWatch` on each side
(it asked the server once at start, found it silent, and leaves it out), alternating.
Signalling answers are limited to the DHT's signal timeout, as between two nodes: the
answering side's 5 s wait exceeded it, so the old dial failed after ~8 s. Then coturn is
started again on the same port and a relay-only dial through the watch is timed once the
watch has seen it back (a pair that needs the relay gets it again).

Usage: ``.venv/bin/python bench/bench_turn_down.py [--rounds 3]`` (needs coturn).
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.core.identity import IdentityKeys
from app.node.dht import DhtNode
from app.node.network import enable_ice_loopback
from app.node.transport import webrtc
from app.node.transport.base import ConnectFailed, TransportSettings
from app.node.transport.ice_urls import ice_servers_of
from app.node.transport.relay_watch import RelayWatch

PASSWORD = "p@ss:w0rd"
SIGNAL_TIMEOUT = float(inspect.signature(DhtNode.send_signal).parameters["timeout"].default)


class Signaller:
    """In-memory signalling, answers limited to the DHT's signal timeout."""

    def __init__(self) -> None:
        self.handlers: dict[str, object] = {}

    async def send_signal(self, address: str, payload: bytes) -> bytes | None:
        handler = self.handlers[address]
        try:
            return await asyncio.wait_for(handler(payload), SIGNAL_TIMEOUT)  # type: ignore[operator, no-any-return]
        except TimeoutError:
            return None


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_coturn(port: int) -> subprocess.Popen[bytes]:
    binary = shutil.which("turnserver") or "turnserver"
    args = [
        *(binary, "-n", "--listening-ip=127.0.0.1", "--relay-ip=127.0.0.1"),
        *(f"--listening-port={port}", "--lt-cred-mech", f"--user=u:{PASSWORD}", "--realm=t"),
        *("--no-tls", "--no-dtls", "--no-cli", "--allow-loopback-peers", "--fingerprint"),
        *("--min-port=49160", "--max-port=49260"),
    ]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.0)
    return proc


def identity() -> IdentityKeys:
    return IdentityKeys.from_seeds(os.urandom(32), os.urandom(32))


async def dial(a: TransportSettings, b: TransportSettings) -> tuple[float, str]:
    """Seconds to an open, authenticated connection (or to the failure), and the path."""
    me, them = identity(), identity()
    responder = webrtc.WebRTCResponder(them, lambda conn: None, settings=b)
    signaller = Signaller()
    signaller.handlers[them.public.address] = responder.handle_signal
    start = time.monotonic()
    try:
        conn = await webrtc.dial_webrtc(me, them.public.address, signaller, settings=a)
    except ConnectFailed as exc:
        took = time.monotonic() - start
        await responder.close()
        return took, f"failed: {str(exc).rpartition(': ')[2]}"
    took = time.monotonic() - start
    path = conn.path
    await conn.close()
    await responder.close()
    return took, path


async def watched(entry: str, **kwargs: object) -> tuple[TransportSettings, RelayWatch]:
    watch = RelayWatch([entry], retry_every=1.0)
    watch.start()
    settings = TransportSettings(ice_servers=ice_servers_of([entry]), relay_watch=watch, **kwargs)  # type: ignore[arg-type]
    return settings, watch


async def main(rounds: int) -> dict[str, object]:
    enable_ice_loopback()
    port = free_udp_port()
    entry = f"turn:u:{PASSWORD}@127.0.0.1:{port}"
    old = TransportSettings(ice_servers=ice_servers_of([entry]))
    coturn = start_coturn(port)
    up_old, up_new = await dial(old, old), None
    side_a, watch_a = await watched(entry)
    side_b, watch_b = await watched(entry)
    await asyncio.sleep(0.5)
    up_new = await dial(side_a, side_b)
    coturn.terminate()
    coturn.wait(5)
    await asyncio.sleep(1.5)
    for watch in (watch_a, watch_b):  # at start, or after a dial that got no relay
        watch.start()
    while not (watch_a.problem and watch_b.problem):
        await asyncio.sleep(0.2)
    before: list[tuple[float, str]] = []
    after: list[tuple[float, str]] = []
    for _ in range(rounds):
        before.append(await dial(old, old))
        after.append(await dial(side_a, side_b))
    # the server comes back: the watches see it and a relay-only pair connects again
    coturn = start_coturn(port)
    back_at = time.monotonic()
    while watch_a.problem or watch_b.problem:
        await asyncio.sleep(0.1)
    seen_back = time.monotonic() - back_at
    relay_a = TransportSettings(side_a.ice_servers, relay_watch=watch_a, relay_only=True)
    relay_b = TransportSettings(side_b.ice_servers, relay_watch=watch_b, relay_only=True)
    relayed = await dial(relay_a, relay_b)
    for watch in (watch_a, watch_b):
        await watch.stop()
    coturn.terminate()
    coturn.wait(5)
    return {
        "benchmark": "webrtc_dial_with_turn_down",
        "signal_timeout_s": SIGNAL_TIMEOUT,
        "turn_up": {"before": up_old, "after": up_new},
        "turn_down_before_s": [round(t, 3) for t, _ in before],
        "turn_down_before_outcome": [o for _, o in before],
        "turn_down_after_s": [round(t, 3) for t, _ in after],
        "turn_down_after_outcome": [o for _, o in after],
        "turn_back_seen_after_s": round(seen_back, 2),
        "relay_only_dial_after_return": relayed,
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    print(json.dumps(asyncio.run(main(parser.parse_args().rounds))))
