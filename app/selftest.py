"""`scrambled-eggs --selftest`: prove that this build of the app works on this machine.

It creates a throw-away profile protected by a random passphrase (the OS keyring is never
touched), hosts the real node on loopback, opens the real main window over it, and prints
one line per check. Exit code 0 only if every check passed.

It also reports how long the first window took to appear, which the packaging benchmark
reads: set `SCRAMBLED_EGGS_SELFTEST_T0` to the launcher's `time.monotonic()` just before
starting the process to measure from the launch itself (CLOCK_MONOTONIC is system-wide on
Linux, macOS and Windows). Without it, Linux measures from the process start time in
/proc; elsewhere from the start of the self-test.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import platform
import secrets
import shutil
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from app import __version__
from app.node import api

if TYPE_CHECKING:
    from PySide6.QtWidgets import QMainWindow

T0_ENV = "SCRAMBLED_EGGS_SELFTEST_T0"
NODE_TIMEOUT_S = 60.0
WINDOW_TIMEOUT_S = 20.0


@dataclass
class Report:
    """The outcome of each check, printed as it happens."""

    started: float
    launch_reference: tuple[float, str]
    failures: list[str] = field(default_factory=list)
    first_window_s: float | None = None
    phases: dict[str, float] = field(default_factory=dict)

    def check(self, name: str, ok: bool, detail: str) -> bool:
        """Print one line for a check and remember a failure."""
        print(f"{'PASS' if ok else 'FAIL'} {name}: {detail}", flush=True)
        if not ok:
            self.failures.append(name)
        return ok


def _launch_reference() -> tuple[float, str]:
    """A `time.monotonic()` value for "when the app was launched", and what it means."""
    given = os.environ.get(T0_ENV)
    if given:
        with contextlib.suppress(ValueError):
            return float(given), "after launch"
    now = time.monotonic()
    # A one-file build runs in a child of its bootloader, which first unpacks the app
    # (most of the start-up time): measure from the bootloader's start then.
    process = "self"
    unpacked = getattr(sys, "_MEIPASS", None)  # one folder: <app>/_internal; one file: /tmp
    if unpacked and not Path(unpacked).is_relative_to(Path(sys.executable).parent):
        process = str(os.getppid())
    try:
        # field 22 of /proc/PID/stat: start time in clock ticks since boot (after the
        # command name, which may itself hold spaces, hence the rpartition)
        fields = Path(f"/proc/{process}/stat").read_text().rpartition(")")[2].split()
        start_ticks = int(fields[19])
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        age = uptime - start_ticks / os.sysconf("SC_CLK_TCK")
        if 0 <= age < 3600:
            return now - age, "after process start"
    except (OSError, ValueError, IndexError, AttributeError):
        pass
    return now, "after self-test start"


def _close_log_handlers_under(folder: Path) -> None:
    """The node logs into the profile; let go of those files so the folder can be removed
    (Windows refuses to delete open files)."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        filename = getattr(handler, "baseFilename", None)
        if filename and Path(filename).is_relative_to(folder):
            root.removeHandler(handler)
            handler.close()


async def _wait_until(predicate: Callable[[], bool], timeout: float) -> bool:
    """Poll `predicate` while the Qt loop keeps running; True once it holds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.005)
    return True


def _window_shown(window: QMainWindow) -> bool:
    handle = window.windowHandle()
    return window.isVisible() and handle is not None and handle.isExposed()


async def _check_window(report: Report, node: api.NodeApi, options: api.DaemonOptions) -> None:
    """Open the app's real main window over the running node and wait until it shows."""
    from PySide6.QtWidgets import QApplication

    from app.gui.app import GuiSession
    from app.gui.theme import ThemeManager

    app = QApplication.instance()
    assert isinstance(app, QApplication)
    themes = ThemeManager(app)
    themes.apply("system")
    session = GuiSession(options, themes)
    session.node = node  # the node is already hosted by the self-test
    begun = time.monotonic()
    try:
        window = await asyncio.wait_for(session.start_window(), WINDOW_TIMEOUT_S)
        shown = await _wait_until(lambda: _window_shown(window), WINDOW_TIMEOUT_S)
        elapsed = time.monotonic() - begun
        report.phases["window_s"] = elapsed
        if shown:
            reference, meaning = report.launch_reference
            report.first_window_s = time.monotonic() - reference
            size = window.size()
            report.check(
                "window",
                True,
                f"{window.windowTitle()!r} shown at {size.width()}x{size.height()} "
                f"on Qt platform {app.platformName()!r} in {elapsed:.3f} s",
            )
            print(f"first window: {report.first_window_s:.3f} s {meaning}", flush=True)
        else:
            report.check("window", False, f"not shown after {WINDOW_TIMEOUT_S:.0f} s")
    finally:
        await session.shutdown()


async def _run_checks(report: Report, profile: Path) -> None:
    passphrase = secrets.token_urlsafe(24)
    begun = time.monotonic()
    created = await asyncio.to_thread(api.init_profile, profile, "Self-test", passphrase)
    report.phases["profile_s"] = time.monotonic() - begun
    report.check(
        "profile",
        created.protection is api.Protection.PASSPHRASE,
        f"created {created.whoami.address} ({created.protection.value}) in "
        f"{report.phases['profile_s']:.3f} s",
    )
    options = api.DaemonOptions(profile=profile, listen="127.0.0.1:0", lan=False)
    begun = time.monotonic()
    async with api.host_node(options, lambda: passphrase) as node:
        status = await asyncio.wait_for(node.status(), NODE_TIMEOUT_S)
        report.phases["node_s"] = time.monotonic() - begun
        node_ok = report.check(
            "node",
            status.running and status.address == created.whoami.address,
            f"running={status.running} on {', '.join(status.endpoints) or 'no endpoint'}, "
            f"{status.dht_peers} DHT peers, up in {report.phases['node_s']:.3f} s",
        )
        if node_ok:
            await _check_window(report, node, options)
        else:
            report.check("window", False, "not tried: the node is not running")


def _check_resources(report: Report) -> None:
    from app.gui.resources import app_icon, icon_path, resource_dir

    folder = resource_dir()
    themes = sorted(p.stem for p in (folder / "themes").glob("*.qss"))
    icon_ok = icon_path("scrambled-eggs.svg").is_file() and not app_icon().isNull()
    report.check(
        "resources",
        icon_ok and bool(themes),
        f"{folder}: app icon {'found' if icon_ok else 'MISSING'}, "
        f"themes {', '.join(themes) or 'MISSING'}",
    )


def _check_qr_codes(report: Report) -> None:
    """The invite window's QR code (segno) reads back (zxing-cpp: the Add contact
    dialog's pictures), so both libraries made it into this build."""
    from PySide6.QtCore import QBuffer, QByteArray, QIODevice
    from PySide6.QtGui import QImage

    from app.gui.qr_reading import texts_in_picture
    from app.gui.resources import qr_pixmap

    text = f"eggs:self-test-{secrets.token_hex(8)}"
    drawn = qr_pixmap(text).toImage()
    photo = QByteArray()  # as a photo comes: JPEG, read by the bundled jpeg plugin
    buffer = QBuffer(photo)
    buffer.open(QIODevice.OpenModeFlag.WriteOnly)
    saved = drawn.save(buffer, "JPG", 90)  # type: ignore[call-overload]  # (str at run time)
    buffer.close()
    try:
        read = texts_in_picture(drawn)
        read_jpeg = texts_in_picture(QImage.fromData(photo)) if saved else []
    except ImportError as exc:
        report.check("qr", False, f"cannot read QR codes: {exc}")
        return
    ok = read == [text] and read_jpeg == [text]
    report.check("qr", ok, f"drawn and read back: PNG {read == [text]}, JPEG {read_jpeg == [text]}")


def _check_models(report: Report) -> None:
    models = api.check_models()
    problems = {name: why for name, why in models.items() if why}
    loaded = sorted(set(models) - set(problems))
    report.check(
        "models",
        not problems,
        "; ".join(f"{name}: {why}" for name, why in problems.items())
        or f"{', '.join(loaded)} loaded (onnxruntime)",
    )


def _run_in_qt(coroutine: Callable[[], Awaitable[None]]) -> None:
    """Run `coroutine` on a qasync loop over the app's QApplication."""
    import qasync

    from app.gui.app import make_application

    app = make_application([sys.argv[0]])
    loop = qasync.QEventLoop(app)
    asyncio.set_event_loop(loop)
    with loop:
        loop.run_until_complete(coroutine())


def run_selftest() -> int:
    """Run every check; 0 if the node and the window both worked, 1 otherwise."""
    report = Report(started=time.monotonic(), launch_reference=_launch_reference())
    # Belt and braces: this process must never reach the user's keyring.
    os.environ["PYTHON_KEYRING_BACKEND"] = "keyring.backends.fail.Keyring"
    frozen = "frozen" if getattr(sys, "frozen", False) else "from source"
    print(
        f"selftest: scrambled-eggs {__version__} ({frozen}), Python "
        f"{platform.python_version()}, {platform.system()} {platform.machine()}",
        flush=True,
    )
    profile = Path(tempfile.mkdtemp(prefix="se-selftest-"))
    try:
        _run_in_qt(lambda: _run_checks_with_resources(report, profile))
    except Exception as exc:  # the self-test reports every failure as a line, never a trace
        report.check("run", False, f"{type(exc).__name__}: {exc}")
    finally:
        _close_log_handlers_under(profile)
        shutil.rmtree(profile, ignore_errors=True)
    report.check("cleanup", not profile.exists(), f"temporary profile {profile} removed")
    total = time.monotonic() - report.started
    if os.environ.get(T0_ENV) and report.first_window_s is not None:
        # one machine-readable line for bench/bench_packaging.py
        timing = {"first_window_s": report.first_window_s, **report.phases}
        print(f"timing: {json.dumps(timing, sort_keys=True)}", flush=True)
    if report.failures:
        print(
            f"selftest: FAILED ({', '.join(report.failures)}) in {total:.2f} s",
            file=sys.stderr,
            flush=True,
        )
        return 1
    print(f"selftest: passed in {total:.2f} s", flush=True)
    return 0


async def _run_checks_with_resources(report: Report, profile: Path) -> None:
    _check_resources(report)
    _check_qr_codes(report)
    _check_models(report)
    await _run_checks(report, profile)
