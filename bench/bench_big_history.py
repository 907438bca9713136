"""Benchmark: a user a year in. A profile with a large history against a small one.

Makes two profile pairs with `tools/make_big_history.py` (or reuses ``--big-pair DIR``,
made by it): *big* (Alice with Bob: ``--big`` messages both ways, plus ``--small``
contacts of 1,000-3,000 messages) and *small* (Alice with Bob: 200 messages, plus 2
contacts of 50). Each measurement starts from a fresh copy of a pair, so every code tree
sees the same data. For each pair, with real daemons (``scrambled-eggs daemon``, WebRTC
between Alice and Bob on 127.0.0.1) and the real CLI:

* ``start_s``: from launching Alice's daemon until its control socket answers `status`;
  ``settled_s``: until its CPU is quiet (no more than 2% over 1 s: start-up work done);
* ``rss_idle_mb``: Alice's RSS once settled; ``idle_cpu_s_per_60s``: the CPU she uses
  over the next minute, alone (30 offline contacts on the big pair);
* ``open_all_s`` / ``rss_after_open_mb``: open every conversation as the window does (a
  page of messages, then mark read), and Alice's RSS after;
* ``cli_messages_s``, ``cli_search_s``, ``cli_verify_s``: ``messages Bob --json``,
  ``search NEEDLE --json`` and ``history verify Bob --json`` against the running daemon
  (median of 3; the whole command, including Python's start, as a user waits for it);
* ``one_way_ms``: Alice -> Bob one-way latency (send over Alice's control socket until
  Bob's `MessageAdded`), after 20 unmeasured messages; ``rss_end_mb`` after it;
* ``restart_*``: Alice's daemon started again after that clean stop (a user's next
  start): until `status` answers, until settled, RSS then;
* ``window``: then the window (offscreen, bench_gui.py's child of the same code tree):
  seconds until it shows and until its node is up, RSS idle, opening Bob's conversation
  and scrolling back ten pages;
* ``db_bytes_per_message``: Alice's database (with its WAL) / her messages;
* ``stop_during_start_s``: on another fresh copy, Alice's daemon sent SIGTERM
  ``STOP_AFTER_S`` after its `status` answers, while it still rebuilds every history
  (first start: no clean-stop note): seconds until it has exited (``stop_rc``: its
  exit code).

``--code DIR`` (repeatable) runs the daemons and the CLI from another checkout (e.g. the
main branch) too: old and new code then alternate over the same pairs in one run.
Usage: ``.venv/bin/python bench/bench_big_history.py [--big 100000] [--code /work/main]``.
Prints ONE JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.node.api import (  # noqa: E402
    AddContact,
    ListMessages,
    MarkRead,
    MessageAdded,
    NodeEvent,
    SendMessage,
)
from app.node.control import ControlClient  # noqa: E402
from app.node.paths import ProfilePaths  # noqa: E402
from bench.daemons import node_env, start_daemon_client  # noqa: E402

NEEDLE = "zebracrossing"
WINDOW_TIMEOUT_S = 300
STOP_AFTER_S = 2.0
IDLE_WINDOW_S = 60.0


def _env(code: Path) -> dict[str, str]:
    return node_env(code)


def make_pair(out: Path, *args: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "make_big_history.py"), str(out), *args],
        capture_output=True,
        text=True,
        env=_env(ROOT),
        check=True,
    )
    return dict(json.loads(done.stdout))


def cli_seconds(code: Path, profile: Path, *args: str, runs: int = 3) -> float:
    """Median wall time of a CLI command (it talks to the running daemon)."""
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "app", "--profile", str(profile), *args, "--json"],
            capture_output=True,
            cwd=code,
            env=_env(code),
            check=True,
            timeout=600,
        )
        times.append(time.perf_counter() - t0)
    return round(statistics.median(times), 3)


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def settle(pid: int, limit: float = 600) -> None:
    """Wait until the process used at most 2% CPU over one second."""
    deadline = time.monotonic() + limit
    before = cpu_seconds(pid)
    while time.monotonic() < deadline:
        await asyncio.sleep(1.0)
        now = cpu_seconds(pid)
        if now - before <= 0.02:
            return
        before = now


async def start_daemon(code: Path, profile: Path) -> tuple[subprocess.Popen[bytes], ControlClient]:
    return await start_daemon_client(profile, "off", _env(code), timeout=600, poll=0.02)


async def stop_daemon(process: subprocess.Popen[bytes], client: ControlClient) -> None:
    await client.close()
    process.terminate()
    try:
        process.wait(60)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


class Arrivals:
    """Timestamps of the messages a daemon receives (its event stream)."""

    def __init__(self, client: ControlClient) -> None:
        self.added: dict[str, float] = {}
        self.changed = asyncio.Event()
        self._task = asyncio.ensure_future(self._pump(client))

    async def _pump(self, client: ControlClient) -> None:
        async for event in client.events():
            self._note(event)

    def _note(self, event: NodeEvent) -> None:
        if isinstance(event, MessageAdded) and not event.message.outgoing:
            self.added.setdefault(event.message.id, time.perf_counter())
            self.changed.set()

    async def wait_for(self, ident: str, timeout: float) -> float:
        deadline = time.monotonic() + timeout
        while ident not in self.added:
            self.changed.clear()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("a message did not arrive in time")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), remaining)
        return self.added[ident]

    def stop(self) -> None:
        self._task.cancel()


def window(code: Path, profile: Path, contact: str, idle: float = 3.0) -> dict[str, Any]:
    """`window_once`, tried again once if the child hung: bench_gui's child calls
    `processEvents` inside a coroutine, and a thread's result landing then can break a
    task of its node ("Cannot enter into task", qasync); the app never does that."""
    first = window_once(code, profile, contact, idle)
    if "error" not in first:
        return first
    return {**window_once(code, profile, contact, idle), "hung_once": first["error"][-300:]}


def window_once(code: Path, profile: Path, contact: str, idle: float = 3.0) -> dict[str, Any]:
    """The window (offscreen) on the profile, with `code`'s bench_gui child: seconds
    until it shows and until the node is up, then (`idle` seconds later) opening the big
    conversation and scrolling back (see bench_gui.py)."""
    env = _env(code)
    env["QT_QPA_PLATFORM"] = "offscreen"
    args = [sys.executable, "-X", "faulthandler", str(code / "bench" / "bench_gui.py")]
    args += ["--child", "app", "--profile", str(profile), "--contact", contact, "--idle", str(idle)]
    start = time.perf_counter()
    with tempfile.TemporaryFile("w+") as errors:
        proc = subprocess.Popen(
            args, env=env, stdout=subprocess.PIPE, stderr=errors, text=True, cwd=code
        )
        assert proc.stdout is not None
        # a window that hangs is reported with its stacks (faulthandler), not waited for
        timer = threading.Timer(WINDOW_TIMEOUT_S, proc.send_signal, (signal.SIGABRT,))
        timer.start()
        marks: dict[str, float] = {}
        last = ""
        for line in proc.stdout:
            word = line.strip()
            if word in ("shown", "ready"):
                marks.setdefault(f"{word}_s", round(time.perf_counter() - start, 3))
            elif word:
                last = word
        proc.wait()
        timer.cancel()
        errors.seek(0)
        stderr = errors.read()
    try:
        figures = dict(json.loads(last))
    except ValueError:
        figures = {"error": f"exit {proc.returncode}: {stderr[-3000:]}"}
    return {**marks, **figures}


def _ms(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "p50_ms": round(statistics.median(ordered), 2),
        "p90_ms": round(ordered[max(0, int(len(ordered) * 0.9) - 1)], 2),
        "n": len(ordered),
    }


async def stop_during_start(code: Path, pair: Path) -> dict[str, Any]:
    """SIGTERM to Alice's daemon while its first start still rebuilds the histories."""
    process, client = await start_daemon(code, pair / "alice")
    await client.close()
    await asyncio.sleep(STOP_AFTER_S)
    t0 = time.perf_counter()
    process.terminate()
    try:
        rc = await asyncio.to_thread(process.wait, 600)
    except subprocess.TimeoutExpired:
        process.kill()
        rc = process.wait()
    return {"stop_during_start_s": round(time.perf_counter() - t0, 3), "stop_rc": rc}


async def measure(code: Path, pair: Path, messages: int, rounds: int) -> dict[str, Any]:
    """Every figure for one copy of a pair, with the code in `code`."""
    alice_dir, bob_dir = pair / "alice", pair / "bob"
    out: dict[str, Any] = {}
    t0 = time.perf_counter()
    proc_a, alice = await start_daemon(code, alice_dir)
    out["start_s"] = round(time.perf_counter() - t0, 3)
    await settle(proc_a.pid)
    out["settled_s"] = round(time.perf_counter() - t0, 3)
    out["rss_idle_mb"] = rss_mb(proc_a.pid)
    cpu = cpu_seconds(proc_a.pid)
    await asyncio.sleep(IDLE_WINDOW_S)
    out["idle_cpu_s_per_60s"] = round((cpu_seconds(proc_a.pid) - cpu) * 60 / IDLE_WINDOW_S, 2)
    proc_b, bob = await start_daemon(code, bob_dir)
    try:
        await settle(proc_b.pid)
        contacts = await alice.list_contacts()
        t1 = time.perf_counter()
        for contact in contacts:
            await alice.list_messages(ListMessages(contact.name))
            await alice.mark_read(MarkRead(contact.name))
        out["open_all_s"] = round(time.perf_counter() - t1, 3)
        out["rss_after_open_mb"] = rss_mb(proc_a.pid)
        out["cli_messages_s"] = cli_seconds(code, alice_dir, "messages", "Bob")
        out["cli_search_s"] = cli_seconds(code, alice_dir, "search", NEEDLE)
        out["cli_verify_s"] = cli_seconds(code, alice_dir, "history", "verify", "Bob", runs=1)
        # the daemons learn where the other listens from a fresh invite (as users do)
        with contextlib.suppress(Exception):
            await alice.add_contact(AddContact((await bob.whoami()).invite))
        with contextlib.suppress(Exception):
            await bob.add_contact(AddContact((await alice.whoami()).invite))
        arrivals = Arrivals(bob)
        await asyncio.sleep(0.2)
        samples = []
        for i in range(20 + rounds):
            sent = time.perf_counter()
            message = await alice.send_message(SendMessage("Bob", f"latency probe {i}"))
            arrived = await arrivals.wait_for(message.id, 120)
            if i >= 20:
                samples.append((arrived - sent) * 1000)
        arrivals.stop()
        out["one_way_ms"] = _ms(samples)
        out["rss_end_mb"] = rss_mb(proc_a.pid)
    finally:
        await stop_daemon(proc_b, bob)
        await stop_daemon(proc_a, alice)
    # a second start, after that clean stop (as a user's next start of the day)
    t2 = time.perf_counter()
    proc_a, alice = await start_daemon(code, alice_dir)
    out["restart_start_s"] = round(time.perf_counter() - t2, 3)
    await settle(proc_a.pid)
    out["restart_settled_s"] = round(time.perf_counter() - t2, 3)
    out["restart_rss_idle_mb"] = rss_mb(proc_a.pid)
    bob_address = next(c.address for c in await alice.list_contacts() if c.name == "Bob")
    await stop_daemon(proc_a, alice)
    out["window"] = window(code, alice_dir, bob_address)
    database = ProfilePaths(alice_dir).database
    size = sum(p.stat().st_size for p in (database, Path(f"{database}-wal")) if p.exists())
    out["db_bytes_per_message"] = round(size / messages)
    return out


async def main(args: argparse.Namespace) -> dict[str, Any]:
    codes = [ROOT, *args.code]
    with tempfile.TemporaryDirectory(prefix="bench-big-history-") as folder:
        work = Path(folder)
        small = make_pair(
            work / "small", "--big", "200", "--small", "2", "--small-min", "50", "--small-max", "50"
        )
        if args.big_pair is not None:
            big_src = args.big_pair
            big_count = None
        else:
            big = make_pair(work / "big", "--big", str(args.big))
            big_src, big_count = work / "big", big["total_messages_alice"]
        pairs = {
            "small": (work / "small", small["total_messages_alice"]),
            "big": (big_src, big_count or args.big_messages),
        }
        results: dict[str, Any] = {}
        for name, (source, messages) in pairs.items():
            for code in codes:  # old and new code alternate over the same data
                copy = work / f"run-{name}"
                shutil.copytree(source, copy)
                try:
                    figures = await measure(code, copy, messages, args.rounds)
                finally:
                    shutil.rmtree(copy, ignore_errors=True)
                shutil.copytree(source, copy)
                try:
                    figures.update(await stop_during_start(code, copy))
                finally:
                    shutil.rmtree(copy, ignore_errors=True)
                results.setdefault(str(code), {})[name] = figures
                print(json.dumps({"code": str(code), name: figures}), file=sys.stderr)
        return {
            "benchmark": "bench_big_history",
            "messages": {name: count for name, (_, count) in pairs.items()},
            "results": results,
        }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--big", type=int, default=100_000)
    parser.add_argument("--big-pair", type=Path, help="a pair made by make_big_history.py")
    parser.add_argument(
        "--big-messages", type=int, default=160_000, help="Alice's messages in --big-pair"
    )
    parser.add_argument("--rounds", type=int, default=50)
    parser.add_argument("--code", type=Path, action="append", default=[])
    print(json.dumps(asyncio.run(main(parser.parse_args()))))
