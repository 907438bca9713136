"""A TURN server set in the settings, against a real coturn on loopback: credentials it
refuses are said when set (aioice dropped the failure silently: no relay path, no word),
a password holding '@' and ':' carries a relayed connection, and the password is never
in a refusal, the settings' log or the node's log."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable

import pytest
from aioice import turn

from app.core.identity import IdentityKeys
from app.node.api import InvalidArgument, UpdateSettings
from app.node.service import NodeService
from app.node.transport.base import TransportSettings
from app.node.transport.ice_urls import ice_servers_of
from tests.conftest import TURN_PASSWORD as PASSWORD
from tests.conftest import Coturn
from tests.node.conftest import MemorySignaller, assert_relayed_through_turn, relayed_pair

pytestmark = [pytest.mark.slow]


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.asyncio
async def test_credentials_the_turn_server_refuses_are_said_when_set(
    node: NodeService, coturn: int, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = f"turn:u:{PASSWORD}x@127.0.0.1:{coturn}"
    for text in (wrong, f"{wrong}?transport=tcp"):
        with pytest.raises(InvalidArgument, match="refused the user name and password") as exc:
            await node.update_settings(UpdateSettings(ice_servers=[text]))
        assert PASSWORD not in str(exc.value)
    assert (await node.get_settings()).ice_servers == []  # nothing saved

    right = f"turn:u:{PASSWORD}@127.0.0.1:{coturn}"
    saved = await node.update_settings(UpdateSettings(ice_servers=[right]))
    assert saved.ice_servers == [right]
    assert PASSWORD not in caplog.text


@pytest.mark.asyncio
async def test_a_turn_server_that_does_not_answer_is_accepted(node: NodeService) -> None:
    """It may be down for a while; connections come up by the other paths meanwhile."""
    text = f"turn:u:{PASSWORD}@127.0.0.1:{_free_udp_port()}?transport=tcp"
    saved = await node.update_settings(UpdateSettings(ice_servers=[text]))
    assert saved.ice_servers == [text]


@pytest.mark.asyncio
@pytest.mark.usefixtures("loopback_ice")
async def test_a_password_with_at_and_colon_relays_through_coturn(
    coturn: int, signaller: MemorySignaller, identity_factory: Callable[[], IdentityKeys]
) -> None:
    """The entry exactly as the user types it, parsed by the node, relay-only."""
    servers = ice_servers_of([f"turn:u:{PASSWORD}@127.0.0.1:{coturn}"])
    settings = TransportSettings(ice_servers=servers, relay_only=True, webrtc_timeout=10)
    await assert_relayed_through_turn(settings, signaller, identity_factory)


@pytest.mark.asyncio
@pytest.mark.usefixtures("loopback_ice")
async def test_closing_a_relayed_connection_does_not_wait_for_a_turn_server_gone(
    coturn_server: Coturn,
    signaller: MemorySignaller,
    identity_factory: Callable[[], IdentityKeys],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Found with two daemons in network namespaces: with the TURN server gone, stopping
    the node took 65 s, the connection's close waiting for aioice to give up deleting
    its relay allocation (a STUN transaction retried for ~40 s, once per allocation)."""
    deleted = asyncio.Event()
    delete = turn.TurnClientMixin.delete

    async def delete_and_tell(self: turn.TurnClientMixin) -> None:
        try:
            await delete(self)
        finally:
            deleted.set()

    monkeypatch.setattr(turn.TurnClientMixin, "delete", delete_and_tell)
    servers = ice_servers_of([f"turn:u:{PASSWORD}@127.0.0.1:{coturn_server.port}"])
    settings = TransportSettings(ice_servers=servers, relay_only=True, webrtc_timeout=10)
    async with relayed_pair(settings, signaller, identity_factory) as (conn, _):
        assert conn.path == "turn"
        coturn_server.process.terminate()  # the TURN server goes away (or the network)
        coturn_server.process.wait(5)
        await conn.close()
        # the close returned while aioice still tries to delete the allocation
        assert not deleted.is_set()
