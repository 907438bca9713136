"""Hostile peers at the connection layer: strangers who complete the handshake in bulk.

Identities cost nothing to make, so a stranger can open any number of authenticated
connections, each one a new identity. Found by the live fuzzer (400 such connections
held a node at ~27 % of a core and 418 file descriptors, with nothing to stop 4,000).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

import pytest

from app.core.identity import IdentityKeys
from app.node.transport.base import ConnectionClosed, TransportSettings
from app.node.transport.manager import TOO_MANY_STRANGERS, ConnectionManager
from app.node.transport.websocket import WebSocketConnection, dial_websocket

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
