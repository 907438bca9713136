"""Hostile peers at the connection layer: handshaken strangers in bulk, silent handshakes.

Identities cost nothing to make, so a stranger can open any number of authenticated
connections, each one a new identity. Found by the live fuzzer (400 such connections
held a node at ~27 % of a core and 418 file descriptors, with nothing to stop 4,000).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections.abc import Callable

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed as WebSocketClosed

from app.core.identity import IdentityKeys
from app.node.transport.base import ConnectionClosed, TransportSettings
from app.node.transport.manager import TOO_MANY_STRANGERS, ConnectionManager
from app.node.transport.websocket import (
    MAX_PENDING_HANDSHAKES,
    WebSocketConnection,
    WebSocketListener,
    dial_websocket,
)

FAST = TransportSettings(websocket_timeout=5)


async def _closed_within(conn: WebSocketConnection, seconds: float) -> bool:
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await conn.wait_closed()
    return conn.is_closed


@pytest.mark.asyncio
async def test_connections_from_strangers_are_capped_contacts_still_get_in(
    identity_factory: Callable[[], IdentityKeys],
) -> None:
    node_keys, contact = identity_factory(), identity_factory()
    manager = ConnectionManager(
        node_keys,
        None,
        settings=FAST,
        known=lambda a: a == contact.public.address,
        max_strangers=3,
    )
    endpoint = await manager.start_listening("127.0.0.1", 0)
    address = node_keys.public.address
    dialled: list[WebSocketConnection] = []
    try:
        for _ in range(3):
            dialled.append(await dial_websocket(identity_factory(), address, endpoint))
        await asyncio.sleep(0.2)
        assert not any(c.is_closed for c in dialled)

        # one more stranger is turned away, and told why
        extra = await dial_websocket(identity_factory(), address, endpoint)
        dialled.append(extra)
        assert await _closed_within(extra, 3)
        assert extra.close_reason == f"peer closed: {TOO_MANY_STRANGERS}"
        with pytest.raises(ConnectionClosed):
            await extra.send(b"x")

        # a contact is not a stranger: it gets in, and its messages arrive
        friend = await dial_websocket(contact, address, endpoint)
        dialled.append(friend)
        await friend.send(b"hello")
        assert await asyncio.wait_for(manager.receive(), 3) == (contact.public.address, b"hello")
        assert manager.connection(contact.public.address) is not None

        # a stranger who leaves frees a place
        await dialled[0].close()
        await asyncio.sleep(0.2)
        later = await dial_websocket(identity_factory(), address, endpoint)
        dialled.append(later)
        assert not await _closed_within(later, 0.5)
        assert len([c for c in dialled if not c.is_closed]) == 4  # 2 + later + friend
    finally:
        for conn in dialled:
            await conn.close()
        await manager.close()


@pytest.mark.asyncio
async def test_silent_handshakes_from_one_host_do_not_keep_out_another(
    identity_factory: Callable[[], IdentityKeys],
) -> None:
    """Slowloris on the direct path: WebSocket connections that never send a handshake
    message each hold a place for `websocket_timeout`. Before, 32 of them from one host
    filled every place and a contact elsewhere was refused ("busy") until they timed out."""
    node_keys = identity_factory()
    listener = WebSocketListener(node_keys, lambda conn: None, settings=FAST)
    host, port = await listener.start("127.0.0.1", 0)
    silent = []
    try:
        for _ in range(MAX_PENDING_HANDSHAKES):
            silent.append(
                await connect(f"ws://{host}:{port}/", proxy=None, local_addr=("127.0.0.2", 0))
            )
        # the ones over the per-host limit are turned away at once
        with pytest.raises(WebSocketClosed) as refused:
            await asyncio.wait_for(silent[-1].recv(), 3)
        assert refused.value.rcvd is not None and refused.value.rcvd.code == 1013
        # a contact on another host still gets through while the first ones stay silent
        friend = await dial_websocket(
            identity_factory(), node_keys.public.address, f"{host}:{port}"
        )
        assert friend.is_open
        await friend.close()
    finally:
        for ws in silent:
            await ws.close()
        await listener.close()


class _NowhereSlowly:
    """A resolver that takes a moment to find no endpoint (the dial then fails)."""

    async def endpoints(self, address: str) -> list[str]:
        await asyncio.sleep(0.2)
        return []


@pytest.mark.asyncio
async def test_a_dial_nobody_waits_for_any_more_fails_without_an_asyncio_error(
    identity_factory: Callable[[], IdentityKeys],
) -> None:
    """Found by the contact campaign: a dial shared by callers who all gave up (a send
    cancelled while the hostile contact's connections were being closed) failed later
    with nobody to see it, and asyncio logged "Task exception was never retrieved" at
    ERROR with a traceback."""
    loop = asyncio.get_running_loop()
    reported: list[dict[str, object]] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, context: reported.append(context))
    manager = ConnectionManager(identity_factory(), None, settings=FAST, resolver=_NowhereSlowly())
    try:
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(manager.connect(identity_factory().public.address), 0.05)
        await asyncio.sleep(0.4)  # the dial fails meanwhile
        gc.collect()
        assert [c["message"] for c in reported] == []
    finally:
        loop.set_exception_handler(previous)
        await manager.close()
