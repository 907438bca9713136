"""History events: the signed, hash-linked entries of a conversation's history.

Rules of this module (everything about one event's bytes lives here):

* An event is a DAG-CBOR map, canonically encoded (RFC 7049 length-first key order,
  minimal integers, definite lengths), with exactly the keys ``v conv author seq parents
  lamport time body sig``. Parents are IPLD links (CBOR tag 42 over ``0x00 || CID``),
  sorted by binary CID with no duplicates.
* The signature is Ed25519 by ``author`` in context `Domain.HISTORY_EVENT` over the
  canonical encoding of the same map without ``sig``. The conversation id is inside the
  signed bytes, so an event cannot be spliced into another conversation.
* The event's CID is CIDv1/dag-cbor/sha2-256 of the complete encoded (signed) event.
* `decode_event` accepts only what `Event.to_bytes` produces: a strict subset decoder
  (no floats, simple values, indefinite lengths or tags other than 42, bounded nesting)
  followed by a re-encode-and-compare check. Hard limits bound size, parents and body.
* `decode_stored_event` reads back an event this node decoded and verified before it
  stored it, from storage that authenticates it: the fields and limits are checked
  again, the canonical form and the signature are not (``history verify`` does).

Rules that need other events (Lamport time, per-author sequence, membership) live in
`app.core.ledger`.
"""

from __future__ import annotations

import hashlib
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import FrozenInstanceError, dataclass, field
from typing import TypeVar

import cbor2

from app.core.cid import CID_BYTES, CODEC_DAG_CBOR, Cid
from app.core.domains import Domain
from app.core.errors import InvalidSignature, LocalProtocolError
from app.core.identity import KEY_SIZE, IdentityKeys, verify_signature
from app.core.ledger_errors import (
    BadEventSignature,
    EventTooLarge,
    InvalidCid,
    LedgerError,
    MalformedEvent,
    NonCanonicalEvent,
)

EVENT_VERSION = 1
MAX_EVENT_BYTES = 64 * 1024
MAX_PARENTS = 32
MAX_BODY_KEYS = 16
MAX_BODY_VALUE_BYTES = 32 * 1024
MAX_INT = 2**63 - 1
MIN_INT = -(2**63)
SIGNATURE_SIZE = 64
LINK_TAG = 42
KIND_KEY = "kind"
_WIRE_KEYS = frozenset({"v", "conv", "author", "seq", "parents", "lamport", "time", "body", "sig"})
_BODY_KEY = re.compile(r"[a-z][a-z0-9_]{0,31}")
_CONVERSATION_TAG = b"scrambled-eggs/v1/conversation\x00"
# Arrays and maps sit at depth 0 or 1 (event map > parents array / body map); a link tag
# holds only a byte string, so nothing nests deeper than map > array > link > bytes.
MAX_NESTING = 2

BodyValue = str | int | bytes
_T = TypeVar("_T")


def conversation_id(member_a: bytes, member_b: bytes) -> bytes:
    """The 32-byte id of the conversation between two Ed25519 keys (order-independent)."""
    if len(member_a) != KEY_SIZE or len(member_b) != KEY_SIZE:
        raise LocalProtocolError("conversation members are 32-byte Ed25519 keys")
    if member_a == member_b:
        raise LocalProtocolError("a conversation has two distinct members")
    low, high = sorted((member_a, member_b))
    return hashlib.sha256(_CONVERSATION_TAG + low + high).digest()


class EventBody:
    """What an event says: a ``kind`` plus a few typed fields (text, integers, bytes).

    Immutable. Built from `items` (name, value) pairs sorted by name; held as one flat
    tuple ``(name, value, name, value, ...)`` in a slot (a history holds one body per
    event: a tuple per field and a dict per body cost ~250 bytes more)."""

    __slots__ = ("_flat",)
    _flat: tuple[str | BodyValue, ...]

    def __init__(self, items: tuple[tuple[str, BodyValue], ...]) -> None:
        _check_body(items)
        object.__setattr__(self, "_flat", tuple(part for pair in items for part in pair))

    @classmethod
    def of(cls, kind: str, **fields: BodyValue) -> EventBody:
        """A body of `kind` with the given fields, e.g. ``EventBody.of("text", text="hi")``."""
        return cls.from_mapping({KIND_KEY: kind, **fields})

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, BodyValue]) -> EventBody:
        """A body from a mapping that includes ``kind``."""
        return cls(tuple(sorted(mapping.items())))

    @property
    def items(self) -> tuple[tuple[str, BodyValue], ...]:
        """The (name, value) pairs, sorted by name."""
        flat = self._flat
        return tuple(zip(flat[::2], flat[1::2], strict=True))  # type: ignore[arg-type]

    @property
    def kind(self) -> str:
        """What sort of event this is (``text``, ``file``, ``edit``, ...)."""
        return str(self.get(KIND_KEY))  # _check_body guarantees a str

    def get(self, key: str) -> BodyValue | None:
        """One field, or None if absent."""
        flat = self._flat
        for index in range(0, len(flat), 2):  # a few fields: no dict to build per lookup
            if flat[index] == key:
                return flat[index + 1]
        return None

    def as_dict(self) -> dict[str, BodyValue]:
        """The fields as a plain dict (a copy)."""
        return dict(self.items)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, EventBody):
            return NotImplemented
        return self._flat == other._flat

    def __hash__(self) -> int:
        return hash(self._flat)

    def __repr__(self) -> str:
        return f"EventBody(items={self.items!r})"

    def __reduce__(self) -> tuple[type[EventBody], tuple[tuple[tuple[str, BodyValue], ...]]]:
        return EventBody, (self.items,)  # copied or pickled through its checks

    def __setattr__(self, name: str, value: object) -> None:
        raise FrozenInstanceError(f"cannot assign to field {name!r}")

    def __delattr__(self, name: str) -> None:
        raise FrozenInstanceError(f"cannot delete field {name!r}")


@dataclass(frozen=True, slots=True)
class Event:
    """One signed history event. Build with `sign_event`, parse with `decode_event`.

    Slotted (no per-event dict: a history holds one of these per event). The encoded
    bytes are kept when the event was signed or received (to send them on); an event
    read back from storage (`decode_stored_event`) does not keep them: the store has
    them, and `to_bytes` encodes the fields again (canonical CBOR has one encoding)."""

    conversation: bytes
    author: bytes
    seq: int
    parents: tuple[Cid, ...]
    lamport: int
    wall_time: int
    body: EventBody
    signature: bytes = field(repr=False)
    _encoded: bytes | None = field(default=None, init=False, repr=False, compare=False)
    _cid: Cid | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        _check_fields(self)

    def unsigned_bytes(self) -> bytes:
        """The canonical encoding of everything but the signature (what is signed)."""
        encoded = self._encoded
        if encoded is not None:  # cut from the signed encoding, not encoded again
            unsigned = _without_signature(encoded, self.seq, self.signature)
            if unsigned is not None:
                return unsigned
        return _encode_in_order(self._unsigned_map())

    def to_bytes(self) -> bytes:
        """The canonical wire encoding of the signed event (the block its CID names):
        the bytes held, or (an event read back from storage) its fields encoded again."""
        encoded = self._encoded
        if encoded is None:
            return _encode_in_order(self._unsigned_map(self.signature))
        return encoded

    @property
    def holds_bytes(self) -> bool:
        """Whether this event keeps its encoded bytes (`to_bytes` does not encode)."""
        return self._encoded is not None

    @property
    def cid(self) -> Cid:
        """The content identifier of this event."""
        cid = self._cid
        if cid is None:
            cid = Cid.for_block(self.to_bytes(), CODEC_DAG_CBOR)
            object.__setattr__(self, "_cid", cid)
        return cid

    def verify_signature(self) -> None:
        """Raise `BadEventSignature` (naming this event) unless the author signed it."""
        try:
            verify_signature(
                self.author, Domain.HISTORY_EVENT, self.unsigned_bytes(), self.signature
            )
        except InvalidSignature:
            raise BadEventSignature("the signature does not verify", self.cid) from None

    def _unsigned_map(self, signature: bytes | None = None) -> dict[str, object]:
        """The event as a map in canonical key order (with ``sig`` if given)."""
        fields: dict[str, object] = {"v": EVENT_VERSION, "seq": self.seq}
        if signature is not None:
            fields["sig"] = signature
        fields["body"] = dict(sorted(self.body.items, key=_canonical_key))
        fields["conv"] = self.conversation
        fields["time"] = self.wall_time
        fields["author"] = self.author
        fields["lamport"] = self.lamport
        fields["parents"] = [cbor2.CBORTag(LINK_TAG, b"\x00" + p.raw) for p in self.parents]
        return fields


def _canonical_key(item: tuple[str, object]) -> tuple[int, str]:
    """Canonical CBOR's order of text keys: shorter first, then bytewise (body keys
    are short ASCII names, so the length and order of the text are those of their
    encodings)."""
    return len(item[0]), item[0]


def _encode_in_order(fields: dict[str, object]) -> bytes:
    """Encode a map built in canonical key order as it is: canonical CBOR (minimal
    integers and lengths, definite lengths, the only choice left being the key order)
    without cbor2's canonical mode, which sorts every map again and cost 4x the
    encoding itself (11 vs 3 us for an event)."""
    return cbor2.dumps(fields)


def sign_event(
    keys: IdentityKeys,
    conversation: bytes,
    seq: int,
    parents: tuple[Cid, ...] | list[Cid],
    lamport: int,
    wall_time: int,
    body: EventBody,
) -> Event:
    """Build and sign an event authored by `keys` (parents are sorted here)."""
    author = keys.public.signing_key
    ordered = tuple(sorted(set(parents)))
    try:
        unsigned = Event(conversation, author, seq, ordered, lamport, wall_time, body, bytes(64))
    except MalformedEvent as exc:
        raise LocalProtocolError(f"cannot build this event: {exc.reason}") from None
    unsigned_bytes = unsigned.unsigned_bytes()
    signature = keys.sign(Domain.HISTORY_EVENT, unsigned_bytes)
    event = Event(conversation, author, seq, ordered, lamport, wall_time, body, signature)
    # the signed encoding, without encoding the map again (if laid out as expected)
    encoded = _with_signature(unsigned_bytes, seq, signature)
    _keep(event, encoded if encoded is not None else event.to_bytes(), None)
    if len(event.to_bytes()) > MAX_EVENT_BYTES:
        raise LocalProtocolError(f"an event is at most {MAX_EVENT_BYTES} bytes once encoded")
    return event


def _signature_at(seq: int) -> int:
    """Where the ``sig`` entry sits in an event's canonical encoding: right after the
    map's head, ``"v": 1`` and ``"seq": seq`` (canonical order sorts keys by length,
    then bytes: v, seq, sig, body, conv, time, author, lamport, parents)."""
    return 1 + len(_HEAD_V_SEQ) + len(_uint_head(seq))


def _uint_head(value: int) -> bytes:
    """The CBOR head of an unsigned integer (minimal length, as canonical CBOR has it)."""
    if value < 24:
        return bytes([value])
    for info, size in ((24, 1), (25, 2), (26, 4), (27, 8)):
        if value < 1 << (8 * size):
            return bytes([info]) + value.to_bytes(size, "big")
    raise ValueError("out of range")


_HEAD_V_SEQ = b"\x61v\x01\x63seq"
"""``"v": 1`` and the key ``"seq"``, encoded."""
_SIG_KEY = b"\x63sig\x58\x40"
"""The key ``"sig"`` and the head of its 64-byte string, encoded."""
_MAP_8, _MAP_9 = 0xA8, 0xA9


def _with_signature(unsigned: bytes, seq: int, signature: bytes) -> bytes | None:
    """The canonical encoding of the signed event from that of the unsigned one (the
    ``sig`` entry inserted in its place), or None if `unsigned` is not laid out as
    expected (then the caller encodes the map)."""
    at = _signature_at(seq)
    if (
        len(signature) != SIGNATURE_SIZE
        or unsigned[0] != _MAP_8
        or unsigned[1:at] != _HEAD_V_SEQ + _uint_head(seq)
    ):
        return None
    return bytes([_MAP_9]) + unsigned[1:at] + _SIG_KEY + signature + unsigned[at:]


def _without_signature(encoded: bytes, seq: int, signature: bytes) -> bytes | None:
    """The canonical encoding of the unsigned event cut from that of the signed one,
    or None if `encoded` is not laid out as expected."""
    at = _signature_at(seq)
    end = at + len(_SIG_KEY) + SIGNATURE_SIZE
    if (
        encoded[0] != _MAP_9
        or encoded[1:at] != _HEAD_V_SEQ + _uint_head(seq)
        or encoded[at:end] != _SIG_KEY + signature
    ):
        return None
    return bytes([_MAP_8]) + encoded[1:at] + encoded[end:]


def decode_event(data: bytes, cid: Cid | None = None) -> Event:
    """Parse one event strictly (limits, schema, canonical form). Signature not checked.
    `cid`: the CID of `data`, if the caller computed it already (not hashed again).

    Raises a `MalformedEvent` subclass naming the CID of `data` (the hash of the bytes as
    received) unless the input is too large to be worth hashing.
    """
    if not isinstance(data, bytes):
        raise MalformedEvent("an event is a byte string")
    if len(data) > MAX_EVENT_BYTES:
        raise EventTooLarge(f"{len(data)} bytes exceeds the {MAX_EVENT_BYTES}-byte limit")
    if cid is None:
        cid = Cid.for_block(data, CODEC_DAG_CBOR)
    try:
        value = decode_strict_cbor(data)
        event = _event_from_map(value)
    except LedgerError as exc:
        raise type(exc)(exc.reason, cid) from None
    if event.to_bytes() != data:
        raise NonCanonicalEvent("the event is not canonically encoded", cid)
    # the bytes are the event's own encoding: keep those (one copy, not two) and their
    # CID, computed above (not hashed again)
    _keep(event, data, cid)
    return event


def _keep(event: Event, encoded: bytes | None, cid: Cid | None) -> None:
    """Set what an event caches: its encoded bytes and its CID (either may be None)."""
    object.__setattr__(event, "_encoded", encoded)
    object.__setattr__(event, "_cid", cid)


def decode_stored_event(
    data: bytes,
    cid: Cid,
    link: Callable[[bytes], Cid] = Cid,
    shared: Mapping[bytes, bytes] | None = None,
) -> Event:
    """Parse an event this node decoded with `decode_event` and verified before storing
    it, read back from storage that authenticates it (the profile's sealed rows:
    decision 0002): `cid` is the CID of `data` (computed by the caller).

    The schema, the field types and every limit are checked as `decode_event` checks
    them; the canonical form and the signature are not (they were when the event
    arrived, and ``history verify`` checks them again): cbor2's C decoder does the
    parsing, at about a quarter of the strict decoder's cost. `link` makes a parent's
    CID from its binary form (the ledger passes one that returns the CID object it
    already holds: one copy per event, not one per reference), and `shared` maps a
    conversation id or author key to the copy the caller holds, for the same reason.
    Raises a `MalformedEvent` subclass naming `cid`."""
    if not isinstance(data, bytes):
        raise MalformedEvent("an event is a byte string", cid)
    if len(data) > MAX_EVENT_BYTES:
        raise EventTooLarge(f"{len(data)} bytes exceeds the {MAX_EVENT_BYTES}-byte limit", cid)
    try:
        value = cbor2.loads(data)
    except Exception:  # any decoding failure (cbor2 raises several kinds): malformed
        raise MalformedEvent("the stored event is not valid CBOR", cid) from None
    try:
        event = _event_from_map(value, link, shared or {})
    except LedgerError as exc:
        raise type(exc)(exc.reason, cid) from None
    except (TypeError, ValueError):  # e.g. body keys of mixed types that don't sort
        raise MalformedEvent("the stored event has an unexpected shape", cid) from None
    # the bytes are not kept: the store holds them, and a history holds hundreds of
    # thousands of events (`to_bytes` encodes the fields again; `Ledger.get_bytes`
    # checks that they hash to `cid`, as they do unless the stored row was not canonical)
    _keep(event, None, cid)
    return event


def decode_strict_cbor(data: bytes, max_nesting: int = MAX_NESTING) -> object:
    """Decode the CBOR subset history uses: ints, byte/text strings, arrays, text-keyed maps
    and tag-42 links; minimal lengths, definite lengths only, bounded nesting.

    Map key order is checked by the caller (re-encode and compare).
    """
    value, end = _decode_item(data, 0, 0, max_nesting)
    if end != len(data):
        raise MalformedEvent("trailing bytes after the CBOR item")
    return value


def _decode_item(data: bytes, pos: int, depth: int, max_nesting: int) -> tuple[object, int]:
    if pos >= len(data):
        raise MalformedEvent("truncated CBOR")
    initial = data[pos]
    major, info = initial >> 5, initial & 0x1F
    pos += 1
    if info < 24:
        arg = info
    elif info <= 27:
        size = 1 << (info - 24)
        if pos + size > len(data):
            raise MalformedEvent("truncated CBOR")
        arg = int.from_bytes(data[pos : pos + size], "big")
        pos += size
        if arg < (24 if size == 1 else 1 << (4 * size)):
            raise NonCanonicalEvent("non-minimal CBOR length or integer")
    else:
        raise MalformedEvent("indefinite lengths and reserved CBOR values are not allowed")
    if major == 0:
        return arg, pos
    if major == 1:
        return -1 - arg, pos
    if major in (2, 3):
        if arg > len(data) - pos:
            raise MalformedEvent("truncated CBOR string")
        chunk = data[pos : pos + arg]
        if major == 2:
            return chunk, pos + arg
        try:
            return chunk.decode("utf-8"), pos + arg
        except UnicodeDecodeError:
            raise MalformedEvent("text is not valid UTF-8") from None
    if major == 7:
        raise MalformedEvent("floats, booleans and null are not allowed")
    if major == 6:
        if arg != LINK_TAG:
            raise MalformedEvent(f"CBOR tag {arg} is not allowed")
        content, pos = _decode_item(data, pos, max_nesting, max_nesting)
        if not isinstance(content, bytes):
            raise MalformedEvent("a link tag wraps a byte string")
        return cbor2.CBORTag(LINK_TAG, content), pos
    if depth >= max_nesting:
        raise MalformedEvent(f"CBOR nested deeper than {max_nesting} levels")
    if arg > len(data) - pos:
        raise MalformedEvent("truncated CBOR container")
    if major == 4:
        items: list[object] = []
        for _ in range(arg):
            item, pos = _decode_item(data, pos, depth + 1, max_nesting)
            items.append(item)
        return items, pos
    mapping: dict[str, object] = {}  # major type 5, the only one left
    for _ in range(arg):
        key, pos = _decode_item(data, pos, depth + 1, max_nesting)
        if not isinstance(key, str):
            raise MalformedEvent("map keys must be text")
        if key in mapping:
            raise MalformedEvent(f"duplicate map key {key!r}")
        mapping[key], pos = _decode_item(data, pos, depth + 1, max_nesting)
    return mapping, pos


def _event_from_map(
    value: object,
    link: Callable[[bytes], Cid] = Cid,
    shared: Mapping[bytes, bytes] | None = None,
) -> Event:
    if not isinstance(value, dict):
        raise MalformedEvent("an event is a CBOR map")
    keys = set(value)
    if keys != _WIRE_KEYS:
        extra, missing = sorted(keys - _WIRE_KEYS), sorted(_WIRE_KEYS - keys)
        raise MalformedEvent(f"unexpected event fields {extra}, missing {missing}")
    if value["v"] != EVENT_VERSION or type(value["v"]) is not int:
        raise MalformedEvent(f"unsupported event version {value['v']!r}")
    raw_parents = value["parents"]
    if not isinstance(raw_parents, list):
        raise MalformedEvent("parents must be an array")
    if len(raw_parents) > MAX_PARENTS:
        raise MalformedEvent(f"more than {MAX_PARENTS} parents")
    parents = tuple(_parse_link(raw, link) for raw in raw_parents)
    body = value["body"]
    if not isinstance(body, dict):
        raise MalformedEvent("the body must be a map")
    conversation = _typed(value["conv"], bytes, "conv")
    author = _typed(value["author"], bytes, "author")
    if shared is not None:
        conversation, author = shared.get(conversation, conversation), shared.get(author, author)
    return Event(
        conversation=conversation,
        author=author,
        seq=_typed(value["seq"], int, "seq"),
        parents=parents,
        lamport=_typed(value["lamport"], int, "lamport"),
        wall_time=_typed(value["time"], int, "time"),
        body=EventBody(tuple(sorted(_body_item(k, v) for k, v in body.items()))),
        signature=_typed(value["sig"], bytes, "sig"),
    )


def _body_item(key: object, value: object) -> tuple[str, BodyValue]:
    """A body field, its name (and the event kind) interned: a history holds one copy of
    each name, not one per event. The types are checked by `EventBody`."""
    if type(key) is str:
        key = sys.intern(key)
        if key == KIND_KEY and type(value) is str:
            value = sys.intern(value)
    return key, value  # type: ignore[return-value]


def _typed(value: object, kind: type[_T], name: str) -> _T:
    if type(value) is not kind:
        raise MalformedEvent(f"field {name!r} must be {kind.__name__}")
    return value


def _parse_link(link: object, make: Callable[[bytes], Cid] = Cid) -> Cid:
    if not isinstance(link, cbor2.CBORTag) or link.tag != LINK_TAG:
        raise MalformedEvent("a parent must be a tag-42 link")
    content = link.value
    if not isinstance(content, bytes) or len(content) != CID_BYTES + 1 or content[0] != 0:
        raise MalformedEvent("a link is 0x00 followed by a binary CID")
    try:
        cid = make(content[1:])
    except InvalidCid as exc:
        raise MalformedEvent(f"bad parent link: {exc}") from None
    if cid.codec != CODEC_DAG_CBOR:
        raise MalformedEvent("a parent link must name a dag-cbor event")
    return cid


def _check_fields(event: Event) -> None:
    if len(event.conversation) != 32:
        raise MalformedEvent("a conversation id is 32 bytes")
    if len(event.author) != KEY_SIZE:
        raise MalformedEvent("an author is a 32-byte Ed25519 key")
    if len(event.signature) != SIGNATURE_SIZE:
        raise MalformedEvent("a signature is 64 bytes")
    for name, number, low in (("seq", event.seq, 1), ("lamport", event.lamport, 1)):
        if not low <= number <= MAX_INT:
            raise MalformedEvent(f"{name} must be in [{low}, 2**63)")
    if not 0 <= event.wall_time <= MAX_INT:
        raise MalformedEvent("time must be in [0, 2**63) milliseconds")
    if len(event.parents) > MAX_PARENTS:
        raise MalformedEvent(f"more than {MAX_PARENTS} parents")
    if any(not isinstance(p, Cid) for p in event.parents):
        raise MalformedEvent("parents must be CIDs")
    if any(a >= b for a, b in zip(event.parents, event.parents[1:], strict=False)):
        raise MalformedEvent("parents must be sorted by CID with no duplicates")


def _check_body(items: tuple[tuple[str, BodyValue], ...]) -> None:
    if len(items) > MAX_BODY_KEYS:
        raise MalformedEvent(f"a body has at most {MAX_BODY_KEYS} fields")
    keys = [key for key, _ in items]
    if keys != sorted(set(keys), key=str):
        raise MalformedEvent("body fields must be sorted with no duplicate keys")
    kind = None
    for key, value in items:
        if not isinstance(key, str) or not _BODY_KEY.fullmatch(key):
            raise MalformedEvent(f"body key {key!r} is not a short lowercase name")
        if type(value) is int:
            if not MIN_INT <= value <= MAX_INT:
                raise MalformedEvent(f"body field {key!r} is out of the 64-bit range")
        elif type(value) is str:
            if len(value.encode("utf-8")) > MAX_BODY_VALUE_BYTES:
                raise MalformedEvent(f"body field {key!r} is too long")
        elif type(value) is bytes:
            if len(value) > MAX_BODY_VALUE_BYTES:
                raise MalformedEvent(f"body field {key!r} is too long")
        else:
            raise MalformedEvent(f"body field {key!r} must be text, an integer or bytes")
        if key == KIND_KEY:
            kind = value
    if not isinstance(kind, str) or not _BODY_KEY.fullmatch(kind):
        raise MalformedEvent("a body needs a 'kind' that is a short lowercase name")
