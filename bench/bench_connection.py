"""Benchmark: RTT and connect time of the authenticated connection vs a raw aiortc channel.

Everything runs in one process over loopback. Baselines are measured in the same run:
a raw aiortc data channel (no binding, no framing) for RTT and set-up time. Prints ONE
JSON object. Usage: ``.venv/bin/python bench/bench_connection.py [--rounds N]``.

Like the tests, this patches aioice to gather a 127.0.0.1 host candidate (aioice skips
loopback interfaces) and disables mDNS; production code never does.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import aioice.ice
from aiortc import RTCConfiguration, RTCPeerConnection

from app.core.identity import IdentityKeys
from app.node.transport.base import AuthenticatedConnection
from app.node.transport.webrtc import WebRTCConnection, WebRTCResponder, dial_webrtc
from app.node.transport.websocket import WebSocketListener, dial_websocket

PAYLOAD = b"x" * 64


def _loopback_only() -> None:
    class _NoMdns:
        async def resolve(self, hostname: str, timeout: float = 1.0) -> None:
            return None

        async def close(self) -> None:
            return None

    async def no_mdns(subscriber: object) -> _NoMdns:
        return _NoMdns()

    aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: ["127.0.0.1"]
    aioice.ice.get_or_create_mdns_protocol = no_mdns  # type: ignore[assignment]


def _ms(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "median_ms": round(statistics.median(ordered), 4),
        "p90_ms": round(ordered[int(len(ordered) * 0.9) - 1], 4),
        "n": len(ordered),
    }


class _Signaller:
    def __init__(self, handler: Callable[[bytes], Awaitable[bytes]]) -> None:
        self.handler = handler

    async def send_signal(self, peer: str, payload: bytes) -> bytes | None:
        return await self.handler(payload)


async def raw_pair() -> tuple[Any, Any, list[RTCPeerConnection], float]:
    """A raw aiortc channel pair; returns (offerer channel, answerer channel, pcs, setup s)."""
    start = time.perf_counter()
    config = RTCConfiguration(iceServers=[])
    a, b = RTCPeerConnection(config), RTCPeerConnection(config)
    channel_a = a.createDataChannel("raw", ordered=True)
    opened = asyncio.Event()
    got: dict[str, Any] = {}

    @b.on("datachannel")
    def on_channel(channel: Any) -> None:
        got["b"] = channel
        opened.set()

    await a.setLocalDescription(await a.createOffer())
    await b.setRemoteDescription(a.localDescription)
    await b.setLocalDescription(await b.createAnswer())
    await a.setRemoteDescription(b.localDescription)
    await asyncio.wait_for(opened.wait(), 10)
    if channel_a.readyState != "open":
        ready = asyncio.Event()
        channel_a.on("open", ready.set)
        await asyncio.wait_for(ready.wait(), 10)
    return channel_a, got["b"], [a, b], time.perf_counter() - start


async def raw_rtt(rounds: int) -> tuple[list[float], list[float]]:
    setups: list[float] = []
    channel_a, channel_b, pcs, setup = await raw_pair()
    setups.append(setup)
    channel_b.on("message", channel_b.send)  # echo
    replies: asyncio.Queue[bytes] = asyncio.Queue()
    channel_a.on("message", replies.put_nowait)
    samples = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        channel_a.send(PAYLOAD)
        await replies.get()
        samples.append((time.perf_counter() - t0) * 1000)
    for pc in pcs:
        await pc.close()
    for _ in range(4):
        _, _, pcs, setup = await raw_pair()
        setups.append(setup)
        for pc in pcs:
            await pc.close()
    return samples, [s * 1000 for s in setups]


async def _echo(conn: AuthenticatedConnection) -> None:
    async for message in conn:
        await conn.send(message)


async def authenticated_rtt(
    conn: AuthenticatedConnection, peer: AuthenticatedConnection, rounds: int
) -> tuple[list[float], list[float]]:
    echo = asyncio.get_running_loop().create_task(_echo(peer))
    samples = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        await conn.send(PAYLOAD)
        await conn.recv()
        samples.append((time.perf_counter() - t0) * 1000)
    pings = [await conn.ping() for _ in range(rounds)]
    echo.cancel()
    return samples, pings


async def webrtc_bench(rounds: int) -> dict[str, Any]:
    alice = IdentityKeys.from_seeds(os.urandom(32), os.urandom(32))
    bob = IdentityKeys.from_seeds(os.urandom(32), os.urandom(32))
    inbound: asyncio.Queue[WebRTCConnection] = asyncio.Queue()
    responder = WebRTCResponder(bob, inbound.put_nowait)
    signaller = _Signaller(responder.handle_signal)
    setups = []
    conn = peer = None
    for i in range(5):
        t0 = time.perf_counter()
        conn = await dial_webrtc(alice, bob.public.address, signaller)
        peer = await inbound.get()
        setups.append((time.perf_counter() - t0) * 1000)
        if i < 4:
            await conn.close()
            await peer.wait_closed()
    assert conn is not None and peer is not None
    echo, pings = await authenticated_rtt(conn, peer, rounds)
    await conn.close()
    return {"echo": echo, "ping": pings, "setup": setups}


async def websocket_bench(rounds: int) -> dict[str, Any]:
    alice = IdentityKeys.from_seeds(os.urandom(32), os.urandom(32))
    bob = IdentityKeys.from_seeds(os.urandom(32), os.urandom(32))
    inbound: asyncio.Queue[AuthenticatedConnection] = asyncio.Queue()
    listener = WebSocketListener(bob, inbound.put_nowait)
    await listener.start("127.0.0.1", 0)
    setups = []
    conn = peer = None
    for i in range(5):
        t0 = time.perf_counter()
        conn = await dial_websocket(alice, bob.public.address, listener.endpoint)
        peer = await inbound.get()
        setups.append((time.perf_counter() - t0) * 1000)
        if i < 4:
            await conn.close()
            await peer.wait_closed()
    assert conn is not None and peer is not None
    echo, pings = await authenticated_rtt(conn, peer, rounds)
    await conn.close()
    await listener.close()
    return {"echo": echo, "ping": pings, "setup": setups}


async def main(rounds: int) -> dict[str, Any]:
    _loopback_only()
    raw_samples, raw_setups = await raw_rtt(rounds)
    rtc = await webrtc_bench(rounds)
    ws = await websocket_bench(rounds)
    raw_median = statistics.median(raw_samples)
    return {
        "benchmark": "bench_connection",
        "payload_bytes": len(PAYLOAD),
        "rounds": rounds,
        "baseline_raw_aiortc_rtt": _ms(raw_samples),
        "authenticated_webrtc_echo_rtt": _ms(rtc["echo"]),
        "authenticated_webrtc_ping_rtt": _ms(rtc["ping"]),
        "rtt_ratio_vs_raw": round(statistics.median(rtc["echo"]) / raw_median, 3),
        "rtt_ratio_target": 1.5,
        "baseline_raw_aiortc_setup": _ms(raw_setups),
        "authenticated_webrtc_connect": _ms(rtc["setup"]),
        "websocket_noise_echo_rtt": _ms(ws["echo"]),
        "websocket_noise_connect": _ms(ws["setup"]),
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=500)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(main(args.rounds))))
