"""Benchmark: seconds from a wake to "connected again", with and without wake handling.

Two real network stacks (DHT, direct Noise-over-WebSocket path) in one process on
loopback; Alice's `WakeWatcher` reads clocks that report an hour's suspend (injected
in-process: no machine sleeps). The baseline is the same run with the watcher's report
going nowhere (the node before wake handling). Prints ONE JSON object.

* ``dead_link``: Alice's connection to Bob died while she slept (Bob closed his side;
  nothing reaches her). A TCP relay between them is cut at the wake, as if the sleep
  ended then: from her side the link is silent. She must notice and dial again.
* ``long_backoff``: Bob had left and Alice's next attempt was at the absent cap (60-120 s
  away, as for a peer retried for long); Bob is back when she wakes.

Usage: ``.venv/bin/python bench/bench_wake.py [--rounds N] [--baseline-rounds M]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.core.identity import IdentityKeys
from app.core.wake import ClockReading
from app.node.api import NetworkError
from app.node.network import NetworkStack
from app.node.transport import ConnectionStateChanged, PeerState, TransportEvent
from app.node.wake import WakeWatcher, read_clocks


class SleepyClocks:
    """The real clocks plus `slept` seconds on the clocks that count a suspend."""

    def __init__(self) -> None:
        self.slept = 0.0

    def __call__(self) -> ClockReading:
        real = read_clocks()
        boot = None if real.since_boot is None else real.since_boot + self.slept
        return ClockReading(real.monotonic, boot, real.wall + self.slept)


class Relay:
    """A TCP relay on loopback; `cut()` makes the pairs open now silent black holes (no
    byte, no FIN crosses), while new pairs relay normally."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.cut_pairs: set[int] = set()
        self.pairs = 0
        self.server: asyncio.Server | None = None
        self.closed = asyncio.Event()

    async def start(self) -> str:
        self.server = await asyncio.start_server(self._pair, "127.0.0.1", 0)
        return f"127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    def cut(self) -> None:
        self.cut_pairs.update(range(self.pairs))

    async def _pair(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        pair = self.pairs
        self.pairs += 1
        up_reader, up_writer = await asyncio.open_connection(*self.target)

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            while data := await src.read(65536):
                if pair not in self.cut_pairs:
                    dst.write(data)
            if pair in self.cut_pairs:
                await self.closed.wait()  # a black hole never closes (until the round ends)
            dst.close()

        await asyncio.gather(pump(reader, up_writer), pump(up_reader, writer),
                             return_exceptions=True)  # fmt: skip

    async def close(self) -> None:
        self.closed.set()
        if self.server is not None:
            self.server.close()
        await asyncio.sleep(0.05)


def new_identity() -> IdentityKeys:
    return IdentityKeys.from_seeds(os.urandom(32), os.urandom(32))


async def wait_for(predicate: Any, timeout: float = 200.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.01)


async def start_on(stack: NetworkStack, port: int) -> None:
    for _ in range(100):  # a stopped stack's socket closes on a later turn of the loop
        try:
            await stack.start("127.0.0.1", port)
            return
        except NetworkError:
            await asyncio.sleep(0.05)
    raise RuntimeError("port stays taken")


async def one_round(scenario: str, handled: bool) -> float:
    """Seconds from the wake to Alice's connection to Bob being up again."""
    node = NetworkStack(new_identity()).settings  # what the node runs with
    settings = replace(node, prefer_websocket=True)
    if scenario == "long_backoff":
        settings = replace(settings, backoff_initial=node.backoff_max_absent, absent_after=0.0)
    alice, bob_keys = NetworkStack(new_identity(), settings=settings), new_identity()
    bob = NetworkStack(bob_keys, settings=replace(node, prefer_websocket=True))
    clocks = SleepyClocks()
    watcher = WakeWatcher(clocks=clocks, addresses=frozenset)
    if handled:
        watcher.subscribe(alice.network_changed)
    events: list[tuple[float, TransportEvent]] = []
    alice.manager.subscribe(lambda e: events.append((time.monotonic(), e)))
    relay: Relay | None = None
    try:
        await alice.start("127.0.0.1", 0)
        await bob.start("127.0.0.1", 0)
        port = bob.dht.port
        relay = Relay(("127.0.0.1", port))
        alice.note_endpoints(bob.address, [await relay.start()])
        await alice.manager.connect(bob.address, keep=True)
        watcher.start()
        # the sleep begins at any point of the keepalive cycle
        await asyncio.sleep(0.5 + random.random() * node.keepalive_interval)
        if scenario == "dead_link":
            relay.cut()  # the sleep ends now, with Alice's link dead ...
            bob_side = bob.manager.connection(alice.address)
            assert bob_side is not None
            await bob_side.close("keepalive timeout", send_close=False)  # ... Bob gave up
        else:
            await bob.stop()  # Bob leaves; Alice schedules her next attempt (60-120 s)
            await wait_for(lambda: any(isinstance(e, ConnectionStateChanged)
                                       and e.state is PeerState.WAITING_TO_RETRY
                                       for _, e in events))  # fmt: skip
            bob = NetworkStack(bob_keys, settings=replace(node, prefer_websocket=True))
            await start_on(bob, port)  # ... and is back when Alice wakes
        woke = time.monotonic()
        clocks.slept = 3600.0
        mark = len(events)

        def reconnected() -> float | None:
            for at, event in events[mark:]:
                if isinstance(event, ConnectionStateChanged) and event.state is PeerState.CONNECTED:
                    return at
            return None

        await wait_for(lambda: reconnected() is not None)
        at = reconnected()
        assert at is not None
        return at - woke
    finally:
        await watcher.stop()
        await alice.stop()
        await bob.stop()
        if relay is not None:
            await relay.close()


def summary(samples: list[float]) -> dict[str, Any]:
    return {
        "median_s": round(statistics.median(samples), 2),
        "max_s": round(max(samples), 2),
        "samples_s": [round(s, 2) for s in samples],
    }


async def main(rounds: int, baseline_rounds: int) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for scenario in ("dead_link", "long_backoff"):
        after = [await one_round(scenario, True) for _ in range(rounds)]
        before = [await one_round(scenario, False) for _ in range(baseline_rounds)]
        result[scenario] = {"with_wake_handling": summary(after), "baseline": summary(before)}
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--baseline-rounds", type=int, default=3)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(main(args.rounds, args.baseline_rounds))))
