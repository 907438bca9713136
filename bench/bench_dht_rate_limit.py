"""Answers a rate-limited DHT flooder gets, and the node's CPU meanwhile: old gate vs new.

One run, on loopback only. Each round starts a victim node in a child process (so its
CPU time is its own): a `DhtNode` with the node's `AnomalyMonitor` as observer and gate,
as `app.node.guard` installs them, and a flooder's address rate-limited by the policy
(the monitor is not started, so no evaluation quarantines it during the round: this
measures the rate-limited phase, which lasted 14 s at the median for a 150/s flood).
The flooder sends `--rate` requests a second for `--seconds` (a mix of ping,
find_node, find_value, stun; or stores of valid records under made-up identities),
while an honest sender in normal standing sends `--honest-rate` requests a second.

* ``old``: the gate before this change, which held back quarantined senders only;
* ``new``: `AnomalyMonitor.dht_blocked` (rate-limited senders within the policy's
  token bucket).

Rounds alternate old and new (`--rounds` each) so both see the same machine. Reported
per round: answers a second to the flooder (over the flood, and after its first 2 s,
once the burst is spent), the honest sender's answers, and the victim's CPU-seconds a
second over the flood.

Then `--live` seconds of the same 150/s lookup flood against a node whose monitor runs
(the shipped detector rate-limits, then quarantines the flooder): answers per standing,
old gate then new (the victim in this process; standings read at the end of each second).

And without a network: the honest DHT senders of `bench/bench_restarts.py` (restarted
again and again, and the same without restarts), were each rate-limited in error for a
whole hour: the share of their requests over the budget (unanswered), spreading each
second's requests over that second. And the detector's score of a 150/s
invalid-signature store flood after 1-10 s with every record checked (old) or 5 a
second (new: the rest unanswered, never validated).

Prints one JSON object. Not a test: nothing here asserts.

    .venv/bin/python bench/bench_dht_rate_limit.py [--rate 150] [--seconds 8] [--rounds 2]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import umsgpack  # type: ignore[import-untyped]

from app.core.peer_features import Signal
from app.core.peer_policy import Admission, PeerPolicy, PolicySettings, Standing
from app.core.records import RecordKind
from app.node.anomaly import AnomalyMonitor, Detector, dht_peer
from app.node.dht import DhtNode
from tools.fuzz.record_flood import made_up_record

HOST = "127.0.0.1"
REQUEST, RESPONSE = b"\x00", b"\x01"


# ------------------------------------------------------------------ the victim (child)


async def victim(gate: str, flooder_port: int) -> None:
    monitor = AnomalyMonitor(Detector.load(), lambda event: None)
    detector = monitor.detector
    flooder = dht_peer((HOST, flooder_port))
    monitor.policy.assess(
        flooder, (detector.limit_for("dht") + detector.quarantine) / 2, time.monotonic()
    )
    assert monitor.policy.standing(flooder) is Standing.RATE_LIMITED

    def old_gate(address: tuple[str, int]) -> bool:
        return monitor.policy.standing(dht_peer(address)) is Standing.QUARANTINED

    node = DhtNode()
    node.set_observer(monitor.on_dht, monitor.dht_blocked if gate == "new" else old_gate)
    await node.start(HOST, 0)
    print(node.port, flush=True)
    loop = asyncio.get_running_loop()
    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        if line.strip() != "cpu":
            break
        times = os.times()
        print(json.dumps([times.user + times.system, len(node._server.storage)]), flush=True)
    node.stop()


# ------------------------------------------------------------------ the senders (parent)


class Sender(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.node_id = os.urandom(20)
        self.sent: set[bytes] = set()
        self.answered = 0
        self.times: list[float] = []
        self.transport: Any = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: Any) -> None:
        if data[:1] == RESPONSE and data[1:21] in self.sent:
            self.sent.discard(data[1:21])
            self.answered += 1
            self.times.append(time.monotonic())

    def send(self, port: int, request: list[Any]) -> None:
        msg_id = os.urandom(20)
        self.sent.add(msg_id)
        self.transport.sendto(REQUEST + msg_id + umsgpack.packb(request), (HOST, port))


def lookup(sender: Sender, i: int) -> list[Any]:
    kinds: list[list[Any]] = [
        ["ping", [sender.node_id]],
        ["find_node", [sender.node_id, os.urandom(20)]],
        ["find_value", [sender.node_id, os.urandom(20)]],
        ["stun", []],
    ]
    return kinds[i % len(kinds)]


async def pace(rate: float, seconds: float, send: Any) -> None:
    """Call `send(i)` `rate` times a second for `seconds`, in 10-ms steps."""
    start, sent = time.monotonic(), 0
    while (elapsed := time.monotonic() - start) < seconds:
        while sent < rate * elapsed:
            send(sent)
            sent += 1
        await asyncio.sleep(0.01)


async def one_round(gate: str, kind: str, args: argparse.Namespace) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    _, flooder = await loop.create_datagram_endpoint(Sender, local_addr=(HOST, 0))
    _, honest = await loop.create_datagram_endpoint(Sender, local_addr=(HOST, 0))
    flooder_port = flooder.transport.get_extra_info("sockname")[1]
    count = int(args.rate * args.seconds) + 1
    records = (
        [made_up_record(RecordKind.MAILBOX, 6 * 24 * 3600.0, 200) for _ in range(count)]
        if kind == "store"
        else []
    )
    child = subprocess.Popen(
        [sys.executable, __file__, "--victim", gate, "--flooder-port", str(flooder_port)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
    )
    assert child.stdin is not None and child.stdout is not None
    try:
        port = int(await asyncio.to_thread(child.stdout.readline))

        async def cpu() -> tuple[float, int]:
            child.stdin.write("cpu\n")  # type: ignore[union-attr]
            child.stdin.flush()  # type: ignore[union-attr]
            used, held = json.loads(await asyncio.to_thread(child.stdout.readline))  # type: ignore[union-attr]
            return float(used), int(held)

        def flood(i: int) -> None:
            if kind == "store":
                r = records[i % len(records)]
                flooder.send(port, ["store", [flooder.node_id, r.key, r.encode()]])
            else:
                flooder.send(port, lookup(flooder, i))

        await asyncio.sleep(0.5)
        cpu_before, _ = await cpu()
        started = time.monotonic()
        await asyncio.gather(
            pace(args.rate, args.seconds, flood),
            pace(args.honest_rate, args.seconds, lambda i: honest.send(port, lookup(honest, i))),
        )
        await asyncio.sleep(0.5)  # the last answers
        elapsed = time.monotonic() - started
        cpu_after, held = await cpu()
        return {
            "gate": gate,
            "flood": kind,
            "flooder_sent_per_s": round(count / args.seconds, 1),
            "flooder_answers_per_s": round(flooder.answered / args.seconds, 2),
            "flooder_answers_per_s_after_2s": round(
                sum(1 for t in flooder.times if t >= started + 2.0) / (args.seconds - 2.0), 2
            ),
            "honest_sent": int(args.honest_rate * args.seconds),
            "honest_answered": honest.answered,
            "victim_cpu_s_per_s": round((cpu_after - cpu_before) / elapsed, 4),
            "records_held": held,
        }
    finally:
        child.stdin.close()
        await asyncio.to_thread(child.wait)
        flooder.transport.close()
        honest.transport.close()


async def live(gate: str, seconds: int, rate: float) -> dict[str, list[int]]:
    """Answers a second to a flooder judged by the running detector, by its standing."""
    monitor = AnomalyMonitor(Detector.load(), lambda event: None)

    def old_gate(address: tuple[str, int]) -> bool:
        return monitor.policy.standing(dht_peer(address)) is Standing.QUARANTINED

    node = DhtNode()
    node.set_observer(monitor.on_dht, monitor.dht_blocked if gate == "new" else old_gate)
    await node.start(HOST, 0)
    monitor.start()
    loop = asyncio.get_running_loop()
    _, flooder = await loop.create_datagram_endpoint(Sender, local_addr=(HOST, 0))
    peer = dht_peer(flooder.transport.get_extra_info("sockname")[:2])
    by_standing: dict[str, list[int]] = {}
    start, sent = time.monotonic(), 0
    try:
        for second in range(seconds):
            before = flooder.answered
            while (elapsed := time.monotonic() - start) < second + 1:
                while sent < rate * elapsed:
                    flooder.send(node.port, lookup(flooder, sent))
                    sent += 1
                await asyncio.sleep(0.01)
            standing = monitor.policy.standing(peer).value
            by_standing.setdefault(standing, []).append(flooder.answered - before)
    finally:
        await monitor.stop()
        node.stop()
        flooder.transport.close()
    return by_standing


def honest_over_budget(settings: PolicySettings, restarts: bool) -> dict[str, Any]:
    """`bench_restarts`' honest DHT senders, each held at the rate limit for its hour."""
    from bench.bench_restarts import traces

    population = traces(400, restarts)
    requests = unanswered = peers_hit = 0
    worst = 0.0
    peer = dht_peer((HOST, 4000))
    for trace in population:
        policy = PeerPolicy(settings)
        policy.assess(peer, (settings.limit_for(peer) + settings.quarantine_score) / 2, 0.0)
        per_second = trace.counts[:, Signal.DHT_REQUEST] + trace.counts[:, Signal.DHT_STORE]
        mine = over = 0
        for second, count in enumerate(per_second.astype(int)):
            for j in range(count):
                mine += 1
                if policy.admit(peer, second + j / count) is not Admission.DELIVER:
                    over += 1
        requests, unanswered, peers_hit = requests + mine, unanswered + over, peers_hit + (over > 0)
        worst = max(worst, over / mine if mine else 0.0)
    return {
        "peers": len(population),
        "requests": requests,
        "unanswered": unanswered,
        "unanswered_share": round(unanswered / max(requests, 1), 5),
        "peers_with_any_unanswered": peers_hit,
        "worst_peer_unanswered_share": round(worst, 4),
    }


def invalid_signature_scores(detector: Detector) -> dict[str, list[float]]:
    """Scores of a 150/s store flood whose records (150/s or 5/s checked) fail to verify."""
    import numpy as np

    from app.core.peer_features import PeerFeatures

    out: dict[str, list[float]] = {}
    for label, checked in (("checked_150_per_s", 150.0), ("checked_5_per_s", 5.0)):
        scores = []
        for seconds in (1, 2, 5, 10):
            features, peer = PeerFeatures(), dht_peer((HOST, 4000))
            for tenth in range(seconds * 10):
                now = 1000.0 + tenth / 10
                features.observe(peer, Signal.DHT_STORE, now, 15.0)
                features.observe(peer, Signal.RECORD_REJECTED, now, checked / 10)
                features.observe(peer, Signal.INVALID_SIGNATURE, now, checked / 10)
            row = features.row(peer, 1000.0 + seconds)
            assert row is not None
            matrix = np.asarray([row.values], dtype=np.float32)
            scores.append(round(float(detector.scores(matrix)[0]), 6))
        out[label] = scores
    return out


async def main(args: argparse.Namespace) -> None:
    rounds: list[dict[str, Any]] = []
    for kind in args.floods:
        for _ in range(args.rounds):
            for gate in ("old", "new"):
                rounds.append(await one_round(gate, kind, args))
    summary = {
        f"{kind}_{gate}": {
            key: statistics.median(
                r[key] for r in rounds if r["gate"] == gate and r["flood"] == kind
            )
            for key in (
                "flooder_answers_per_s",
                "flooder_answers_per_s_after_2s",
                "honest_answered",
                "victim_cpu_s_per_s",
            )
        }
        for kind in args.floods
        for gate in ("old", "new")
    }
    detector = Detector.load()
    settings = detector.policy_settings()
    running = {}
    if args.live:
        for gate in ("old", "new"):
            per_second = await live(gate, args.live, args.live_rate)
            running[gate] = {
                standing: {"seconds": len(counts), "answers": sum(counts)}
                for standing, counts in per_second.items()
            }
    out = {
        "policy_rate": settings.rate,
        "policy_burst": settings.burst,
        "seconds": args.seconds,
        "median": summary,
        "honest_dht_senders_rate_limited_for_an_hour": {
            "restarted": honest_over_budget(settings, True),
            "not_restarted": honest_over_budget(settings, False),
        },
        "live_detector_answers_by_standing": running,
        "invalid_signature_flood_scores_after_1_2_5_10_s": invalid_signature_scores(detector),
        "quarantine_score": detector.quarantine,
        "rounds": rounds,
    }
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=150.0)
    parser.add_argument("--honest-rate", type=float, default=20.0)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--live", type=int, default=20, help="seconds (0: skip)")
    parser.add_argument("--live-rate", type=float, default=150.0)
    parser.add_argument("--floods", nargs="+", default=["lookup", "store"])
    parser.add_argument("--victim", choices=["old", "new"], help=argparse.SUPPRESS)
    parser.add_argument("--flooder-port", type=int, help=argparse.SUPPRESS)
    parsed = parser.parse_args()
    if parsed.victim:
        asyncio.run(victim(parsed.victim, parsed.flooder_port))
    else:
        asyncio.run(main(parsed))
