"""Fixtures of the integration tier.

`loopback_ice`: loopback-only ICE for WebRTC tests (never used by production code).
"""

from __future__ import annotations

import sys
from pathlib import Path

import aioice.ice
import pytest

# helper modules of this folder (cli_helpers) are imported by plain name
sys.path.insert(0, str(Path(__file__).parent))


class _NoMdns:
    """Stands in for aioice's mDNS protocol so no multicast query leaves the host."""

    async def resolve(self, hostname: str, timeout: float = 1.0) -> None:
        return None

    async def close(self) -> None:
        return None


@pytest.fixture
def loopback_ice(monkeypatch: pytest.MonkeyPatch) -> None:
    """aioice gathers only non-loopback host candidates; these tests live on 127.0.0.1."""

    def host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        return ["127.0.0.1"] if use_ipv4 else []

    async def no_mdns(subscriber: object) -> _NoMdns:
        return _NoMdns()

    monkeypatch.setattr(aioice.ice, "get_host_addresses", host_addresses)
    monkeypatch.setattr(aioice.ice, "get_or_create_mdns_protocol", no_mdns)
