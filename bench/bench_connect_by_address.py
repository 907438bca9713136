"""Benchmark: connect time by address (cold DHT lookup + signalling + ICE + DTLS + binding).

In one process on 127.0.0.1: a small DHT of plain nodes, a target node A that publishes
its presence, and for every round a NEW node B (nothing cached) that knows only A's
address and calls `ConnectionManager.connect(address)`: B looks A up in the DHT, signals
through the DHT RPC, runs ICE and DTLS, and both sides verify the identity binding.
Baseline in the same run: a raw aiortc data channel between two in-process peers with
the offer/answer handed over directly (no lookup, no signalling, no binding).

ICE on 127.0.0.1 needs the documented test setting (aioice skips loopback interfaces),
enabled here explicitly. Prints ONE JSON object; target: median <= 300 ms.
Usage: ``.venv/bin/python bench/bench_connect_by_address.py [--rounds N]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from aiortc import RTCConfiguration, RTCPeerConnection

from app.core.identity import IdentityKeys
from app.node.dht import DhtNode
from app.node.network import NetworkStack, enable_ice_loopback

HELPERS = 8


def identity() -> IdentityKeys:
    return IdentityKeys.from_seeds(os.urandom(32), os.urandom(32))


async def raw_setup() -> float:
    """Seconds to an open raw aiortc data channel, offer/answer passed in memory."""
    start = time.perf_counter()
    a = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    b = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    opened = asyncio.Event()
    channel = a.createDataChannel("raw")
    channel.on("open", opened.set)
    await a.setLocalDescription(await a.createOffer())
    await b.setRemoteDescription(a.localDescription)
    await b.setLocalDescription(await b.createAnswer())
    await a.setRemoteDescription(b.localDescription)
    await asyncio.wait_for(opened.wait(), 10)
    elapsed = time.perf_counter() - start
    await a.close()
    await b.close()
    return elapsed


def ms(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "median_ms": round(statistics.median(ordered) * 1000, 1),
        "p90_ms": round(ordered[int(0.9 * (len(ordered) - 1))] * 1000, 1),
        "max_ms": round(ordered[-1] * 1000, 1),
        "n": len(ordered),
    }


async def run(rounds: int) -> dict[str, object]:
    enable_ice_loopback()
    helpers = [DhtNode() for _ in range(HELPERS)]
    for node in helpers:
        await node.start("127.0.0.1", 0)
    seeds = [("127.0.0.1", helpers[0].port)]
    for node in helpers[1:]:
        await node.bootstrap(seeds)
    target = NetworkStack(identity())
    await target.start("127.0.0.1", 0)
    await target.join(seeds)

    raw = [await raw_setup() for _ in range(rounds)]
    by_address, lookup, failures = [], [], 0
    for _ in range(rounds):
        dialer = NetworkStack(identity())
        await dialer.start("127.0.0.1", 0)
        await dialer.dht.bootstrap(seeds)  # joined, but nothing about A cached
        try:
            start = time.perf_counter()
            found = await dialer.presence(target.address, fresh=True)
            lookup.append(time.perf_counter() - start)
            assert found, "presence lookup failed"
            dialer._presence_cache.clear()  # connect() must do its own cold lookup
            start = time.perf_counter()
            conn = await dialer.manager.connect(target.address, keep=False)
            by_address.append(time.perf_counter() - start)
            assert conn.path == "webrtc" and conn.peer_address == target.address
        except Exception:
            failures += 1
        finally:
            await dialer.stop()
        await asyncio.sleep(0.05)
    await target.stop()
    for node in helpers:
        node.stop()
    return {
        "benchmark": "connect_by_address",
        "dht_nodes": HELPERS + 2,
        "rounds": rounds,
        "connect_by_address_cold": ms(by_address),
        "presence_lookup_alone": ms(lookup),
        "baseline_raw_aiortc_setup": ms(raw),
        "failures": failures,
        "target_median_ms": 300,
        "meets_target": bool(by_address) and statistics.median(by_address) <= 0.3,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(run(args.rounds))))


if __name__ == "__main__":
    main()
