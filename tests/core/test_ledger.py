"""The conversation ledger: accepting, buffering, rejecting, equivocation, export."""

from typing import Any

import cbor2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.core.cid import Cid
from app.core.errors import LocalProtocolError, RemoteProtocolError
from app.core.identity import IdentityKeys
from app.core.ledger import (
    EquivocationDetected,
    EventAccepted,
    EventDuplicate,
    EventPending,
    EventRejected,
    Ledger,
    LedgerOutcome,
    Restorer,
    verify_export,
)
from app.core.ledger_errors import (
    BadEventSignature,
    EventTooLarge,
    ForgedAuthor,
    InconsistentEvent,
    InvalidExport,
    LedgerError,
    MalformedEvent,
    MissingParents,
    NonCanonicalEvent,
    ParentRejected,
    PendingBufferFull,
    WrongConversation,
)
from app.core.ledger_event import (
    MAX_EVENT_BYTES,
    MAX_PARENTS,
    EventBody,
    conversation_id,
    decode_event,
    sign_event,
)

ALICE = IdentityKeys.from_seeds(b"\x01" * 32, b"\x11" * 32)
BOB = IdentityKeys.from_seeds(b"\x02" * 32, b"\x12" * 32)
CAROL = IdentityKeys.from_seeds(b"\x03" * 32, b"\x13" * 32)
A, B, C = (k.public.signing_key for k in (ALICE, BOB, CAROL))
CONV = conversation_id(A, B)


def text(value: str) -> EventBody:
    return EventBody.of("text", text=value)


def new_pair() -> tuple[Ledger, Ledger]:
    return Ledger(A, B), Ledger(B, A)


def snapshot(ledger: Ledger) -> tuple[Any, ...]:
    return (
        ledger.heads(),
        [e.cid for e in ledger.ordered()],
        ledger.missing(),
        ledger.pending_count(),
        ledger.equivocations(),
    )


def rejected(outcomes: list[LedgerOutcome]) -> EventRejected:
    assert len(outcomes) == 1
    assert isinstance(outcomes[0], EventRejected)
    return outcomes[0]


def edit(data: bytes, **changes: Any) -> bytes:
    value = cbor2.loads(data)
    value.update(changes)
    return cbor2.dumps(value, canonical=True)


def test_append_builds_a_chain_on_the_heads() -> None:
    alice, _ = new_pair()
    first = alice.append(ALICE, text("one"), 1000)
    second = alice.append(ALICE, text("two"), 1001)
    assert (first.seq, first.lamport, first.parents) == (1, 1, ())
    assert (second.seq, second.lamport, second.parents) == (2, 2, (first.cid,))
    assert alice.heads() == (second.cid,)
    assert alice.ordered() == [first, second]
    assert alice.get(first.cid) == first
    assert alice.get_bytes(second.cid) == second.to_bytes()
    assert first.cid in alice and len(alice) == 2
    assert alice.conversation == CONV
    assert alice.members == tuple(sorted((A, B)))


def test_peer_accepts_and_concurrent_appends_merge() -> None:
    alice, bob = new_pair()
    from_alice = alice.append(ALICE, text("hi bob"), 10)
    from_bob = bob.append(BOB, text("hi alice"), 11)
    assert bob.receive(from_alice.to_bytes()) == [EventAccepted(from_alice.cid, from_alice)]
    assert alice.receive(from_bob.to_bytes()) == [EventAccepted(from_bob.cid, from_bob)]
    assert alice.heads() == bob.heads() == tuple(sorted((from_alice.cid, from_bob.cid)))
    assert [e.cid for e in alice.ordered()] == [e.cid for e in bob.ordered()]
    merge = alice.append(ALICE, text("merged"), 12)
    assert merge.parents == alice.heads()[:0] + tuple(sorted((from_alice.cid, from_bob.cid)))
    assert (merge.seq, merge.lamport) == (2, 2)
    assert bob.receive(merge.to_bytes())[0] == EventAccepted(merge.cid, merge)
    assert alice.heads() == bob.heads() == (merge.cid,)
    reply = bob.append(BOB, text("ok"), 13)
    assert (reply.seq, reply.lamport, reply.parents) == (2, 3, (merge.cid,))


def test_duplicates_and_replays_are_idempotent() -> None:
    alice, bob = new_pair()
    first = alice.append(ALICE, text("one"), 1)
    second = alice.append(ALICE, text("two"), 2)
    bob.receive(second.to_bytes())  # waits for `first`
    before_pending = snapshot(bob)
    assert bob.receive(second.to_bytes()) == [EventDuplicate(second.cid)]
    assert snapshot(bob) == before_pending
    bob.receive(first.to_bytes())
    after = snapshot(bob)
    for data in (first.to_bytes(), second.to_bytes(), first.to_bytes()):
        assert bob.receive(data) == [EventDuplicate(decode_event(data).cid)]
    assert snapshot(bob) == after
    # Our own events echoed back by the peer are duplicates too.
    assert alice.receive(first.to_bytes()) == [EventDuplicate(first.cid)]


def test_out_of_order_events_wait_for_parents() -> None:
    alice, bob = new_pair()
    events = [alice.append(ALICE, text(str(i)), i) for i in range(4)]
    outcome = bob.receive(events[3].to_bytes())
    assert outcome == [EventPending(events[3].cid, (events[2].cid,))]
    assert bob.missing() == (events[2].cid,)
    assert bob.heads() == () and len(bob) == 0
    assert isinstance(bob.receive(events[1].to_bytes())[0], EventPending)
    assert set(bob.missing()) == {events[0].cid, events[2].cid}
    assert isinstance(bob.receive(events[2].to_bytes())[0], EventPending)
    assert bob.missing() == (events[0].cid,)
    released = bob.receive(events[0].to_bytes())
    assert released == [EventAccepted(e.cid, e) for e in events]
    assert bob.missing() == () and bob.pending_count() == 0
    assert bob.heads() == alice.heads()


def test_pending_buffer_is_bounded() -> None:
    alice, _ = new_pair()
    bob = Ledger(B, A, max_pending=2)
    events = [alice.append(ALICE, text(str(i)), i) for i in range(5)]
    bob.receive(events[2].to_bytes())
    bob.receive(events[3].to_bytes())
    before = snapshot(bob)
    result = rejected(bob.receive(events[4].to_bytes()))
    assert isinstance(result.error, PendingBufferFull)
    assert result.cid == result.error.cid == events[4].cid
    assert snapshot(bob) == before
    # A byte budget bounds the buffer too.
    tiny = Ledger(B, A, max_pending_bytes=len(events[2].to_bytes()) - 1)
    assert isinstance(rejected(tiny.receive(events[2].to_bytes())).error, PendingBufferFull)
    # Once the gap is filled everything is accepted, and the dropped event can be re-sent.
    for event in events[:2]:
        bob.receive(event.to_bytes())
    assert len(bob) == 4
    assert isinstance(bob.receive(events[4].to_bytes())[0], EventAccepted)
    bob.clear_pending()
    assert bob.pending_count() == 0


def test_clear_pending_forgets_waiting_events() -> None:
    alice, bob = new_pair()
    events = [alice.append(ALICE, text(str(i)), i) for i in range(3)]
    bob.receive(events[2].to_bytes())
    bob.clear_pending()
    assert bob.pending_count() == 0 and bob.missing() == ()
    assert isinstance(bob.receive(events[2].to_bytes())[0], EventPending)


def test_only_members_can_append() -> None:
    alice, _ = new_pair()
    with pytest.raises(LocalProtocolError):
        alice.append(CAROL, text("let me in"), 1)


# -- tampering: every rejection names the event and leaves the ledger unchanged ----------


def assert_rejected_naming(ledger: Ledger, data: bytes, error: type[LedgerError]) -> None:
    before = snapshot(ledger)
    result = rejected(ledger.receive(data))
    assert isinstance(result.error, error), result.reason
    assert isinstance(result.error, RemoteProtocolError)
    assert result.cid == result.error.cid == Cid.for_block(data)
    assert str(result.cid) in result.reason
    assert snapshot(ledger) == before


def test_altered_text_is_rejected() -> None:
    alice, bob = new_pair()
    event = alice.append(ALICE, text("pay 10"), 1)
    data = event.to_bytes()
    assert_rejected_naming(
        bob, edit(data, body={"kind": "text", "text": "pay 1000"}), BadEventSignature
    )


def test_altered_parents_or_order_is_rejected() -> None:
    alice, bob = new_pair()
    first = alice.append(ALICE, text("first"), 1)
    second = alice.append(ALICE, text("second"), 2)
    bob.receive(first.to_bytes())
    data = second.to_bytes()
    assert_rejected_naming(bob, edit(data, parents=[]), BadEventSignature)
    assert_rejected_naming(bob, edit(data, lamport=1), BadEventSignature)
    assert_rejected_naming(bob, edit(data, seq=1), BadEventSignature)
    assert_rejected_naming(bob, edit(data, time=0), BadEventSignature)
    assert_rejected_naming(bob, edit(data, author=B), BadEventSignature)


def test_bad_signature_is_rejected() -> None:
    alice, bob = new_pair()
    data = alice.append(ALICE, text("hi"), 1).to_bytes()
    sig = bytearray(cbor2.loads(data)["sig"])
    sig[10] ^= 0x40
    assert_rejected_naming(bob, edit(data, sig=bytes(sig)), BadEventSignature)


def test_event_spliced_from_another_conversation_is_rejected() -> None:
    _, bob = new_pair()
    other = Ledger(A, C)
    elsewhere = other.append(ALICE, text("for carol only"), 1).to_bytes()
    assert_rejected_naming(bob, elsewhere, WrongConversation)
    # Rewriting the conversation id breaks the signature instead.
    assert_rejected_naming(bob, edit(elsewhere, conv=CONV), BadEventSignature)


def test_forged_author_is_rejected() -> None:
    _, bob = new_pair()
    by_carol = sign_event(CAROL, CONV, 1, (), 1, 1, text("I am a member"))
    assert_rejected_naming(bob, by_carol.to_bytes(), ForgedAuthor)
    # Carol claiming to be Alice cannot produce Alice's signature.
    posing = edit(by_carol.to_bytes(), author=A)
    assert_rejected_naming(bob, posing, BadEventSignature)


def test_inconsistent_lamport_or_seq_is_rejected_with_descendants() -> None:
    alice, bob = new_pair()
    first = alice.append(ALICE, text("first"), 1)
    bob.receive(first.to_bytes())
    jump = sign_event(ALICE, CONV, 2, (first.cid,), 99, 2, text("me first"))
    assert_rejected_naming(bob, jump.to_bytes(), InconsistentEvent)
    skip = sign_event(ALICE, CONV, 5, (first.cid,), 2, 2, text("skip"))
    assert_rejected_naming(bob, skip.to_bytes(), InconsistentEvent)
    restart = sign_event(ALICE, CONV, 1, (first.cid,), 2, 2, text("seq again"))
    assert_rejected_naming(bob, restart.to_bytes(), InconsistentEvent)
    # A child that arrived first waits, then is rejected along with its bad parent.
    bad_root = sign_event(ALICE, CONV, 1, (), 7, 3, text("bad root"))
    child = sign_event(ALICE, CONV, 2, (bad_root.cid,), 8, 4, text("child"))
    grandchild = sign_event(BOB, CONV, 1, (child.cid,), 9, 5, text("grandchild"))
    bob.receive(grandchild.to_bytes())
    bob.receive(child.to_bytes())
    before = snapshot(bob)
    outcomes = bob.receive(bad_root.to_bytes())
    assert all(isinstance(o, EventRejected) for o in outcomes)
    refused = [o for o in outcomes if isinstance(o, EventRejected)]
    assert [o.cid for o in refused] == [bad_root.cid, child.cid, grandchild.cid]
    errors = [o.error for o in refused]
    assert isinstance(errors[0], InconsistentEvent)
    assert all(isinstance(e, ParentRejected) for e in errors[1:])
    assert bob.pending_count() == 0 and bob.missing() == ()
    assert snapshot(bob)[:2] == before[:2]


def test_equivocation_is_flagged_and_both_kept() -> None:
    alice, bob = new_pair()
    first = alice.append(ALICE, text("I owe you 10"), 1)
    fork = sign_event(ALICE, CONV, 1, (), 1, 1, text("I owe you nothing"))
    assert bob.receive(first.to_bytes()) == [EventAccepted(first.cid, first)]
    outcomes = bob.receive(fork.to_bytes())
    pair = tuple(sorted((first.cid, fork.cid)))
    assert outcomes == [EventAccepted(fork.cid, fork), EquivocationDetected(A, 1, pair)]
    assert bob.get(first.cid) == first and bob.get(fork.cid) == fork
    assert bob.heads() == pair
    assert bob.equivocations() == (EquivocationDetected(A, 1, pair),)
    # History continues: Bob's next event merges both branches.
    merge = bob.append(BOB, text("noted"), 2)
    assert merge.parents == pair
    assert bob.summary().equivocations == bob.equivocations()
    # The evidence survives export and re-verification.
    assert verify_export(bob.export()).equivocations == bob.equivocations()


def test_an_authors_seq_known_at_events_and_its_events_by_seq() -> None:
    alice, bob = new_pair()
    a1 = alice.append(ALICE, text("a1"), 1)
    bob.receive(a1.to_bytes())
    a2 = alice.append(ALICE, text("a2"), 2)
    b1 = bob.append(BOB, text("b1"), 3)  # knows a1, not a2
    alice.receive(b1.to_bytes())
    assert alice.author_seq_at([b1.cid], A) == 1
    assert alice.author_seq_at([b1.cid], B) == 1
    assert alice.author_seq_at([b1.cid, a2.cid], A) == 2
    assert alice.author_seq_at([a2.cid], B) == 0
    assert alice.author_seq_at([Cid.for_block(b"unknown")], A) == 0
    assert alice.author_events(A, 2) == (a2.cid,)
    assert alice.author_events(A, 3) == ()
    fork = sign_event(ALICE, CONV, 2, (a1.cid,), 2, 9, text("a2 again"))
    alice.receive(fork.to_bytes())
    assert sorted(alice.author_events(A, 2)) == sorted((a2.cid, fork.cid))


# -- hostile input -----------------------------------------------------------------------


def test_hostile_inputs_are_rejected_and_change_nothing() -> None:
    alice, bob = new_pair()
    for i in range(3):
        bob.receive(alice.append(ALICE, text(str(i)), i).to_bytes())
    good = alice.append(ALICE, text("next"), 9).to_bytes()
    value = cbor2.loads(good)
    nested: Any = "x"
    for _ in range(200):
        nested = [nested]
    many_parents = [
        cbor2.CBORTag(42, b"\x00" + c.raw)
        for c in sorted(Cid.for_block(bytes([i])) for i in range(MAX_PARENTS + 1))
    ]
    cases: list[tuple[bytes, type[LedgerError]]] = [
        (b"\x00" * (MAX_EVENT_BYTES + 1), EventTooLarge),
        (edit(good, body={"kind": "text", "text": nested}), MalformedEvent),
        (cbor2.dumps(dict(reversed(list(value.items())))), NonCanonicalEvent),
        (edit(good, parents=many_parents), MalformedEvent),
        (b"\xde\xad\xbe\xef", MalformedEvent),
        (b"", MalformedEvent),
        (good[:-1], MalformedEvent),
        (cbor2.dumps([1, 2, 3]), MalformedEvent),
    ]
    before = snapshot(bob)
    for data, error in cases:
        result = rejected(bob.receive(data))
        assert isinstance(result.error, error), result.reason
        if len(data) <= MAX_EVENT_BYTES:
            assert result.cid == Cid.for_block(data)
        else:
            assert result.cid is None
        assert snapshot(bob) == before
    assert isinstance(bob.receive(good)[0], EventAccepted)


# -- verification, restore and export ----------------------------------------------------


def conversation(turns: int = 6) -> tuple[Ledger, Ledger]:
    alice, bob = new_pair()
    for i in range(turns):
        a = alice.append(ALICE, text(f"a{i}"), 100 + i)
        b = bob.append(BOB, text(f"b{i}"), 100 + i)
        bob.receive(a.to_bytes())
        if i % 2:
            alice.receive(b.to_bytes())
    for data in bob.events_since(alice.heads()):
        alice.receive(data)
    return alice, bob


def test_verify_all_and_restore_in_any_order() -> None:
    alice, bob = conversation()
    assert alice.heads() == bob.heads()
    summary = alice.verify_all()
    assert summary.heads == alice.heads() and summary.event_count == len(alice)
    blocks = [alice.get_bytes(e.cid) or b"" for e in alice.ordered()]
    restored = Ledger.restore(A, B, list(reversed(blocks)))
    assert restored.ordered() == alice.ordered()
    assert restored.heads() == alice.heads()


def test_restore_names_a_tampered_or_missing_event() -> None:
    alice, _ = conversation()
    blocks = [alice.get_bytes(e.cid) or b"" for e in alice.ordered()]
    tampered = list(blocks)
    tampered[4] = edit(blocks[4], time=0)
    with pytest.raises(BadEventSignature) as info:
        Ledger.restore(A, B, tampered)
    assert info.value.index == 4 and info.value.cid == Cid.for_block(tampered[4])
    assert "#4" in str(info.value)
    gap = blocks[:3] + blocks[4:]
    with pytest.raises(MissingParents) as missing:
        Ledger.restore(A, B, gap)
    child = next(
        i for i, b in enumerate(gap) if decode_event(blocks[3]).cid in decode_event(b).parents
    )
    assert missing.value.index == child
    assert missing.value.cid == decode_event(gap[child]).cid


def test_restoring_stored_events_without_signatures_keeps_every_other_rule() -> None:
    """`verify=False` (events this node verified before storing them, from the sealed
    store) rebuilds the same history, in parts as in one go, and still refuses what the
    signature is not needed to see: another conversation's event, a stranger's, a bad
    Lamport time or seq, a missing parent, a malformed event. It keeps equivocations."""
    _, bob = conversation()
    fork = sign_event(ALICE, CONV, 1, (), 1, 2, text("other first"))
    bob.receive(fork.to_bytes())
    blocks = [bob.get_bytes(e.cid) or b"" for e in bob.ordered()]
    checked = Ledger.restore(A, B, list(reversed(blocks)))
    restorer = Restorer(A, B, verify=False)
    for start in range(0, len(blocks), 3):
        restorer.feed(list(reversed(blocks))[start : start + 3])
    trusted = restorer.finish()
    assert trusted.ordered() == checked.ordered() == bob.ordered()
    assert trusted.heads() == bob.heads()
    assert trusted.equivocations() == bob.equivocations() != ()
    assert [trusted.get_bytes(e.cid) for e in trusted.ordered()] == blocks
    other = Ledger(A, C).append(ALICE, text("to Carol"), 1).to_bytes()
    stranger = sign_event(CAROL, CONV, 1, (), 1, 1, text("me too")).to_bytes()
    root = decode_event(blocks[0]).cid
    bad_lamport = sign_event(BOB, CONV, 9, (root,), 7, 1, text("jump")).to_bytes()
    cases: list[tuple[list[bytes], type[LedgerError], int]] = [
        ([*blocks, other], WrongConversation, len(blocks)),
        ([*blocks, stranger], ForgedAuthor, len(blocks)),
        ([*blocks, bad_lamport], InconsistentEvent, len(blocks)),
        (blocks[:2] + blocks[3:], MissingParents, -1),
        ([*blocks[:4], b"\xa1\x61x\x01", *blocks[4:]], MalformedEvent, 4),
        ([*blocks[:4], b"\xff\x00", *blocks[4:]], MalformedEvent, 4),
    ]
    for stored, error, index in cases:
        with pytest.raises(error) as info:
            Ledger.restore(A, B, stored, verify=False)
        if index >= 0:
            assert info.value.index == index
            assert info.value.cid == Cid.for_block(stored[index])
    # an event changed in the middle has another CID: its children lose their parent
    parents = {p for b in blocks for p in decode_event(b).parents}
    middle = next(i for i, b in enumerate(blocks) if Cid.for_block(b) in parents)
    forged = [edit(b, sig=bytes(64)) if i == middle else b for i, b in enumerate(blocks)]
    with pytest.raises(MissingParents):
        Ledger.restore(A, B, forged, verify=False)
    # a head's signature is not checked without `verify` (only the store's seal guards
    # it, and only someone holding the data key can re-seal a row); `verify` names it
    head = len(blocks) - 1
    forged_head = [*blocks[:head], edit(blocks[head], sig=bytes(64))]
    assert len(Ledger.restore(A, B, forged_head, verify=False)) == len(blocks)
    with pytest.raises(BadEventSignature) as bad:
        Ledger.restore(A, B, forged_head)
    assert bad.value.index == head


def test_restore_names_a_bad_event_stored_before_its_parent() -> None:
    alice, _ = new_pair()
    root = alice.append(ALICE, text("root"), 1)
    bad_child = sign_event(ALICE, CONV, 3, (root.cid,), 2, 2, text("seq skips 2"))
    with pytest.raises(InconsistentEvent) as info:
        Ledger.restore(A, B, [bad_child.to_bytes(), root.to_bytes()])
    assert info.value.index == 0 and info.value.cid == bad_child.cid


def test_verify_all_reports_equivocations() -> None:
    alice, bob = new_pair()
    first = alice.append(ALICE, text("one"), 1)
    fork = sign_event(ALICE, CONV, 1, (), 1, 2, text("other"))
    bob.receive(first.to_bytes())
    bob.receive(fork.to_bytes())
    summary = bob.verify_all()
    assert summary.equivocations == bob.equivocations() != ()
    assert summary.heads == bob.heads()


def test_export_round_trip_verifies_offline() -> None:
    alice, bob = conversation()
    exported = alice.export()
    assert exported == bob.export()  # same events -> byte-identical exports
    summary = verify_export(exported)
    assert summary.heads == alice.heads()
    assert summary.conversation == CONV and summary.members == tuple(sorted((A, B)))
    assert summary.event_count == len(alice) and summary.equivocations == ()
    copy = Ledger.from_export(exported)
    assert copy.ordered() == alice.ordered()


def tamper_export(exported: bytes, **changes: Any) -> bytes:
    value = cbor2.loads(exported)
    value.update(changes)
    return cbor2.dumps(value, canonical=True)


def test_tampered_exports_fail_naming_the_event() -> None:
    alice, _ = conversation()
    exported = alice.export()
    events = cbor2.loads(exported)["events"]

    def fails(events_list: list[bytes], error: type[LedgerError], index: int) -> None:
        with pytest.raises(error) as info:
            verify_export(tamper_export(exported, events=events_list))
        assert info.value.index == index
        assert info.value.cid == Cid.for_block(events_list[index])
        assert str(info.value.cid) in str(info.value) and f"#{index}" in str(info.value)

    body = cbor2.loads(events[5])["body"]
    altered = edit(events[5], body={**body, "text": "altered"})
    fails([*events[:5], altered, *events[6:]], BadEventSignature, 5)
    sig = bytearray(cbor2.loads(events[2])["sig"])
    sig[0] ^= 1
    fails([*events[:2], edit(events[2], sig=bytes(sig)), *events[3:]], BadEventSignature, 2)
    swapped = [events[1], events[0], *events[2:]]  # two roots: order check catches it
    fails(swapped, InvalidExport, 1)
    # Move an event in front of its earliest parent.
    cids = [decode_event(e).cid for e in events]
    child = len(events) - 1
    parent = min(cids.index(p) for p in decode_event(events[child]).parents)
    child_first = [*events[:parent], events[child], *events[parent:child]]
    fails(child_first, MissingParents, parent)
    dropped = [*events[:2], *events[3:]]
    first_child = next(
        i for i, e in enumerate(dropped) if decode_event(events[2]).cid in decode_event(e).parents
    )
    fails(dropped, MissingParents, first_child)
    spliced = Ledger(A, C).append(ALICE, text("elsewhere"), 1).to_bytes()
    fails([spliced, *events], WrongConversation, 0)
    fails([*events, events[-1]], InvalidExport, len(events))
    forged = sign_event(CAROL, CONV, 1, (), 1, 1, text("forged")).to_bytes()
    fails([forged, *events], ForgedAuthor, 0)


def test_malformed_export_containers() -> None:
    alice, _ = conversation(2)
    exported = alice.export()
    value = cbor2.loads(exported)
    bad = [
        b"",
        b"\xff",
        cbor2.dumps([1]),
        tamper_export(exported, v=2),
        tamper_export(exported, format="other"),
        tamper_export(exported, conv=b"\x00" * 32),
        tamper_export(exported, members=[A, C]),
        tamper_export(exported, members=sorted([A, B], reverse=True)),
        tamper_export(exported, members=[A]),
        tamper_export(exported, members=[A, A]),
        tamper_export(exported, events="none"),
        tamper_export(exported, events=[1]),
        tamper_export(exported, extra=1),
        cbor2.dumps(dict(reversed(list(value.items())))),
    ]
    for data in bad:
        with pytest.raises(InvalidExport):
            verify_export(data)


def test_a_held_event_keeps_one_copy_of_its_bytes() -> None:
    """Memory per stored event: the ledger keeps the bytes it verified (the very object
    received, or restored from storage) once, as the event's encoding, and the CID
    computed from them; a long history is held in memory once, not twice."""
    alice = IdentityKeys.from_seeds(b"\x01" * 32, b"\x11" * 32)
    bob = IdentityKeys.from_seeds(b"\x02" * 32, b"\x12" * 32)
    writer = Ledger(alice.public.signing_key, bob.public.signing_key)
    blocks = [
        bytes(writer.append(alice, EventBody.of("text", text=f"m{i}"), i).to_bytes())
        for i in range(5)
    ]
    reader = Ledger.restore(bob.public.signing_key, alice.public.signing_key, blocks)
    for block in blocks:
        cid = Cid.for_block(block)
        event = reader.get(cid)
        assert event is not None and event.cid == cid
        assert reader.get_bytes(cid) is block
        assert event.to_bytes() is block
    assert reader.export() == writer.export()


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.booleans()), min_size=1, max_size=30))
def test_the_order_is_lamport_then_cid_however_events_interleave(
    steps: list[tuple[bool, bool]],
) -> None:
    """Both writers append, sometimes concurrently, and exchange at random; whether a
    new event goes at the end (the usual case) or in between, `ordered()` is sorted
    by (Lamport time, CID) and the same on both sides."""
    alice, bob = new_pair()
    for i, (alice_writes, exchange) in enumerate(steps):
        if alice_writes:
            alice.append(ALICE, text(f"a{i}"), i)
        else:
            bob.append(BOB, text(f"b{i}"), i)
        if exchange:
            for source, target in ((alice, bob), (bob, alice)):
                for event in source.ordered():
                    target.receive(event.to_bytes())
    for source, target in ((alice, bob), (bob, alice)):
        for event in source.ordered():
            target.receive(event.to_bytes())
    for ledger in (alice, bob):
        keys = [(e.lamport, e.cid) for e in ledger.ordered()]
        assert keys == sorted(keys)
    assert [e.cid for e in alice.ordered()] == [e.cid for e in bob.ordered()]
