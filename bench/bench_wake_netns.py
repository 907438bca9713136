"""Benchmark: two real daemons; Alice's machine changes address; seconds until her node
says Bob is connected again. Old code (another checkout) vs this one, same run.

Each daemon runs in a network namespace of its own on the user-space switch of
tests/integration/lossy_switch.py (needs root; traffic never leaves the namespaces).
Alice listens on 0.0.0.0 (her endpoints follow her addresses), Bob on his address. At a
random point of the keepalive cycle Alice's address is replaced (``ip addr del`` the old
one, ``ip addr add`` a new one): her connection to Bob goes silent (his frames go to an
address she no longer has). Measured: from the change until Alice's ``peers`` says Bob is
connected again. Nothing is injected: this is the shipped code path.

Usage (as root): ``.venv/bin/python bench/bench_wake_netns.py --before /path/to/old/checkout``.
Prints ONE JSON object. With ``WAKE_BENCH_DIR=DIR`` the profiles (and their logs) of a
round that fails are kept in DIR.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "integration"))

from cli_helpers import cli_json  # noqa: E402
from lossy_switch import LossySwitch  # noqa: E402

from app.node.control import connect_control  # noqa: E402
from app.node.paths import ProfilePaths  # noqa: E402

PASS = "a passphrase for the bench"
PORT = 7000


def start_daemon(code: Path, profile: Path, netns: str, *args: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "SCRAMBLED_EGGS_PASSPHRASE": PASS, "PYTHONPATH": str(code),
           "PYTHONDONTWRITEBYTECODE": "1"}  # fmt: skip
    command = ["ip", "netns", "exec", netns, sys.executable, "-m", "app"]
    return subprocess.Popen(
        [*command, "--profile", str(profile), "daemon", "--no-lan", *args],
        env=env,
        cwd=str(code),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


async def bob_state(profile: Path) -> str | None:
    client = await connect_control(ProfilePaths(profile))
    if client is None:
        return None
    try:
        for peer in await client.peers():
            if peer.contact == "Bob":
                return peer.state
        return None
    finally:
        await client.close()


async def until(predicate: Any, timeout: float, step: float = 0.05) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if await predicate():
            return time.monotonic()
        await asyncio.sleep(step)
    raise AssertionError(f"not within {timeout} s")


def one_round(code: Path, trial: int, rng: random.Random) -> float:
    n = (os.getpid() + trial) % 200 + 20
    switch = LossySwitch(loss=0.0, delay=0.0005, jitter=0.0, seed=trial)
    old, new, bob_ip = f"10.235.{n}.1", f"10.235.{n}.3", f"10.235.{n}.2"
    daemons: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory(dir=os.environ.get("WAKE_BENCH_DIR")) as folder:
        a, b = Path(folder) / "alice", Path(folder) / "bob"
        try:
            host_a = switch.add_host("alice", f"se-wake-a-{os.getpid()}", old)
            host_b = switch.add_host("bob", f"se-wake-b-{os.getpid()}", bob_ip)
            switch.start()
            for profile, name in ((a, "Alice"), (b, "Bob")):
                cli_json(profile, "init", "--name", name, passphrase=PASS)
            daemons.append(start_daemon(code, a, host_a.namespace, "--listen", f"0.0.0.0:{PORT}"))
            daemons.append(start_daemon(code, b, host_b.namespace, "--listen", f"{bob_ip}:{PORT}",
                                        "--bootstrap", f"{old}:{PORT}"))  # fmt: skip
            for profile in (a, b):
                asyncio.run(until(lambda p=profile: _running(p), 60))
            invites = [cli_json(p, "whoami", passphrase=PASS)["invite"] for p in (a, b)]
            cli_json(a, "contacts", "add", invites[1], passphrase=PASS)
            cli_json(b, "contacts", "add", invites[0], passphrase=PASS)

            async def connected() -> bool:
                return await bob_state(a) == "connected"

            async def not_connected() -> bool:
                return await bob_state(a) != "connected"

            asyncio.run(until(connected, 120))
            time.sleep(2.0 + rng.uniform(0.0, 5.0))  # anywhere in the keepalive cycle
            device = _device(host_a.namespace)
            # the old address goes, a new one comes (deleting a primary address would
            # take a secondary one with it)
            subprocess.run(["ip", "-n", host_a.namespace, "addr", "del", f"{old}/24", "dev",
                            device], check=True)  # fmt: skip
            subprocess.run(["ip", "-n", host_a.namespace, "addr", "add", f"{new}/24", "dev",
                            device], check=True)  # fmt: skip
            changed = time.monotonic()
            asyncio.run(until(not_connected, 60, step=0.02))
            back = asyncio.run(until(connected, 120, step=0.02))
            return back - changed
        except AssertionError:
            if os.environ.get("WAKE_BENCH_DIR"):
                subprocess.run(["cp", "-r", folder, folder + ".kept"], check=False)
            raise
        finally:
            for daemon in daemons:
                daemon.terminate()
            for daemon in daemons:
                try:
                    daemon.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    daemon.kill()
            switch.close()


async def _running(profile: Path) -> bool:
    client = await connect_control(ProfilePaths(profile))
    if client is None:
        return False
    await client.close()
    return True


def _device(namespace: str) -> str:
    out = subprocess.run(["ip", "-n", namespace, "-o", "link"], capture_output=True, text=True,
                         check=True).stdout  # fmt: skip
    names = [line.split(":")[1].strip().split("@")[0] for line in out.splitlines()]
    return next(name for name in names if name != "lo")


def summary(samples: list[float]) -> dict[str, Any]:
    return {
        "median_s": round(statistics.median(samples), 2),
        "max_s": round(max(samples), 2),
        "samples_s": [round(s, 2) for s in samples],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--before", type=Path, required=True, help="checkout of the old code")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    rng = random.Random(7)
    result = {}
    for label, code in (("before", args.before.resolve()), ("after", ROOT)):
        result[label] = summary([one_round(code, t, rng) for t in range(args.rounds)])
    print(json.dumps({"address_change_to_connected_again": result}))


if __name__ == "__main__":
    main()
