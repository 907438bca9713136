"""Benchmark: one-way message latency and sustained messages/s between two daemons,
against a raw aiortc data-channel round trip measured in the same run.

Three processes besides this driver, all on 127.0.0.1: two `scrambled-eggs daemon`s
(Alice and Bob, separate profiles, WebRTC between them) and, for the baseline, a raw
aiortc echo peer (this file with ``--echo-peer``; SDP exchanged over its stdin/stdout,
``iceServers=[]``). The driver talks JSON-RPC to each daemon's control socket.

* Latency: the driver asks Alice to send one message and timestamps it; it timestamps
  Bob's `MessageAdded` event (Bob's event stream over his control socket) with the same
  clock (`time.perf_counter`, CLOCK_MONOTONIC, one per machine). A message is sent only
  after the previous one arrived, so this is the unloaded one-way latency, including
  both control-socket hops.
  The same run times a trivial request (`status`) over Alice's control socket: its
  round trip stands for the two control-socket hops, and ``between_daemons_p50_ms`` (the
  one-way p50 minus that round trip's p50) estimates the daemon-to-daemon part.
* The same run measures one durable commit on the disk the profiles were on
  (``bench/durable_commit.py``, SQLite WAL with ``synchronous=FULL`` as the profile
  database): every message is committed by its sender before it leaves and by its
  recipient before it is acknowledged.
* Throughput: `--count` messages are handed to Alice as fast as the control socket
  takes them; the figure is count / (time from the first send until Alice saw the last
  `delivered` status, i.e. Bob stored the event and acknowledged it) and the time until
  Bob's last `MessageAdded`. The CPU time each daemon (all its threads) and the driver
  used meanwhile is reported too (`cpu_s`, Linux): on a machine shared with other work
  the rate swings with their load, the CPU per message much less.

Targets (issue #6): p50 <= raw RTT / 2 x 2 + 1 ms; >= 2,000 messages/s sustained.
Like the tests, the daemons run with the test-only SCRAMBLED_EGGS_ICE_LOOPBACK=1 and the
echo peer patches aioice the same way (aioice skips loopback interfaces).
Usage: ``.venv/bin/python bench/bench_messaging.py [--latency-rounds N] [--count N]``;
the daemons run with ``--shaping off`` unless ``BENCH_SHAPING=balanced`` (or strict);
``BENCH_TYPING=1`` sends a typing signal 2 ms before each latency sample's message.
Prints ONE JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.node.api import (  # noqa: E402
    AddContact,
    MessageAdded,
    MessageStatus,
    MessageStatusChanged,
    NodeEvent,
    SendMessage,
    SetTyping,
)
from app.node.control import ControlClient, connect_control  # noqa: E402
from app.node.paths import ProfilePaths  # noqa: E402
from bench.daemons import node_env, run_cli, start_daemon_client  # noqa: E402
from bench.durable_commit import commit_latency  # noqa: E402

PAYLOAD = b"x" * 64
CONNECTIONS = int(os.environ.get("BENCH_CONNECTIONS", "64"))
"""Control connections the throughput phase sends over: enough requests at once that the
daemons set the pace, not the driver's round trips (with 8, the same code measured
~40 % lower: each connection waits for its previous message to be committed)."""


# --------------------------------------------------------------------------- raw baseline


def _loopback_ice() -> None:
    """aioice gathers only non-loopback host candidates: offer 127.0.0.1, no mDNS."""
    from app.node.network import enable_ice_loopback

    enable_ice_loopback()


async def echo_peer() -> None:
    """The baseline's far end: answer the offer read from stdin, echo every message."""
    from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

    _loopback_ice()
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    done = asyncio.Event()

    @pc.on("datachannel")
    def on_channel(channel: Any) -> None:
        channel.on("message", channel.send)

    loop = asyncio.get_running_loop()
    offer = json.loads(await loop.run_in_executor(None, sys.stdin.readline))
    await pc.setRemoteDescription(RTCSessionDescription(offer["sdp"], offer["type"]))
    await pc.setLocalDescription(await pc.createAnswer())
    answer = {"sdp": pc.localDescription.sdp, "type": pc.localDescription.type}
    print(json.dumps(answer), flush=True)
    await loop.run_in_executor(None, sys.stdin.readline)  # EOF: the driver is done
    done.set()
    await pc.close()


async def raw_rtt(rounds: int) -> list[float]:
    """Round trips (ms) of a 64-byte message over a raw aiortc channel to another process."""
    from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

    _loopback_ice()
    peer = await asyncio.create_subprocess_exec(
        sys.executable,
        __file__,
        "--echo-peer",
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        cwd=ROOT,
    )
    assert peer.stdin is not None and peer.stdout is not None
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    channel = pc.createDataChannel("raw", ordered=True)
    opened = asyncio.Event()
    channel.on("open", opened.set)
    replies: asyncio.Queue[bytes] = asyncio.Queue()
    channel.on("message", replies.put_nowait)
    await pc.setLocalDescription(await pc.createOffer())
    offer = {"sdp": pc.localDescription.sdp, "type": pc.localDescription.type}
    peer.stdin.write(json.dumps(offer).encode() + b"\n")
    await peer.stdin.drain()
    answer = json.loads(await asyncio.wait_for(peer.stdout.readline(), 30))
    await pc.setRemoteDescription(RTCSessionDescription(answer["sdp"], answer["type"]))
    await asyncio.wait_for(opened.wait(), 30)
    for _ in range(20):  # warm up
        channel.send(PAYLOAD)
        await replies.get()
    samples = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        channel.send(PAYLOAD)
        await replies.get()
        samples.append((time.perf_counter() - t0) * 1000)
    await pc.close()
    peer.stdin.close()
    await peer.wait()
    return samples


# --------------------------------------------------------------------------- daemons


def cli(profile: Path, *args: str) -> Any:
    return run_cli(profile, *args, env=node_env(), timeout=120)


SHAPING = os.environ.get("BENCH_SHAPING", "off")
"""Traffic-shaping mode of the daemons (`--shaping`); balanced adds its slot delay."""
TYPING = os.environ.get("BENCH_TYPING") == "1"
"""Each latency sample's message follows a typing signal by 2 ms (the user types, then
sends): the latency then includes whatever the signal holds up."""


async def start_daemon(profile: Path) -> tuple[subprocess.Popen[bytes], ControlClient]:
    return await start_daemon_client(profile, SHAPING, node_env())


class Stream:
    """A daemon's event stream, timestamped on arrival."""

    def __init__(self, client: ControlClient) -> None:
        self.added: dict[str, float] = {}
        self.delivered: dict[str, float] = {}
        self.changed = asyncio.Event()
        self._task = asyncio.ensure_future(self._pump(client))

    async def _pump(self, client: ControlClient) -> None:
        async for event in client.events():
            self._note(event, time.perf_counter())

    def _note(self, event: NodeEvent, now: float) -> None:
        if isinstance(event, MessageAdded) and not event.message.outgoing:
            self.added.setdefault(event.message.id, now)
        elif isinstance(event, MessageStatusChanged) and event.status is MessageStatus.DELIVERED:
            for msg_id in event.ids:
                self.delivered.setdefault(msg_id, now)
        self.changed.set()

    async def wait(self, predicate: Any, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            self.changed.clear()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("the daemons did not deliver in time")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), remaining)

    def stop(self) -> None:
        self._task.cancel()


async def messaging(latency_rounds: int, count: int, folder: Path) -> dict[str, Any]:
    a, b = folder / "alice", folder / "bob"
    cli(a, "init", "--name", "Alice", "--no-passphrase")
    cli(b, "init", "--name", "Bob", "--no-passphrase")
    proc_a, alice = await start_daemon(a)
    proc_b, bob = await start_daemon(b)
    try:
        invite_a = (await alice.whoami()).invite
        invite_b = (await bob.whoami()).invite
        await alice.add_contact(AddContact(invite_b))
        await bob.add_contact(AddContact(invite_a))
        at_a, at_b = Stream(alice), Stream(bob)
        await asyncio.sleep(0.2)  # subscribed

        typist = await connect_control(ProfilePaths(a)) if TYPING else None

        async def one(text: str) -> tuple[float, str]:
            t0 = time.perf_counter()
            if typist is not None:  # the typing signal goes just before the message
                typing = asyncio.ensure_future(typist.set_typing(SetTyping("Bob", True)))
                await asyncio.sleep(0.002)
            message = await alice.send_message(SendMessage("Bob", text))
            if typist is not None:
                await typing
            await at_b.wait(lambda: message.id in at_b.added, 60)
            return t0, message.id

        for i in range(20):  # session set-up and warm-up, not measured
            await one(f"warm-up {i}")
        peers = await alice.peers()
        samples = []
        for i in range(latency_rounds):
            t0, ident = await one(f"latency {i}")
            samples.append((at_b.added[ident] - t0) * 1000)
        await at_a.wait(lambda: len(at_a.delivered) >= 20 + latency_rounds, 60)
        control = []  # what the two control-socket hops in each sample cost
        for _ in range(latency_rounds):
            t0 = time.perf_counter()
            await alice.status()
            control.append((time.perf_counter() - t0) * 1000)

        # throughput: everything handed over at once (over several control connections:
        # the node serves each connection's requests one after the other), then wait
        # for every acknowledgement
        senders = [alice]
        for _ in range(CONNECTIONS - 1):
            extra = await connect_control(ProfilePaths(a))
            assert extra is not None
            senders.append(extra)
        sem = asyncio.Semaphore(256)
        ids: list[str] = []

        async def send(i: int) -> None:
            async with sem:
                client = senders[i % len(senders)]
                ids.append((await client.send_message(SendMessage("Bob", f"bulk {i:05d}"))).id)

        cpu0 = [_cpu_seconds(proc_a.pid), _cpu_seconds(proc_b.pid), _own_cpu_seconds()]
        t0 = time.perf_counter()
        await asyncio.gather(*(send(i) for i in range(count)))
        handed = time.perf_counter() - t0
        await at_a.wait(lambda: all(i in at_a.delivered for i in ids), 600)
        await at_b.wait(lambda: all(i in at_b.added for i in ids), 60)
        cpu1 = [_cpu_seconds(proc_a.pid), _cpu_seconds(proc_b.pid), _own_cpu_seconds()]
        used = [after - before for before, after in zip(cpu0, cpu1, strict=True)]
        cpu = dict(zip(("alice", "bob", "driver"), used, strict=True))
        delivered = max(at_a.delivered[i] for i in ids) - t0
        received = max(at_b.added[i] for i in ids) - t0
        at_a.stop()
        at_b.stop()
        for extra in [*senders[1:], *([typist] if typist is not None else [])]:
            await extra.close()
        return {
            "path": peers[0].path if peers else None,
            "latency": samples,
            "control_rtt": control,
            "count": count,
            "connections": CONNECTIONS,
            "handed_over_s": round(handed, 3),
            "all_received_s": round(received, 3),
            "all_delivered_s": round(delivered, 3),
            "cpu_s": {name: round(seconds, 3) for name, seconds in cpu.items()},
        }
    finally:
        for client in (alice, bob):
            await client.close()
        for proc in (proc_a, proc_b):
            proc.terminate()
            proc.wait(30)


def _cpu_seconds(pid: int) -> float:
    """CPU time (user + system, all threads) a process has used so far (Linux /proc;
    0 elsewhere). Less sensitive than the rate to what else runs on the machine."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _own_cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system


def _ms(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "p50_ms": round(statistics.median(ordered), 3),
        "p99_ms": round(ordered[max(0, int(len(ordered) * 0.99) - 1)], 3),
        "n": len(ordered),
    }


async def main(latency_rounds: int, count: int, rtt_rounds: int) -> dict[str, Any]:
    raw = await raw_rtt(rtt_rounds)
    with tempfile.TemporaryDirectory(prefix="bench-messaging-") as folder:
        result = await messaging(latency_rounds, count, Path(folder))
        # the disk's durable commit, where the daemons' profiles were (each message is
        # committed by its sender and by its recipient before it counts)
        commit = commit_latency(Path(folder))
    raw_p50 = statistics.median(raw)
    latency = _ms(result["latency"])
    control = _ms(result["control_rtt"])
    between = round(latency["p50_ms"] - control["p50_ms"], 3)
    target = raw_p50 / 2 * 2 + 1
    rate = result["count"] / result["all_delivered_s"]
    return {
        "benchmark": "bench_messaging",
        "path": result["path"],
        "shaping": SHAPING,
        "typing_before_each_message": TYPING,
        "baseline_raw_datachannel_rtt": _ms(raw),
        "one_way_latency": latency,
        "latency_target_p50_ms": round(target, 3),
        "latency_target_met": latency["p50_ms"] <= target,
        "control_socket_rtt": control,
        "baseline_durable_commit": {
            k: commit[k] for k in ("p50_ms", "p90_ms", "commits", "interval_ms")
        },
        "between_daemons_p50_ms": between,
        "between_daemons_target_met": between <= target,
        "sustained": {
            "messages": result["count"],
            "control_connections": result["connections"],
            "handed_over_s": result["handed_over_s"],
            "all_received_s": result["all_received_s"],
            "all_delivered_s": result["all_delivered_s"],
            "delivered_per_s": round(rate, 1),
            "received_per_s": round(result["count"] / result["all_received_s"], 1),
            "cpu_s": result["cpu_s"],
            "daemons_cpu_ms_per_message": round(
                (result["cpu_s"]["alice"] + result["cpu_s"]["bob"]) * 1000 / result["count"], 3
            ),
        },
        "throughput_target_per_s": 2000,
        "throughput_target_met": rate >= 2000,
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency-rounds", type=int, default=300)
    parser.add_argument("--count", type=int, default=3000)
    parser.add_argument("--rtt-rounds", type=int, default=500)
    parser.add_argument("--echo-peer", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.echo_peer:
        asyncio.run(echo_peer())
    else:
        try:
            result = asyncio.run(main(args.latency_rounds, args.count, args.rtt_rounds))
        except Exception as exc:  # still one JSON object, saying what went wrong
            import traceback

            traceback.print_exc()
            result = {"benchmark": "bench_messaging", "error": f"{type(exc).__name__}: {exc}"}
        print(json.dumps(result))
        sys.exit(1 if "error" in result else 0)
