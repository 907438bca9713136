"""Benchmark: closing a relayed WebRTC connection once its TURN server is gone. Prints ONE
JSON object.

A relay-only connection is made through a real coturn on loopback (the entry as a user
types it, parsed by the node), coturn is killed (the server or the network went away),
and `WebRTCConnection.close()` is timed. Before, close awaited aiortc's `pc.close()`,
which deletes the TURN allocation and, with no server to answer, waits for aioice to give
up (a STUN transaction retried for ~40 s): a node's stop took 65 s with two daemons in
network namespaces. Now close waits `PC_CLOSE_WAIT` seconds and the rest goes on in the
background. Baseline in the same run, alternating: `PC_CLOSE_WAIT = inf` (the old wait).

Usage: ``.venv/bin/python bench/bench_close_turn_gone.py [--rounds 2]`` (needs coturn).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import aioice.ice

from app.core.identity import IdentityKeys
from app.node.transport import webrtc
from app.node.transport.base import TransportSettings
from app.node.transport.ice_urls import ice_servers_of

PASSWORD = "p@ss:w0rd"


class Signaller:
    """In-memory signalling: the offer goes straight to the responder."""

    def __init__(self) -> None:
        self.handlers: dict[str, object] = {}

    async def send_signal(self, address: str, payload: bytes) -> bytes | None:
        handler = self.handlers[address]
        return await handler(payload)  # type: ignore[operator, no-any-return]


def start_coturn() -> tuple[int, subprocess.Popen[bytes]]:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    binary = shutil.which("turnserver") or "turnserver"
    args = [
        *(binary, "-n", "--listening-ip=127.0.0.1", "--relay-ip=127.0.0.1"),
        *(f"--listening-port={port}", "--lt-cred-mech", f"--user=u:{PASSWORD}", "--realm=t"),
        *("--no-tls", "--no-dtls", "--no-cli", "--allow-loopback-peers", "--fingerprint"),
    ]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.5)
    return port, proc


async def one_close(wait: float) -> dict[str, object]:
    webrtc.PC_CLOSE_WAIT = wait
    port, proc = start_coturn()
    try:
        servers = ice_servers_of([f"turn:u:{PASSWORD}@127.0.0.1:{port}"])
        settings = TransportSettings(ice_servers=servers, relay_only=True, webrtc_timeout=10)
        alice = IdentityKeys.from_seeds(os.urandom(32), os.urandom(32))
        bob = IdentityKeys.from_seeds(os.urandom(32), os.urandom(32))
        inbound: asyncio.Queue[webrtc.WebRTCConnection] = asyncio.Queue()
        responder = webrtc.WebRTCResponder(bob, inbound.put_nowait, settings=settings)
        signaller = Signaller()
        signaller.handlers[bob.public.address] = responder.handle_signal
        conn = await webrtc.dial_webrtc(
            alice,
            bob.public.address,
            signaller,
            settings=settings,
        )
        other = await asyncio.wait_for(inbound.get(), 10)
        path = conn.path
    finally:
        proc.terminate()
        proc.wait(5)
    started = time.perf_counter()
    await conn.close()
    seconds = time.perf_counter() - started
    await other.close()
    return {"path": path, "close_s": round(seconds, 2)}


async def main(rounds: int) -> dict[str, object]:
    aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: ["127.0.0.1"] if use_ipv4 else []
    runs: list[dict[str, object]] = []
    bounded = webrtc.PC_CLOSE_WAIT
    for index in range(rounds):
        for name, wait in (("before_unbounded", math.inf), ("after", bounded)):
            result = await one_close(wait)
            runs.append({"round": index + 1, "code": name, **result})
    return {"bench": "close_relayed_connection_turn_gone", "runs": runs}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=2)
    print(json.dumps(asyncio.run(main(parser.parse_args().rounds))))
