"""Benchmark: one big file between two daemons on loopback, vs magic-wormhole and raw TCP.

Three transfers of the same random file (default 1 GiB), one after the other, `sync`
between them, every process separate and on 127.0.0.1 only:

* **Scrambled Eggs**: two `scrambled-eggs daemon` processes (fresh profiles that added
  each other by invite). The sender runs `scrambled-eggs share Bob FILE --json`; the
  receiver accepts the offer as soon as it arrives (over its control socket, as the GUI
  does) and the run ends when the transfer is DONE (decrypted, fsynced and moved into
  the downloads folder). Reported: the whole span from the `share` command to DONE
  (encrypt + store + transfer + verify + decrypt + publish), and the part after the
  offer arrived. Peak RSS of each daemon process is its ru_maxrss (wait4).
* **magic-wormhole**: its mailbox server and transit relay on 127.0.0.1 (FACTS.md), then
  `wormhole send` and `wormhole receive --accept-file`; the span ends when the receive
  command exits. Peak RSS of each client process.
* **raw TCP**: a Python receiver writing to a file, a Python sender reading the file,
  1 MiB reads; no encryption: the ceiling of this machine's disk + loopback.

Every received file's SHA-256 is checked against the source. Prints ONE JSON object.
Targets (issue #8): throughput >= 1.5x magic-wormhole's; peak RSS of each side <= 200 MB.
Usage: ``.venv/bin/python bench/bench_files.py [--size-mib 1024] [--skip-wormhole]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.node.api import (
    AcceptTransfer,
    TransferAdded,
    TransferChanged,
    TransferState,
    UpdateSettings,
)
from app.node.control import connect_control
from app.node.paths import ProfilePaths
from bench.daemons import node_env, run_cli, start_daemon

ROOT = Path(__file__).resolve().parents[1]
PASS = "bench passphrase"
BIN = Path(sys.executable).parent
MiB = 1024 * 1024


def env() -> dict[str, str]:
    return node_env(ROOT, PASS)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port}")


def reap(proc: subprocess.Popen[Any]) -> int:
    """Wait for `proc`; its peak RSS in bytes (Linux ru_maxrss is in KiB)."""
    return reap_usage(proc)[0]


def reap_usage(proc: subprocess.Popen[Any]) -> tuple[int, float]:
    """Wait for `proc`; its peak RSS in bytes and the CPU seconds it used."""
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return int(usage.ru_maxrss) * 1024, round(usage.ru_utime + usage.ru_stime, 2)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(4 * MiB):
            digest.update(chunk)
    return digest.hexdigest()


def make_file(path: Path, size: int) -> str:
    digest = hashlib.sha256()
    with path.open("wb") as f:
        left = size
        while left:
            chunk = os.urandom(min(left, 4 * MiB))
            f.write(chunk)
            digest.update(chunk)
            left -= len(chunk)
    return digest.hexdigest()


def flush_disk() -> None:
    subprocess.run(["sync"], check=False)


def clear_outputs(work: Path, src: Path) -> None:
    """Delete what the last measurement wrote (its copy of the file, profiles, state),
    then flush: each tool starts on the same disk and page cache. Left in place, the
    1 GiB copies of the runs before slowed the next one: the mode measured second took
    3.8-4.6 s instead of 3.0-3.3 s with ~1.2 CPU-s more in the receiver, whichever mode
    it was."""
    for entry in work.iterdir():
        if entry == src:
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
    flush_disk()


def mb_per_s(size: int, seconds: float) -> float:
    return round(size / seconds / 1e6, 1)


# --------------------------------------------------------------------------- raw TCP

RAW_RECEIVER = """
import socket, sys
out = open(sys.argv[1], "wb")
srv = socket.socket(); srv.bind(("127.0.0.1", 0)); srv.listen(1)
print(srv.getsockname()[1], flush=True)
conn, _ = srv.accept()
buf = bytearray(1 << 20)
view = memoryview(buf)
while True:
    n = conn.recv_into(buf)
    if not n:
        break
    out.write(view[:n])
out.close()
"""

RAW_SENDER = """
import socket, sys
conn = socket.create_connection(("127.0.0.1", int(sys.argv[2])))
with open(sys.argv[1], "rb") as f:
    while chunk := f.read(1 << 20):
        conn.sendall(chunk)
conn.close()
"""


def run_raw_tcp(src: Path, work: Path, size: int, digest: str) -> dict[str, Any]:
    out = work / "raw.out"
    start = time.perf_counter()
    receiver = subprocess.Popen(
        [sys.executable, "-c", RAW_RECEIVER, str(out)], stdout=subprocess.PIPE, text=True
    )
    assert receiver.stdout is not None
    port = receiver.stdout.readline().strip()
    sender = subprocess.Popen([sys.executable, "-c", RAW_SENDER, str(src), port])
    sender_rss = reap(sender)
    receiver_rss = reap(receiver)
    elapsed = time.perf_counter() - start
    ok = sha256_of(out) == digest
    out.unlink()
    return {
        "seconds": round(elapsed, 2),
        "mb_per_s": mb_per_s(size, elapsed),
        "peak_rss_mb": {"sender": rss_mb(sender_rss), "receiver": rss_mb(receiver_rss)},
        "sha256_ok": ok,
    }


def rss_mb(value: int) -> float:
    return round(value / 1e6, 1)


# --------------------------------------------------------------------------- wormhole


def run_wormhole(src: Path, work: Path, size: int, digest: str) -> dict[str, Any]:
    work = work.resolve()
    wormhole, twist = BIN / "wormhole", BIN / "twist"
    if not wormhole.exists() or not twist.exists():
        return {
            "skipped": "magic-wormhole is not installed in this venv "
            "(.venv/bin/pip install -e '.[bench]')"
        }
    mailbox_port, relay_port = free_port(), free_port()
    state = work / "wormhole-state"
    state.mkdir()
    servers = [
        subprocess.Popen(
            [
                str(twist),
                "wormhole-mailbox",
                f"--port=tcp:{mailbox_port}:interface=127.0.0.1",
                f"--channel-db={state / 'relay.sqlite'}",
            ],
            cwd=state,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        ),
        subprocess.Popen(
            [str(twist), "transitrelay", f"--port=tcp:{relay_port}:interface=127.0.0.1"],
            cwd=state,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        ),
    ]
    try:
        wait_port(mailbox_port)
        wait_port(relay_port)
        common = [
            str(wormhole),
            "--relay-url",
            f"ws://127.0.0.1:{mailbox_port}/v1",
            "--transit-helper",
            f"tcp:127.0.0.1:{relay_port}",
        ]
        out = work / "wormhole.out"
        code = "7-bench-code"
        start = time.perf_counter()
        receiver = subprocess.Popen(
            [*common, "receive", "--accept-file", "-o", str(out), code],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
        )
        sender = subprocess.Popen(
            [*common, "send", "--hide-progress", "--no-qr", "--code", code, str(src)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            stdin=subprocess.DEVNULL,
        )
        receiver_rss = reap(receiver)
        elapsed = time.perf_counter() - start
        sender_rss = reap(sender)
        ok = out.exists() and sha256_of(out) == digest
        with contextlib.suppress(FileNotFoundError):
            out.unlink()
        return {
            "seconds": round(elapsed, 2),
            "mb_per_s": mb_per_s(size, elapsed),
            "peak_rss_mb": {"sender": rss_mb(sender_rss), "receiver": rss_mb(receiver_rss)},
            "sha256_ok": ok,
        }
    finally:
        for server in servers:
            server.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                server.wait(10)


# --------------------------------------------------------------------------- scrambled eggs


def cli(profile: Path, *args: str) -> Any:
    return run_cli(profile, *args, env=env(), timeout=120)


async def receive_one(profile: Path, started: asyncio.Event) -> tuple[float, dict[str, Any]]:
    """Accept the first offer; return (perf_counter when it was offered, final transfer)."""
    client = await connect_control(ProfilePaths(profile))
    if client is None:
        raise RuntimeError("the receiver's control socket does not answer")
    offered_at = 0.0
    transfer_id: str | None = None
    try:
        # received files go into the run's work folder (removed at the end), not the
        # user's real downloads folder
        downloads = str(profile.parent / f"downloads-{profile.name}")
        await client.update_settings(UpdateSettings(downloads_folder=downloads))
        events = client.events()
        started.set()
        async for event in events:
            if isinstance(event, TransferAdded) and not event.transfer.outgoing:
                offered_at = time.perf_counter()
                transfer_id = event.transfer.id
                if event.transfer.state is TransferState.OFFERED:
                    await client.accept_transfer(AcceptTransfer(transfer_id))
            elif isinstance(event, TransferChanged) and event.transfer.id == transfer_id:
                t = event.transfer
                if t.state in (TransferState.DONE, TransferState.FAILED, TransferState.CANCELLED):
                    return offered_at, {
                        "state": t.state.value,
                        "path": t.path,
                        "error": t.error,
                    }
        raise RuntimeError("the receiver stopped before the transfer ended")
    finally:
        await client.close()


async def share_and_wait(sender: Path, receiver: Path, src: Path) -> dict[str, Any]:
    started = asyncio.Event()
    waiting = asyncio.create_task(receive_one(receiver, started))
    await started.wait()
    await asyncio.sleep(0.2)  # the subscription is registered on the node
    start = time.perf_counter()
    shared = await asyncio.to_thread(cli, sender, "share", "Bob", str(src))
    shared_at = time.perf_counter()
    offered_at, result = await asyncio.wait_for(waiting, 1800)
    end = time.perf_counter()
    return {
        "transfers": shared["transfers"],
        "total_seconds": end - start,
        "share_command_seconds": shared_at - start,
        "after_offer_seconds": end - offered_at,
        **result,
    }


def cpu_of(pid: int) -> float:
    """CPU seconds (user + system) process `pid` has used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def receiver_phases(profile: Path) -> str:
    """The receiver's own account of where the time went (its log's "saved" line)."""
    log = profile / "logs" / "node.log"
    lines = log.read_text(errors="replace").splitlines() if log.exists() else []
    saved = [line for line in lines if ": saved; " in line]
    return saved[-1].split(": saved; ", 1)[1] if saved else "not logged"


def run_eggs(src: Path, work: Path, size: int, digest: str, shaping: str) -> dict[str, Any]:
    alice, bob = work / f"alice-{shaping}", work / f"bob-{shaping}"
    cli(alice, "init", "--name", "Alice")
    cli(bob, "init", "--name", "Bob")
    procs = {
        "sender": start_daemon(alice, shaping, env()),
        "receiver": start_daemon(bob, shaping, env()),
    }
    try:
        cli(alice, "contacts", "add", cli(bob, "whoami")["invite"])
        cli(bob, "contacts", "add", cli(alice, "whoami")["invite"])
        before = {side: cpu_of(proc.pid) for side, proc in procs.items()}
        outcome = asyncio.run(share_and_wait(alice, bob, src))
        during = {side: round(cpu_of(p.pid) - before[side], 2) for side, p in procs.items()}
        path = outcome.get("path")
        ok = bool(path) and Path(path).exists() and sha256_of(Path(path)) == digest
        peers = cli(alice, "peers")
        phases = receiver_phases(bob)
    finally:
        rss, cpu = {}, {}
        for side, proc in procs.items():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
            rss[side], cpu[side] = reap_usage(proc)
    total = outcome["total_seconds"]
    return {
        "shaping": shaping,
        "state": outcome["state"],
        "error": outcome["error"],
        "seconds": round(total, 2),
        "mb_per_s": mb_per_s(size, total),
        "share_command_seconds": round(outcome["share_command_seconds"], 2),
        "after_offer_seconds": round(outcome["after_offer_seconds"], 2),
        "after_offer_mb_per_s": mb_per_s(size, outcome["after_offer_seconds"]),
        "receiver_phases": phases,
        "path_used": sorted({p.get("path") or "none" for p in peers}),
        "peak_rss_mb": {side: rss_mb(v) for side, v in rss.items()},
        "cpu_seconds": cpu,
        "cpu_seconds_during_transfer": during,
        "sha256_ok": ok,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--skip-wormhole", action="store_true")
    parser.add_argument(
        "--shaping",
        default="off,balanced",
        help="traffic-shaping modes to run the daemons in, comma-separated (default: off,balanced)",
    )
    parser.add_argument("--workdir", help="where the files go (default: a temp dir on disk)")
    args = parser.parse_args()
    size = args.size_mib * MiB
    base = Path(args.workdir) if args.workdir else ROOT / "build"
    base.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="bench-files-", dir=base))
    try:
        src = work / "payload.bin"
        digest = make_file(src, size)
        flush_disk()
        raw = run_raw_tcp(src, work, size, digest)
        clear_outputs(work, src)
        worm = None if args.skip_wormhole else run_wormhole(src, work, size, digest)
        clear_outputs(work, src)
        eggs: dict[str, dict[str, Any]] = {}
        for mode in args.shaping.split(","):
            eggs[mode] = run_eggs(src, work, size, digest, mode)
            clear_outputs(work, src)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result: dict[str, Any] = {
        "benchmark": "files_1gib_loopback",
        "size_bytes": size,
        "scrambled_eggs": eggs,
        "baseline_raw_tcp": raw,
        "baseline_magic_wormhole": worm,
        "targets": {"vs_wormhole_min": 1.5, "peak_rss_mb_max": 200},
    }
    for run in eggs.values():
        if worm and "mb_per_s" in worm:
            run["ratio_vs_wormhole"] = round(run["mb_per_s"] / worm["mb_per_s"], 2)
        run["rss_ok"] = all(v <= 200 for v in run["peak_rss_mb"].values())
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
