"""Whether the configured TURN server gives relay addresses, and leaving it out while not.

aioice waits up to 5 s for a TURN allocation while it gathers candidates, on each side
of every WebRTC dial, and drops a failure silently. With the TURN server down (over UDP,
or firewalled), every dial took ~10 s instead of ~0.04 s, and since the answering side's
5 s exceed the 3 s the DHT gives a signalling answer, the dial failed: WebRTC never came
up, and nothing told the user.

The watch asks the server for one allocation when the node starts; a dial whose
gathering got no relay candidate from it tells it too (`gathered`). While the server
does not answer (or refuses the credentials), it is left out of the WebRTC
configuration (`servers`), so dials pay nothing for it, `problem` says so, and it is
asked again every `RETRY_EVERY` seconds in the background. When it makes an allocation
again it is put back and `on_back` is called (the node dials the peers it wants now:
a pair that needs the relay gets it within `RETRY_EVERY`). See docs/decisions/0033.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence

from aiortc import RTCConfiguration

from app.node.futures import cancel_and_wait

from .base import IceServer
from .ice_urls import BadIceUrl, IceUrl, parse_ice_url, shown
from .turn_probe import TurnAnswer, probe_turn

log = logging.getLogger(__name__)

RETRY_EVERY = 30.0
"""Seconds between allocations asked of a TURN server known not to work."""
Probe = Callable[[IceUrl, str], Awaitable[TurnAnswer]]


class RelayWatch:
    """Follows the first TURN server of the `ice_servers` entries (see the module)."""

    def __init__(
        self,
        texts: Sequence[str],
        *,
        retry_every: float = RETRY_EVERY,
        probe: Probe = probe_turn,
    ) -> None:
        self._text = ""
        self._server: IceUrl | None = None
        for text in texts:
            try:
                parsed = parse_ice_url(text)
            except BadIceUrl:
                continue  # left out of the configuration anyway (`ice_servers_of`)
            if parsed.relay:
                self._text, self._server = text, parsed
                break
        self._retry_every = retry_every
        self._probe = probe
        self.problem = ""
        """Why the TURN server is left out now, for `status` ("" while it is used)."""
        self.on_back: Callable[[], None] | None = None
        """Called when the server works again after `problem` said it did not."""
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    @property
    def configured(self) -> bool:
        """A TURN server is configured."""
        return self._server is not None

    def servers(self, configured: tuple[IceServer, ...]) -> tuple[IceServer, ...]:
        """The ICE servers for a new connection: `configured` without the TURN server
        while it does not work."""
        if not self.problem or self._server is None:
            return configured
        url = self._server.url()
        return tuple(s for s in configured if url not in s.urls)

    def start(self) -> None:
        """Ask the server for an allocation now, in the background."""
        if self._server is not None and self._task is None and not self._closed:
            self._task = asyncio.ensure_future(self._follow())

    async def stop(self) -> None:
        """Stop asking."""
        self._closed = True
        task, self._task = self._task, None
        await cancel_and_wait(task)

    def gathered(self, configuration: RTCConfiguration, sdp: str) -> None:
        """A connection gathered its candidates (`sdp`, its local description) with
        `configuration`: with the TURN server in it and no relay candidate, the server
        did not work for it; leave it out and ask again in the background."""
        if self._server is None or self.problem or " typ relay" in sdp:
            return
        url = self._server.url()
        if not any(url in (server.urls or ()) for server in configuration.iceServers or ()):
            return
        self._down("gave no relay address to a connection")
        self.start()

    def _down(self, why: str) -> None:
        name = repr(shown(self._text))
        problem = (
            f"The TURN server {name} {why}: connections are made without it (a contact "
            f"reachable only through it can't be reached), and it is asked again every "
            f"{self._retry_every:.0f} s."
        )
        if problem != self.problem:
            self.problem = problem
            log.warning("the TURN server is left out of new connections: it %s", why)

    async def _follow(self) -> None:
        """Ask the server until it works (once, if it works at once)."""
        assert self._server is not None
        try:
            while True:
                answer = await self._probe(self._server, self._text)
                if answer.relays:
                    self._up()
                    return
                if answer.refusal is not None:
                    credentials = "user name and password" in answer.refusal
                    self._down(
                        f"refuses {'the user name and password' if credentials else 'to relay'}"
                    )
                else:
                    self._down("does not answer")
                await asyncio.sleep(self._retry_every)
        finally:
            self._task = None

    def _up(self) -> None:
        if not self.problem:
            return
        self.problem = ""
        log.info("the TURN server works again; it is used for new connections")
        if self.on_back is not None:
            self.on_back()


__all__ = ["RETRY_EVERY", "RelayWatch"]
