"""Packaging benchmark: sizes of the frozen app and its time to first window.

    .venv/bin/python bench/bench_packaging.py [--runs 5] [--onedir DIR --onefile FILE]

Builds the one-folder and one-file apps with build.spec (under build/bench, timing each
build), unless given ready ones, then runs `--selftest` (offscreen) several times for
the frozen one-folder app, the frozen one-file app and, as the baseline in the same run,
`python -m app`. Each run reports, through SCRAMBLED_EGGS_SELFTEST_T0, the time from
launching the process to the main window being shown. That span includes creating the
throw-away profile (Argon2id) and starting the node, which do not depend on packaging,
so `startup_excl_profile_and_node_s` subtracts them: what is left is interpreter or
bootloader start, imports, Qt start-up and the window.

Prints ONE JSON object. Targets: one-file <= 120 MB; frozen one-folder first window
<= 0.8 s.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "build" / "bench"
APP_NAME = "scrambled-eggs"
ONEFILE_MAX_BYTES = 120_000_000
ONEDIR_FIRST_WINDOW_MAX_S = 0.8


def build(onefile: bool) -> tuple[Path, float]:
    """Build with build.spec; returns the app and the build time in seconds."""
    mode = "onefile" if onefile else "onedir"
    command = [
        sys.executable,
        "-m",
        "PyInstaller",
        str(ROOT / "build.spec"),
        "--noconfirm",
        "--log-level=WARN",
        "--distpath",
        str(WORK / mode / "dist"),
        "--workpath",
        str(WORK / mode / "work"),
    ]
    if onefile:
        command += ["--", "--onefile"]
    started = time.monotonic()
    subprocess.run(command, cwd=ROOT, check=True, capture_output=True)
    elapsed = time.monotonic() - started
    # one folder: dist/scrambled-eggs/scrambled-eggs; one file: dist/scrambled-eggs
    return WORK / mode / "dist" / APP_NAME, elapsed


def size_of(path: Path) -> int:
    """Bytes on disk of a file, or of every file under a folder."""
    if path.is_file():
        return path.stat().st_size
    return sum(p.lstat().st_size for p in path.rglob("*") if not p.is_dir())


def selftest_timing(command: list[str]) -> dict[str, float]:
    """Run `--selftest` once; the timings it reports (seconds)."""
    env = dict(os.environ)
    env["QT_QPA_PLATFORM"] = "offscreen"
    env["PYTHON_KEYRING_BACKEND"] = "keyring.backends.fail.Keyring"
    env["ORT_DISABLE_TELEMETRY"] = "1"
    env.pop("SCRAMBLED_EGGS_PASSPHRASE", None)
    env["SCRAMBLED_EGGS_SELFTEST_T0"] = repr(time.monotonic())
    done = subprocess.run(
        [*command, "--selftest"],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=300,
        stdin=subprocess.DEVNULL,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{command} --selftest failed:\n{done.stdout}{done.stderr}")
    for line in done.stdout.splitlines():
        if line.startswith("timing: "):
            timing: dict[str, float] = json.loads(line.removeprefix("timing: "))
            return timing
    raise RuntimeError(f"no timing line from {command}:\n{done.stdout}")


def summarise(runs: list[dict[str, float]]) -> dict[str, float]:
    """Medians of each timing, plus the start-up share that packaging can change."""
    keys = sorted(runs[0])
    medians = {key: round(statistics.median(run[key] for run in runs), 3) for key in keys}
    startup = [r["first_window_s"] - r.get("profile_s", 0) - r.get("node_s", 0) for r in runs]
    medians["startup_excl_profile_and_node_s"] = round(statistics.median(startup), 3)
    medians["first_window_min_s"] = round(min(r["first_window_s"] for r in runs), 3)
    return medians


def main() -> int:
    """Measure and print one JSON object."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=5, help="self-test runs per variant")
    parser.add_argument("--onedir", type=Path, help="a built one-folder app (skip its build)")
    parser.add_argument("--onefile", type=Path, help="a built one-file app (skip its build)")
    args = parser.parse_args()

    build_s: dict[str, float | None] = {"onedir": None, "onefile": None}
    onedir: Path = args.onedir.absolute() if args.onedir else Path()
    onefile: Path = args.onefile.absolute() if args.onefile else Path()
    if args.onedir is None:
        onedir, build_s["onedir"] = build(onefile=False)
    if args.onefile is None:
        onefile, build_s["onefile"] = build(onefile=True)

    variants = {
        "frozen_onedir": [str(onedir / APP_NAME)],
        "frozen_onefile": [str(onefile)],
        "python": [sys.executable, "-m", "app"],
    }
    timings: dict[str, list[dict[str, float]]] = {name: [] for name in variants}
    for _ in range(args.runs):  # interleaved, so load changes hit every variant alike
        for name, command in variants.items():
            timings[name].append(selftest_timing(command))
    summary = {name: summarise(runs) for name, runs in timings.items()}

    onefile_bytes, onedir_bytes = size_of(onefile), size_of(onedir)
    onedir_window = summary["frozen_onedir"]["first_window_s"]
    onedir_startup = summary["frozen_onedir"]["startup_excl_profile_and_node_s"]
    result: dict[str, Any] = {
        "benchmark": "packaging",
        "platform": f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs",
        "python": platform.python_version(),
        "runs": args.runs,
        "onefile_bytes": onefile_bytes,
        "onefile_mb": round(onefile_bytes / 1e6, 1),
        "onedir_bytes": onedir_bytes,
        "onedir_mb": round(onedir_bytes / 1e6, 1),
        "build_s": {k: (round(v, 1) if v is not None else None) for k, v in build_s.items()},
        "first_window_median_s": {name: s["first_window_s"] for name, s in summary.items()},
        "startup_excl_profile_and_node_median_s": {
            name: s["startup_excl_profile_and_node_s"] for name, s in summary.items()
        },
        "timings_median_s": summary,
        "targets": {
            "onefile_mb_max": ONEFILE_MAX_BYTES / 1e6,
            "onedir_first_window_s_max": ONEDIR_FIRST_WINDOW_MAX_S,
        },
        "meets": {
            "onefile_size": onefile_bytes <= ONEFILE_MAX_BYTES,
            "onedir_first_window": onedir_window <= ONEDIR_FIRST_WINDOW_MAX_S,
            "onedir_startup_excl_profile_and_node": onedir_startup <= ONEDIR_FIRST_WINDOW_MAX_S,
        },
    }
    print(json.dumps(result, sort_keys=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
