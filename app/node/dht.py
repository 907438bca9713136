"""The node's DHT endpoint (`kademlia` over UDP).

Foundation level: join the DHT, bootstrap from the peers the user names, report the
real endpoints and the routing table size. Signed-record validation is added on top
of this by the network layer.
"""

from __future__ import annotations

import ipaddress
import logging
import socket

import ifaddr
from kademlia.network import Server

from app.core.errors import InvalidInvite
from app.core.identity import validate_endpoint
from app.node.api import InvalidArgument, NetworkError

log = logging.getLogger(__name__)


def parse_host_port(text: str, *, allow_port_zero: bool = False) -> tuple[str, int]:
    """Split ``HOST:PORT`` (IPv6 in brackets) or raise `InvalidArgument`.

    Port 0 ("pick a free port") is accepted only for addresses we listen on.
    """
    host, sep, port_text = text.strip().rpartition(":")
    if not sep or not port_text.isdigit():
        raise InvalidArgument(f"{text!r} is not HOST:PORT.")
    port = int(port_text)
    try:
        canonical = validate_endpoint(f"{host}:{port or 1}")
    except InvalidInvite as exc:
        raise InvalidArgument(f"{text!r} is not HOST:PORT ({exc}).") from None
    if port == 0 and not allow_port_zero:
        raise InvalidArgument(f"{text!r} needs a port between 1 and 65535.")
    return canonical.rpartition(":")[0].strip("[]"), port


def interface_addresses() -> list[str]:
    """IPv4 addresses of this machine's interfaces, non-loopback first."""
    found: list[str] = []
    for adapter in ifaddr.get_adapters():
        for ip in adapter.ips:
            if isinstance(ip.ip, str):
                addr = ipaddress.ip_address(ip.ip)
                if not addr.is_link_local and str(addr) not in found:
                    found.append(str(addr))
    return sorted(found, key=lambda a: ipaddress.ip_address(a).is_loopback)


class DhtNode:
    """A running Kademlia participant bound to one UDP address."""

    def __init__(self) -> None:
        self._server = Server()
        self._host = ""
        self._port = 0

    async def start(self, host: str, port: int) -> None:
        try:
            await self._server.listen(port, interface=host)
        except OSError as exc:
            raise NetworkError(f"Can't listen on {host}:{port} ({exc.strerror}).") from None
        sockname = self._server.transport.get_extra_info("sockname")
        self._host, self._port = host, int(sockname[1])

    @property
    def port(self) -> int:
        return self._port

    async def bootstrap(self, peers: list[tuple[str, int]]) -> int:
        """Contact the given peers; returns how many answered."""
        resolved = []
        for host, port in peers:
            try:
                info = socket.getaddrinfo(host, port, socket.AF_INET, socket.SOCK_DGRAM)
            except OSError:
                log.warning("bootstrap peer %s:%d does not resolve", host, port)
                continue
            resolved.append((info[0][4][0], port))
        if not resolved:
            return 0
        found = await self._server.bootstrap(resolved)
        return len(found)

    def endpoints(self) -> list[str]:
        if not self._port:
            return []
        if self._host in ("0.0.0.0", ""):
            return [f"{a}:{self._port}" for a in interface_addresses()]
        return [validate_endpoint(f"{self._host}:{self._port}")]

    def peer_count(self) -> int:
        protocol = getattr(self._server, "protocol", None)
        if protocol is None:
            return 0
        return sum(len(bucket) for bucket in protocol.router.buckets)

    def stop(self) -> None:
        self._server.stop()
