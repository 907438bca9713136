"""The node's network stack: DHT + authenticated connections + our published records.

`NetworkStack` composes a `DhtNode` and a `ConnectionManager` (WebRTC signalled through
the DHT, direct Noise-over-WebSocket as the fallback path) and keeps two signed records
of ours alive in the DHT: the presence record (identity -> endpoints) and the X3DH
prekey bundle. See docs/protocol.md, section 7.

Endpoint convention: every ``host:port`` we publish (presence record, invite) is both
our DHT address (UDP) and our WebSocket listener (TCP): the listener binds the TCP port
with the DHT's UDP port number. When that TCP port is taken, the listener gets another
port and that endpoint is published as well; peers send signals to every endpoint and
dial the WebSocket path on every endpoint, so either works.

Loopback ICE: aioice gathers host candidates only on non-loopback interfaces, so two
nodes on 127.0.0.1 cannot use WebRTC. `SCRAMBLED_EGGS_ICE_LOOPBACK=1` in the environment
(tests only; never set by the app) makes aioice offer 127.0.0.1 and disables its mDNS
resolution. Without it, production behaviour is untouched.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import os
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Protocol

from app.core.errors import InvalidAddress
from app.core.identity import IdentityKeys, decode_address
from app.core.prekeys import PrekeyBundle
from app.core.records import (
    PresencePayload,
    RecordKind,
    SignedRecord,
    decode_presence,
    dht_key,
    next_sequence,
    sign_record,
)
from app.core.wake import WakeEvent
from app.node.api import Peer
from app.node.dht import DhtNode, attached_networks, parse_host_port
from app.node.dht_protocol import Address
from app.node.lookup_pacer import LookupPacer
from app.node.peer_inbox import PeerInboxes
from app.node.transport import (
    ConnectionManager,
    ConnectionStateChanged,
    FrameHook,
    PeerState,
    TransportEvent,
    TransportSettings,
)
from app.node.transport.base import ConnectFailed, TransportError
from app.node.transport.ice_urls import ice_servers_of
from app.node.transport.relay_watch import RelayWatch

log = logging.getLogger(__name__)

ICE_LOOPBACK_ENV = "SCRAMBLED_EGGS_ICE_LOOPBACK"
RECORD_TTL = 6 * 3600
"""Lifetime of our presence and prekey records; `DhtNode` renews them before expiry."""
PRESENCE_CACHE_SECONDS = 20.0
PRESENCE_MISS_SECONDS = 30.0
"""A contact with no presence record (offline) is not looked up again for this long,
unless the DHT was joined anew meanwhile: every retry, redial and signal of an offline
contact was a lookup, and a few offline contacts made each node of a small network
send the others more requests than their anomaly detectors accept."""
MAX_REJOIN_PEERS = 32
REJOIN_FIRST = 2.0
REJOIN_MAX = 30.0
"""How often a node with no DHT neighbour left bootstraps again (backoff while nobody
answers): after a first join that reached nobody, or after a partition long enough that
every neighbour was evicted as unresponsive."""
# Direct prekey-bundle exchange over an authenticated connection, for peers that reach
# each other but not the DHT (e.g. UDP blocked). Ratchet messages start with 0x01/0x02,
# so these one-byte tags never collide; bundles are public and signed, and the receiver
# verifies them against the address exactly as a bundle read from the DHT.
BUNDLE_REQUEST = b"\xb0"
BUNDLE_REPLY = b"\xb1"
NOT_A_CONTACT = b"\xb4"
"""Sent to a peer whose session message we dropped because it is not our contact (once
per connection, `app.node.added_back`): a bare DONT_HAVE tag without its request id,
which every node since the block exchange drops unread (its DONT_HAVE handler ignores
one shorter than an id), so older nodes ignore it; docs/protocol.md, section 7."""
BUNDLE_WAIT_SECONDS = 5.0
REPUBLISH_AFTER_CHANGE = 2.0
"""Seconds between a wake or network change and publishing our records again: the
network is seldom usable the moment the machine wakes (Wi-Fi associates, DHCP), and
changes come in bursts (an address goes, another comes); the last one wins."""


def ice_loopback_requested() -> bool:
    """Whether the test-only loopback ICE setting is on (see the module docstring)."""
    return os.environ.get(ICE_LOOPBACK_ENV) == "1"


def enable_ice_loopback() -> None:
    """Let aioice gather 127.0.0.1 host candidates and skip mDNS (tests on loopback)."""
    import aioice.ice

    class _NoMdns:
        async def resolve(self, hostname: str, timeout: float = 1.0) -> None:
            return None

        async def close(self) -> None:
            return None

    def host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        return ["127.0.0.1"] if use_ipv4 else []

    async def no_mdns(subscriber: object) -> _NoMdns:
        return _NoMdns()

    aioice.ice.get_host_addresses = host_addresses
    aioice.ice.get_or_create_mdns_protocol = no_mdns  # type: ignore[assignment]
    log.warning("%s=1: WebRTC uses loopback host candidates (test setting)", ICE_LOOPBACK_ENV)


def on_attached_network(
    endpoints: Sequence[str], networks: Sequence[ipaddress.IPv4Network]
) -> bool:
    """Whether any ``host:port`` endpoint is an IPv4 address on one of `networks`.

    Such a peer is on our LAN: the direct WebSocket path reaches it without NAT traversal
    and moves data far faster than a WebRTC data channel (SCTP in Python, ~10-20 MB/s vs
    loopback/LAN TCP at wire speed; docs/decisions/0008-path-choice.md)."""
    for endpoint in endpoints:
        host = endpoint.rpartition(":")[0].strip("[]")
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            continue
        if isinstance(address, ipaddress.IPv4Address) and any(address in n for n in networks):
            return True
    return False


class InboundGate(Protocol):
    """Decides when a received payload is handled (see `app.node.anomaly`)."""

    async def deliver(
        self, address: str, payload: bytes, dispatch: Callable[[str, bytes], Awaitable[None]]
    ) -> None: ...


@dataclass(frozen=True)
class PeerLink:
    """What the transport last said about one peer."""

    address: str
    state: PeerState
    path: str | None
    rtt_ms: float | None


class NetworkStack:
    """DHT, connections and published records of one running node."""

    def __init__(
        self,
        keys: IdentityKeys,
        *,
        ice_servers: Sequence[str] = (),
        settings: TransportSettings | None = None,
        dht: DhtNode | None = None,
        clock: Callable[[], float] = time.time,
        hook: FrameHook | None = None,
    ) -> None:
        """`hook` sits in every connection's frame path (the node passes its `Shaper`)."""
        self.keys = keys
        self.address = keys.public.address
        self.dht = dht or DhtNode()
        self._clock = clock
        self._last_seq = 0
        """The sequence of the last record we signed (see `next_sequence`)."""
        self._known_endpoints: dict[str, tuple[str, ...]] = {}
        self.presence_seen: Callable[[str, tuple[str, ...]], None] | None = None
        """Told the endpoints of each presence record read from the DHT (signed by its
        owner, checked on read): the messenger keeps contacts' endpoints current."""
        self._on_message: Callable[[str, bytes], object] | None = None
        self.inbound_gate: InboundGate | None = None
        """Sees every application payload first (the anomaly monitor: counts, queues)."""
        # A peer killed without closing its connection is noticed by keepalive only (a
        # restarted peer's new connection replaces the silent old one at once, see
        # `ConnectionManager._settle_duplicate`): keep the keepalive short, so messages to
        # a dead peer go to its DHT mailbox soon.
        base = settings or TransportSettings(
            backoff_max=20.0, keepalive_interval=5.0, keepalive_timeout=5.0
        )
        self.relay_watch = RelayWatch(ice_servers)
        """Whether the configured TURN server works (left out of connections while not)."""
        self.settings = replace(
            base,
            ice_servers=ice_servers_of(ice_servers) or base.ice_servers,
            relay_watch=self.relay_watch if self.relay_watch.configured else base.relay_watch,
        )
        self._hook = hook
        self._fetches: dict[str, int] = {}
        """Per peer: fetches from it and block requests of its being answered (each
        holds our side of the connection at least at burst)."""
        self.manager = ConnectionManager(
            keys,
            self,
            settings=self.settings,
            resolver=_Resolver(self),
            hook=hook,
            on_message=self._deliver,
            prefer_websocket_for=self._on_our_lan,
        )
        self._links: dict[str, PeerLink] = {}
        self.manager.subscribe(self._track)
        self._ws_endpoints: list[str] = []
        self._presence_cache: dict[str, tuple[float, tuple[str, ...]]] = {}
        self.background = LookupPacer(nodes=lambda: self.dht.peer_count())
        """Paces lookups made in the background (mailbox reads, offline contacts)."""
        self._join: asyncio.Task[int] | None = None
        self._rejoin: asyncio.Task[None] | None = None
        self._refresh: asyncio.Task[None] | None = None
        self._published_endpoints: tuple[str, ...] = ()
        self._rejoin_peers: dict[tuple[str, int], None] = {}
        """Nodes to join again through when no DHT neighbour is left: the bootstrap
        nodes and those of invites and contacts (`join_via`), in order, the newest kept."""
        self._bundle: PrekeyBundle | None = None
        self._bundle_replies: dict[str, asyncio.Future[bytes]] = {}
        self._tagged: dict[int, Callable[[str, bytes], Awaitable[None]]] = {}
        self.not_a_contact: Callable[[str], None] | None = None
        """Told the address of a peer that said we are not its contact (`NOT_A_CONTACT`)."""
        self.inboxes = PeerInboxes(self._handle_message)
        """Session messages, handled apart from the connections' readers (so the block
        exchange's payloads read after one do not wait for it) and in order per peer."""
        self.listen_host = "127.0.0.1"
        """The host our listeners bind (set by `start`)."""

    # ------------------------------------------------------------------ lifecycle

    async def start(self, host: str, port: int) -> None:
        """Listen on UDP (DHT) and TCP (WebSocket) and answer signals."""
        self.listen_host = host
        if ice_loopback_requested():
            enable_ice_loopback()
        await self.dht.start(host, port)
        self.dht.set_signal_handler(self._on_signal)
        try:
            endpoint = await self.manager.start_listening(host, self.dht.port)
        except (OSError, ConnectFailed) as exc:
            log.info("TCP port %d is taken (%s); WebSocket on another port", self.dht.port, exc)
            endpoint = await self.manager.start_listening(host, 0)
        ws_port = int(endpoint.rpartition(":")[2])
        if ws_port != self.dht.port:
            self._ws_endpoints = [f"{h.rpartition(':')[0]}:{ws_port}" for h in self.dht.endpoints()]
        # the TURN server is asked once now: one that does not work is left out of the
        # first dials already; when it works again, the peers we want are dialled
        self.relay_watch.on_back = self._relay_back
        self.relay_watch.start()

    def join(self, peers: list[tuple[str, int]]) -> asyncio.Task[int]:
        """Bootstrap the DHT from `peers` in the background (then publish our records)."""
        self._join = asyncio.ensure_future(self._join_and_publish(peers))
        return self._join

    async def _join_and_publish(self, peers: list[tuple[str, int]]) -> int:
        self._remember_peers(peers)
        reached = await self.dht.bootstrap(peers) if peers else 0
        log.info("DHT bootstrap reached %d nodes", reached)
        self._forget_presence_misses()
        await self.publish_presence()
        if self._bundle is not None:
            await self.publish_bundle(self._bundle)
        # a lost datagram, a peer down for a moment or a partition that evicted every
        # neighbour must not leave us alone in the DHT for good (nobody could find us,
        # nor we them): whenever the routing table is empty, join again
        self._rejoin = asyncio.ensure_future(self._stay_joined())
        return reached

    def _remember_peers(self, peers: Sequence[tuple[str, int]]) -> None:
        for peer in peers:
            self._rejoin_peers.pop(peer, None)
            self._rejoin_peers[peer] = None
        while len(self._rejoin_peers) > MAX_REJOIN_PEERS:
            del self._rejoin_peers[next(iter(self._rejoin_peers))]

    def _forget_presence_misses(self) -> None:
        """New DHT neighbours may hold the records we missed: look again."""
        for address, (_, found) in list(self._presence_cache.items()):
            if not found:
                del self._presence_cache[address]

    async def _stay_joined(self) -> None:
        """Join again whenever no neighbour is left, through the bootstrap nodes and
        those of invites and contacts (a node joined through invites only, whose
        neighbours were all evicted during a partition, was alone for good)."""
        delay = REJOIN_FIRST
        while True:
            await asyncio.sleep(delay)
            peers = list(self._rejoin_peers)
            if self.dht.peer_count() > 0 or not peers:
                delay = REJOIN_FIRST
                continue
            reached = await self.dht.bootstrap(peers)
            if not reached:
                delay = min(delay * 2, REJOIN_MAX)
                continue
            log.info("DHT: no neighbour was left; joined again through %d nodes", reached)
            self._forget_presence_misses()
            delay = REJOIN_FIRST
            await self.publish_presence()
            if self._bundle is not None:
                await self.publish_bundle(self._bundle)

    @property
    def relay_problem(self) -> str:
        """Why the configured TURN server is left out of connections ("" if it is not)."""
        return self.relay_watch.problem

    def _relay_back(self) -> None:
        """The TURN server works again: a peer reachable only through it is dialled now."""
        self.manager.network_changed()

    async def stop(self) -> None:
        """Close every connection and the DHT socket."""
        for task in (self._join, self._rejoin, self._refresh):
            if task is not None:
                task.cancel()
        await self.relay_watch.stop()
        await self.inboxes.close()
        await self.manager.close()
        self.dht.stop()

    def network_changed(self, event: WakeEvent) -> None:
        """The machine woke up or its addresses changed (`app.node.wake`): probe every
        connection and dial every wanted peer now (`ConnectionManager.network_changed`),
        look contacts up afresh (the presence cache was judged by the monotonic clock,
        which stood still during a sleep), and publish our records again shortly."""
        self.manager.network_changed()
        self._presence_cache.clear()
        if self._join is None or not self._join.done():
            return  # the join in progress publishes them
        if self._refresh is not None:
            self._refresh.cancel()
        self._refresh = asyncio.ensure_future(self._publish_after_change())

    async def _publish_after_change(self) -> None:
        """Our endpoints may be new (listening on 0.0.0.0), and after a long sleep our
        records may be near or past their expiry, or the nodes holding them gone: sign
        presence again if the endpoints changed, renew and re-store every record."""
        await asyncio.sleep(REPUBLISH_AFTER_CHANGE)
        try:
            if tuple(self.endpoints()[:8]) != self._published_endpoints:
                await self.publish_presence()
            await self.dht.republish()
        except Exception as exc:  # the periodic republish tries again
            log.info("publishing our records after a network change failed: %r", exc)

    def on_message(self, handler: Callable[[str, bytes], object]) -> None:
        """Deliver every received application payload as ``await handler(address, data)``."""
        self._on_message = handler

    def on_tagged(self, tag: int, handler: Callable[[str, bytes], Awaitable[None]]) -> None:
        """Deliver payloads whose first byte is `tag` to `handler` instead of the
        messenger (side protocols over the authenticated connection, e.g. file blocks
        0xb2-0xb4; ratchet messages start 0x01/0x02, bundle exchange 0xb0/0xb1)."""
        self._tagged[tag] = handler

    async def _deliver(self, address: str, payload: bytes) -> None:
        gate = self.inbound_gate
        if gate is not None:
            await gate.deliver(address, payload, self._dispatch)
        else:
            await self._dispatch(address, payload)

    async def _dispatch(self, address: str, payload: bytes) -> None:
        if payload == NOT_A_CONTACT:
            if self.not_a_contact is not None:
                self.not_a_contact(address)
            return
        tagged = self._tagged.get(payload[0]) if payload else None
        if tagged is not None:
            await tagged(address, payload)
            return
        if payload == BUNDLE_REQUEST:
            if self._bundle is not None:
                with contextlib.suppress(TransportError):
                    await self.manager.send(address, BUNDLE_REPLY + self._bundle.to_bytes())
            return
        if payload.startswith(BUNDLE_REPLY):
            waiting = self._bundle_replies.get(address)
            if waiting is not None and not waiting.done():
                waiting.set_result(payload[len(BUNDLE_REPLY) :])
            return
        if self._on_message is not None:
            await self.inboxes.put(address, payload)

    async def _handle_message(self, address: str, payload: bytes) -> None:
        handler = self._on_message
        if handler is None:
            return
        result = handler(address, payload)
        if asyncio.iscoroutine(result) or isinstance(result, asyncio.Future):
            await result

    # ------------------------------------------------------------------ NetworkView

    def endpoints(self) -> list[str]:
        """Our ``host:port`` endpoints (DHT UDP and WebSocket TCP; see module docstring)."""
        return [*self.dht.endpoints(), *self._ws_endpoints]

    def peer_count(self) -> int:
        """How many nodes the DHT routing table holds."""
        return self.dht.peer_count()

    def links(self) -> list[PeerLink]:
        """Every peer the transport has a state for, live RTT included."""
        found = []
        for address, link in sorted(self._links.items()):
            conn = self.manager.connection(address)
            if conn is not None:
                link = PeerLink(address, PeerState.CONNECTED, conn.path, conn.rtt_ms)
            elif link.state is PeerState.CONNECTED:  # closing: its event comes after teardown
                link = PeerLink(address, PeerState.DISCONNECTED, None, None)
            found.append(link)
        return found

    def peers(self) -> list[Peer]:
        """`links()` as API values (the service fills in contact names)."""
        return [
            Peer(None, link.address, link.path, link.state.value, link.rtt_ms)
            for link in self.links()
        ]

    def _track(self, event: TransportEvent) -> None:
        if isinstance(event, ConnectionStateChanged):
            path = event.path if event.state is PeerState.CONNECTED else None
            self._links[event.address] = PeerLink(event.address, event.state, path, None)

    # ------------------------------------------------------------------ our records

    def _sign(self, kind: RecordKind, payload: bytes) -> SignedRecord:
        now = self._clock()
        self._last_seq = next_sequence(now, self._last_seq)
        return sign_record(
            self.keys.sign,
            self.keys.public.signing_key,
            kind,
            seq=self._last_seq,
            expires_at=int(now) + RECORD_TTL,
            payload=payload,
        )

    def _renewer(self, kind: RecordKind) -> Callable[[SignedRecord], SignedRecord]:
        return lambda old: self._sign(kind, old.payload)

    async def _publish(self, kind: RecordKind, payload: bytes) -> int:
        """Sign and publish (and keep renewing) one of our records; how many nodes kept it.

        Kept by none while the DHT holds one of ours numbered at or above it: that one was
        signed while our clock ran ahead (before a restart; the sequence is the time in
        ms), and every node would keep it until it expires. Sign again above it."""
        record = self._sign(kind, payload)
        kept = await self.dht.put_record(record, renew=self._renewer(kind))
        if kept == 0 and self.dht.peer_count() > 0:
            held = await self.dht.get_record(record.key)
            if held is not None and held.seq >= record.seq:
                self._last_seq = max(self._last_seq, held.seq)
                record = self._sign(kind, payload)
                kept = await self.dht.put_record(record, renew=self._renewer(kind))
        return kept

    async def publish_presence(self) -> int:
        """Publish (and keep renewing) identity -> our endpoints."""
        self._published_endpoints = tuple(self.endpoints()[:8])
        return await self._publish(
            RecordKind.PRESENCE, PresencePayload(self._published_endpoints).encode()
        )

    async def publish_bundle(self, bundle: PrekeyBundle) -> int:
        """Publish (and keep renewing) our prekey bundle; returns how many nodes kept it."""
        self._bundle = bundle
        return await self._publish(RecordKind.PREKEY_BUNDLE, bundle.to_bytes())

    def set_bundle(self, bundle: PrekeyBundle) -> None:
        """The bundle to publish once the DHT is joined."""
        self._bundle = bundle

    async def fetch_bundle(self, address: str) -> bytes | None:
        """The prekey bundle bytes `address` published (record verified), else the one
        the peer hands over on a live authenticated connection, else None."""
        try:
            owner = decode_address(address)
        except InvalidAddress:
            return None
        record = await self.dht.get_record(dht_key(RecordKind.PREKEY_BUNDLE, owner))
        if record is not None:
            return record.payload
        return await self._ask_for_bundle(address)

    async def bundle_from_peer(self, address: str) -> bytes | None:
        """The prekey bundle `address` hands over on a live authenticated connection now
        (its owner's current one), else None."""
        return await self._ask_for_bundle(address)

    async def _ask_for_bundle(self, address: str) -> bytes | None:
        connection = self.manager.connection(address)
        if connection is None or not connection.is_open:
            return None
        waiting = self._bundle_replies.get(address)
        if waiting is None or waiting.done():
            waiting = asyncio.get_running_loop().create_future()
            self._bundle_replies[address] = waiting
        try:
            await self.manager.send(address, BUNDLE_REQUEST, awaits_answer=True)
            return await asyncio.wait_for(asyncio.shield(waiting), BUNDLE_WAIT_SECONDS)
        except (TransportError, TimeoutError):
            return None
        finally:
            if waiting.done():
                self._bundle_replies.pop(address, None)

    # ------------------------------------------------------------------ discovery

    async def presence(self, address: str, *, fresh: bool = False) -> tuple[str, ...]:
        """The endpoints `address` published in the DHT (cached briefly)."""
        now = time.monotonic()
        cached = self._presence_cache.get(address)
        try:
            owner = decode_address(address)
        except InvalidAddress:
            return ()
        if cached is not None and not fresh:
            keep = PRESENCE_CACHE_SECONDS if cached[1] else PRESENCE_MISS_SECONDS
            if now - cached[0] < keep:
                return cached[1]
            if not cached[1]:
                await self.background.wait(urgent=True)  # looking again for an offline one
        elif cached is None and not self.background.try_take():
            return ()  # many first looks at once: the known endpoints go first (pacer)
        record = await self.dht.get_record(dht_key(RecordKind.PRESENCE, owner))
        found = decode_presence(record.payload).endpoints if record is not None else ()
        if self.dht.peer_count() > 0:  # alone in the DHT, a miss says nothing
            self._presence_cache[address] = (now, found)
        if found and self.presence_seen is not None:
            self.presence_seen(address, found)
        return found

    async def _candidates(self, address: str) -> list[str]:
        found: list[str] = []
        try:
            found += await self.presence(address)
        except Exception as exc:  # a failing lookup must not stop the invite endpoints
            log.debug("presence lookup failed: %r", exc)
        for endpoint in self._known_endpoints.get(address, ()):
            if endpoint not in found:
                found.append(endpoint)
        return found

    @property
    def shaping_mode(self) -> str:
        """The traffic-shaping mode of connections opened now (``off`` without a shaper)."""
        return str(getattr(self._hook, "mode", "off"))

    @contextlib.contextmanager
    def fetching_from(self, address: str) -> Iterator[None]:
        """While a file is fetched from `address`: our many small block requests must
        keep pace with its bulk answers, so a shaping hook runs our side of that
        connection at least at the burst schedule (`Shaper.set_floor`)."""
        with self._burst_floor(address):
            yield

    @contextlib.contextmanager
    def serving_to(self, address: str) -> Iterator[None]:
        """While we answer a block request of `address`: the same floor. The model moves
        a connection to bulk only for a backlog of ~15 KB or more; the blocks of small
        files (a folder of 600 files of 2 kB, requested 32 at a time) stayed below it
        and left at the base schedule's ~8 KB/s, about 3 files a second."""
        with self._burst_floor(address):
            yield

    @contextlib.contextmanager
    def _burst_floor(self, address: str) -> Iterator[None]:
        set_floor = getattr(self._hook, "set_floor", None)
        self._fetches[address] = self._fetches.get(address, 0) + 1
        if set_floor is not None and self._fetches[address] == 1:
            set_floor(address, "burst")
        try:
            yield
        finally:
            self._fetches[address] -= 1
            if not self._fetches[address]:
                del self._fetches[address]
                if set_floor is not None:
                    set_floor(address, None)

    def note_endpoints(self, address: str, endpoints: Sequence[str]) -> None:
        """Endpoints learnt outside the DHT (a contact's invite), tried after presence."""
        self._known_endpoints[address] = tuple(endpoints)

    async def join_via(self, endpoints: Sequence[str]) -> int:
        """Ping `endpoints` into our DHT routing table (e.g. a new contact's invite); if
        that brought new nodes, publish our records again so they hold them too."""
        peers = []
        for endpoint in endpoints:
            with contextlib.suppress(Exception):
                peers.append(parse_host_port(endpoint))
        if not peers:
            return 0
        self._remember_peers(peers)
        before = self.dht.peer_count()
        reached = await self.dht.bootstrap(peers)
        if self.dht.peer_count() > before:
            # new neighbours (a LAN peer, a new contact's invite): store our records there
            self._forget_presence_misses()
            await self.publish_presence()
            if self._bundle is not None:
                await self.publish_bundle(self._bundle)
        return reached

    async def _on_our_lan(self, address: str) -> bool:
        """Dial the direct path first when the peer is on a network we are attached to."""
        networks = await asyncio.to_thread(attached_networks)
        return on_attached_network(await self._candidates(address), networks)

    async def endpoints_of(self, address: str) -> Sequence[str]:
        """Where `address`'s WebSocket listener may be: presence, then invite endpoints."""
        return await self._candidates(address)

    async def send_signal(self, peer: str, payload: bytes) -> bytes | None:
        """`Signaller`: deliver a signalling payload to `peer`'s DHT address(es)."""
        candidates = await self._candidates(peer)
        targets: list[Address] = []
        for endpoint in candidates:
            with contextlib.suppress(Exception):
                targets.append(parse_host_port(endpoint))
        if not targets:
            return None
        calls = [asyncio.ensure_future(self.dht.send_signal(t, payload)) for t in targets]
        try:
            for next_done in asyncio.as_completed(calls):
                with contextlib.suppress(Exception):
                    answer = await next_done
                    if answer is not None:
                        return answer
        finally:
            for call in calls:
                call.cancel()
        self._presence_cache.pop(peer, None)
        return None

    async def _on_signal(self, sender: Address, payload: bytes) -> bytes:
        return await self.manager.handle_signal(payload)


class _Resolver:
    """`EndpointResolver` over the stack (its own `endpoints()` is the NetworkView one)."""

    def __init__(self, stack: NetworkStack) -> None:
        self._stack = stack

    async def endpoints(self, address: str) -> Sequence[str]:
        return await self._stack.endpoints_of(address)
