"""What a delivery or read receipt covers: our messages at or behind the events it names,
each once, kept as one seq of ours per conversation (`history.own_texts_behind`)."""

from __future__ import annotations

import random

import pytest

from app.core.cid import Cid
from app.core.identity import IdentityKeys
from app.core.ledger import Ledger
from app.core.ledger_event import EventBody, conversation_id, sign_event
from app.node.history import FILE, FILE_DONE, MESSAGE_KINDS, TEXT, own_texts_behind

ALICE = IdentityKeys.from_seeds(b"\x01" * 32, b"\x11" * 32)
BOB = IdentityKeys.from_seeds(b"\x02" * 32, b"\x12" * 32)
A, B = (k.public.signing_key for k in (ALICE, BOB))


def body(kind: str, ident: str) -> EventBody:
    if kind == FILE_DONE:
        return EventBody.of(kind, id=ident)
    return EventBody.of(kind, id=ident, text=ident)


def walk_behind(ledger: Ledger, starts: list[Cid], walked: set[Cid]) -> list[str]:
    """The walk this replaced (every event visited once per conversation, kept in a set):
    the reference the seq must agree with."""
    stack, ids = [c for c in starts if c not in walked], []
    while stack:
        cid = stack.pop()
        if cid in walked:
            continue
        walked.add(cid)
        event = ledger.get(cid)
        if event is None:
            continue
        stack.extend(event.parents)
        if event.author == A and event.body.kind in MESSAGE_KINDS:
            ids.append(str(event.body.get("id")))
    return ids


def test_a_receipt_covers_our_messages_up_to_what_it_builds_on_once() -> None:
    alice, bob = Ledger(A, B), Ledger(B, A)
    a1 = alice.append(ALICE, body(TEXT, "a1"), 1)
    a2 = alice.append(ALICE, body(FILE, "a2"), 2)
    for event in (a1, a2):
        bob.receive(event.to_bytes())
    alice.append(ALICE, body(FILE_DONE, "a3"), 3)  # not a message
    a4 = alice.append(ALICE, body(TEXT, "a4"), 4)  # concurrent with Bob's answer
    b1 = bob.append(BOB, body(TEXT, "b1"), 5)  # builds on a2 only
    alice.receive(b1.to_bytes())

    ids, covered = own_texts_behind(alice, [b1.cid], 0, A)
    assert (ids, covered) == (["a1", "a2"], 2)
    assert own_texts_behind(alice, [b1.cid], covered, A) == ([], 2)  # each once
    assert own_texts_behind(alice, [Cid.for_block(b"unknown")], covered, A) == ([], 2)
    # a read receipt names our own event: it covers it and everything of ours before it
    assert own_texts_behind(alice, [a4.cid], covered, A) == (["a4"], 4)
    assert own_texts_behind(alice, [a1.cid], 4, A) == ([], 4)  # never goes back


def test_after_our_own_equivocation_only_the_fork_the_receipt_builds_on_counts() -> None:
    """A profile restored from an older copy numbers a message again: two events of ours
    with one seq. The receipt covers the one the peer built on."""
    alice, bob = Ledger(A, B), Ledger(B, A)
    a1 = alice.append(ALICE, body(TEXT, "a1"), 1)
    conv = conversation_id(A, B)
    lost = sign_event(ALICE, conv, 2, (a1.cid,), 2, 2, body(TEXT, "lost"))
    again = sign_event(ALICE, conv, 2, (a1.cid,), 2, 3, body(TEXT, "again"))
    for event in (a1, lost):
        bob.receive(event.to_bytes())
    b1 = bob.append(BOB, body(TEXT, "b1"), 4)
    for event in (lost, again, b1):
        alice.receive(event.to_bytes())
    assert len(alice.author_events(A, 2)) == 2
    assert own_texts_behind(alice, [b1.cid], 0, A) == (["a1", "lost"], 2)


@pytest.mark.parametrize("seed", range(12))
def test_the_seq_covers_exactly_what_the_walk_of_every_event_covered(seed: int) -> None:
    """Random conversations (both writing, concurrent branches, events reaching the
    other side late and in bursts, receipts at any point): the ids are those the walk
    over a set of every event found, receipt after receipt."""
    rng = random.Random(seed)
    alice, bob = Ledger(A, B), Ledger(B, A)
    to_bob: list[bytes] = []
    to_alice: list[bytes] = []
    covered, walked = 0, set[Cid]()
    kinds = [TEXT, TEXT, FILE, FILE_DONE]
    for step in range(300):
        roll = rng.random()
        if roll < 0.3:
            event = alice.append(ALICE, body(rng.choice(kinds), f"a{step}"), step)
            to_bob.append(event.to_bytes())
        elif roll < 0.5:
            event = bob.append(BOB, body(TEXT, f"b{step}"), step)
            to_alice.append(event.to_bytes())
        elif roll < 0.7 and to_bob:
            count = rng.randint(1, len(to_bob))
            for data in to_bob[:count]:
                bob.receive(data)
            del to_bob[:count]
        elif roll < 0.85 and to_alice:
            count = rng.randint(1, len(to_alice))
            for data in to_alice[:count]:
                alice.receive(data)
            del to_alice[:count]
        else:  # a receipt: Bob's heads (those Alice holds), or one of Alice's events
            if rng.random() < 0.5:
                starts = [h for h in bob.heads() if h in alice]
            else:
                ours = [e.cid for e in alice.ordered() if e.author == A]
                starts = [rng.choice(ours)] if ours else []
            expected = walk_behind(alice, starts, walked)
            ids, covered = own_texts_behind(alice, starts, covered, A)
            assert sorted(ids) == sorted(expected)
