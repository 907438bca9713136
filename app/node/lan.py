"""LAN discovery: nodes on the same network find each other's DHT through mDNS.

Each node announces a DNS-SD service ``_scrambled-eggs._udp.local.`` whose instance name
is random per run and whose only content is the DHT port on the node's addresses: no
address, name or key of the user is broadcast. Every announced endpoint another node
finds is pinged into its DHT routing table (a bootstrap peer); contacts are then found
through the DHT as usual. Off with `--no-lan` or the `lan_discovery` setting.

When the node listens on one specific address (e.g. 127.0.0.1), mDNS runs only on that
interface; when it listens on 0.0.0.0, on every IPv4 interface.

Anyone on the LAN can announce services, so what one announcer costs is bounded: at most
`MAX_RESOLVING` names are resolved at once (others are skipped: an honest LAN has a few
nodes), at most `MAX_ADDRESSES` endpoints of one service are used, and after `MAX_FOUND`
endpoints in a run no more are joined (each one found is pinged).

After a wake or a network change (`network_changed`), discovery starts over: zeroconf
chose its interfaces and our announced addresses at start, and nodes that appeared while
we slept announced themselves to nobody; a fresh start announces our current addresses
and asks the LAN again, and every node found is joined again.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Awaitable, Callable

from zeroconf import InterfaceChoice, IPVersion, ServiceStateChange, Zeroconf
from zeroconf.asyncio import AsyncServiceBrowser, AsyncServiceInfo, AsyncZeroconf

from app.node.dht import interface_addresses

log = logging.getLogger(__name__)

SERVICE_TYPE = "_scrambled-eggs._udp.local."
RESOLVE_MS = 3000
MAX_RESOLVING = 16
MAX_ADDRESSES = 8
MAX_FOUND = 256

FoundHandler = Callable[[list[str]], Awaitable[object]]


class LanDiscovery:
    """Announce our DHT port on the LAN and report the other nodes' endpoints."""

    def __init__(self, host: str, port: int, on_found: FoundHandler) -> None:
        self._host = host
        self._port = port
        self._on_found = on_found
        self._instance = f"{os.urandom(8).hex()}.{SERVICE_TYPE}"
        self._zeroconf: AsyncZeroconf | None = None
        self._browser: AsyncServiceBrowser | None = None
        self._info: AsyncServiceInfo | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._restart: asyncio.Task[None] | None = None
        self._again = False
        self.found: set[str] = set()
        self._said_full = False

    def _addresses(self) -> list[str]:
        if self._host not in ("", "0.0.0.0"):
            return [self._host]
        return [a for a in interface_addresses() if ":" not in a]

    async def start(self) -> None:
        """Register our service and start browsing (raises `OSError` if mDNS can't run)."""
        addresses = self._addresses()
        interfaces: list[str] | InterfaceChoice = (
            InterfaceChoice.All if self._host in ("", "0.0.0.0") else addresses
        )
        self._zeroconf = AsyncZeroconf(interfaces=interfaces, ip_version=IPVersion.V4Only)
        self._info = AsyncServiceInfo(
            SERVICE_TYPE,
            self._instance,
            addresses=[socket.inet_aton(a) for a in addresses],
            port=self._port,
            properties={"v": "1"},
        )
        await self._zeroconf.async_register_service(self._info)
        self._browser = AsyncServiceBrowser(
            self._zeroconf.zeroconf, [SERVICE_TYPE], handlers=[self._on_change]
        )

    def network_changed(self, event: object = None) -> None:
        """The machine woke up or changed networks: start over in the background (see
        the module docstring); a failure leaves LAN discovery off, as at start."""
        self._again = True
        if self._restart is None or self._restart.done():
            self._restart = asyncio.ensure_future(self._start_over())

    async def _start_over(self) -> None:
        while self._again:  # changes during a restart: one more, not one each
            self._again = False
            await self._stop_announcing()
            self.found.clear()
            self._said_full = False
            try:
                await self.start()
            except OSError as exc:
                log.warning("LAN discovery is unavailable after a network change: %s", exc)

    async def stop(self) -> None:
        """Withdraw our announcement and stop browsing."""
        if self._restart is not None:
            self._restart.cancel()
            await asyncio.gather(self._restart, return_exceptions=True)
        await self._stop_announcing()

    async def _stop_announcing(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        browser, self._browser = self._browser, None
        if browser is not None:
            await browser.async_cancel()
        zeroconf, self._zeroconf = self._zeroconf, None
        info, self._info = self._info, None
        if zeroconf is not None:
            if info is not None:
                await zeroconf.async_unregister_service(info)
            await zeroconf.async_close()

    def _on_change(
        self,
        zeroconf: Zeroconf,
        service_type: str,
        name: str,
        state_change: ServiceStateChange,
    ) -> None:
        if name == self._instance or state_change is ServiceStateChange.Removed:
            return
        if len(self._tasks) >= MAX_RESOLVING or len(self.found) >= MAX_FOUND:
            if not self._said_full:  # said once: a flood must not fill the log either
                log.info("ignoring further LAN announcements: too many at once or in all")
            self._said_full = True
            return
        task = asyncio.ensure_future(self._resolve(name))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _resolve(self, name: str) -> None:
        if self._zeroconf is None:
            return
        info = AsyncServiceInfo(SERVICE_TYPE, name)
        if not await info.async_request(self._zeroconf.zeroconf, RESOLVE_MS):
            return
        if info.port is None or not 0 < info.port < 65536:
            return
        endpoints = [
            f"{address}:{info.port}" for address in info.parsed_addresses(IPVersion.V4Only)
        ]
        new = [e for e in endpoints[:MAX_ADDRESSES] if e not in self.found]
        new = new[: max(0, MAX_FOUND - len(self.found))]
        if not new:
            return
        self.found.update(new)
        log.info("found %d node endpoint(s) on the LAN", len(new))
        try:
            await self._on_found(new)
        except Exception as exc:  # a peer that doesn't answer is no reason to stop browsing
            log.info("joining a LAN peer failed: %r", exc)
