"""What a history held in memory keeps per event (decision 0022): no encoded bytes for
the events read back from storage (the store has them; they are encoded again from the
fields when a peer asks), and no dict or tuple per field of each event."""

from __future__ import annotations

import copy
import gc
import pickle
import types
from collections import Counter

import cbor2
import pytest

from app.core.cid import Cid
from app.core.identity import IdentityKeys
from app.core.ledger import Ledger, Restorer
from app.core.ledger_errors import NonCanonicalEvent
from app.core.ledger_event import EventBody, conversation_id, decode_event, sign_event

ALICE = IdentityKeys.from_seeds(b"\x01" * 32, b"\x11" * 32)
BOB = IdentityKeys.from_seeds(b"\x02" * 32, b"\x12" * 32)
A, B = ALICE.public.signing_key, BOB.public.signing_key


def stored_blocks(count: int) -> list[bytes]:
    """The signed events of a conversation both write to (forks included), in order."""
    alice, bob = Ledger(A, B), Ledger(B, A)
    for i in range(count // 2):
        ours = alice.append(ALICE, EventBody.of("text", id=f"a{i}", text=f"hello {i}"), i)
        theirs = bob.append(BOB, EventBody.of("text", id=f"b{i}", text=f"hi {i}"), i)
        bob.receive(ours.to_bytes())
        alice.receive(theirs.to_bytes())  # both wrote at once: the next one merges
    return [e.to_bytes() for e in alice.ordered()]


def load(blocks: list[bytes]) -> Ledger:
    """As the node loads a stored history (`load_ledger`): no signatures checked again,
    in the order stored (the order received: parents first)."""
    restorer = Restorer(A, B, verify=False)
    restorer.feed(blocks)
    return restorer.finish()


def test_a_history_read_back_from_storage_keeps_no_event_bytes_but_serves_them() -> None:
    blocks = stored_blocks(40)
    loaded = Ledger.restore(A, B, list(reversed(blocks)), verify=False)  # in any order
    assert not any(e.holds_bytes for e in loaded.ordered())
    # a peer asking for everything gets the very bytes stored, in order, and takes them
    assert loaded.events_since([]) == blocks
    assert [loaded.get_bytes(Cid.for_block(b)) for b in blocks] == blocks
    peer = Ledger(B, A)
    for block in loaded.events_since([]):
        peer.receive(block)
    assert peer.heads() == loaded.heads() and len(peer) == len(blocks)
    # export and verify run every rule over the bytes encoded again
    assert loaded.verify_all().heads == loaded.heads()
    assert Ledger.from_export(loaded.export()).ordered() == loaded.ordered()
    # events signed or received here keep theirs (they are sent and stored next)
    appended = loaded.append(ALICE, EventBody.of("text", id="new", text="new"), 99)
    received = peer.append(BOB, EventBody.of("text", id="new2", text="new2"), 99)
    assert loaded.receive(received.to_bytes())
    assert appended.holds_bytes and loaded.get_bytes(appended.cid) is appended.to_bytes()
    event = loaded.get(received.cid)
    assert event is not None and event.holds_bytes


def test_a_stored_event_that_is_not_canonical_is_not_served_as_other_bytes() -> None:
    """A head stored in another encoding of the same fields (only someone holding the
    data key could write such a row): it loads, but its bytes encoded again would name
    another CID, so it is not served; ``history verify`` names it."""
    blocks = stored_blocks(6)
    head = cbor2.loads(blocks[-1])
    odd = cbor2.dumps(dict(reversed(list(head.items()))))  # not the canonical key order
    assert odd != blocks[-1] and cbor2.loads(odd) == head
    stored = [*blocks[:-1], odd]
    loaded = load(stored)
    cid = Cid.for_block(odd)
    assert cid in loaded and loaded.get_bytes(cid) is None
    assert loaded.events_since([]) == blocks[:-1]
    with pytest.raises(NonCanonicalEvent) as info:
        Ledger.restore(A, B, stored)
    assert info.value.cid == cid


def _retained(root: object) -> Counter[str]:
    """How many objects of each type `root` reaches (classes, modules and functions
    left out: they are shared by every ledger)."""
    skip = (type, types.ModuleType, types.FunctionType, types.BuiltinFunctionType)
    seen: set[int] = set()
    counts: Counter[str] = Counter()
    stack = [root]
    while stack:
        obj = stack.pop()
        if id(obj) in seen or isinstance(obj, skip):
            continue
        seen.add(id(obj))
        counts[type(obj).__name__] += 1
        if isinstance(obj, bytes) and len(obj) > 100:
            counts["bytes over 100"] += 1
        stack.extend(gc.get_referents(obj))
    return counts


def test_what_a_loaded_history_retains_per_event() -> None:
    """Per event, exactly: one slotted `Event`, `EventBody` and `Cid`; two tuples (the
    body's fields, flat, and the parents); two byte strings (the CID's and the
    signature); no dict, and no byte string the size of an event (its encoding)."""
    small, large = load(stored_blocks(40)), load(stored_blocks(80))
    growth = _retained(large)
    growth.subtract(_retained(small))
    per_event = {name: growth[name] / 40 for name in growth}
    assert per_event["Event"] == per_event["EventBody"] == per_event["Cid"] == 1
    assert per_event["tuple"] == 2
    assert per_event["bytes"] == 2
    assert per_event.get("dict", 0) == 0
    assert _retained(large)["bytes over 100"] == 0
    for value in (large.ordered()[0], large.ordered()[0].body, large.ordered()[0].cid):
        assert not hasattr(value, "__dict__")


def test_a_body_is_one_flat_tuple_with_the_same_meaning() -> None:
    body = EventBody.of("file", id="x", text="name", m=b"\x01", size=3)
    assert body.items == (
        ("id", "x"),
        ("kind", "file"),
        ("m", b"\x01"),
        ("size", 3),
        ("text", "name"),
    )
    assert body.kind == "file" and body.get("m") == b"\x01" and body.get("nope") is None
    assert body == EventBody(body.items) and hash(body) == hash(EventBody(body.items))
    assert body != EventBody.of("file", id="x", text="name", m=b"\x01", size=4)
    assert body.as_dict() == {"id": "x", "kind": "file", "m": b"\x01", "size": 3, "text": "name"}
    event = sign_event(ALICE, conversation_id(A, B), 1, (), 1, 5, body)
    assert decode_event(event.to_bytes()).body == body
    with pytest.raises(AttributeError):
        body._flat = ()  # type: ignore[misc]
    assert copy.deepcopy(body) == body and pickle.loads(pickle.dumps(event)) == event
