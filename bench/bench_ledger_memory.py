"""Benchmark: the memory and CPU of one long conversation loaded as the node loads it.

For a profile made by `tools/make_big_history.py` (``--pair DIR``: Alice's profile in
``DIR/alice``), loads the history with ``--contact`` (Bob by default) with
`app.node.history.load_ledger`, as the node does when the contact connects or its
conversation is first used, in a fresh child process per measurement:

* ``cpu_s``: the CPU the load takes (every thread of the child);
* ``rss_growth_mb``: the child's RSS after the load (garbage collected) minus before;
  ``peak_rss_growth_mb``: its highest RSS during the load minus that before;
* ``traced_bytes_per_event``: in another child, the bytes tracemalloc sees allocated by
  the load and still held once it is done, per event (the history's whole cost in
  Python objects: the part a peer's request or the window reads again from the store
  is not counted, as it is not held);
* ``top_lines``: that child's ten largest holders, grouped by source line;
* ``receipts_bytes_per_event`` (traced child) and ``receipts_cpu_s``: what the node keeps
  and spends once the first delivery receipt (at the history's heads) and read receipt
  (at our newest event) after the load are applied, as `Messenger` and `Ephemeral` do
  (`history.own_texts_behind`, with the memo of what receipts covered each keeps: a set
  of every event walked before, one seq of ours now).

``--code DIR`` (repeatable) measures another checkout too (e.g. the main branch): the
children of each tree alternate, ``--rounds`` times, each on its own copy of the
profile. Prints ONE JSON object with every round and the medians per tree.
Usage: ``.venv/bin/python bench/bench_ledger_memory.py --pair DIR --code /work/main``.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import linecache
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def _rss_bytes() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * resource.getpagesize()


def _peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # kB on Linux


def child(profile: Path, contact: str, traced: bool) -> dict[str, Any]:
    """One load of the history with `contact` (the code on PYTHONPATH does it)."""
    from app.node.history import load_ledger
    from app.node.profile import open_store

    store = open_store(profile, None)
    try:
        address = next(c.address for c in store.contacts.all() if c.name == contact)
        gc.collect()
        if traced:
            tracemalloc.start(1)
            before = tracemalloc.take_snapshot()
        rss0, cpu0, wall0 = _rss_bytes(), time.process_time(), time.perf_counter()
        ledger = asyncio.run(load_ledger(store, address))
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
        gc.collect()
        events = len(ledger)
        out: dict[str, Any] = {"events": events}
        if traced:
            stats = tracemalloc.take_snapshot().compare_to(before, "lineno")
            out["traced_bytes_per_event"] = round(sum(s.size_diff for s in stats) / events, 1)
            top = []
            for stat in stats[:10]:
                frame = stat.traceback[0]
                code = linecache.getline(frame.filename, frame.lineno).strip()
                where = f"{Path(frame.filename).name}:{frame.lineno}"
                top.append([round(stat.size_diff / events, 1), where, code[:80]])
            out["top_lines"] = top
        else:
            out.update(
                cpu_s=round(cpu, 3),
                wall_s=round(wall, 3),
                rss_growth_mb=round((_rss_bytes() - rss0) / 1e6, 1),
                peak_rss_growth_mb=round((_peak_rss_bytes() - rss0) / 1e6, 1),
            )
        out.update(_receipts(ledger, store.identity.public.signing_key, traced))
        del ledger
        return out
    finally:
        store.close()


def _receipts(ledger: Any, own_key: bytes, traced: bool) -> dict[str, Any]:
    """The first delivery and read receipts after a load, with the memos kept."""
    import inspect

    from app.node.history import own_texts_behind

    newest_own = next((e.cid for e in reversed(ledger.ordered()) if e.author == own_key), None)
    old_form = "walked" in inspect.signature(own_texts_behind).parameters
    gc.collect()
    if traced:
        before = tracemalloc.take_snapshot()
    cpu0 = time.process_time()
    memos: list[Any] = []
    covered = 0
    for starts in (list(ledger.heads()), [newest_own] if newest_own else []):
        if old_form:  # the code before: a set of every event walked, per receipt kind
            walked: set[Any] = set()
            ids = own_texts_behind(ledger, starts, walked, own_key)
            memos.append(walked)
        else:
            ids, covered = own_texts_behind(ledger, starts, 0, own_key)
            memos.append(covered)
        memos.append(len(ids))
    cpu = time.process_time() - cpu0
    gc.collect()
    if not traced:
        return {"receipts_cpu_s": round(cpu, 3), "receipt_ids": memos[1]}
    stats = tracemalloc.take_snapshot().compare_to(before, "lineno")
    return {"receipts_bytes_per_event": round(sum(s.size_diff for s in stats) / len(ledger), 1)}


def run_child(code: Path, profile: Path, contact: str, traced: bool) -> dict[str, Any]:
    env = {
        **os.environ,
        "PYTHONPATH": str(code),
        "PYTHON_KEYRING_BACKEND": "keyring.backends.fail.Keyring",
    }
    args = [sys.executable, str(Path(__file__).resolve()), "--child", str(profile)]
    args += ["--contact", contact] + (["--traced"] if traced else [])
    done = subprocess.run(args, env=env, cwd=code, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        return {"error": done.stderr[-2000:]}
    return json.loads(done.stdout)


def main(args: argparse.Namespace) -> dict[str, Any]:
    codes = [ROOT, *args.code]
    results: dict[str, list[dict[str, Any]]] = {str(code): [] for code in codes}
    with tempfile.TemporaryDirectory(prefix="bench_ledger_memory_") as tmp:
        copies = {}
        for index, code in enumerate(codes):
            copies[code] = Path(tmp) / f"alice{index}"
            shutil.copytree(args.pair / "alice", copies[code])
        for round_index in range(args.rounds):
            for code in codes if round_index % 2 == 0 else list(reversed(codes)):
                figures = run_child(code, copies[code], args.contact, traced=False)
                if round_index == 0:
                    figures.update(run_child(code, copies[code], args.contact, traced=True))
                results[str(code)].append(figures)
                print(json.dumps({"code": str(code), **figures}), file=sys.stderr)
    summary: dict[str, Any] = {}
    for code, rounds in results.items():
        good = [r for r in rounds if "error" not in r]
        summary[code] = {
            key: statistics.median(r[key] for r in good)
            for key in ("cpu_s", "wall_s", "rss_growth_mb", "peak_rss_growth_mb", "receipts_cpu_s")
            if good
        } | {
            "traced_bytes_per_event": good[0].get("traced_bytes_per_event") if good else None,
            "receipts_bytes_per_event": good[0].get("receipts_bytes_per_event") if good else None,
            "events": good[0]["events"] if good else None,
        }
    return {"medians": summary, "rounds": results}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pair", type=Path)
    parser.add_argument("--contact", default="Bob")
    parser.add_argument("--code", type=Path, action="append", default=[])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--child", type=Path)
    parser.add_argument("--traced", action="store_true")
    parsed = parser.parse_args()
    if parsed.child is not None:
        print(json.dumps(child(parsed.child, parsed.contact, parsed.traced)))
    else:
        print(json.dumps(main(parsed)))
