"""Benchmark: a folder of many small files between two daemons on loopback.

Alice shares a folder of N files (default 2,000 bytes each) with Bob, who accepts them at
once (each is under the auto-accept size): one transfer per file. Measured per run, from
the `share Bob DIR/` command (the two daemons connected before it): seconds until Bob
holds every file (DONE on his side), until Alice's side shows them all DONE too, and a
timeline (files done on Bob's side per second). Every received file is compared with its
source. The daemons' logs are searched for a change of a peer's standing (the anomaly
detector: an honest folder share must not look like an attack).

With ``--before CHECKOUT`` the daemons of every other run start from that checkout (old
code) and this one (new code), alternating, so the two are measured in the same run on
the same loaded machine. The CLI and the control client are this checkout's (the
protocol they speak is the same).

Usage: ``.venv/bin/python bench/bench_small_files.py [--counts 100,600,2000]
[--shaping off,balanced] [--rounds 1] [--before /work/main]``. Prints ONE JSON object.
Everything runs on 127.0.0.1; profiles go to a temporary folder (``--work DIR`` keeps
them).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.node.api import TransferAdded, TransferChanged, TransferState  # noqa: E402
from app.node.control import connect_control  # noqa: E402
from app.node.paths import ProfilePaths  # noqa: E402
from bench.daemons import node_env, run_cli, start_daemon  # noqa: E402

PASS = "small files bench"
TIMEOUT = 600.0


def cli(profile: Path, *args: str) -> Any:
    return run_cli(profile, *args, env=node_env(ROOT, PASS))


def make_folder(folder: Path, count: int, size: int) -> dict[str, bytes]:
    folder.mkdir(parents=True)
    files = {f"f{i:05d}.bin": os.urandom(size) for i in range(count)}
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return files


def connected(profile: Path) -> bool:
    return any(p.get("contact") and p.get("path") for p in cli(profile, "peers"))


async def watch_done(
    profile: Path, count: int, outgoing: bool, ready: asyncio.Event, times: list[float]
) -> None:
    """Append the time each of `count` transfers (one direction) became DONE."""
    client = await connect_control(ProfilePaths(profile))
    if client is None:
        raise RuntimeError("a control socket does not answer")
    done: set[str] = set()
    try:
        events = client.events()
        ready.set()
        async for event in events:
            if isinstance(event, TransferAdded | TransferChanged):
                t = event.transfer
                if t.outgoing is outgoing and t.state is TransferState.DONE and t.id not in done:
                    done.add(t.id)
                    times.append(time.perf_counter())
                    if len(done) == count:
                        return
    finally:
        await client.close()


async def share_and_wait(alice: Path, bob: Path, folder: Path, count: int) -> dict[str, Any]:
    ready_bob, ready_alice = asyncio.Event(), asyncio.Event()
    bob_times: list[float] = []
    alice_times: list[float] = []
    watchers = [
        asyncio.create_task(watch_done(bob, count, False, ready_bob, bob_times)),
        asyncio.create_task(watch_done(alice, count, True, ready_alice, alice_times)),
    ]
    await ready_bob.wait()
    await ready_alice.wait()
    await asyncio.sleep(0.2)  # the subscriptions are registered on the nodes
    start = time.perf_counter()
    await asyncio.to_thread(cli, alice, "share", "Bob", f"{folder}/")
    shared = time.perf_counter() - start
    finished = True
    try:
        await asyncio.wait_for(asyncio.gather(*watchers), TIMEOUT)
    except TimeoutError:
        finished = False
    per_second: dict[int, int] = {}
    for t in bob_times:
        second = int(t - start)
        per_second[second] = per_second.get(second, 0) + 1
    last = max(per_second, default=0)
    return {
        "finished": finished,
        "share_command_s": round(shared, 2),
        "receiver_all_done_s": round(max(bob_times) - start, 2) if bob_times else None,
        "sender_all_done_s": round(max(alice_times) - start, 2) if alice_times else None,
        "receiver_done": len(bob_times),
        "sender_done": len(alice_times),
        "receiver_done_per_second": [per_second.get(s, 0) for s in range(last + 1)],
    }


def standing_changes(profile: Path) -> int:
    log = profile / "logs" / "node.log"
    text = log.read_text(errors="replace") if log.exists() else ""
    return text.count("peer standing:")


def one_run(code: Path, work: Path, shaping: str, count: int, size: int) -> dict[str, Any]:
    work.mkdir(parents=True)
    alice, bob = work / "alice", work / "bob"
    cli(alice, "init", "--name", "Alice")
    cli(bob, "init", "--name", "Bob")
    downloads = work / "downloads"
    cli(bob, "settings", "--downloads-folder", str(downloads))
    files = make_folder(work / "album", count, size)
    daemon_env = node_env(code, PASS)
    procs = [start_daemon(alice, shaping, daemon_env), start_daemon(bob, shaping, daemon_env)]
    try:
        cli(alice, "contacts", "add", cli(bob, "whoami")["invite"])
        cli(bob, "contacts", "add", cli(alice, "whoami")["invite"])
        deadline = time.monotonic() + 60
        while not (connected(alice) and connected(bob)) and time.monotonic() < deadline:
            time.sleep(0.2)
        result = asyncio.run(share_and_wait(alice, bob, work / "album", count))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    received = {p.name: p for p in downloads.rglob("*.bin")}
    intact = sum(1 for name, data in files.items() if name in received and
                 received[name].read_bytes() == data)  # fmt: skip
    return {
        **result,
        "files_intact": intact,
        "standing_changes": {"alice": standing_changes(alice), "bob": standing_changes(bob)},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--counts", default="100,600,2000")
    parser.add_argument("--shaping", default="off,balanced")
    parser.add_argument("--size", type=int, default=2000, help="bytes per file")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--before", type=Path, help="checkout of the old code (same run)")
    parser.add_argument("--work", type=Path, help="keep the profiles here")
    args = parser.parse_args()
    codes = [("after", ROOT)]
    if args.before is not None:
        codes.insert(0, ("before", args.before.resolve()))
    work = args.work or Path(tempfile.mkdtemp(prefix="bench-small-files-"))
    runs: list[dict[str, Any]] = []
    try:
        for count in (int(c) for c in args.counts.split(",")):
            for shaping in args.shaping.split(","):
                for r in range(args.rounds):
                    for label, code in codes if r % 2 == 0 else codes[::-1]:
                        where = work / f"{label}-{shaping}-{count}-{r}"
                        run = one_run(code, where, shaping, count, args.size)
                        runs.append({"code": label, "shaping": shaping, "files": count,
                                     "round": r, **run})  # fmt: skip
                        print(json.dumps(runs[-1]), file=sys.stderr, flush=True)
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    print(json.dumps({"file_size": args.size, "code": {k: str(v) for k, v in codes},
                      "runs": runs}))  # fmt: skip


if __name__ == "__main__":
    main()
