"""The DHT wire protocol: kademlia's `KademliaProtocol`, hardened and record-aware.

What changes against the library (kademlia 2.2 / rpcudp 5):

* ``store`` keeps a value only if it is a valid `SignedRecord` for the key (see
  `app.core.records.validate`) at least as new as the one held, and, when the store is
  full, only at the expense of the sending host that holds the most records (see
  `app.node.record_store`); ``find_value`` answers
  only with valid, unexpired records, and adds the closest contacts so a reader can keep
  looking for a higher sequence.
* Every RPC we send has an adaptive timeout (smoothed RTT + 4 x deviation, clamped, in
  the manner of RFC 6298) instead of rpcudp's fixed 5 s. A node that times out is
  evicted from the routing table and remembered as unresponsive for a while, so lookups
  stop asking it even when other peers still advertise it.
* Garbage datagrams, malformed arguments, forged contact lists, responses from the wrong
  address, and contacts claiming our own id or hijacking a known id are dropped.
* A ``signal`` RPC carries opaque, size-bounded connection-signalling payloads.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import logging
import os
from collections.abc import Awaitable, Callable
from typing import Any, TypeGuard

import umsgpack
from kademlia.node import Node
from kademlia.protocol import KademliaProtocol
from kademlia.routing import RoutingTable
from rpcudp.protocol import RPCProtocol

from app.core.record_errors import BadRecordSignature, InvalidRecord
from app.core.records import DHT_KEY_BYTES
from app.node.host_budget import HostBudget
from app.node.record_store import RecordStore, source_of

log = logging.getLogger(__name__)

MAX_DATAGRAM = 8192
"""rpcudp's cap on a packed request; we hold our answers to it too."""
MAX_SIGNAL_BYTES = 7168
"""Largest signalling payload, either way (fits one datagram with the RPC overhead)."""
EVICT_AFTER_TIMEOUTS = 2
"""Consecutive unanswered RPCs after which a node leaves the routing table: one lost
datagram, or a peer's event loop busy for a moment (the timeout can be 0.25 s on a
LAN), emptied a small network's routing table ("no neighbour was left")."""
SUSPECT_SECONDS = 60.0
"""How long a node that timed out is skipped by our lookups (unless it talks to us)."""
MAX_SUSPECTS = 4096
SIGNAL_HANDLER_SECONDS = 5.0
HANDOVER_IN_FLIGHT = 8
"""Stores of a handover awaiting their answer at once."""
HANDOVER_RECORDS_PER_MINUTE = 512
"""Records handed to new contacts of one host per minute (a burst of as many): a small
network's newcomer needs every record (up to 4,096) and gets the rest from their
publishers' republishing (every 10 minutes) and from read repair."""
_MSG_ID_BYTES = 20
_REQUEST, _RESPONSE = b"\x00", b"\x01"
_RPC_NAMES = frozenset({"ping", "stun", "store", "find_node", "find_value", "signal"})

Address = tuple[str, int]
SignalHandler = Callable[[Address, bytes], Awaitable[bytes]]
DhtObserver = Callable[[Address, str], None]
"""Told what each sender did: "request", "store", "rejected", "invalid_signature",
"malformed" (the anomaly monitor's counters)."""
Clock = Callable[[], float]


class RttEstimator:
    """Smoothed round-trip time and deviation (RFC 6298) giving a clamped RPC timeout."""

    def __init__(self, minimum: float, maximum: float) -> None:
        self.minimum, self.maximum = minimum, maximum
        self._srtt: float | None = None
        self._rttvar = 0.0

    def sample(self, rtt: float) -> None:
        """Fold in one measured round trip (seconds)."""
        if self._srtt is None:
            self._srtt, self._rttvar = rtt, rtt / 2
        else:
            self._rttvar = 0.75 * self._rttvar + 0.25 * abs(self._srtt - rtt)
            self._srtt = 0.875 * self._srtt + 0.125 * rtt

    def timeout(self) -> float:
        """How long to wait for an answer before calling the peer unresponsive."""
        if self._srtt is None:
            return self.maximum
        return min(self.maximum, max(self.minimum, self._srtt + 4 * self._rttvar))

    def stall_after(self) -> float:
        """After this long a query no longer holds a lookup's parallelism slot."""
        srtt = self._srtt if self._srtt is not None else self.maximum / 4
        return min(self.timeout() / 2, max(0.01, 4 * srtt))


@functools.lru_cache(maxsize=4096)
def is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def parse_contact(item: object) -> Node | None:
    """A ``[id, ip, port]`` triple from the wire as a `Node`, or None if malformed."""
    if not isinstance(item, list | tuple) or len(item) != 3:
        return None
    node_id, ip, port = item
    if type(node_id) is not bytes or len(node_id) != DHT_KEY_BYTES:
        return None
    if type(port) is not int or not 1 <= port <= 65535 or not isinstance(ip, str):
        return None
    if not is_ip(ip):
        return None
    return Node(node_id, ip, port)


def parse_contacts(items: object, limit: int) -> list[Node]:
    """Well-formed contacts from a find-node answer (at most `limit`, rest ignored)."""
    if not isinstance(items, list):
        return []
    nodes = [parse_contact(item) for item in items[:limit]]
    return [n for n in nodes if n is not None]


def _is_key(value: object) -> TypeGuard[bytes]:
    return type(value) is bytes and len(value) == DHT_KEY_BYTES


class RecordProtocol(KademliaProtocol):  # type: ignore[misc]  # kademlia is untyped
    """Kademlia RPCs over UDP that only store and serve valid signed records."""

    def __init__(
        self,
        source_node: Node,
        storage: RecordStore,
        ksize: int,
        *,
        rtt: RttEstimator,
    ) -> None:
        RPCProtocol.__init__(self, wait_timeout=rtt.maximum)
        self.router = RoutingTable(self, ksize, source_node)
        self.storage = storage
        self.source_node = source_node
        self.ksize = ksize
        self.rtt = rtt
        self.signal_handler: SignalHandler | None = None
        self.observer: DhtObserver | None = None
        self.blocked: Callable[[Address], bool] | None = None
        """Requests from an address for which this says True go unanswered (asked once per
        request, after the observer: a quarantined sender, or a rate-limited one over its
        budget; see `app.node.anomaly.AnomalyMonitor.dht_blocked`)."""
        self._expected: dict[bytes, Address] = {}
        self._suspects: dict[Address, float] = {}
        self._unanswered: dict[Address, int] = {}
        """Consecutive timeouts of a routing-table node (bounded by the table's size)."""
        self._tasks: set[asyncio.Task[Any]] = set()
        self._handovers = HostBudget(HANDOVER_RECORDS_PER_MINUTE, MAX_SUSPECTS)

    # -- housekeeping --------------------------------------------------------------------

    def spawn(self, coro: Awaitable[Any]) -> None:
        """Run `coro` in the background, keeping a reference until it ends."""
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def adopt(self, task: asyncio.Task[Any]) -> None:
        """Keep a running task alive (e.g. a lookup query still outstanding)."""
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def close(self) -> None:
        """Cancel background work and fail every outstanding call."""
        for task in list(self._tasks):
            task.cancel()
        for future, timer in list(self._outstanding.values()):
            timer.cancel()
            if not future.done():
                future.set_result((False, None))
        self._outstanding.clear()
        self._expected.clear()

    def is_suspect(self, address: Address) -> bool:
        """True if `address` timed out recently and has not been heard from since."""
        until = self._suspects.get(address)
        if until is None:
            return False
        if until <= asyncio.get_running_loop().time():
            del self._suspects[address]
            return False
        return True

    def _observe(self, address: Address, what: str) -> None:
        if self.observer is not None:
            try:
                self.observer(address, what)
            except Exception:  # the observer's bug must not cost us the datagram
                log.exception("DHT observer failed")

    # -- datagrams -----------------------------------------------------------------------

    def datagram_received(self, data: bytes, addr: Address) -> None:
        """Parse one datagram; anything malformed is dropped without a trace upstream."""
        address = (addr[0], addr[1])
        if len(data) < 1 + _MSG_ID_BYTES + 1 or len(data) > MAX_DATAGRAM + 1 + _MSG_ID_BYTES:
            return
        msg_id = data[1 : 1 + _MSG_ID_BYTES]
        try:
            message = umsgpack.unpackb(data[1 + _MSG_ID_BYTES :])
        except Exception:  # umsgpack raises many types on garbage
            log.debug("dropping an undecodable datagram from %s", address)
            self._observe(address, "malformed")
            return
        self._suspects.pop(address, None)
        if data[:1] == _REQUEST:
            self.spawn(self._answer(msg_id, message, address))
        elif data[:1] == _RESPONSE:
            self._accept_response(msg_id, message, address)

    async def _answer(self, msg_id: bytes, message: object, address: Address) -> None:
        if not isinstance(message, list) or len(message) != 2:
            return
        name, args = message
        if name not in _RPC_NAMES or not isinstance(args, list):
            self._observe(address, "malformed")
            return
        self._observe(address, "store" if name == "store" else "request")
        if self.blocked is not None and self.blocked(address):
            return
        try:
            response = getattr(self, f"rpc_{name}")(address, *args)
            if asyncio.iscoroutine(response):
                response = await response
            packed = umsgpack.packb(response)
        except Exception as exc:  # a peer's malformed arguments must not reach the loop
            log.debug("refusing malformed %s request from %s: %r", name, address, exc)
            packed = umsgpack.packb(None)
        if self.transport is not None and not self.transport.is_closing():
            self.transport.sendto(_RESPONSE + msg_id + packed, address)

    def _accept_response(self, msg_id: bytes, data: object, address: Address) -> None:
        if self._expected.get(msg_id) != address:
            return
        future, timer = self._outstanding.pop(msg_id)
        del self._expected[msg_id]
        timer.cancel()
        if not future.done():
            future.set_result((True, data))

    def _timeout(self, msg_id: bytes) -> None:
        entry = self._outstanding.pop(msg_id, None)
        self._expected.pop(msg_id, None)
        if entry is not None and not entry[0].done():
            entry[0].set_result((False, None))

    async def call(
        self, address: Address, name: str, *args: object, timeout: float | None = None
    ) -> tuple[bool, Any]:
        """Send one RPC; ``(True, answer)`` or ``(False, None)`` on timeout or refusal."""
        data = umsgpack.packb([name, list(args)])
        if len(data) > MAX_DATAGRAM:
            raise ValueError(f"the {name} request packs to {len(data)} bytes, over 8 KiB")
        if self.transport is None or self.transport.is_closing():
            return False, None
        loop = asyncio.get_running_loop()
        msg_id = os.urandom(_MSG_ID_BYTES)
        future: asyncio.Future[tuple[bool, Any]] = loop.create_future()
        timer = loop.call_later(timeout or self.rtt.timeout(), self._timeout, msg_id)
        self._outstanding[msg_id] = (future, timer)
        self._expected[msg_id] = address
        started = loop.time()
        self.transport.sendto(_REQUEST + msg_id + data, address)
        try:
            answered, answer = await future
        finally:
            if msg_id in self._outstanding:  # cancelled while waiting
                self._outstanding.pop(msg_id)[1].cancel()
                self._expected.pop(msg_id, None)
        if answered:
            self.rtt.sample(loop.time() - started)
        return answered, answer

    # -- outgoing calls (with eviction) --------------------------------------------------

    async def _call_node(self, node: Node, name: str, *args: object) -> tuple[bool, Any]:
        result = await self.call((node.ip, node.port), name, self.source_node.id, *args)
        return self.handle_call_response(result, node)

    async def call_ping(self, node_to_ask: Node) -> tuple[bool, Any]:
        """Ping a contact (evicted if it does not answer)."""
        return await self._call_node(node_to_ask, "ping")

    async def call_store(self, node_to_ask: Node, key: bytes, value: bytes) -> tuple[bool, Any]:
        """Ask a contact to store a record; the answer is True if it kept it."""
        return await self._call_node(node_to_ask, "store", key, value)

    async def call_find_node(self, node_to_ask: Node, node_to_find: Node) -> tuple[bool, Any]:
        """Ask a contact for the contacts it knows closest to `node_to_find`."""
        return await self._call_node(node_to_ask, "find_node", node_to_find.id)

    async def call_find_value(self, node_to_ask: Node, node_to_find: Node) -> tuple[bool, Any]:
        """Ask a contact for the record under `node_to_find.id` (plus close contacts)."""
        return await self._call_node(node_to_ask, "find_value", node_to_find.id)

    def handle_call_response(self, result: tuple[bool, Any], node: Node) -> tuple[bool, Any]:
        """Welcome a node that answered; evict and suspect one that did not answer
        `EVICT_AFTER_TIMEOUTS` times in a row."""
        address = (node.ip, node.port)
        if not result[0]:
            missed = self._unanswered.pop(address, 0) + 1
            if missed < EVICT_AFTER_TIMEOUTS and not self.router.is_new_node(node):
                if len(self._unanswered) >= MAX_SUSPECTS:
                    self._unanswered.clear()
                self._unanswered[address] = missed
                return result
            log.debug("no answer from %s, evicting it", node)
            self.router.remove_contact(node)
            now = asyncio.get_running_loop().time()
            if len(self._suspects) >= MAX_SUSPECTS:  # forget the lapsed ones first
                self._suspects = {a: t for a, t in self._suspects.items() if t > now}
            if len(self._suspects) < MAX_SUSPECTS:
                self._suspects[(node.ip, node.port)] = now + SUSPECT_SECONDS
            return result
        self._unanswered.pop(address, None)
        self.welcome_if_new(node)
        return result

    def welcome_if_new(self, node: Node, *, verified: bool = True) -> None:
        """Add (or refresh) a contact; hand a new one the records it should now hold.

        Our own id is never added, and a known id claimed from another address is ignored
        (an attempt to hijack a contact). A node first heard from in a request of its own
        (`verified` False: its address may be forged, UDP has no handshake) gets the
        records only once it has answered a ping of ours with the same id; and every
        host gets at most `HANDOVER_RECORDS_PER_MINUTE` records so (see `_hand_over`).
        """
        if node.id == self.source_node.id:
            return
        index = self.router.get_bucket_for(node)
        known = self.router.buckets[index][node.id]
        if known is not None:
            if known.same_home_as(node):
                self.router.add_contact(node)
            return
        self.router.add_contact(node)
        if verified:
            self._hand_over(node)
        else:
            self.spawn(self._verify_and_hand_over(node))

    async def _verify_and_hand_over(self, node: Node) -> None:
        """Ping a contact first heard from in its own request: records if it answers
        with its id, out of the routing table if not (its address was never proven)."""
        ok, node_id = await self.call((node.ip, node.port), "ping", self.source_node.id)
        if ok and node_id == node.id:
            self.forget_past_runs(node)
            self._hand_over(node)
        elif not ok:
            self.router.remove_contact(node)

    def forget_past_runs(self, node: Node) -> None:
        """`node` answered our ping at its address with its id: another id we hold at the
        same address is a past run of the node there (ids are random per run), which
        only this one answers for now; it goes. Kept, every restart on the same port
        added one for good: counted as a peer, and the one node counted several times
        among the closest nodes a record is stored at. Only the holder of an address can
        prove an id at it, so nobody can evict another address's node so."""
        for bucket in self.router.buckets:
            past = [
                other
                for other in (*bucket.get_nodes(), *bucket.replacement_nodes.values())
                if (other.ip, other.port) == (node.ip, node.port) and other.id != node.id
            ]
            for other in past:
                self.router.remove_contact(other)

    def _hand_over(self, node: Node) -> None:
        """Store at `node` the records it is now closer to than our farthest neighbour,
        where we are the closest (the library's replication to a newcomer), within its
        host's budget. Without the check and the budget, one 50-byte ping under a made-up
        id made a node holding 2,000 records of 6 KB send 465 stores (2.9 MB) to the
        address it named."""
        wanted = []
        for key, value in self.storage:
            keynode = Node(key)
            neighbors = self.router.find_neighbors(keynode, exclude=node)
            if neighbors:
                new_is_close = node.distance_to(keynode) < neighbors[-1].distance_to(keynode)
                we_are_closest = self.source_node.distance_to(keynode) < neighbors[0].distance_to(
                    keynode
                )
            if not neighbors or (new_is_close and we_are_closest):
                wanted.append((key, value))
        granted = self._handovers.take(source_of((node.ip, node.port)), len(wanted))
        if granted < len(wanted):
            log.debug("handing a new contact %d of %d records (its host's budget)", granted,
                      len(wanted))  # fmt: skip
        if granted:
            self.spawn(self._store_all(node, wanted[:granted]))

    async def _store_all(self, node: Node, records: list[tuple[bytes, bytes]]) -> None:
        """Store `records` at `node`, `HANDOVER_IN_FLIGHT` at a time, until it stops
        answering. (All at once, 512 small stores overflowed a newcomer's socket buffer:
        it kept 166, and the timeouts of the rest evicted it from our routing table.)"""
        pending = iter(records)

        async def worker() -> None:
            for key, value in pending:
                ok, _ = await self.call_store(node, key, value)
                if not ok:
                    return

        await asyncio.gather(*(worker() for _ in range(HANDOVER_IN_FLIGHT)))

    # -- incoming calls ------------------------------------------------------------------

    def _welcome_sender(self, sender: Address, nodeid: object) -> Node:
        if not _is_key(nodeid):
            raise ValueError("a node id is 20 bytes")
        source = Node(nodeid, sender[0], sender[1])
        self.welcome_if_new(source, verified=False)
        return source

    def rpc_ping(self, sender: Address, nodeid: object) -> bytes:
        """Answer with our node id."""
        self._welcome_sender(sender, nodeid)
        return bytes(self.source_node.id)

    def rpc_store(self, sender: Address, nodeid: object, key: object, value: object) -> bool:
        """Keep `value` if it is a valid record for `key`, not older than the one held."""
        self._welcome_sender(sender, nodeid)
        if not _is_key(key):
            return False
        try:
            record = self.storage.offer(key, value, source_of(sender))
        except InvalidRecord as exc:
            log.debug("refused a record from %s: %s", sender, exc)
            self._observe(sender, "rejected")
            if isinstance(exc, BadRecordSignature):
                self._observe(sender, "invalid_signature")
            return False
        log.debug("stored seq %d under %s from %s", record.seq, key.hex(), sender)
        return True

    def rpc_find_node(self, sender: Address, nodeid: object, key: object) -> list[tuple[Any, ...]]:
        """The contacts we know closest to `key` (never the asker)."""
        source = self._welcome_sender(sender, nodeid)
        if not _is_key(key):
            return []
        neighbors = self.router.find_neighbors(Node(key), exclude=source)
        return [tuple(n) for n in neighbors]

    def rpc_find_value(self, sender: Address, nodeid: object, key: object) -> Any:
        """``{"value": record, "nodes": contacts}`` if we hold a valid record, else contacts.

        The contacts let a reader look further for a higher sequence; they are trimmed so
        the answer stays within one datagram.
        """
        nodes = self.rpc_find_node(sender, nodeid, key)
        value = self.storage.get(key) if _is_key(key) else None
        if value is None:
            return nodes
        answer = {"value": value, "nodes": nodes}
        while nodes and len(umsgpack.packb(answer)) > MAX_DATAGRAM:
            nodes = nodes[: len(nodes) // 2]
            answer["nodes"] = nodes
        return answer

    async def rpc_signal(self, sender: Address, payload: object) -> bytes | None:
        """Hand a signalling payload to the handler; its answer goes back to the sender."""
        handler = self.signal_handler
        if handler is None or type(payload) is not bytes or len(payload) > MAX_SIGNAL_BYTES:
            return None
        try:
            answer = await asyncio.wait_for(handler(sender, payload), SIGNAL_HANDLER_SECONDS)
        except Exception as exc:  # the handler's failure is answered with None, not raised
            log.debug("signal handler failed for %s: %r", sender, exc)
            return None
        if type(answer) is not bytes or len(answer) > MAX_SIGNAL_BYTES:
            log.warning("signal handler returned an invalid answer; sending none")
            return None
        return answer
