"""Fixtures for the transport tests: identities, in-memory signalling (loopback-only ICE
comes from tests/conftest.py)."""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable

import pytest

from app.core.identity import IdentityKeys

SignalHandler = Callable[[bytes], Awaitable[bytes]]


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
