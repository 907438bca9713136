"""The history of one conversation: a sans-I/O state machine over a DAG of signed events.

Rules of this module (everything that decides what the history *is* lives here):

* Only the two members may author events; an event must carry this conversation's id and
  a valid signature by its author (checked before anything is stored or buffered).
* An event is accepted once all its parents are accepted. Its Lamport time must be
  ``max(parent lamports) + 1`` (1 with no parents) and its ``seq`` must be one more than
  the highest ``seq`` of the same author among its ancestors: each author's events form
  a chain, and a peer cannot make up times to jump the queue.
* Events whose parents are unknown wait in a bounded buffer; `missing` lists what to ask
  the peer for. An event that builds on a rejected event is rejected too.
* Two accepted events with the same author and ``seq`` but different CIDs are an
  equivocation: both are kept (nothing is replaced) and `EquivocationDetected` is emitted.
* The total order is by ``(lamport, cid)``. Lamport times strictly grow along every edge,
  so this is a topological order, and it depends only on the set of events: every peer
  holding the same events derives the same order.

Bytes come in through `receive`, time through `append`'s ``now_ms``; outcomes are returned
as frozen dataclasses. Nothing here does I/O.
"""

from __future__ import annotations

import bisect
import heapq
from collections import deque
from collections.abc import Iterable
from collections.abc import Set as AbstractSet
from dataclasses import dataclass

import cbor2

from app.core.cid import Cid
from app.core.errors import LocalProtocolError
from app.core.identity import IdentityKeys
from app.core.ledger_errors import (
    ForgedAuthor,
    InconsistentEvent,
    InvalidExport,
    LedgerError,
    MalformedEvent,
    MissingParents,
    ParentRejected,
    PendingBufferFull,
    WrongConversation,
)
from app.core.ledger_event import (
    MAX_EVENT_BYTES,
    Event,
    EventBody,
    conversation_id,
    decode_event,
    decode_stored_event,
    decode_strict_cbor,
    sign_event,
)

DEFAULT_MAX_PENDING = 1024
DEFAULT_MAX_PENDING_BYTES = 4 * 1024 * 1024
EXPORT_VERSION = 1
EXPORT_FORMAT = "scrambled-eggs/history"
_EXPORT_KEYS = frozenset({"v", "format", "conv", "members", "events"})


@dataclass(frozen=True)
class EventAccepted:
    """An event was verified and added to the history."""

    cid: Cid
    event: Event


@dataclass(frozen=True)
class EventPending:
    """An event verified on its own but waits for parents (`missing`) before it counts."""

    cid: Cid
    missing: tuple[Cid, ...]


@dataclass(frozen=True)
class EventDuplicate:
    """An event we already hold (accepted or waiting) arrived again; nothing changed."""

    cid: Cid


@dataclass(frozen=True)
class EventRejected:
    """Input was refused; `error` says why and names the event (`cid`) where known."""

    cid: Cid | None
    error: LedgerError

    @property
    def reason(self) -> str:
        """A one-line explanation for logs and the security view."""
        return str(self.error)


@dataclass(frozen=True)
class EquivocationDetected:
    """Security event: `author` signed several different events with the same `seq`."""

    author: bytes
    seq: int
    cids: tuple[Cid, ...]


LedgerOutcome = EventAccepted | EventPending | EventDuplicate | EventRejected | EquivocationDetected


@dataclass(frozen=True)
class VerifiedHistory:
    """The result of verifying a whole history (an export or a stored ledger)."""

    conversation: bytes
    members: tuple[bytes, bytes]
    heads: tuple[Cid, ...]
    event_count: int
    equivocations: tuple[EquivocationDetected, ...]


class Ledger:
    """The signed event DAG of the conversation between two members (Ed25519 keys)."""

    def __init__(
        self,
        member_a: bytes,
        member_b: bytes,
        *,
        max_pending: int = DEFAULT_MAX_PENDING,
        max_pending_bytes: int = DEFAULT_MAX_PENDING_BYTES,
    ) -> None:
        self._conversation = conversation_id(member_a, member_b)
        low, high = sorted((member_a, member_b))
        self._members = (low, high)
        self._max_pending = max_pending
        self._max_pending_bytes = max_pending_bytes
        self._events: dict[Cid, Event] = {}
        # Highest seq of the member who did *not* author an event, among the event and
        # its ancestors (its author's is the event's own seq): one int per event, not a
        # tuple (see `_clock`).
        self._other_seq: dict[Cid, int] = {}
        # The event of each seq of each member (in `_members` order), keyed by the
        # event's own seq (no tuple, list or int per event); `_forks` holds every event
        # of an (author, seq) that has more than one, keyed ``seq * 2 + author's slot``:
        # the equivocations.
        self._by_seq: tuple[dict[int, Cid], dict[int, Cid]] = ({}, {})
        self._forks: dict[int, list[Cid]] = {}
        self._heads: set[Cid] = set()
        self._pending: dict[Cid, tuple[Event, bytes]] = {}
        self._pending_bytes = 0
        self._waiting_on: dict[Cid, set[Cid]] = {}  # unknown parent -> pending children
        self._order: list[Event] = []  # kept sorted by _order_key
        self._order_sorted = True  # False while a `Restorer` fills it (sorted at the end)
        self._shared = {self._conversation: self._conversation, low: low, high: high}

    # -- queries --------------------------------------------------------------------

    @property
    def conversation(self) -> bytes:
        """The 32-byte conversation id every event of this history carries."""
        return self._conversation

    @property
    def members(self) -> tuple[bytes, bytes]:
        """The two members' Ed25519 keys, sorted."""
        return self._members

    def __len__(self) -> int:
        return len(self._events)

    def __contains__(self, cid: object) -> bool:
        return cid in self._events

    def heads(self) -> tuple[Cid, ...]:
        """Accepted events no accepted event builds on (sorted): what to advertise to peers."""
        return tuple(sorted(self._heads))

    def missing(self) -> tuple[Cid, ...]:
        """Parents that waiting events need and nobody has sent yet: request these."""
        return tuple(sorted(cid for cid in self._waiting_on if cid not in self._pending))

    def pending_count(self) -> int:
        """How many events wait for their parents."""
        return len(self._pending)

    def get(self, cid: Cid) -> Event | None:
        """An accepted event, or None."""
        return self._events.get(cid)

    def get_bytes(self, cid: Cid) -> bytes | None:
        """The exact signed bytes of an accepted event (to send or store), or None.

        An event read back from storage does not keep its bytes (they are encoded again
        from its fields): those are checked against its CID, and an event whose stored
        form was not canonical (which only someone holding the data key could write, and
        ``history verify`` names) is not served: None."""
        event = self._events.get(cid)
        if event is None:
            return None
        data = event.to_bytes()
        if not event.holds_bytes and not cid.matches(data):
            return None
        return data

    def ordered(self) -> list[Event]:
        """All accepted events in the deterministic total order ``(lamport, cid)``."""
        return list(self._order)

    def equivocations(self) -> tuple[EquivocationDetected, ...]:
        """Every (author, seq) with more than one accepted event, as evidence."""
        found = [
            EquivocationDetected(self._members[key % 2], key // 2, tuple(sorted(cids)))
            for key, cids in self._forks.items()
        ]
        return tuple(sorted(found, key=lambda e: (e.author, e.seq)))

    def events_since(self, their_heads: Iterable[Cid]) -> list[bytes]:
        """Signed events a peer advertising `their_heads` lacks, in order (parents first).

        Heads we do not know are ignored (ask for them with `get_bytes` on their side).
        """
        found = (self.get_bytes(cid) for cid in self.cids_since(their_heads))
        return [data for data in found if data is not None]

    def cids_since(
        self, their_heads: Iterable[Cid], assume_known: AbstractSet[Cid] = frozenset()
    ) -> list[Cid]:
        """CIDs of the events a peer advertising `their_heads` lacks, in the total order.

        Walks back from our heads and theirs in decreasing Lamport time (an event's is
        always above its parents') and stops once every event left to visit is known to
        the peer: the cost grows with what the peer lacks, not with the whole history.
        Events in `assume_known` (on their way to the peer) count as known, and so do
        their ancestors: then the cost grows with what the peer lacks beyond them."""
        ours, theirs = 1, 2
        marks: dict[Cid, int] = {}
        queue: list[tuple[int, Cid]] = []
        open_ours: set[Cid] = set()  # queued, reached from our heads only (so far)

        def mark(cid: Cid, flag: int) -> None:
            old = marks.get(cid, 0)
            if old | flag == old:
                return
            marks[cid] = old | flag
            if not old:
                heapq.heappush(queue, (-self._events[cid].lamport, cid))
            if marks[cid] == ours:
                open_ours.add(cid)
            else:
                open_ours.discard(cid)

        for cid in self._heads:
            mark(cid, theirs if cid in assume_known else ours)
        for cid in their_heads:
            if cid in self._events:
                mark(cid, theirs)
        lacking: list[Cid] = []
        while open_ours:
            _, cid = heapq.heappop(queue)
            flag = marks[cid]
            open_ours.discard(cid)
            if flag == ours and cid in assume_known:
                flag = marks[cid] = ours | theirs
            if flag == ours:
                lacking.append(cid)
            for parent in self._events[cid].parents:
                mark(parent, flag)
        lacking.sort(key=lambda cid: (self._events[cid].lamport, cid))
        return lacking

    def heads_of(self, cids: Iterable[Cid]) -> tuple[Cid, ...]:
        """The heads (sorted) of the part of the history made of `cids` and their
        ancestors: what a peer holding those events advertises. Unknown CIDs are ignored.

        `cids_since(heads_of(cids))` equals `cids_since(cids)`, but costs what the peer
        lacks instead of a walk from every one of `cids` (e.g. every event a contact wrote).
        This sweeps the history down from the newest event to the oldest of `cids`, so
        compute it once, not per query."""
        wanted = {c for c in cids if c in self._events}
        covered: set[Cid] = set()  # ancestors of a wanted event
        heads: list[Cid] = []
        # newest first: every child of an event (higher Lamport time) comes before it
        for event in reversed(self._order):
            if not wanted:
                break
            cid = event.cid
            if cid in wanted:
                wanted.discard(cid)
                if cid not in covered:
                    heads.append(cid)
            elif cid not in covered:
                continue
            covered.update(event.parents)
        return tuple(sorted(heads))

    def held_by(
        self, their_heads: Iterable[Cid], candidates: AbstractSet[Cid], floor: int | None = None
    ) -> set[Cid]:
        """Which of `candidates` a peer advertising `their_heads` holds (each is one of
        those heads or an ancestor of one). Walks down from the heads no lower than
        `floor` (default: the lowest Lamport time among the candidates; a caller that
        keeps them in Lamport order passes the first one's), so the cost grows with the
        events above it, not with the whole history; candidates below it are not found."""
        if floor is None:
            lamports = [e.lamport for c in candidates if (e := self._events.get(c)) is not None]
            if not lamports:
                return set()
            floor = min(lamports)
        seen: set[Cid] = set()
        stack = [h for h in their_heads if h in self._events]
        while stack:
            cid = stack.pop()
            if cid in seen:
                continue
            seen.add(cid)
            for parent in self._events[cid].parents:
                if parent not in seen and self._events[parent].lamport >= floor:
                    stack.append(parent)
        return {cid for cid in seen if cid in candidates}

    def author_seq_at(self, cids: Iterable[Cid], author: bytes) -> int:
        """The highest seq of `author` among `cids` and their ancestors (0: none; unknown
        CIDs are ignored). Each author's events form a chain, so a peer holding these
        events holds every event of `author` up to that seq (a fork aside, see
        `author_events`)."""
        slot = self._members.index(author)
        return max((self._clock(c)[slot] for c in cids if c in self._events), default=0)

    def author_events(self, author: bytes, seq: int) -> tuple[Cid, ...]:
        """The accepted events `author` numbered `seq`: one, none, or (an equivocation)
        several."""
        slot = self._members.index(author)
        forks = self._forks.get(seq * 2 + slot)
        if forks is not None:
            return tuple(forks)
        cid = self._by_seq[slot].get(seq)
        return () if cid is None else (cid,)

    # -- writing --------------------------------------------------------------------

    def append(self, keys: IdentityKeys, body: EventBody, now_ms: int) -> Event:
        """Author a new event on top of every current head; return it (send `to_bytes()`)."""
        author = keys.public.signing_key
        if author not in self._members:
            raise LocalProtocolError("only a member of the conversation can append to it")
        parents = self.heads()
        lamport = max((self._events[p].lamport for p in parents), default=0) + 1
        seq = self._parent_clock(parents)[self._members.index(author)] + 1
        event = sign_event(keys, self._conversation, seq, parents, lamport, now_ms, body)
        self._accept_ready(event, event.to_bytes())
        return event

    def receive(self, data: bytes) -> list[LedgerOutcome]:
        """Take one event from a peer (or storage); never raises for bad input."""
        cid = None
        if isinstance(data, bytes) and len(data) <= MAX_EVENT_BYTES:
            # a copy of an event we hold needs no decoding: its bytes hash to its CID
            cid = Cid.for_block(data)
            if cid in self._events or cid in self._pending:
                return [EventDuplicate(cid)]
        try:
            event = decode_event(data, cid)
        except LedgerError as exc:
            return [EventRejected(exc.cid, exc)]
        return self._receive_event(event, data)

    def clear_pending(self) -> None:
        """Forget every event waiting for parents (e.g. when the peer disconnects)."""
        self._pending.clear()
        self._waiting_on.clear()
        self._pending_bytes = 0

    # -- verification and export ----------------------------------------------------

    def verify_all(self) -> VerifiedHistory:
        """Re-verify every stored event from its bytes, in order; raise naming the first bad."""
        return _replay(self._members, [e.to_bytes() for e in self._order]).summary()

    def summary(self) -> VerifiedHistory:
        """Conversation, members, heads, size and equivocations of this history."""
        return VerifiedHistory(
            self._conversation, self._members, self.heads(), len(self), self.equivocations()
        )

    def export(self) -> bytes:
        """The whole signed history as a canonical CBOR file, verifiable offline."""
        container = {
            "v": EXPORT_VERSION,
            "format": EXPORT_FORMAT,
            "conv": self._conversation,
            "members": list(self._members),
            "events": [e.to_bytes() for e in self._order],
        }
        return cbor2.dumps(container, canonical=True)

    @classmethod
    def from_export(cls, data: bytes) -> Ledger:
        """Rebuild a ledger from `export` bytes, verifying everything (see `verify_export`)."""
        members, blocks = _parse_export(data)
        return _replay(members, blocks)

    @classmethod
    def restore(
        cls, member_a: bytes, member_b: bytes, blocks: Iterable[bytes], *, verify: bool = True
    ) -> Ledger:
        """Rebuild a ledger from stored event bytes in any order; raise naming the first bad.

        Raises a `LedgerError` (with the event's position in `blocks` and its CID) if an
        event does not verify, or `MissingParents` if an event's ancestors are absent.
        ``verify=False``: see `Restorer` (events this node verified before storing them).
        """
        restorer = Restorer(member_a, member_b, verify=verify)
        restorer.feed(blocks)
        return restorer.finish()

    # -- internals ------------------------------------------------------------------

    def _receive_stored(self, data: bytes) -> list[LedgerOutcome]:
        """`receive` for an event this node verified before it stored it (see
        `decode_stored_event`): every rule but the signature and the canonical form."""
        if not isinstance(data, bytes) or len(data) > MAX_EVENT_BYTES:
            return self.receive(data)  # rejected there, as any such input
        cid = Cid.for_block(data)
        if cid in self._events or cid in self._pending:
            return [EventDuplicate(cid)]
        try:
            event = decode_stored_event(data, cid, self._held_cid, self._shared)
        except LedgerError as exc:
            return [EventRejected(exc.cid, exc)]
        return self._receive_event(event, data, signed=False)

    def _held_cid(self, raw: bytes) -> Cid:
        """The CID object of a held event with binary CID `raw` (one copy for every
        reference to it), or a new checked one."""
        held = self._events.get(Cid.unchecked(raw))
        return Cid(raw) if held is None else held.cid

    def _receive_event(self, event: Event, data: bytes, signed: bool = True) -> list[LedgerOutcome]:
        cid = event.cid
        if cid in self._events or cid in self._pending:
            return [EventDuplicate(cid)]
        try:
            self._check_standalone(event, signed)
        except LedgerError as exc:
            return [EventRejected(cid, exc)]
        missing = tuple(p for p in event.parents if p not in self._events)
        if not missing:
            return self._accept_ready(event, data)
        if (
            len(self._pending) >= self._max_pending
            or self._pending_bytes + len(data) > self._max_pending_bytes
        ):
            error = PendingBufferFull("too many events wait for their parents", cid)
            return [EventRejected(cid, error)]
        self._pending[cid] = (event, data)
        self._pending_bytes += len(data)
        for parent in missing:
            self._waiting_on.setdefault(parent, set()).add(cid)
        return [EventPending(cid, missing)]

    def _check_standalone(self, event: Event, signed: bool = True) -> None:
        if event.conversation != self._conversation:
            raise WrongConversation("the event belongs to another conversation", event.cid)
        if event.author not in self._members:
            raise ForgedAuthor("the author is not a member of this conversation", event.cid)
        if signed:
            event.verify_signature()

    def _clock(self, cid: Cid) -> tuple[int, int]:
        """Highest seq of each member (in `_members` order) among an event and its
        ancestors."""
        event, other = self._events[cid], self._other_seq[cid]
        return (event.seq, other) if event.author == self._members[0] else (other, event.seq)

    def _parent_clock(self, parents: Iterable[Cid]) -> tuple[int, int]:
        low = high = 0
        for parent in parents:
            a, b = self._clock(parent)
            low, high = max(low, a), max(high, b)
        return low, high

    def _accept_ready(self, event: Event, data: bytes) -> list[LedgerOutcome]:
        """Accept an event whose parents are all accepted, then any children it unblocks."""
        outcomes: list[LedgerOutcome] = []
        queue: deque[tuple[Event, bytes]] = deque([(event, data)])
        while queue:
            current, raw = queue.popleft()
            try:
                outcomes.extend(self._integrate(current, raw))
            except LedgerError as exc:
                outcomes.append(EventRejected(current.cid, exc))
                self._reject_descendants(current.cid, outcomes)
                continue
            for child_cid in sorted(self._waiting_on.pop(current.cid, ())):
                child, child_raw = self._pending[child_cid]
                if all(p in self._events for p in child.parents):
                    self._drop_pending(child_cid)
                    queue.append((child, child_raw))
        return outcomes

    def _integrate(self, event: Event, data: bytes) -> list[LedgerOutcome]:
        cid = event.cid
        expected = max((self._events[p].lamport for p in event.parents), default=0) + 1
        if event.lamport != expected:
            raise InconsistentEvent(f"lamport {event.lamport} should be {expected}", cid)
        clock = list(self._parent_clock(event.parents))
        slot = self._members.index(event.author)
        if event.seq != clock[slot] + 1:
            reason = f"seq {event.seq} does not follow the author's seq {clock[slot]}"
            raise InconsistentEvent(reason, cid)
        clock[slot] = event.seq
        self._events[cid] = event
        self._other_seq[cid] = clock[1 - slot]
        self._heads.difference_update(event.parents)
        self._heads.add(cid)
        order = self._order
        if not self._order_sorted or not order or _order_key(order[-1]) < _order_key(event):
            # the usual case, the newest event (no search, no move); a `Restorer` sorts
            # the whole order once at the end
            order.append(event)
        else:
            bisect.insort(order, event, key=_order_key)
        outcomes: list[LedgerOutcome] = [EventAccepted(cid, event)]
        first = self._by_seq[slot].setdefault(event.seq, cid)
        if first is not cid:
            same_slot = self._forks.setdefault(event.seq * 2 + slot, [first])
            same_slot.append(cid)
            outcomes.append(EquivocationDetected(event.author, event.seq, tuple(sorted(same_slot))))
        return outcomes

    def _drop_pending(self, cid: Cid) -> Event:
        event, raw = self._pending.pop(cid)
        self._pending_bytes -= len(raw)
        for parent in event.parents:
            children = self._waiting_on.get(parent)
            if children is not None:
                children.discard(cid)
                if not children:
                    del self._waiting_on[parent]
        return event

    def _reject_descendants(self, rejected: Cid, outcomes: list[LedgerOutcome]) -> None:
        stack = [rejected]
        while stack:
            parent = stack.pop()
            for child_cid in sorted(self._waiting_on.pop(parent, ())):
                if child_cid in self._pending:
                    self._drop_pending(child_cid)
                    error = ParentRejected(f"it builds on rejected event {parent}", child_cid)
                    outcomes.append(EventRejected(child_cid, error))
                    stack.append(child_cid)


class Restorer:
    """Rebuilds a ledger from stored event bytes, in any order, a part at a time: a
    caller that runs each part off its event loop can stop between parts (a history of
    100,000 events takes seconds to rebuild; a stopping node must not wait for it).

    Every rule of the history is checked (members, conversation, links, Lamport times,
    per-author sequence numbers, no event missing; equivocations are kept). With
    ``verify=False`` an event's signature and canonical form are not checked again: for
    events this node verified (or signed) before storing them, read back from storage
    that authenticates them (`decode_stored_event`); ``history verify`` passes
    ``verify=True``. Errors name the event's position among all the blocks fed."""

    def __init__(self, member_a: bytes, member_b: bytes, *, verify: bool = True) -> None:
        self._ledger = Ledger(member_a, member_b, max_pending=2**62, max_pending_bytes=2**62)
        self._ledger._order_sorted = False
        self._verify = verify
        self._index_of: dict[Cid, int] = {}
        self._fed = 0

    def feed(self, blocks: Iterable[bytes]) -> None:
        """Take the next stored events; raise a `LedgerError` naming the first bad one."""
        ledger, index_of = self._ledger, self._index_of
        receive = ledger.receive if self._verify else ledger._receive_stored
        for block in blocks:
            index = self._fed
            self._fed += 1
            for outcome in receive(block):
                if isinstance(outcome, EventRejected):
                    # A waiting event may be the one rejected once this block unblocks it.
                    position = (
                        index_of.get(outcome.cid, index) if outcome.cid is not None else index
                    )
                    raise outcome.error.at(position)
                if isinstance(outcome, EventPending):
                    index_of[outcome.cid] = index

    def finish(self) -> Ledger:
        """The rebuilt ledger; `MissingParents` if an event's ancestors were never fed."""
        ledger, index_of = self._ledger, self._index_of
        if ledger._pending:
            cid = min(ledger._pending, key=lambda c: index_of[c])
            raise MissingParents("its parents are not in the stored history", cid, index_of[cid])
        ledger._order.sort(key=_order_key)
        ledger._order_sorted = True
        return ledger


def _order_key(event: Event) -> tuple[int, Cid]:
    return event.lamport, event.cid


def verify_export(data: bytes) -> VerifiedHistory:
    """Verify an export file offline: every event, every link, the order and the members.

    Returns the verified heads and any equivocations; raises a `LedgerError` naming the
    first bad event (its position in the file and its CID).
    """
    return Ledger.from_export(data).summary()


def _parse_export(data: bytes) -> tuple[tuple[bytes, bytes], list[bytes]]:
    try:
        container = decode_strict_cbor(data)
    except MalformedEvent as exc:
        raise InvalidExport(f"not a history export: {exc.reason}") from None
    if not isinstance(container, dict) or set(container) != _EXPORT_KEYS:
        raise InvalidExport("not a history export (unexpected fields)")
    if container["format"] != EXPORT_FORMAT or container["v"] != EXPORT_VERSION:
        raise InvalidExport("unknown export format or version")
    members, blocks = container["members"], container["events"]
    if (
        not isinstance(members, list)
        or len(members) != 2
        or not all(isinstance(m, bytes) for m in members)
    ):
        raise InvalidExport("an export names exactly two members")
    if not isinstance(blocks, list):
        raise InvalidExport("an export holds a list of events")
    try:
        expected = conversation_id(members[0], members[1])
    except LocalProtocolError as exc:
        raise InvalidExport(f"bad members: {exc}") from None
    if container["conv"] != expected or members != sorted(members):
        raise InvalidExport("the conversation id does not match the members")
    if cbor2.dumps(container, canonical=True) != data:
        raise InvalidExport("the export is not canonically encoded")
    for index, block in enumerate(blocks):
        if not isinstance(block, bytes):
            raise InvalidExport("an event must be a byte string", index=index)
    return (members[0], members[1]), blocks


def _replay(members: tuple[bytes, bytes], blocks: Iterable[bytes]) -> Ledger:
    """Verify events that must arrive parents-first in strictly increasing order."""
    ledger = Ledger(members[0], members[1], max_pending=0, max_pending_bytes=0)
    previous: tuple[int, Cid] | None = None
    for index, block in enumerate(blocks):
        try:
            event = decode_event(block)
        except LedgerError as exc:
            raise exc.at(index) from None
        cid = event.cid
        absent = [p for p in event.parents if p not in ledger]
        if absent:
            reason = f"parent {absent[0]} is missing or comes later"
            raise MissingParents(reason, cid, index)
        for outcome in ledger._receive_event(event, block):
            if isinstance(outcome, EventRejected):
                raise outcome.error.at(index)
            if isinstance(outcome, EventDuplicate):
                raise InvalidExport("the event appears twice", cid, index)
        if previous is not None and (event.lamport, cid) <= previous:
            raise InvalidExport("the event is out of order", cid, index)
        previous = (event.lamport, cid)
    return ledger
