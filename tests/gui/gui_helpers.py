"""Helpers shared by the GUI tests. A module with its own name (not `conftest`), so the
GUI tests import it correctly when pytest also loads another folder's conftest.py in the
same run (the `conftest` module name would then be taken by the last one loaded)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

from app.node import api

PASSPHRASE = "correct horse battery"


def options(profile: Path) -> api.DaemonOptions:
    """Loopback only, no LAN discovery."""
    return api.DaemonOptions(profile=profile, listen="127.0.0.1:0", lan=False)


async def wait_for(predicate: Callable[[], object], timeout: float = 10.0) -> None:
    """Let the (qasync) loop run until `predicate()` is true."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)
