"""Benchmark: the window's `load()` with many contacts (each conversation's last message).

For each contact count (``--contacts 30 300``) a profile is made with
``tools/make_big_history.py`` (Alice, Bob and Alice's other contacts, a few dozen signed
messages each; the histories the node stores, not raw rows). Then, for ``--rounds``
rounds, each code tree (this one and each ``--code DIR``, alternating) opens the window
(offscreen) on its own fresh copy of that profile, in a child process that runs the
tree's own code:

* ``ready_s``: from the child's start until the window is up, its node running and every
  contact's last message loaded (``GuiSession.start_window``, as the app starts);
* ``load_ms``: once the node has settled (``--settle`` seconds later), the window's
  ``load()`` again (identity, settings, transfers, contacts and every last message), the
  median of ``--loads`` calls;
* ``rows_with_last``, ``lasts_digest``: how many contact rows show a last message, and a
  digest of which (contact, id, transfer): the same in every tree.

Usage: ``.venv/bin/python bench/bench_window_load.py --code /work/main``.
Prints ONE JSON object (every run, and the median per figure, count and tree).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

CHILD_TIMEOUT_S = 600


def child(profile: str, settle_s: float, loads: int) -> None:
    """Runs with the tested tree's code first on sys.path (PYTHONPATH)."""
    import asyncio

    import qasync

    from app.gui.app import GuiSession, make_application
    from app.gui.models.contacts import ContactRole
    from app.gui.theme import ThemeManager
    from app.node.api import DaemonOptions

    t0 = time.perf_counter()
    app = make_application(sys.argv[:1])
    themes = ThemeManager(app)
    themes.apply("system")
    loop = qasync.QEventLoop(app)
    asyncio.set_event_loop(loop)
    session = GuiSession(DaemonOptions(Path(profile), listen="127.0.0.1:0", lan=False), themes)

    async def run() -> dict[str, Any]:
        assert await session.open_profile(early_window=True)
        window = await session.start_window()
        ready_s = time.perf_counter() - t0
        await asyncio.sleep(settle_s)
        samples = []
        for _ in range(loads):
            t1 = time.perf_counter()
            await window.load()
            samples.append((time.perf_counter() - t1) * 1000)
        model = window.contacts
        rows = model.rowCount()
        lasts = [model.data(model.index(row, 0), ContactRole.LAST_MESSAGE) for row in range(rows)]
        shown = sorted(f"{m.contact}:{m.id}:{m.transfer}" for m in lasts if m is not None)
        await session.shutdown()
        return {
            "ready_s": round(ready_s, 3),
            "load_ms": round(statistics.median(samples), 1),
            "load_ms_runs": [round(s, 1) for s in samples],
            "contacts": rows,
            "rows_with_last": len(shown),
            "lasts_digest": hashlib.sha256("\n".join(shown).encode()).hexdigest()[:16],
        }

    with loop:
        print(json.dumps(loop.run_until_complete(run())), flush=True)
    os._exit(0)


def run_child(code: Path, profile: Path, settle_s: float, loads: int) -> dict[str, Any]:
    from daemons import node_env

    env = node_env(code)
    env["QT_QPA_PLATFORM"] = "offscreen"
    args = [sys.executable, "-X", "faulthandler", __file__, "--child", str(profile)]
    args += ["--settle", str(settle_s), "--loads", str(loads)]
    done = subprocess.run(
        args, env=env, capture_output=True, text=True, cwd=code, timeout=CHILD_TIMEOUT_S
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if not lines:
        return {"error": f"exit {done.returncode}: {done.stderr[-3000:]}"}
    return dict(json.loads(lines[-1]))


def make_profile(out: Path, contacts: int) -> None:
    shape = ["--big", "40", "--small", str(contacts - 1), "--small-min", "10", "--small-max", "40"]
    subprocess.run(
        [sys.executable, str(ROOT / "tools" / "make_big_history.py"), str(out), *shape],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        check=True,
    )


def _medians(runs: list[dict[str, Any]]) -> dict[str, float]:
    keys = [k for k, v in runs[0].items() if isinstance(v, (int, float))]
    return {
        k: round(statistics.median(r[k] for r in runs if isinstance(r.get(k), (int, float))), 3)
        for k in keys
    }


def main(args: argparse.Namespace) -> dict[str, Any]:
    codes = [ROOT, *args.code]
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-window-load-") as folder:
        work = Path(folder)
        for count in args.contacts:
            pair = work / f"pair{count}"
            t0 = time.perf_counter()
            make_profile(pair, count)
            print(f"made {count} contacts in {time.perf_counter() - t0:.1f}s", file=sys.stderr)
            runs: dict[str, list[dict[str, Any]]] = {str(c): [] for c in codes}
            for _ in range(args.rounds):
                for code in codes:  # old and new code alternate over copies of one profile
                    copy = work / "run"
                    shutil.copytree(pair / "alice", copy)
                    try:
                        figures = run_child(code, copy, args.settle, args.loads)
                    finally:
                        shutil.rmtree(copy, ignore_errors=True)
                    runs[str(code)].append(figures)
                    print(json.dumps({"code": str(code), count: figures}), file=sys.stderr)
            results[str(count)] = {
                code: {"median": _medians(r), "runs": r} for code, r in runs.items()
            }
    return {"benchmark": "bench_window_load", "rounds": args.rounds, "results": results}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--contacts", type=int, nargs="+", default=[30, 300])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--settle", type=float, default=5.0)
    parser.add_argument("--loads", type=int, default=5)
    parser.add_argument("--code", type=Path, action="append", default=[])
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parsed = parser.parse_args()
    if parsed.child:
        child(parsed.child, parsed.settle, parsed.loads)
    else:
        print(json.dumps(main(parsed)))
