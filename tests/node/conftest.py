"""Fixtures for the transport tests: identities, in-memory signalling (loopback-only ICE
comes from tests/conftest.py)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import pytest_asyncio

from app.core.identity import IdentityKeys
from app.node.transport.base import TransportSettings

if TYPE_CHECKING:
    from app.node.service import NodeService
    from app.node.transport.webrtc import WebRTCConnection

SignalHandler = Callable[[bytes], Awaitable[bytes]]
SmallTmpfs = Callable[[Path, str], contextlib.AbstractContextManager[Path]]


@contextlib.contextmanager
def _small_tmpfs(path: Path, size: str) -> Iterator[Path]:
    """A tmpfs of `size` mounted at `path` (a real full disk); skips without root."""
    path.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True
    )
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {result.stderr.decode().strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "--lazy", str(path)], check=True)  # lazy: a file may be open


@pytest.fixture
def small_tmpfs() -> SmallTmpfs:
    """`with small_tmpfs(path, "1m") as folder:` a tiny real file system."""
    return _small_tmpfs


def _fill_disk(folder: Path) -> Path:
    """Write a file into `folder` until its file system takes no more; the file's path."""
    filler = folder / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        for step in (64 * 1024, 4096, 1):
            with contextlib.suppress(OSError):
                while True:
                    os.write(fd, bytes(step))
    finally:
        os.close(fd)
    return filler


@pytest.fixture
def fill_disk() -> Callable[[Path], Path]:
    """`fill_disk(folder)`: fill `folder`'s (small) file system; returns the filler."""
    return _fill_disk


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


@contextlib.asynccontextmanager
async def relayed_pair(
    settings: TransportSettings,
    signaller: MemorySignaller,
    identity_factory: Callable[[], IdentityKeys],
) -> AsyncIterator[tuple[WebRTCConnection, WebRTCConnection]]:
    """Two WebRTC peers with `settings` (relay only, a TURN server), connected: the
    dialler's connection and the answerer's (closed on the way out)."""
    from app.node.transport.webrtc import WebRTCResponder, dial_webrtc

    alice_keys, bob_keys = identity_factory(), identity_factory()
    inbound: asyncio.Queue[WebRTCConnection] = asyncio.Queue()
    responder = WebRTCResponder(bob_keys, inbound.put_nowait, settings=settings)
    signaller.register(bob_keys.public.address, responder.handle_signal)
    conn = await dial_webrtc(alice_keys, bob_keys.public.address, signaller, settings=settings)
    bob_conn = await asyncio.wait_for(inbound.get(), 10)
    try:
        yield conn, bob_conn
    finally:
        await conn.close()
        await bob_conn.close()


async def assert_relayed_through_turn(
    settings: TransportSettings,
    signaller: MemorySignaller,
    identity_factory: Callable[[], IdentityKeys],
) -> None:
    """Two WebRTC peers with `settings` (relay only, a TURN server) connect over "turn"
    and a payload crosses."""
    async with relayed_pair(settings, signaller, identity_factory) as (conn, bob_conn):
        assert conn.path == bob_conn.path == "turn"
        await conn.send(b"relayed")
        assert await asyncio.wait_for(bob_conn.recv(), 10) == b"relayed"


@pytest_asyncio.fixture
async def node(tmp_path: Path) -> AsyncIterator[NodeService]:
    """A node service over a fresh profile (no network); files may define their own."""
    from app.node.profile import create_profile, open_store
    from app.node.service import NodeService

    create_profile(tmp_path / "me", "Me", None)
    store = open_store(tmp_path / "me", None)
    service = NodeService(store)
    yield service
    service.close()
    store.close()
