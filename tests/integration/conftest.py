"""Integration tier: separate processes, driven through the CLI as a user would.

Helper modules of this folder (cli_helpers, ipfs_daemon) are imported by plain name.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from cli_helpers import Daemon


@pytest.fixture
def daemons() -> Iterator[list[Daemon]]:
    """Daemons a test starts; all stopped at the end, whatever happened."""
    started: list[Daemon] = []
    yield started
    for daemon in started:
        daemon.stop()


@pytest.fixture
def ice_loopback_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Daemons started by the test use 127.0.0.1 ICE candidates (the documented
    test-only setting SCRAMBLED_EGGS_ICE_LOOPBACK=1; see docs/protocol.md)."""
    monkeypatch.setenv("SCRAMBLED_EGGS_ICE_LOOPBACK", "1")
