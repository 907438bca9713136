"""Benchmark: how soon the sender of a drop of many small files sees them started.

Alice drops N small files (default 90 files of 2,000 bytes, or with ``--folder 50`` a
folder of 50 of them plus N - 50 loose files) on Bob with the CLI (``share Bob ...``);
Bob accepts them at once (each is under the auto-accept size). Alice's transfers are
polled over her control socket (what ``transfers --json`` lists) every `POLL` seconds
from just before the command: per file, the seconds from the start of the command until
it stopped being ``offered`` on Alice's side, and what it became (``running``: Bob's
``xfer`` signal or a first block served; ``done``: Bob's ``file_done`` came first). Bob
accepts every file within a second; the rest is Alice waiting to be told. Per run:
``listed`` (the polls), ``events`` (the same from the ``TransferChanged`` events her
window follows), each with the first, median and last such time and the last counted
from the end of the command; ``moved_by_signal``, how many rows Bob's state messages
moved (Alice's log; the others moved as a first block was served).

With ``--before CHECKOUT`` the daemons of every other run start from that checkout (old
code) and this one (new code), alternating, so the two are measured in the same run on
the same loaded machine. The CLI and the control client are this checkout's (the
protocol they speak is the same).

Usage: ``.venv/bin/python bench/bench_sender_sees_start.py [--files 90] [--folder 0]
[--shaping balanced,off] [--rounds 2] [--before /work/wt-base]``. Prints ONE JSON object
(and each run on stderr as it ends). Everything runs on 127.0.0.1; profiles go to a
temporary folder (``--work DIR`` keeps them).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.node.api import ListTransfers, TransferChanged, TransferState  # noqa: E402
from app.node.control import connect_control  # noqa: E402
from app.node.paths import ProfilePaths  # noqa: E402
from bench.daemons import node_env, run_cli, start_daemon  # noqa: E402

PASS = "sender sees start bench"
POLL = 0.05
TIMEOUT = 120.0
EVENTS_GRACE = 20.0
"""Seconds to wait, once every row left offered, for the events to show it too."""


def cli(profile: Path, *args: str) -> Any:
    return run_cli(profile, *args, env=node_env(ROOT, PASS))


def make_drop(where: Path, files: int, folder: int, size: int) -> list[Path]:
    """The paths to drop: a folder of `folder` files, and the other files loose."""
    where.mkdir(parents=True)
    paths: list[Path] = []
    if folder:
        album = where / "album"
        album.mkdir()
        for i in range(folder):
            (album / f"a{i:04d}.bin").write_bytes(os.urandom(size))
        paths.append(album)
    for i in range(files - folder):
        path = where / f"f{i:04d}.bin"
        path.write_bytes(os.urandom(size))
        paths.append(path)
    return paths


def connected(profile: Path) -> bool:
    return any(p.get("contact") and p.get("path") for p in cli(profile, "peers"))


async def watch_events(
    alice: Path, ready: asyncio.Event, origin: list[float], shown: dict[str, tuple[float, str]]
) -> None:
    """What Alice's window follows: per outgoing transfer, the first TransferChanged
    event (seconds after `origin[0]`) with a state other than offered."""
    client = await connect_control(ProfilePaths(alice))
    if client is None:
        raise RuntimeError("Alice's control socket does not answer")
    try:
        events = client.events()
        ready.set()
        async for event in events:
            if isinstance(event, TransferChanged):
                t = event.transfer
                if t.outgoing and t.state is not TransferState.OFFERED and t.id not in shown:
                    shown[t.id] = (time.perf_counter() - origin[0], t.state.value)
    finally:
        await client.close()


def summary(left: dict[str, tuple[float, str]], shared: float | None) -> dict[str, Any]:
    times = sorted(t for t, _ in left.values())
    became: dict[str, int] = {}
    for _, state in left.values():
        became[state] = became.get(state, 0) + 1
    return {
        "left_offered": len(times),
        "first_left_offered_s": round(times[0], 2) if times else None,
        "median_left_offered_s": round(statistics.median(times), 2) if times else None,
        "last_left_offered_s": round(times[-1], 2) if times else None,
        "after_share_last_s": (
            round(times[-1] - shared, 2) if times and shared is not None else None
        ),
        "became": became,
    }


async def share_and_poll(alice: Path, paths: list[Path], files: int) -> dict[str, Any]:
    """Share `paths` with Bob; poll Alice's outgoing transfers until none is offered,
    and then until her window's events showed each leave offered too."""
    client = await connect_control(ProfilePaths(alice))
    if client is None:
        raise RuntimeError("Alice's control socket does not answer")
    ready, origin, shown = asyncio.Event(), [0.0], {}
    watcher = asyncio.create_task(watch_events(alice, ready, origin, shown))
    await ready.wait()
    await asyncio.sleep(0.2)  # the subscription is registered on the node
    left_offered: dict[str, tuple[float, str]] = {}
    seen: set[str] = set()
    polls = 0
    try:
        start = origin[0] = time.perf_counter()
        share = asyncio.create_task(
            asyncio.to_thread(cli, alice, "share", "Bob", *(str(p) for p in paths))
        )
        shared: float | None = None
        deadline = start + TIMEOUT
        while time.perf_counter() < deadline:
            rows = await client.list_transfers(ListTransfers())
            now = time.perf_counter() - start
            polls += 1
            for row in rows:
                if not row.outgoing:
                    continue
                seen.add(row.id)
                if row.state is not TransferState.OFFERED and row.id not in left_offered:
                    left_offered[row.id] = (now, row.state.value)
            if share.done() and shared is None:
                await share
                shared = time.perf_counter() - start
            if shared is not None and len(seen) >= files and len(left_offered) == len(seen):
                # the events may lag behind the rows: wait for them a while longer
                deadline = min(deadline, time.perf_counter() + EVENTS_GRACE)
                if len(shown) >= len(seen):
                    break
            await asyncio.sleep(POLL)
    finally:
        watcher.cancel()
        await asyncio.gather(watcher, return_exceptions=True)
        await client.close()
    return {
        "share_command_s": None if shared is None else round(shared, 2),
        "transfers": len(seen),
        "polls": polls,
        "listed": summary(left_offered, shared),
        "events": summary(shown, shared),
    }


def stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def one_run(
    code: Path, work: Path, shaping: str, files: int, folder: int, size: int
) -> dict[str, Any]:
    work.mkdir(parents=True)
    alice, bob = work / "alice", work / "bob"
    cli(alice, "init", "--name", "Alice")
    cli(bob, "init", "--name", "Bob")
    cli(bob, "settings", "--downloads-folder", str(work / "downloads"))
    paths = make_drop(work / "drop", files, folder, size)
    daemon_env = node_env(code, PASS)
    procs = [start_daemon(alice, shaping, daemon_env), start_daemon(bob, shaping, daemon_env)]
    try:
        cli(alice, "contacts", "add", cli(bob, "whoami")["invite"])
        cli(bob, "contacts", "add", cli(alice, "whoami")["invite"])
        deadline = time.monotonic() + 60
        while not (connected(alice) and connected(bob)) and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(1.0)  # the greetings after connecting are over
        result = asyncio.run(share_and_poll(alice, paths, files))
    finally:
        stop(procs)
    log = alice / "logs" / "node.log"
    text = log.read_text(errors="replace") if log.exists() else ""
    # rows a receiver's signal moved (the others moved as their first block was served)
    result["moved_by_signal"] = text.count("running on the receiver's side")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--files", type=int, default=90, help="files dropped in all")
    parser.add_argument("--folder", type=int, default=0, help="of them, in one folder")
    parser.add_argument("--size", type=int, default=2000, help="bytes per file")
    parser.add_argument("--shaping", default="balanced,off")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--before", type=Path, help="checkout of the old code (same run)")
    parser.add_argument("--work", type=Path, help="keep the profiles here")
    args = parser.parse_args()
    codes = [("after", ROOT)]
    if args.before is not None:
        codes.insert(0, ("before", args.before.resolve()))
    work = args.work or Path(tempfile.mkdtemp(prefix="bench-sender-sees-start-"))
    runs: list[dict[str, Any]] = []
    try:
        for shaping in args.shaping.split(","):
            for r in range(args.rounds):
                for label, code in codes if r % 2 == 0 else codes[::-1]:
                    where = work / f"{label}-{shaping}-{r}"
                    run = one_run(code, where, shaping, args.files, args.folder, args.size)
                    runs.append({"code": label, "shaping": shaping, "round": r, **run})
                    print(json.dumps(runs[-1]), file=sys.stderr, flush=True)
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    print(
        json.dumps(
            {
                "files": args.files,
                "folder": args.folder,
                "file_size": args.size,
                "code": {k: str(v) for k, v in codes},
                "runs": runs,
            }
        )
    )


if __name__ == "__main__":
    main()
