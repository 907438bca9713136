"""Memory probe for a running node, loaded by Python itself at start (no app change).

Start a daemon with this folder first on the path and a folder for the reports:

    PYTHONPATH=tools/memprobe:. MEMPROBE_DIR=/tmp/probe [MEMPROBE_TRACE=1] \
        python -m app --profile P daemon ...

then `kill -USR1 PID` writes ``DIR/probe-N.json``: RSS, glibc's malloc statistics
(`mallinfo2`: bytes in use versus held), Python's own small-object arenas, anonymous
memory, the thread count, the 30 most numerous object types, and every
container attribute of an ``app.*`` object holding more than 20 items (``Class.attr``:
length), which is where a table that grows with what peers send shows up. With
``MEMPROBE_TRACE=1`` tracemalloc runs from the start (costs memory and speed, so RSS
figures are only comparable between runs with the same setting) and each probe also
writes ``DIR/probe-N.trace`` (a `tracemalloc.Snapshot`, diff two with
``python -m tools.memprobe.diff A B``). `kill -USR2 PID` calls glibc's ``malloc_trim(0)``
and writes the RSS before and after to ``DIR/trim-N.json``: memory Python freed but the
allocator kept (fragmented arenas) comes back to the system then, live objects don't.
Without MEMPROBE_DIR this file does nothing.
"""

from __future__ import annotations

import ctypes
import gc
import json
import os
import signal
import sys
import tempfile
import threading
import time
import tracemalloc
from collections import Counter
from pathlib import Path
from types import FrameType
from typing import Any

_DIR = os.environ.get("MEMPROBE_DIR")
_count = 0


def rss_kib() -> int:
    """This process's resident set (KiB)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return -1


class _Mallinfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
            "fsmblks", "uordblks", "fordblks", "keepcost",
        )
    ]  # fmt: skip


def _libc() -> Any:
    return ctypes.CDLL("libc.so.6")


def mallinfo() -> dict[str, int]:
    """glibc's heap: `arena` (bytes held from the system, main and thread arenas),
    `uordblks` (in use), `fordblks` (free but held), `hblkhd` (mmapped blocks)."""
    libc = _libc()
    libc.mallinfo2.restype = _Mallinfo2
    info = libc.mallinfo2()
    return {name: int(getattr(info, name)) for name, _ in _Mallinfo2._fields_}


def pymalloc() -> dict[str, int]:
    """Python's small-object allocator: arenas, bytes in live blocks, bytes held."""
    with tempfile.TemporaryFile() as out:
        saved = os.dup(2)
        os.dup2(out.fileno(), 2)
        try:
            sys._debugmallocstats()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        out.seek(0)
        text = out.read().decode(errors="replace")
    found = {}
    for line in text.splitlines():
        for key in ("# arenas allocated current", "# bytes in allocated blocks", "Total"):
            if line.startswith(key) and "=" in line and key.strip("# ") not in found:
                found[key.strip("# ")] = int(line.split("=")[1].replace(",", "").strip())
    return found


def anonymous_kib() -> int:
    """Anonymous memory of the process (heap, arenas, thread stacks), KiB."""
    for line in Path("/proc/self/smaps_rollup").read_text().splitlines():
        if line.startswith("Anonymous:"):
            return int(line.split()[1])
    return -1


def _length(value: object) -> int | None:
    if isinstance(value, dict | set | frozenset | list | tuple) or type(value).__name__ in (
        "deque",
        "OrderedDict",
        "Counter",
        "defaultdict",
    ):
        return len(value)  # type: ignore[arg-type]
    return None


_PACKAGES = ("app.", "kademlia", "rpcudp", "aiortc", "aioice", "websockets")


def containers() -> dict[str, int]:
    """``Class.attr`` -> length, for container attributes of app objects over 20 items."""
    found: dict[str, int] = {}
    for obj in gc.get_objects():
        cls = type(obj)
        module = cls.__dict__.get("__module__")
        if not isinstance(module, str) or not module.startswith(_PACKAGES):
            continue
        names: dict[str, object] = {}
        if hasattr(obj, "__dict__"):
            names.update(vars(obj))
        for slot in getattr(cls, "__slots__", ()):
            if hasattr(obj, slot):
                names[slot] = getattr(obj, slot)
        for attr, value in names.items():
            size = _length(value)
            if size is not None and size > 20:
                key = f"{module}.{cls.__qualname__}.{attr}"
                found[key] = max(found.get(key, 0), size)
    return dict(sorted(found.items(), key=lambda kv: -kv[1]))


def probe(signum: int = 0, frame: FrameType | None = None) -> None:
    """Write one report (see the module docstring); a failure is written, not raised
    (this runs inside the node)."""
    try:
        _probe()
    except Exception as exc:  # never take the node down
        Path(f"{_DIR}/error-{_count}.txt").write_text(repr(exc))


def _probe() -> None:
    global _count
    _count += 1
    assert _DIR is not None
    gc.collect()
    types = Counter(type(o).__qualname__ for o in gc.get_objects())
    report = {
        "time": time.time(),
        "rss_kib": rss_kib(),
        "mallinfo": mallinfo(),
        "pymalloc": pymalloc(),
        "anonymous_kib": anonymous_kib(),
        "threads": threading.active_count(),
        "gc_objects": sum(types.values()),
        "types": dict(types.most_common(30)),
        "containers": containers(),
        "tracing": tracemalloc.is_tracing(),
    }
    if tracemalloc.is_tracing():
        tracemalloc.take_snapshot().dump(f"{_DIR}/probe-{_count}.trace")
        report["traced_bytes"] = tracemalloc.get_traced_memory()[0]
    Path(f"{_DIR}/probe-{_count}.json").write_text(json.dumps(report, indent=1))


def trim(signum: int = 0, frame: FrameType | None = None) -> None:
    """`malloc_trim(0)` and the RSS before and after."""
    global _count
    _count += 1
    before = rss_kib()
    gc.collect()
    _libc().malloc_trim(0)
    after = {
        "rss_before_kib": before,
        "rss_after_kib": rss_kib(),
        "mallinfo": mallinfo(),
        "pymalloc": pymalloc(),
        "anonymous_kib": anonymous_kib(),
    }
    Path(f"{_DIR}/trim-{_count}.json").write_text(json.dumps(after, indent=1))


if _DIR and sys.platform == "linux":
    Path(_DIR).mkdir(parents=True, exist_ok=True)
    if os.environ.get("MEMPROBE_TRACE") == "1":
        tracemalloc.start(int(os.environ.get("MEMPROBE_FRAMES", "6")))
    signal.signal(signal.SIGUSR1, probe)
    signal.signal(signal.SIGUSR2, trim)
