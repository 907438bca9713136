"""The receiver's want-list: which blocks of a file to ask which peer for, and when.

Rules of this machine (everything that changes its state lives here):

* A block is *needed*, *in flight* (asked of one peer, with a deadline) or *held*. Blocks
  the receiver already holds (a resumed transfer) are never asked for.
* `requests_to_send(now)` hands out needed blocks in the order they were wanted (file
  order, so the file can be assembled as it arrives), to the eligible peer with the
  fewest requests in flight, up to `max_in_flight` overall and `max_per_peer` each.
* A block is accepted only if its bytes hash to its CID. A peer that sends a block that
  does not match is *banned* for the rest of the transfer: its requests go back to the
  needed set and it is never asked again.
* A request that passes its deadline (`handle_timer(now)`) or that the peer declines
  (`peer_lacks`) is re-assigned to another peer; that peer is not asked for that block
  again. When no peer is left to ask for a block, `BlockUnavailable` is emitted once;
  `add_peer` or `retry_unavailable` makes it eligible again.
* A peer that has declined `lacks_file_after` requests without ever delivering a block
  does not hold the file (a contact that was never sent it): it is taken out of this
  want-list (`PeerLacksFile`) instead of being asked for every remaining block in turn.
  `add_peer` lets it in again.
* Results come out as frozen-dataclass events from `next_event()`.

Time is passed in (`now`, seconds on any monotonic clock); the machine reads no clock.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field

from app.core.errors import LocalProtocolError
from app.core.unixfs import block_matches, cid_codec

DEFAULT_MAX_IN_FLIGHT = 16
DEFAULT_MAX_PER_PEER = 8
DEFAULT_TIMEOUT = 30.0
DEFAULT_LACKS_FILE_AFTER = 16


@dataclass(frozen=True)
class BlockRequest:
    """Ask `peer` for the block named `cid`."""

    peer: str
    cid: bytes


@dataclass(frozen=True)
class BlockAccepted:
    """A block arrived and matches its CID; store it."""

    cid: bytes
    data: bytes = field(repr=False)
    peer: str


@dataclass(frozen=True)
class PeerBanned:
    """`peer` sent a block that does not match its CID; it is not asked again."""

    peer: str
    cid: bytes


@dataclass(frozen=True)
class RequestTimedOut:
    """`peer` did not deliver `cid` in time; the block is asked of someone else."""

    peer: str
    cid: bytes


@dataclass(frozen=True)
class BlockUnavailable:
    """Every known peer has been tried for `cid` without success."""

    cid: bytes


@dataclass(frozen=True)
class TransferComplete:
    """Every wanted block is held."""


@dataclass(frozen=True)
class PeerLacksFile:
    """`peer` declined `lacks_file_after` blocks and delivered none: it is not asked for
    the rest (until `add_peer` names it again)."""

    peer: str


WantEvent = (
    BlockAccepted
    | PeerBanned
    | RequestTimedOut
    | BlockUnavailable
    | PeerLacksFile
    | TransferComplete
)


@dataclass
class _InFlight:
    peer: str
    deadline: float


class WantList:
    """Want-list state machine for fetching a set of content-addressed blocks."""

    def __init__(
        self,
        held: AbstractSet[bytes] = frozenset(),
        *,
        max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
        max_per_peer: int = DEFAULT_MAX_PER_PEER,
        timeout: float = DEFAULT_TIMEOUT,
        lacks_file_after: int = DEFAULT_LACKS_FILE_AFTER,
    ) -> None:
        if max_in_flight < 1 or max_per_peer < 1 or timeout <= 0 or lacks_file_after < 1:
            raise LocalProtocolError("limits and timeout must be positive")
        self._held: set[bytes] = set(held)
        self._needed: dict[bytes, None] = {}  # insertion-ordered set
        self._in_flight: dict[bytes, _InFlight] = {}
        self._tried: dict[bytes, set[str]] = {}
        self._unavailable: set[bytes] = set()
        self._peers: dict[str, int] = {}  # peer -> requests in flight
        self._banned: set[str] = set()
        self._delivered: set[str] = set()  # peers that delivered a matching block
        self._declined: dict[str, int] = {}  # peer -> "don't have" answers while in
        self._events: deque[WantEvent] = deque()
        self._completed = False
        self._max_in_flight = max_in_flight
        self._max_per_peer = max_per_peer
        self._timeout = timeout
        self._lacks_file_after = lacks_file_after

    # ----------------------------------------------------------------- inputs

    def want(self, cids: Iterable[bytes]) -> None:
        """Add blocks to fetch (ignored if already held or wanted)."""
        for cid in cids:
            cid_codec(cid)
            if cid not in self._held and cid not in self._in_flight:
                self._needed.setdefault(cid, None)
                self._completed = False

    def add_peer(self, peer: str) -> None:
        """A peer that may have the blocks; banned peers stay banned."""
        if peer in self._banned or peer in self._peers:
            return
        self._peers[peer] = 0
        self._declined.pop(peer, None)
        self._unavailable.clear()

    def remove_peer(self, peer: str) -> None:
        """Forget a peer (disconnected); its requests go back to the needed set."""
        if self._peers.pop(peer, None) is not None:
            self._requeue_from(peer)

    def retry_unavailable(self) -> None:
        """Let every non-banned peer be asked again for blocks nobody delivered."""
        for cid in self._unavailable:
            self._tried.pop(cid, None)
        self._unavailable.clear()

    def receive_block(
        self, peer: str, cid: bytes, data: bytes, now: float, *, verified: bool | None = None
    ) -> None:
        """A block arrived from `peer`; tampering bans the peer. Verified here, unless
        the caller already hashed it (`verified`: whether it matched its CID)."""
        del now  # accepted whenever it arrives; kept for a uniform interface
        asked = self._in_flight.get(cid)
        was_asked = (asked is not None and asked.peer == peer) or peer in self._tried.get(cid, ())
        if peer in self._banned or not was_asked or cid in self._held:
            return  # unsolicited, duplicate or from a banned peer: ignore
        if not (block_matches(cid, data) if verified is None else verified):
            self._ban(peer, cid)
            return
        if asked is not None:
            del self._in_flight[cid]
            self._release(asked.peer)
        self._needed.pop(cid, None)
        self._tried.pop(cid, None)
        self._unavailable.discard(cid)
        self._held.add(cid)
        self._delivered.add(peer)
        self._events.append(BlockAccepted(cid, data, peer))
        self._check_complete()

    def peer_lacks(self, peer: str, cid: bytes, now: float) -> None:
        """`peer` answered that it does not have `cid`: ask someone else."""
        asked = self._in_flight.get(cid)
        if asked is None or asked.peer != peer:
            return
        self._give_up_on(cid, asked, now, timed_out=False)
        if peer in self._delivered or peer not in self._peers:
            return
        declined = self._declined[peer] = self._declined.get(peer, 0) + 1
        if declined >= self._lacks_file_after:
            del self._peers[peer]
            self._requeue_from(peer)
            self._events.append(PeerLacksFile(peer))

    def handle_timer(self, now: float) -> None:
        """Expire requests whose deadline has passed."""
        for cid, asked in list(self._in_flight.items()):
            if asked.deadline <= now:
                self._give_up_on(cid, asked, now, timed_out=True)

    # ----------------------------------------------------------------- outputs

    def requests_to_send(self, now: float) -> list[BlockRequest]:
        """Assign needed blocks to peers; the caller sends each request."""
        out: list[BlockRequest] = []
        if not self._peers:
            return out
        # Iterate without copying (the needed set can hold tens of thousands of blocks);
        # the loop stops as soon as no request slot is left.
        for cid in self._needed:
            if len(self._in_flight) >= self._max_in_flight or all(
                count >= self._max_per_peer for count in self._peers.values()
            ):
                break
            tried = self._tried.get(cid, set())
            candidates = [
                (count, peer)
                for peer, count in self._peers.items()
                if peer not in tried and count < self._max_per_peer
            ]
            if not candidates:
                if all(p in tried for p in self._peers) and cid not in self._unavailable:
                    self._unavailable.add(cid)
                    self._events.append(BlockUnavailable(cid))
                continue
            _, peer = min(candidates)
            self._tried.setdefault(cid, set()).add(peer)
            self._in_flight[cid] = _InFlight(peer, now + self._timeout)
            self._peers[peer] += 1
            out.append(BlockRequest(peer, cid))
        for req in out:
            del self._needed[req.cid]
        return out

    def next_event(self) -> WantEvent | None:
        """The next event, or None."""
        return self._events.popleft() if self._events else None

    def get_timer(self) -> float | None:
        """When `handle_timer` should next be called (earliest deadline), or None."""
        if not self._in_flight:
            return None
        return min(asked.deadline for asked in self._in_flight.values())

    @property
    def is_complete(self) -> bool:
        """Whether nothing is needed or in flight."""
        return not self._needed and not self._in_flight

    @property
    def held(self) -> frozenset[bytes]:
        """Blocks held (given at start or accepted since)."""
        return frozenset(self._held)

    @property
    def needed(self) -> tuple[bytes, ...]:
        """Blocks not yet asked for (or to be asked again), in order."""
        return tuple(self._needed)

    @property
    def in_flight(self) -> dict[bytes, str]:
        """Blocks currently asked for, and of whom."""
        return {cid: asked.peer for cid, asked in self._in_flight.items()}

    @property
    def banned_peers(self) -> frozenset[str]:
        """Peers that served a tampered block."""
        return frozenset(self._banned)

    # ----------------------------------------------------------------- internals

    def _give_up_on(self, cid: bytes, asked: _InFlight, now: float, timed_out: bool) -> None:
        del now
        del self._in_flight[cid]
        self._release(asked.peer)
        self._needed[cid] = None
        if timed_out:
            self._events.append(RequestTimedOut(asked.peer, cid))

    def _ban(self, peer: str, cid: bytes) -> None:
        self._banned.add(peer)
        self._events.append(PeerBanned(peer, cid))
        self._peers.pop(peer, None)
        self._requeue_from(peer)

    def _requeue_from(self, peer: str) -> None:
        for cid, asked in list(self._in_flight.items()):
            if asked.peer == peer:
                del self._in_flight[cid]
                self._needed[cid] = None

    def _release(self, peer: str) -> None:
        if peer in self._peers:
            self._peers[peer] -= 1

    def _check_complete(self) -> None:
        if self.is_complete and not self._completed:
            self._completed = True
            self._events.append(TransferComplete())
