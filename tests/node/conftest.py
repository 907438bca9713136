"""Fixtures for the transport tests: loopback-only ICE, identities, in-memory signalling."""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable

import aioice.ice
import pytest

from app.core.identity import IdentityKeys

SignalHandler = Callable[[bytes], Awaitable[bytes]]


class _NoMdns:
    """Stands in for aioice's mDNS protocol so no multicast query ever leaves the host."""

    async def resolve(self, hostname: str, timeout: float = 1.0) -> None:
        return None

    async def close(self) -> None:
        return None


@pytest.fixture
def loopback_ice(monkeypatch: pytest.MonkeyPatch) -> None:
    """aioice gathers only non-loopback host candidates: use 127.0.0.1 for tests, no mDNS."""

    def host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        return ["127.0.0.1"] if use_ipv4 else []

    async def no_mdns(subscriber: object) -> _NoMdns:
        return _NoMdns()

    monkeypatch.setattr(aioice.ice, "get_host_addresses", host_addresses)
    monkeypatch.setattr(aioice.ice, "get_or_create_mdns_protocol", no_mdns)


def new_identity() -> IdentityKeys:
    """A fresh random identity (tests are the node layer: os.urandom is fine here)."""
    return IdentityKeys.from_seeds(os.urandom(32), os.urandom(32))


class MemorySignaller:
    """An in-memory `Signaller`: delivers each request to the handler registered for the
    peer's address and returns its reply (None when nobody is registered)."""

    def __init__(self) -> None:
        self.handlers: dict[str, SignalHandler] = {}
        self.sent = 0

    def register(self, address: str, handler: SignalHandler) -> None:
        self.handlers[address] = handler

    async def send_signal(self, peer: str, payload: bytes) -> bytes | None:
        self.sent += 1
        handler = self.handlers.get(peer)
        return None if handler is None else await handler(payload)


@pytest.fixture
def signaller() -> MemorySignaller:
    """A fresh in-memory signaller shared by the peers of one test."""
    return MemorySignaller()


@pytest.fixture
def identity_factory() -> Callable[[], IdentityKeys]:
    """Make fresh random identities."""
    return new_identity
