"""Ask a TURN server for one allocation, to tell whether it takes the user's credentials.

aioice gathers relay candidates in the background and drops any failure silently, so a
TURN server that refuses the user name and password showed nowhere: connections came up
without a relay path (or, relay-only, never), and the user could not tell why. Asked
once when the setting changes (`app.node.setting_probes`), the server's refusal is said
at once. A server that does not answer is not judged here: it may be down for a while,
and connections still come up by the other paths meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass

from aioice import stun, turn

from .ice_urls import IceUrl, shown

PROBE_TIMEOUT = 5.0
DEFAULT_PORTS = {"turn": 3478, "turns": 5349}


class _Closed(asyncio.DatagramProtocol):
    """Tells when the allocation is deleted again (the transport's end)."""

    def __init__(self) -> None:
        self.lost = asyncio.get_running_loop().create_future()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.lost.done():
            self.lost.set_result(None)


async def turn_refusal(server: IceUrl, text: str, timeout: float = PROBE_TIMEOUT) -> str | None:
    """A sentence if the TURN server `server` (the entry `text`) answers with a refusal;
    None if it made the allocation, or did not answer in `timeout` seconds."""
    return (await probe_turn(server, text, timeout)).refusal


@dataclass(frozen=True)
class TurnAnswer:
    """What one allocation asked of a TURN server came to."""

    answered: bool
    """The server answered (with an allocation or a refusal) within the timeout."""
    refusal: str | None = None
    """A sentence when it answered with a refusal."""

    @property
    def relays(self) -> bool:
        """It made the allocation: connections get a relay address from it."""
        return self.answered and self.refusal is None


async def probe_turn(server: IceUrl, text: str, timeout: float = PROBE_TIMEOUT) -> TurnAnswer:
    """Ask the TURN server `server` (the entry `text`) for one allocation, deleted again."""
    address = (server.host, server.port or DEFAULT_PORTS[server.scheme])
    try:
        async with asyncio.timeout(timeout):
            relay, protocol = await turn.create_turn_endpoint(
                _Closed,
                server_addr=address,
                username=server.username,
                password=server.password,
                ssl=server.scheme == "turns",
                transport=server.transport or ("tcp" if server.scheme == "turns" else "udp"),
            )
    except stun.TransactionFailed as exc:
        code, reason = exc.response.attributes.get("ERROR-CODE", (0, ""))
        name = repr(shown(text))
        if code in (401, 441):  # Unauthorized / Wrong Credentials
            return TurnAnswer(True, f"The TURN server {name} refused the user name and password.")
        return TurnAnswer(True, f"The TURN server {name} refused an allocation ({code} {reason}).")
    except (TimeoutError, OSError, stun.TransactionError, ConnectionError):
        return TurnAnswer(False)
    relay.close()  # deletes the allocation on the server
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(protocol.lost, timeout)
    return TurnAnswer(True)
