"""Benchmark: time from launch to the first visible window, measured from outside.

The real path a user takes: start the app on an existing profile (no passphrase, so no
unlock dialog comes first) on an X display, and stop the clock when the window
"Scrambled Eggs" is mapped (`xdotool search --onlyvisible`, polled every 10 ms). Nothing in the app
is instrumented, so the frozen build and `python -m app` are measured the same way, in
the same run, on the same Xvfb display. Also reported: a bare QWidget (the floor for
any Qt window on this machine) and bare `python -c pass`.

Needs Xvfb and xdotool (tools/setup.sh test installs them) and a one-folder build
(`packaging/build.py linux-onedir`, or pass --frozen PATH). Prints ONE JSON object.
Targets: frozen one-folder <= 0.8 s, `python -m app` <= 0.5 s.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TITLE = "Scrambled Eggs"
BARE = (
    "from PySide6.QtWidgets import QApplication, QWidget\n"
    "app = QApplication([]); w = QWidget(); w.setWindowTitle('bare-qwidget-probe'); w.show()\n"
    "app.exec()\n"
)


@contextlib.contextmanager
def xvfb() -> Iterator[str]:
    display = next(f":{n}" for n in range(140, 240) if not Path(f"/tmp/.X11-unix/X{n}").exists())
    process = subprocess.Popen(
        ["Xvfb", display, "-screen", "0", "1280x800x24", "-nolisten", "tcp"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while not Path(f"/tmp/.X11-unix/X{display[1:]}").exists():
        if time.monotonic() > deadline:
            raise RuntimeError("Xvfb did not start")
        time.sleep(0.05)
    try:
        yield display
    finally:
        process.terminate()
        process.wait(timeout=10)


def time_to_window(command: list[str], title: str, env: dict[str, str]) -> float:
    """Seconds from spawning `command` to a visible window named `title`."""
    start = time.perf_counter()
    app = subprocess.Popen(
        command,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        # `xdotool search --sync` sleeps 0.5 s between tries: poll every 10 ms instead
        deadline = start + 30
        while time.perf_counter() < deadline:
            found = subprocess.run(
                ["xdotool", "search", "--onlyvisible", "--name", f"^{title}$"],
                env=env,
                capture_output=True,
            )
            if found.returncode == 0 and found.stdout.strip():
                return time.perf_counter() - start
            time.sleep(0.01)
        raise RuntimeError(f"no window {title!r} within 30 s")
    finally:
        os.killpg(app.pid, signal.SIGTERM)
        try:
            app.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(app.pid, signal.SIGKILL)
            app.wait()


def summary(values: list[float]) -> dict[str, float]:
    return {"median_s": round(statistics.median(values), 3), "min_s": round(min(values), 3)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument(
        "--frozen",
        type=Path,
        default=ROOT / "build" / "test-packaging" / "dist" / "scrambled-eggs" / "scrambled-eggs",
    )
    args = parser.parse_args()
    if not args.frozen.exists():
        sys.exit(f"no frozen build at {args.frozen}: run packaging/build.py linux-onedir")
    if not (shutil.which("Xvfb") and shutil.which("xdotool")):
        sys.exit("needs Xvfb and xdotool")

    work = Path(tempfile.mkdtemp(prefix="eggs-first-window-"))
    profile = work / "profile"
    env = {
        **os.environ,
        "PYTHON_KEYRING_BACKEND": "keyring.backends.fail.Keyring",  # key-file profile
        "ORT_DISABLE_TELEMETRY": "1",
    }
    env.pop("QT_QPA_PLATFORM", None)
    subprocess.run(
        [sys.executable, "-m", "app", "--profile", str(profile), "init", "--name", "Bench",
         "--no-passphrase"],
        env=env, check=True, capture_output=True, cwd=ROOT,
    )  # fmt: skip
    (profile / "config.json").write_text(
        json.dumps({**json.loads((profile / "config.json").read_text()), "listen": "127.0.0.1:0"})
    )
    results: dict[str, list[float]] = {"frozen_onedir": [], "python_m_app": [], "bare_qwidget": []}
    python_startup = []
    with xvfb() as display:
        env["DISPLAY"] = display
        for _ in range(args.runs):
            t = time.perf_counter()
            subprocess.run([sys.executable, "-c", "pass"], check=True)
            python_startup.append(time.perf_counter() - t)
            results["bare_qwidget"].append(
                time_to_window([sys.executable, "-c", BARE], "bare-qwidget-probe", env)
            )
            results["frozen_onedir"].append(
                time_to_window([str(args.frozen), "--profile", str(profile)], TITLE, env)
            )
            results["python_m_app"].append(
                time_to_window([sys.executable, "-m", "app", "--profile", str(profile)], TITLE, env)
            )
    shutil.rmtree(work, ignore_errors=True)
    report = {
        "benchmark": "first_window_external",
        "runs": args.runs,
        "profile": "existing, no passphrase (key file): no unlock dialog before the window",
        **{name: summary(values) for name, values in results.items()},
        "baseline_python_startup": summary(python_startup),
        "targets_s": {"frozen_onedir": 0.8, "python_m_app": 0.5},
        "meets": {
            "frozen_onedir": statistics.median(results["frozen_onedir"]) <= 0.8,
            "python_m_app": statistics.median(results["python_m_app"]) <= 0.5,
        },
    }
    print(json.dumps(report))


if __name__ == "__main__":
    main()
