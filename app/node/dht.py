"""The node's DHT endpoint: `kademlia` over UDP carrying only signed records.

`DhtNode` is what the rest of the node uses: join the DHT, publish our own records
(`put_record`, republished and renewed before they expire), read anyone's
(`get_record`, the highest valid sequence among every answer), and exchange
connection-signalling payloads with a peer's DHT address (`send_signal`).

Lookups are our own iterative Kademlia search (`Lookup`), not the library's lock-step
crawler: up to `alpha` queries are in flight at any time, a query that stalls frees its
slot and is passed over once the network shows it answers others, timeouts adapt to the
measured round trip, and nodes that time out are evicted and skipped (see
`app.node.dht_protocol`). A dead node so costs a stall of a few round trips instead of
5 s per round.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import os
import socket
import time
from collections.abc import Callable, Container
from dataclasses import dataclass, field
from typing import Any

import ifaddr
from kademlia.network import Server
from kademlia.node import Node

from app.core.errors import InvalidInvite
from app.core.identity import validate_endpoint
from app.core.record_errors import InvalidRecord
from app.core.records import DHT_KEY_BYTES, SignedRecord, newer, newest, validate
from app.node.api import InvalidArgument, NetworkError
from app.node.dht_protocol import (
    MAX_SIGNAL_BYTES,
    Address,
    Clock,
    DhtObserver,
    RecordProtocol,
    RttEstimator,
    SignalHandler,
    is_ip,
    parse_contacts,
)
from app.node.record_store import RecordStore

log = logging.getLogger(__name__)

Renewer = Callable[[SignedRecord], SignedRecord]
"""Re-signs one of our records with a higher sequence and a later expiry."""


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
    if host.replace(".", "").isdigit() and not is_ip(host):  # 256.1.1.1: no name either
        raise InvalidArgument(
            f"{text!r} is not HOST:PORT ({host} is not an IP address: four numbers from 0 to 255)."
        )
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


def attached_networks() -> list[ipaddress.IPv4Network]:
    """The IPv4 networks directly attached to this machine's non-loopback interfaces."""
    networks: list[ipaddress.IPv4Network] = []
    for adapter in ifaddr.get_adapters():
        for ip in adapter.ips:
            if not isinstance(ip.ip, str):
                continue
            network = ipaddress.IPv4Network(f"{ip.ip}/{ip.network_prefix}", strict=False)
            if not (network.is_loopback or network.is_link_local) and network not in networks:
                networks.append(network)
    return networks


@dataclass
class LookupResult:
    """What an iterative lookup learned about one key."""

    nodes: list[Node]
    """Up to k nodes closest to the key that answered, nearest first."""
    records: dict[bytes, SignedRecord] = field(default_factory=dict)
    """Node id -> the valid record that node returned (find-value lookups only)."""


class RecordServer(Server):  # type: ignore[misc]  # kademlia is untyped
    """A kademlia `Server` on `RecordProtocol` with parallel, record-validating lookups."""

    protocol_class = RecordProtocol

    def __init__(
        self,
        *,
        ksize: int,
        alpha: int,
        clock: Clock,
        rtt: RttEstimator,
        max_records: int,
        read_width: int,
    ) -> None:
        super().__init__(ksize=ksize, alpha=alpha, node_id=os.urandom(DHT_KEY_BYTES))
        self.read_width = min(read_width, ksize)
        # set after the base class, which would swap an empty (falsy) store for its own
        self.storage = RecordStore(clock, max_records)
        self.clock = clock
        self.rtt = rtt

    def _create_protocol(self) -> RecordProtocol:
        return RecordProtocol(self.node, self.storage, self.ksize, rtt=self.rtt)

    def refresh_table(self, interval: float = 3600) -> None:
        """Do nothing: `DhtNode` schedules refreshes and republishing itself."""

    @property
    def proto(self) -> RecordProtocol:
        """The running protocol (raises `NetworkError` before `listen`)."""
        if self.protocol is None:
            raise NetworkError("The DHT node is not running.")
        protocol: RecordProtocol = self.protocol
        return protocol

    def stop(self) -> None:
        """Close the socket and cancel every background task and outstanding call."""
        if self.protocol is not None:
            self.protocol.close()
        super().stop()

    async def lookup(
        self, target: bytes, *, find_value: bool, width: int | None = None
    ) -> LookupResult:
        """Iterative Kademlia lookup of `target`, never blocked by one slow node.

        Ends when the `width` (default k) closest nodes that are not dead (or passed over
        as unresponsive, see `Lookup`) have all answered. Our own id is never a candidate
        (the library fails when a lookup meets its own node).
        """
        return await Lookup(self, target, find_value, width or self.ksize).run()

    async def bootstrap_node(self, addr: Address) -> Node | None:
        """Ping one address; its node if it answered with a well-formed id."""
        protocol = self.proto
        ok, node_id = await protocol.call(addr, "ping", self.node.id)
        if not ok or type(node_id) is not bytes or len(node_id) != DHT_KEY_BYTES:
            return None
        if node_id == self.node.id:
            return None
        node = Node(node_id, addr[0], addr[1])
        protocol.welcome_if_new(node)
        protocol.forget_past_runs(node)
        return node

    async def bootstrap(self, addrs: list[Address]) -> list[Node]:
        """Ping every address in parallel, then look ourselves up to fill the table.

        Returns every node reached (those that answered the ping included).
        """
        answered = [n for n in await asyncio.gather(*map(self.bootstrap_node, addrs)) if n]
        if not answered:
            return []
        reached = (await self.lookup(self.node.id, find_value=False)).nodes
        return reached + [n for n in answered if n.id not in {r.id for r in reached}]

    async def _refresh_table(self) -> None:
        """Look up a random id in every bucket idle for an hour; forget expired records."""
        ids = self.proto.get_refresh_ids()
        await asyncio.gather(*(self.lookup(i, find_value=False) for i in ids))
        self.storage.cull()

    async def get_record(self, key: bytes) -> SignedRecord | None:
        """The highest valid record under `key` across the answers and our own store.

        A read asks the `read_width` live nodes closest to the key (a publisher stores to
        the k closest, a superset) and everyone met on the way. Nodes that answered with
        nothing or with an older record are sent the winner in the background, so stale
        replicas heal. A read that finds nothing is retried over all k closest nodes.
        """
        found = await self.lookup(key, find_value=True, width=self.read_width)
        wider = self.read_width < self.ksize and len(found.nodes) >= self.read_width
        if not found.records and wider:
            # a miss is worth a second look over all k: the closest may have churned.
            # (Not when fewer nodes than the width answered: the lookup asked every node
            # it could find, and asking them again doubled the requests that an offline
            # contact's lookups send each node of a small network.)
            found = await self.lookup(key, find_value=True)
        held = self.storage.get_record(key)
        best = newest([*found.records.values(), *([held] if held else [])])
        if best is None:
            return None
        raw = best.encode()
        for node in found.nodes:
            had = found.records.get(node.id)
            if had is None or newer(best, had):
                self.proto.spawn(self.proto.call_store(node, key, raw))
        return best

    async def put_record(self, record: SignedRecord) -> int:
        """Store `record` on the k nodes closest to its key; how many kept it."""
        raw = record.encode()
        validate(raw, record.key, self.clock())
        with contextlib.suppress(InvalidRecord):  # we may already hold a newer one
            self.storage.offer(record.key, raw)
        found = await self.lookup(record.key, find_value=False)
        stored = await asyncio.gather(
            *(self.proto.call_store(n, record.key, raw) for n in found.nodes)
        )
        return sum(1 for ok, kept in stored if ok and kept is True)

    async def get(self, key: bytes) -> bytes | None:
        """Library-compatible read: the encoded highest valid record, or None."""
        record = await self.get_record(key)
        return None if record is None else record.encode()

    async def set_digest(self, dkey: bytes, value: bytes) -> bool:
        """Library-compatible write of an encoded record (validated first)."""
        record = validate(value, dkey, self.clock())
        return await self.put_record(record) > 0

    async def set(self, key: bytes, value: bytes) -> bool:
        """Library-compatible write; the key is the record's DHT key, not hashed again."""
        return await self.set_digest(key, value)


class Lookup:
    """The state of one iterative lookup (`RecordServer.lookup`).

    Up to alpha queries are in flight. A query unanswered after a *stall* time keeps
    running but frees its slot, so the next closest nodes are asked at once and several
    dead nodes cost one stall rather than one timeout each in turn. The lookup may end
    without such a node ("passed over") only once a query sent after it has been answered
    (the network answers, that node does not) and enough other nodes answered to fill the
    window; if no such query exists, a ping to a node that did answer provides the
    evidence. The stall grows with the slowest answer seen, so a loaded network is not
    taken for a dead one, and late answers are used while the lookup runs.
    """

    def __init__(self, server: RecordServer, target: bytes, find_value: bool, width: int):
        self.server = server
        self.protocol = server.proto
        self.target = target
        self.goal = Node(target)
        self.find_value = find_value
        self.width = width
        self.known: dict[bytes, Node] = {}
        self.answered: set[bytes] = set()
        self.failed: set[bytes] = set()
        self.pending: dict[asyncio.Task[tuple[bool, Any]], tuple[Node, float]] = {}
        self.probes: dict[asyncio.Task[tuple[bool, Any]], float] = {}
        self.slowest = 0.0  # the longest any node took to answer
        self.last_answered_sent = -1.0  # when the latest-sent answered query was sent
        self.checked: dict[bytes, SignedRecord | None] = {}  # each distinct value once
        self.result = LookupResult(nodes=[])

    async def run(self) -> LookupResult:
        """Query until the window is settled; the closest nodes that answered."""
        loop = asyncio.get_running_loop()
        self._consider(self.protocol.router.find_neighbors(self.goal, k=self.server.ksize))
        while True:
            now = loop.time()
            stall = max(self.server.rtt.stall_after(), 2 * self.slowest)
            slow = {n.id: t for n, t in self.pending.values() if now - t >= stall}
            passed = {i for i, t in slow.items() if t < self.last_answered_sent}
            if self._settled(passed):
                break
            fresh = self._ask(now, slow)
            if not fresh and len(slow) > len(passed) and not self.probes:
                self._probe(now)
            waiting = [*self.pending, *self.probes]
            if not waiting:
                break
            done, _ = await asyncio.wait(
                waiting,
                timeout=min(fresh) + stall - now if fresh else None,
                return_when=asyncio.FIRST_COMPLETED,
            )
            for task in done:
                self._absorb(task, loop.time())
        for task in [*self.pending, *self.probes]:  # stragglers still teach who is dead
            self.protocol.adopt(task)
        reached = [self.known[i] for i in self.answered]
        self.result.nodes = sorted(reached, key=self.goal.distance_to)[: self.width]
        return self.result

    def _consider(self, nodes: list[Node]) -> None:
        for node in nodes:
            if node.id == self.server.node.id or node.id in self.known:
                continue
            if not self.protocol.is_suspect((node.ip, node.port)):
                self.known[node.id] = node

    def _closest(self, excluded: Container[bytes]) -> list[Node]:
        candidates = (n for n in self.known.values() if n.id not in excluded)
        return sorted(candidates, key=self.goal.distance_to)[: self.width]

    def _settled(self, passed: set[bytes]) -> bool:
        window = self._closest(self.failed | passed)
        full = len(window) == self.width or not passed
        return full and all(n.id in self.answered for n in window)

    def _ask(self, now: float, slow: dict[bytes, float]) -> list[float]:
        """Fill free slots from the closest unasked nodes; the start times of fresh queries."""
        fresh = [t for n, t in self.pending.values() if n.id not in slow]
        asked = {n.id for n, _ in self.pending.values()}
        call = self.protocol.call_find_value if self.find_value else self.protocol.call_find_node
        for node in self._closest(self.failed | slow.keys()):
            if len(fresh) >= self.server.alpha:
                break
            if node.id not in self.answered and node.id not in asked:
                self.pending[asyncio.ensure_future(call(node, self.goal))] = (node, now)
                fresh.append(now)
        return fresh

    def _probe(self, now: float) -> None:
        """Ping the closest node that answered, to tell a dead node from a slow network."""
        responsive = [self.known[i] for i in self.answered]
        if responsive:
            nearest = min(responsive, key=self.goal.distance_to)
            self.probes[asyncio.ensure_future(self.protocol.call_ping(nearest))] = now

    def _absorb(self, task: asyncio.Task[tuple[bool, Any]], now: float) -> None:
        ok, answer = task.result()
        if task in self.probes:
            started = self.probes.pop(task)
            if ok:
                self.last_answered_sent = max(self.last_answered_sent, started)
            return
        node, started = self.pending.pop(task)
        if not ok:
            self.failed.add(node.id)
            return
        self.answered.add(node.id)
        self.slowest = max(self.slowest, now - started)
        self.last_answered_sent = max(self.last_answered_sent, started)
        contacts: object = answer
        if self.find_value and isinstance(answer, dict):
            contacts = answer.get("nodes")
            record = self._check(answer.get("value"), node)
            if record is not None:
                self.result.records[node.id] = record
        self._consider(parse_contacts(contacts, self.server.ksize))

    def _check(self, value: object, node: Node) -> SignedRecord | None:
        if type(value) is bytes and value in self.checked:
            return self.checked[value]
        try:
            record: SignedRecord | None = validate(value, self.target, self.server.clock())
        except InvalidRecord as exc:
            log.debug("ignoring a bad record from %s: %s", node, exc)
            record = None
        if type(value) is bytes:
            self.checked[value] = record
        return record


@dataclass
class _Published:
    record: SignedRecord
    renew: Renewer | None


class DhtNode:
    """A running Kademlia participant bound to one UDP address.

    Parameters are for tests and benchmarks; the defaults suit the internet. `clock` is
    the wall clock (seconds) against which record expiry is judged; `read_width` is how
    many of the nodes closest to a key a read must hear from (writes go to `ksize`).
    """

    def __init__(
        self,
        *,
        ksize: int = 20,
        alpha: int = 3,
        clock: Clock = time.time,
        min_rpc_timeout: float = 0.25,
        max_rpc_timeout: float = 2.0,
        republish_interval: float = 600.0,
        renew_before: float = 1800.0,
        refresh_interval: float = 3600.0,
        max_records: int = 4096,
        read_width: int = 8,
    ) -> None:
        self._clock = clock
        self._server = RecordServer(
            ksize=ksize,
            alpha=alpha,
            clock=clock,
            rtt=RttEstimator(min_rpc_timeout, max_rpc_timeout),
            max_records=max_records,
            read_width=read_width,
        )
        self._republish_interval = republish_interval
        self._renew_before = renew_before
        self._refresh_interval = refresh_interval
        self._published: dict[bytes, _Published] = {}
        self._maintenance: list[asyncio.Task[None]] = []
        self._signal_handler: SignalHandler | None = None
        self._observer: DhtObserver | None = None
        self._blocked: Callable[[Address], bool] | None = None
        self._host = ""
        self._port = 0

    async def start(self, host: str, port: int) -> None:
        """Listen on UDP `host`:`port` (0 picks a free port) and start maintenance."""
        try:
            await self._server.listen(port, interface=host)
        except OSError as exc:
            raise NetworkError(f"Can't listen on {host}:{port} ({exc.strerror}).") from None
        sockname = self._server.transport.get_extra_info("sockname")
        self._host, self._port = host, int(sockname[1])
        self._server.proto.signal_handler = self._signal_handler
        self._server.proto.observer = self._observer
        self._server.proto.blocked = self._blocked
        self._maintenance = [
            asyncio.ensure_future(self._every(self._republish_interval, self.republish)),
            asyncio.ensure_future(self._every(self._refresh_interval, self._refresh)),
        ]

    @property
    def port(self) -> int:
        """The UDP port we listen on (0 before `start`)."""
        return self._port

    @property
    def node_id(self) -> bytes:
        """Our 20-byte Kademlia id (random per run)."""
        node_id: bytes = self._server.node.id
        return node_id

    async def bootstrap(self, peers: list[tuple[str, int]]) -> int:
        """Contact the given peers; returns how many nodes the join lookup reached."""
        resolved = []
        for host, port in peers:
            try:
                info = socket.getaddrinfo(host, port, socket.AF_INET, socket.SOCK_DGRAM)
            except OSError:
                log.warning("bootstrap peer %s:%d does not resolve", host, port)
                continue
            resolved.append((str(info[0][4][0]), port))
        if not resolved:
            return 0
        return len(await self._server.bootstrap(resolved))

    def endpoints(self) -> list[str]:
        """Our DHT address(es) as canonical ``host:port`` strings."""
        if not self._port:
            return []
        if self._host in ("0.0.0.0", ""):
            return [f"{a}:{self._port}" for a in interface_addresses()]
        return [validate_endpoint(f"{self._host}:{self._port}")]

    def peer_count(self) -> int:
        """How many contacts the routing table holds."""
        protocol = self._server.protocol
        if protocol is None:
            return 0
        return sum(len(bucket) for bucket in protocol.router.buckets)

    def stop(self) -> None:
        """Stop maintenance, close the socket, fail outstanding calls."""
        for task in self._maintenance:
            task.cancel()
        self._maintenance = []
        self._server.stop()

    # -- records -------------------------------------------------------------------------

    async def put_record(self, record: SignedRecord, *, renew: Renewer | None = None) -> int:
        """Publish one of our records and keep it alive; how many nodes kept it.

        The record is re-stored every republish interval until it expires; with `renew`,
        it is replaced by ``renew(record)`` once it is within `renew_before` seconds of
        expiring, so it never lapses. Raises `InvalidRecord` if the record is invalid.
        """
        validate(record.encode(), record.key, self._clock())
        self._published[record.key] = _Published(record, renew)
        return await self._server.put_record(record)

    def forget_record(self, key: bytes) -> None:
        """Stop republishing our record under `key` (it lapses at its expiry)."""
        self._published.pop(key, None)

    async def get_record(self, key: bytes) -> SignedRecord | None:
        """The highest valid record stored under `key`, or None if there is none."""
        if len(key) != DHT_KEY_BYTES:
            raise InvalidArgument("A DHT key is 20 bytes.")
        return await self._server.get_record(key)

    async def republish(self) -> None:
        """Renew our records close to expiry, drop expired ones, re-store the rest."""
        now = self._clock()
        for key, entry in list(self._published.items()):
            if entry.renew is not None and entry.record.expires_at - now <= self._renew_before:
                renewed = entry.renew(entry.record)
                try:
                    validate(renewed.encode(), key, now)
                except InvalidRecord as exc:
                    log.warning("a renewed record is invalid (%s); keeping the old one", exc)
                else:
                    if newer(renewed, entry.record):
                        entry.record = renewed
            if entry.record.expires_at <= now:
                del self._published[key]
        stores = [self._server.put_record(e.record) for e in self._published.values()]
        for outcome in await asyncio.gather(*stores, return_exceptions=True):
            if isinstance(outcome, Exception):
                log.warning("republishing a record failed: %r", outcome)

    async def _refresh(self) -> None:
        await self._server._refresh_table()

    async def _every(self, interval: float, job: Callable[[], Any]) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                await job()
            except Exception:  # maintenance must outlive one bad round
                log.exception("DHT maintenance failed")

    # -- signalling ----------------------------------------------------------------------

    def set_observer(
        self, observer: DhtObserver | None, blocked: Callable[[Address], bool] | None = None
    ) -> None:
        """Report every sender's RPCs to `observer`; leave unanswered those `blocked` names."""
        self._observer, self._blocked = observer, blocked
        if self._server.protocol is not None:
            self._server.proto.observer = observer
            self._server.proto.blocked = blocked

    def set_signal_handler(self, handler: SignalHandler | None) -> None:
        """Answer ``signal`` RPCs with ``await handler(sender, payload)`` (bytes, bounded).

        With no handler (the default) every signal is answered with nothing.
        """
        self._signal_handler = handler
        if self._server.protocol is not None:
            self._server.proto.signal_handler = handler

    async def send_signal(
        self, addr: tuple[str, int], payload: bytes, *, timeout: float = 3.0
    ) -> bytes | None:
        """Send a signalling payload to a peer's DHT address; its answer, or None.

        None means no answer in `timeout` seconds, no handler, or an invalid answer.
        """
        if len(payload) > MAX_SIGNAL_BYTES:
            raise InvalidArgument(f"A signal carries at most {MAX_SIGNAL_BYTES} bytes.")
        ok, answer = await self._server.proto.call(addr, "signal", payload, timeout=timeout)
        if not ok or type(answer) is not bytes or len(answer) > MAX_SIGNAL_BYTES:
            return None
        return answer
