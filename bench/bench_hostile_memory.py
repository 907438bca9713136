"""A node's RSS under rounds of hostile-peer campaigns: does it keep growing?

Starts one headless daemon per variant (a copy of the code and extra environment; its
own profile, loopback only, with a hostile contact "Mallory" added), then runs every
campaign of `tools/fuzz/hostile_peer.py` against each daemon in turn, `--rounds`
times (round r uses seed r, the same input for every variant), and reads each daemon's
RSS after each campaign. With `--trim` the daemons load `tools/memprobe`: after each
campaign the bytes malloc and Python hold in live blocks are read too, and at the end
glibc's `malloc_trim(0)` is called: what the RSS drops by then is memory Python had
freed but the allocator kept (not live objects).

Prints one JSON object. Not a test: nothing here asserts a figure.

    .venv/bin/python bench/bench_hostile_memory.py [--rounds 3] [--trim] \\
        [--variant old:/path/to/old/checkout] [--variant new-arena2:.:MALLOC_ARENA_MAX=2]

A variant is NAME:CODE_DIR[:VAR=VALUE,...]; without any, `new:<this checkout>`. For old
against new code in the same run: `git worktree add /tmp/old main` and pass
`--variant old:/tmp/old --variant new:.`.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CAMPAIGNS = {
    "raw": 200,
    "handshake": 200,
    "contact": 200,
    "bulk": 200,
    "dht": 20000,
    "sybil": 400,
    "slowloris": 200,
    "restricted": 10,
}
"""Cases per campaign (as in the live runs the fuzzer's docstring describes)."""
SETTLE_SECONDS = 2.0


@dataclass
class Daemon:
    name: str
    code: Path
    env: dict[str, str]
    profile: Path
    process: subprocess.Popen[bytes] | None = None
    endpoint: str = ""
    address: str = ""
    bulk_port: int = 0
    rss: list[dict[str, Any]] = field(default_factory=list)


def _env(code: Path, extra: dict[str, str], probe: Path | None) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        SCRAMBLED_EGGS_ICE_LOOPBACK="1",
        PYTHON_KEYRING_BACKEND="keyring.backends.fail.Keyring",
        PYTHONPATH=str(code),
    )
    if probe is not None:
        env["PYTHONPATH"] = f"{ROOT / 'tools' / 'memprobe'}:{code}"
        env["MEMPROBE_DIR"] = str(probe)
    env.update(extra)
    return env


def _cli(daemon: Daemon, *args: str) -> str:
    env = _env(daemon.code, {}, None)
    done = subprocess.run(
        [sys.executable, "-m", "app", "--profile", str(daemon.profile), *args],
        env=env,
        capture_output=True,
        check=True,
        timeout=60,
        cwd=daemon.code,  # `-m` puts the working folder first on the path
    )
    return done.stdout.decode()


def _hostile(*args: str, timeout: float = 600) -> dict[str, Any]:
    env = _env(ROOT, {}, None)
    done = subprocess.run(
        [sys.executable, "-m", "tools.fuzz.hostile_peer", *args],
        env=env,
        capture_output=True,
        timeout=timeout,
        cwd=ROOT,
    )
    lines = done.stdout.decode().strip().splitlines()
    return json.loads(lines[-1]) if lines and lines[-1].startswith("{") else {"failed": True}


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return -1


def listening_ports(pid: int) -> set[int]:
    """TCP ports process `pid` listens on (from /proc, IPv4)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    ports = set()
    for line in Path(f"/proc/{pid}/net/tcp").read_text().splitlines()[1:]:
        cols = line.split()
        if cols[3] == "0A" and cols[9] in inodes:
            ports.add(int(cols[1].rsplit(":", 1)[1], 16))
    return ports


def start(daemon: Daemon, work: Path, mallory_invite: str, probe: Path | None) -> None:
    _cli(daemon, "init", "--name", daemon.name, "--no-passphrase")
    _cli(daemon, "contacts", "add", mallory_invite)
    log = (work / f"{daemon.name}.out").open("wb")
    daemon.process = subprocess.Popen(
        [sys.executable, "-m", "app", "--profile", str(daemon.profile), "daemon",
         "--listen", "127.0.0.1:0"],
        env=_env(daemon.code, daemon.env, probe),
        cwd=daemon.code,  # `-m` puts the working folder first on the path: this code
        stdout=log,
        stderr=subprocess.STDOUT,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        status = json.loads(_cli(daemon, "status", "--json"))
        if status.get("running") and status.get("endpoints"):
            daemon.endpoint = status["endpoints"][0]
            daemon.address = status["address"]
            break
        time.sleep(0.5)
    else:
        raise SystemExit(f"{daemon.name}: the daemon did not start")
    port = int(daemon.endpoint.rsplit(":", 1)[1])
    others = listening_ports(daemon.process.pid) - {port}
    daemon.bulk_port = min(others) if others else 0
    time.sleep(3)  # imports done, the DHT joined (nobody else), timers started


def probed(daemon: Daemon, probe: Path) -> dict[str, int]:
    """Live memory in the daemon (via tools/memprobe): malloc's bytes in use and
    Python's bytes in allocated blocks, KiB."""
    assert daemon.process is not None
    before = set(probe.glob("probe-*.json"))
    os.kill(daemon.process.pid, signal.SIGUSR1)
    for _ in range(200):
        new = set(probe.glob("probe-*.json")) - before
        if new:
            time.sleep(0.2)
            report = json.loads(new.pop().read_text())
            return {
                "malloc_in_use_kib": report["mallinfo"]["uordblks"] // 1024,
                "malloc_free_held_kib": report["mallinfo"]["fordblks"] // 1024,
                "python_blocks_kib": report["pymalloc"].get("bytes in allocated blocks", 0) // 1024,
            }
        time.sleep(0.1)
    return {}


def campaign(
    daemon: Daemon, name: str, cases: int, seed: int, seeds_file: Path, probe: Path | None
) -> None:
    assert daemon.process is not None
    outcome = _hostile(
        name, "--endpoint", daemon.endpoint, "--target", daemon.address,
        "--bulk-port", str(daemon.bulk_port), "--contact-seeds", str(seeds_file),
        "--cases", str(cases), "--seed", str(seed),
    )  # fmt: skip
    time.sleep(SETTLE_SECONDS)
    entry: dict[str, Any] = {
        "round": seed,
        "campaign": name,
        "rss_kib": rss_kib(daemon.process.pid),
        "seconds": outcome.get("seconds"),
        "outcomes": outcome.get("outcomes"),
    }
    if probe is not None:
        entry.update(probed(daemon, probe))
    daemon.rss.append(entry)


def trimmed(daemon: Daemon, probe: Path) -> dict[str, int]:
    """RSS before and after `malloc_trim(0)` in the daemon (via tools/memprobe)."""
    assert daemon.process is not None
    before = set(probe.glob("trim-*.json"))
    os.kill(daemon.process.pid, signal.SIGUSR2)
    for _ in range(100):
        new = set(probe.glob("trim-*.json")) - before
        if new:
            time.sleep(0.2)
            report = json.loads(new.pop().read_text())
            return {"before_kib": report["rss_before_kib"], "after_kib": report["rss_after_kib"]}
        time.sleep(0.1)
    return {}


def parse_variant(text: str) -> tuple[str, Path, dict[str, str]]:
    name, _, rest = text.partition(":")
    code, _, env_text = rest.partition(":")
    env = dict(item.split("=", 1) for item in env_text.split(",") if item)
    return name, Path(code or ".").resolve(), env


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--variant", action="append", default=[])
    parser.add_argument("--campaigns", default=",".join(CAMPAIGNS))
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every case count")
    parser.add_argument(
        "--trim",
        action="store_true",
        help="load tools/memprobe: live malloc/Python bytes after each campaign, "
        "malloc_trim(0) at the end",
    )
    parser.add_argument("--work", type=Path, help="folder for profiles (default: a temp one)")
    args = parser.parse_args()
    variants = [parse_variant(v) for v in args.variant] or [("new", ROOT, {})]
    work = args.work or Path(tempfile.mkdtemp(prefix="bench_hostile_memory-"))
    work.mkdir(parents=True, exist_ok=True)
    seeds_file = work / "mallory.json"
    invite = subprocess.run(
        [sys.executable, "-m", "tools.fuzz.hostile_peer", "invite", "--contact-seeds",
         str(seeds_file)],
        env=_env(ROOT, {}, None), capture_output=True, check=True, cwd=ROOT,
    ).stdout.decode().strip()  # fmt: skip
    daemons = [Daemon(n, code, env, work / n) for n, code, env in variants]
    probes = {d.name: work / f"probe-{d.name}" for d in daemons} if args.trim else {}
    result: dict[str, Any] = {"rounds": args.rounds, "scale": args.scale, "variants": {}}
    try:
        for daemon in daemons:
            start(daemon, work, invite, probes.get(daemon.name))
            assert daemon.process is not None
            result["variants"][daemon.name] = {
                "code": str(daemon.code),
                "env": daemon.env,
                "start_kib": rss_kib(daemon.process.pid),
            }
        for seed in range(1, args.rounds + 1):
            for name in args.campaigns.split(","):
                cases = max(1, round(CAMPAIGNS[name] * args.scale))
                for daemon in daemons:  # old and new alternate, campaign by campaign
                    campaign(daemon, name, cases, seed, seeds_file, probes.get(daemon.name))
        for daemon in daemons:
            entry = result["variants"][daemon.name]
            entry["after"] = daemon.rss
            rounds = [
                max(r["rss_kib"] for r in daemon.rss if r["round"] == seed)
                for seed in range(1, args.rounds + 1)
            ]
            entry["round_peak_kib"] = rounds
            entry["end_kib"] = daemon.rss[-1]["rss_kib"]
            entry["growth_kib"] = entry["end_kib"] - entry["start_kib"]
            entry["growth_after_round_1_kib"] = (
                entry["end_kib"] - daemon.rss[len(args.campaigns.split(",")) - 1]["rss_kib"]
            )
            if args.trim:
                entry["malloc_trim"] = trimmed(daemon, probes[daemon.name])
    finally:
        for daemon in daemons:
            if daemon.process is not None:
                daemon.process.terminate()
                try:
                    daemon.process.wait(30)
                except subprocess.TimeoutExpired:
                    daemon.process.kill()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
