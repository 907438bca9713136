"""The frozen app, built once per test session and shared by the packaging tests.

Building takes ~40 s on 2 cores with a warm PyInstaller work folder (build/ is git-ignored
and kept between runs). Set SCRAMBLED_EGGS_FROZEN_APP to an already built one-folder app
(e.g. dist/scrambled-eggs from `packaging/build.py linux-onedir`) to skip the build.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BUILD = ROOT / "build" / "test-packaging"
APP_NAME = "scrambled-eggs"
FROZEN_APP_ENV = "SCRAMBLED_EGGS_FROZEN_APP"
BUILD_TIMEOUT_S = 1200


def _build_onedir() -> Path:
    try:
        import PyInstaller  # type: ignore[import-untyped]  # noqa: F401
    except ImportError:
        pytest.fail(
            "PyInstaller is not installed in this environment: the packaging tests need it "
            "(pip install 'pyinstaller>=6.10'; it belongs in the test extras)"
        )
    dist = BUILD / "dist"
    started = time.monotonic()
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "PyInstaller",
            str(ROOT / "build.spec"),
            "--noconfirm",
            "--log-level=WARN",
            "--distpath",
            str(dist),
            "--workpath",
            str(BUILD / "work"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT_S,
    )
    assert done.returncode == 0, f"PyInstaller failed:\n{done.stdout[-4000:]}{done.stderr[-4000:]}"
    print(f"\nfrozen one-folder app built in {time.monotonic() - started:.1f} s")
    return dist / APP_NAME


@pytest.fixture(scope="session")
def frozen_app() -> Path:
    """The one-folder frozen app (a folder holding the `scrambled-eggs` executable)."""
    if sys.platform != "linux":
        pytest.skip("the packaging tests build and check the Linux app")
    given = os.environ.get(FROZEN_APP_ENV)
    app = Path(given).resolve() if given else _build_onedir()
    assert (app / APP_NAME).is_file(), f"no executable in {app}"
    return app


@pytest.fixture(scope="session")
def frozen_exe(frozen_app: Path) -> Path:
    """The frozen `scrambled-eggs` executable."""
    return frozen_app / APP_NAME


@pytest.fixture(scope="session")
def deb_package(frozen_app: Path) -> Path:
    """The .deb made from the frozen one-folder app by packaging/build.py."""
    out = BUILD / "deb"
    started = time.monotonic()
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "packaging" / "build.py"),
            "deb",
            "--app",
            str(frozen_app),
            "--dist",
            str(out),
            "--deb-compression",
            "gzip",  # several times faster than xz; the contents are what is checked
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT_S,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    print(f"\n.deb built in {time.monotonic() - started:.1f} s")
    debs = sorted(out.glob(f"{APP_NAME}_*.deb"), key=lambda p: p.stat().st_mtime)
    assert debs, "no .deb was written"
    return debs[-1]
