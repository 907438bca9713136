"""Benchmark: the window's first pages while the node's start-up work runs (decision 0026).

Alice's profile of a big pair (``tools/make_big_history.py``; ``--big-pair DIR`` reuses
one) is brought to the state a user meets after a clean stop with the big conversation
unsettled: her daemon (this tree's code) starts, settles, queues a message to Bob (who
is offline) and stops cleanly, so the next start rebuilds and reconciles Bob's history.
Then, for ``--rounds`` rounds, each code tree (this one and each ``--code DIR``,
alternating) on its own fresh copy of that state:

* ``window``: the window (offscreen, bench_gui.py's child of that tree): seconds until
  it shows and until its node is up with the contacts' last messages loaded
  (``ready_s``), then opening Bob's conversation and scrolling back ten pages
  (``open_100k_ms``, ``older_page_ms_median``);
* ``window_now``: the same, opening Bob's conversation as soon as the window is up (a
  user who starts the app to read Bob's last message: the start-up work still runs);
* ``daemon``: Alice's daemon: from its control socket answering, the first page of
  Bob's conversation (``first_page_ms``) and a search (``first_search_ms``) while the
  start-up work runs, then the same once settled (``page_ms``, ``search_ms``, median of
  5), and the CLI's ``messages Bob --json`` and ``search NEEDLE --json`` (median of 3,
  the whole command as a user waits for it).

Usage: ``.venv/bin/python bench/bench_window_start.py --big-pair DIR --code /work/main``.
Prints ONE JSON object (every run, and the median per figure and tree).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import bench_big_history as big  # noqa: E402

from app.node.api import ListMessages, SearchMessages, SendMessage  # noqa: E402


async def prepare(pair: Path, state: Path) -> str:
    """Alice's profile after a clean stop with Bob's conversation unsettled; Bob's address."""
    shutil.copytree(pair / "alice", state)
    process, client = await big.start_daemon(ROOT, state)
    try:
        await big.settle(process.pid)
        bob = next(c.address for c in await client.list_contacts() if c.name == "Bob")
        await client.send_message(SendMessage("Bob", "are you there?"))  # stays queued
    finally:
        await big.stop_daemon(process, client)
    return bob


async def _ms(coro: Any) -> float:
    t0 = time.perf_counter()
    await coro
    return round((time.perf_counter() - t0) * 1000, 1)


async def daemon(code: Path, profile: Path) -> dict[str, Any]:
    """First page and search while the start-up work runs, then once settled."""
    process, client = await big.start_daemon(code, profile)
    try:
        out = {
            "first_page_ms": await _ms(client.list_messages(ListMessages("Bob", limit=50))),
            "first_search_ms": await _ms(client.search_messages(SearchMessages(big.NEEDLE))),
        }
        await big.settle(process.pid)
        pages = [await _ms(client.list_messages(ListMessages("Bob", limit=50))) for _ in range(5)]
        found = [await _ms(client.search_messages(SearchMessages(big.NEEDLE))) for _ in range(5)]
        out["page_ms"] = statistics.median(pages)
        out["search_ms"] = statistics.median(found)
        out["search_hits"] = len(await client.search_messages(SearchMessages(big.NEEDLE)))
        out["cli_messages_s"] = big.cli_seconds(code, profile, "messages", "Bob")
        out["cli_search_s"] = big.cli_seconds(code, profile, "search", big.NEEDLE)
        return out
    finally:
        await big.stop_daemon(process, client)


def _medians(runs: list[dict[str, Any]]) -> dict[str, float]:
    keys = [k for k, v in runs[0].items() if isinstance(v, (int, float))]
    return {
        k: round(statistics.median(r[k] for r in runs if isinstance(r.get(k), (int, float))), 3)
        for k in keys
    }


async def main(args: argparse.Namespace) -> dict[str, Any]:
    codes = [ROOT, *args.code]
    with tempfile.TemporaryDirectory(prefix="bench-window-start-") as folder:
        work = Path(folder)
        pair = args.big_pair
        if pair is None:
            pair = work / "big"
            big.make_pair(pair, "--big", str(args.big))
        state = work / "state"
        bob = await prepare(pair, state)
        runs: dict[str, dict[str, list[dict[str, Any]]]] = {}
        for _ in range(args.rounds):
            for code in codes:  # old and new code alternate over copies of one state
                mine = runs.setdefault(str(code), {"window": [], "window_now": [], "daemon": []})
                for part in ("window", "window_now", "daemon"):
                    copy = work / "run"
                    shutil.copytree(state, copy)
                    try:
                        if part.startswith("window"):
                            figures = big.window(code, copy, bob, 0 if part == "window_now" else 3)
                        else:
                            figures = await daemon(code, copy)
                    finally:
                        shutil.rmtree(copy, ignore_errors=True)
                    mine[part].append(figures)
                    print(json.dumps({"code": str(code), part: figures}), file=sys.stderr)
        return {
            "benchmark": "bench_window_start",
            "rounds": args.rounds,
            "results": {
                code: {part: {"median": _medians(r), "runs": r} for part, r in parts.items()}
                for code, parts in runs.items()
            },
        }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--big", type=int, default=100_000)
    parser.add_argument("--big-pair", type=Path, help="a pair made by make_big_history.py")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--code", type=Path, action="append", default=[])
    print(json.dumps(asyncio.run(main(parser.parse_args()))))
