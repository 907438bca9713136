"""Benchmark: saving the received files of a folder of small files (publishing only).

The receiver's last steps for each file, as the node takes them (`FileTransfers._fetch_now`,
32 files of one contact at once, each step in a worker thread): the final checkpoint
(the part flushed), then publishing (the part flushed again by the old code, linked under
its name, the folder fsynced), then the part's own name removed. The network, the store
and the history are left out: they are measured by ``bench_small_files.py``; here is the
part of the receiver's cost that publishing is, without their noise.

In a child process per tree (this one and each ``--code DIR``, alternating, ``--rounds``
times), ``--files`` parts of ``--size`` bytes each are received first (in-process, from
a local blockstore), then saved ``--at-once`` at a time into one folder of a fresh
downloads folder on this file system (``--dir``; /tmp by default): ``save_s`` is the
wall time of saving them all; ``file_ms_p50``/``p90`` how long one file took, from its
checkpoint to its name durable. A tree's ``--variant``: ``node`` (what the tree's node
does: ``publish`` and, where it exists, the folder fsync shared by ``FolderSyncs``) or
``inline`` (``publish`` then an fsync of the folder of its own, ``sync_folder()``).

Usage: ``.venv/bin/python bench/bench_publish.py --code /work/main``. Prints ONE JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


async def child(work: Path, files: int, size: int, at_once: int, variant: str) -> dict[str, Any]:
    """Runs with the tested tree first on sys.path (PYTHONPATH)."""
    from app.node.blockstore import Blockstore
    from app.node.file_fetch import fetch_into
    from app.node.file_io import share_file
    from app.node.part_file import PartFile

    sender, receiver = (
        Blockstore(work / "sender" / "blocks"),
        Blockstore(work / "receiver" / "blocks"),
    )
    source = work / "source"
    source.mkdir()
    downloads = work / "downloads"
    key = bytes(range(32))
    parts = []
    for i in range(files):
        path = source / f"f{i:05d}.bin"
        path.write_bytes(os.urandom(size))
        manifest = await share_file(path, sender, key)
        manifest = dataclasses.replace(manifest, folder=("album",))
        part = PartFile(manifest, downloads, f"{i:016x}")
        await fetch_into(manifest, receiver, part, {"peer": _Source(sender)})
        parts.append(part)

    shared = None
    if variant == "node" and hasattr(PartFile, "sync_folder"):
        from app.node.folder_syncs import FolderSyncs

        shared = FolderSyncs()
    slots = asyncio.Semaphore(at_once)
    took: list[float] = []

    async def save(part: Any) -> None:
        async with slots:
            t0 = time.perf_counter()
            await asyncio.to_thread(part.checkpoint)
            if shared is not None:
                await asyncio.to_thread(lambda: (part.publish(), part.sync_folder(shared)))
            elif hasattr(part, "sync_folder"):
                await asyncio.to_thread(lambda: (part.publish(), part.sync_folder()))
            else:
                await asyncio.to_thread(part.publish)
            took.append((time.perf_counter() - t0) * 1000)
            await asyncio.to_thread(part.discard)

    t0 = time.perf_counter()
    await asyncio.gather(*(save(p) for p in parts))
    wall = time.perf_counter() - t0
    saved = list((downloads / "album").iterdir())
    ordered = sorted(took)
    return {
        "save_s": round(wall, 3),
        "file_ms_p50": round(statistics.median(ordered), 2),
        "file_ms_p90": round(ordered[int(len(ordered) * 0.9) - 1], 2),
        "saved": len(saved),
        "shared_folder_fsync": shared is not None,
    }


class _Source:
    """A peer holding every block (the sender's blockstore), answering at once."""

    def __init__(self, store: Any) -> None:
        self._store = store

    async def get_block(self, cid: bytes) -> bytes | None:
        data: bytes | None = await self._store.get_block(cid)
        return data


def run_child(code: Path, args: argparse.Namespace, variant: str) -> dict[str, Any]:
    env = dict(os.environ, PYTHONPATH=str(code))
    with tempfile.TemporaryDirectory(prefix="bench-publish-", dir=args.dir) as work:
        cmd = [sys.executable, __file__, "--child", work, "--files", str(args.files)]
        cmd += ["--size", str(args.size), "--at-once", str(args.at_once), "--variant", variant]
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=code)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if not lines:
        return {"error": f"exit {done.returncode}: {done.stderr[-2000:]}"}
    return dict(json.loads(lines[-1]))


def main(args: argparse.Namespace) -> dict[str, Any]:
    trees = [(str(ROOT), "node"), (str(ROOT), "inline")] + [(str(c), "node") for c in args.code]
    runs: dict[str, list[dict[str, Any]]] = {f"{c} {v}": [] for c, v in trees}
    for r in range(args.rounds):
        for code, variant in trees if r % 2 == 0 else trees[::-1]:
            figures = run_child(Path(code), args, variant)
            runs[f"{code} {variant}"].append(figures)
            print(json.dumps({"code": code, "variant": variant, **figures}), file=sys.stderr)
    medians = {
        name: {
            k: statistics.median(r[k] for r in rs if k in r)
            for k in ("save_s", "file_ms_p50", "file_ms_p90")
            if any(k in r for r in rs)
        }
        for name, rs in runs.items()
    }
    return {
        "benchmark": "bench_publish",
        "files": args.files,
        "size": args.size,
        "at_once": args.at_once,
        "rounds": args.rounds,
        "median": medians,
        "runs": runs,
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=600)
    parser.add_argument("--size", type=int, default=2000)
    parser.add_argument("--at-once", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--dir", default=None, help="where the downloads folder is made")
    parser.add_argument("--code", type=Path, action="append", default=[])
    parser.add_argument("--variant", default="node", choices=["node", "inline"])
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parsed = parser.parse_args()
    if parsed.child:
        result = asyncio.run(
            child(Path(parsed.child), parsed.files, parsed.size, parsed.at_once, parsed.variant)
        )
        print(json.dumps(result))
    else:
        print(json.dumps(main(parsed)))
