"""Two (or more) in-memory ledgers syncing: random delivery orders converge, gaps refill."""

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from app.core.cid import Cid
from app.core.identity import IdentityKeys
from app.core.ledger import (
    EquivocationDetected,
    EventAccepted,
    EventPending,
    EventRejected,
    Ledger,
    LedgerOutcome,
)
from app.core.ledger_event import EventBody, conversation_id, sign_event

ALICE = IdentityKeys.from_seeds(b"\x01" * 32, b"\x11" * 32)
BOB = IdentityKeys.from_seeds(b"\x02" * 32, b"\x12" * 32)
A, B = ALICE.public.signing_key, BOB.public.signing_key


def text(value: str) -> EventBody:
    return EventBody.of("text", text=value)


def all_blocks(ledger: Ledger) -> list[bytes]:
    return [ledger.get_bytes(e.cid) or b"" for e in ledger.ordered()]


def deliver(receiver: Ledger, blocks: list[bytes]) -> list[LedgerOutcome]:
    outcomes: list[LedgerOutcome] = []
    for data in blocks:
        outcomes.extend(receiver.receive(data))
    assert not any(isinstance(o, EventRejected) for o in outcomes)
    return outcomes


def transfer(sender: Ledger, receiver: Ledger) -> list[LedgerOutcome]:
    """One sync round, heads first: the receiver advertises heads, the sender answers."""
    return deliver(receiver, sender.events_since(receiver.heads()))


def assert_converged(*ledgers: Ledger) -> None:
    first = ledgers[0]
    for other in ledgers[1:]:
        assert other.heads() == first.heads()
        assert [e.cid for e in other.ordered()] == [e.cid for e in first.ordered()]
        assert other.equivocations() == first.equivocations()
    for ledger in ledgers:
        assert ledger.pending_count() == 0 and ledger.missing() == ()
        assert ledger.verify_all().heads == ledger.heads()


@settings(max_examples=40, deadline=None)
@given(
    steps=st.lists(
        st.tuples(st.booleans(), st.floats(min_value=0.0, max_value=1.0)),
        min_size=1,
        max_size=20,
    ),
    seed=st.integers(min_value=0, max_value=2**32),
)
def test_random_partial_deliveries_converge(steps: list[tuple[bool, float]], seed: int) -> None:
    """Each step: the author first receives a random, shuffled, partial batch of the other
    side's events (with duplicates), then appends. A final shuffled exchange converges."""
    rng = random.Random(seed)
    alice, bob = Ledger(A, B), Ledger(B, A)
    for now, (alice_writes, fraction) in enumerate(steps):
        author, keys, other = (alice, ALICE, bob) if alice_writes else (bob, BOB, alice)
        blocks = all_blocks(other)
        batch = [b for b in blocks if rng.random() < fraction]
        batch += rng.sample(batch, len(batch) // 3)  # replays
        rng.shuffle(batch)
        deliver(author, batch)
        event = author.append(keys, text(f"step {now}"), now)
        assert event.cid in author.heads()
    for receiver, sender in ((alice, bob), (bob, alice)):
        blocks = all_blocks(sender)
        rng.shuffle(blocks)
        deliver(receiver, blocks)
    assert_converged(alice, bob)
    order = alice.ordered()
    position = {e.cid: i for i, e in enumerate(order)}
    for event in order:  # parents always come first
        assert all(position[p] < position[event.cid] for p in event.parents)
    for member in (A, B):  # each author's events form one chain 1..n
        seqs = [e.seq for e in order if e.author == member]
        assert seqs == list(range(1, len(seqs) + 1))
    assert alice.export() == bob.export()


@settings(max_examples=25, deadline=None)
@given(turns=st.integers(min_value=1, max_value=15), seed=st.integers(0, 2**32))
def test_any_delivery_order_gives_the_same_ledger(turns: int, seed: int) -> None:
    rng = random.Random(seed)
    alice, bob = Ledger(A, B), Ledger(B, A)
    for i in range(turns):
        alice.append(ALICE, text(f"a{i}"), i)
        bob.append(BOB, text(f"b{i}"), i)
        if rng.random() < 0.5:
            transfer(alice, bob)
        if rng.random() < 0.5:
            transfer(bob, alice)
    union = all_blocks(alice) + all_blocks(bob)
    observers = []
    for _ in range(3):
        shuffled = list(union)
        rng.shuffle(shuffled)
        observer = Ledger(A, B)
        deliver(observer, shuffled)
        observers.append(observer)
    transfer(alice, bob)
    transfer(bob, alice)
    assert_converged(alice, bob, *observers)


def _naive_lacking(ledger: Ledger, their_heads: list[Cid]) -> list[Cid]:
    """Everything not an ancestor-or-self of `their_heads`, in the total order."""
    stack = [c for c in their_heads if c in ledger]
    covered: set[Cid] = set()
    while stack:
        cid = stack.pop()
        if cid not in covered:
            covered.add(cid)
            event = ledger.get(cid)
            assert event is not None
            stack.extend(event.parents)
    return [e.cid for e in ledger.ordered() if e.cid not in covered]


@settings(max_examples=40, deadline=None)
@given(turns=st.integers(min_value=1, max_value=25), seed=st.integers(0, 2**32))
def test_what_a_peer_lacks_is_every_event_its_heads_do_not_cover(turns: int, seed: int) -> None:
    """`cids_since` (a bounded walk) equals the full-history definition for any set of
    heads a peer may advertise: none, old ones, concurrent ones, unknown ones."""
    rng = random.Random(seed)
    alice, bob = Ledger(A, B), Ledger(B, A)
    for i in range(turns):
        for _ in range(rng.randint(0, 3)):
            alice.append(ALICE, text(f"a{i}"), i)
        for _ in range(rng.randint(0, 3)):
            bob.append(BOB, text(f"b{i}"), i)
        if rng.random() < 0.4:
            transfer(alice, bob)
        if rng.random() < 0.4:
            transfer(bob, alice)
    transfer(bob, alice)
    cids = [e.cid for e in alice.ordered()]
    unknown = Cid.for_block(b"not an event")
    for _ in range(10):
        heads = rng.sample(cids, min(len(cids), rng.randint(0, 3)))
        if rng.random() < 0.2:
            heads.append(unknown)
        assert alice.cids_since(heads) == _naive_lacking(alice, heads)
    assert alice.cids_since(list(alice.heads())) == []
    assert alice.cids_since([]) == cids
    for _ in range(10):  # events on their way count as known, with their ancestors
        heads = rng.sample(cids, min(len(cids), rng.randint(0, 3)))
        sent = set(rng.sample(cids, min(len(cids), rng.randint(0, 4))))
        expected = _naive_lacking(alice, [*heads, *sent])
        assert alice.cids_since(heads, assume_known=sent) == expected
        held = set(cids) - set(_naive_lacking(alice, heads))
        assert alice.held_by(heads, sent) == sent & held


@settings(max_examples=40, deadline=None)
@given(turns=st.integers(min_value=1, max_value=25), seed=st.integers(0, 2**32))
def test_heads_of_a_set_of_events_stand_for_the_whole_set(turns: int, seed: int) -> None:
    """`heads_of(cids)` covers exactly what `cids` cover (so a peer known to hold every
    event it wrote is queried through a few heads), and no head covers another."""
    rng = random.Random(seed)
    alice, bob = Ledger(A, B), Ledger(B, A)
    for i in range(turns):
        for _ in range(rng.randint(0, 3)):
            alice.append(ALICE, text(f"a{i}"), i)
        for _ in range(rng.randint(0, 3)):
            bob.append(BOB, text(f"b{i}"), i)
        if rng.random() < 0.4:
            transfer(alice, bob)
        if rng.random() < 0.4:
            transfer(bob, alice)
    transfer(bob, alice)
    cids = [e.cid for e in alice.ordered()]
    theirs = [e.cid for e in alice.ordered() if e.author == B]
    unknown = Cid.for_block(b"not an event")
    samples = [theirs, [], cids, [*theirs, unknown]]
    samples += [rng.sample(cids, rng.randint(0, len(cids))) for _ in range(10)]
    for chosen in samples:
        heads = alice.heads_of(chosen)
        assert alice.cids_since(heads) == _naive_lacking(alice, chosen)
        assert list(heads) == sorted(set(heads))
        for head in heads:  # none is an ancestor of another
            others = [h for h in heads if h != head]
            assert head in _naive_lacking(alice, others)
    assert alice.heads_of(cids) == alice.heads()


def test_concurrent_appends_merge_through_heads_exchange() -> None:
    alice, bob = Ledger(A, B), Ledger(B, A)
    for i in range(5):
        alice.append(ALICE, text(f"a{i}"), i)
        bob.append(BOB, text(f"b{i}"), i)
    assert len(alice.heads()) == len(bob.heads()) == 1
    accepted = transfer(alice, bob)
    assert [o for o in accepted if not isinstance(o, EventAccepted)] == []
    transfer(bob, alice)
    assert_converged(alice, bob)
    assert len(alice.heads()) == 2
    merge = bob.append(BOB, text("merge"), 10)
    assert merge.parents == alice.heads()
    transfer(bob, alice)
    assert alice.heads() == (merge.cid,)
    assert transfer(alice, bob) == []  # nothing left to send


def test_gap_is_refilled_through_missing() -> None:
    """Bob lost a range of Alice's events; he keeps asking for `missing()` until whole."""
    alice, bob = Ledger(A, B), Ledger(B, A)
    events = [alice.append(ALICE, text(f"m{i}"), i) for i in range(30)]
    for event in events[:10] + events[20:]:
        bob.receive(event.to_bytes())
    assert len(bob) == 10 and bob.pending_count() == 10
    assert bob.missing() == (events[19].cid,)
    rounds = 0
    while bob.missing():
        rounds += 1
        wanted = bob.missing()
        answers = [alice.get_bytes(cid) for cid in wanted]
        outcomes = deliver(bob, [a for a in answers if a is not None])
        assert all(isinstance(o, EventAccepted | EventPending) for o in outcomes)
        assert rounds <= 10
    assert rounds == 10
    assert_converged(alice, bob)


def test_gap_is_refilled_in_one_round_with_heads() -> None:
    alice, bob = Ledger(A, B), Ledger(B, A)
    events = [alice.append(ALICE, text(f"m{i}"), i) for i in range(30)]
    for event in events[:10]:
        bob.receive(event.to_bytes())
    reply = bob.append(BOB, text("still here"), 50)
    alice.receive(reply.to_bytes())
    sent = alice.events_since(bob.heads())
    assert [Cid.for_block(b) for b in sent] == [e.cid for e in events[10:]]
    transfer(alice, bob)
    assert_converged(alice, bob)
    # A head we have never seen is ignored; we send what we can.
    unknown = Cid.for_block(b"never seen")
    assert len(alice.events_since([unknown])) == len(alice)


def test_equivocation_converges_for_every_observer() -> None:
    alice, bob = Ledger(A, B), Ledger(B, A)
    base = alice.append(ALICE, text("base"), 1)
    bob.receive(base.to_bytes())
    conv = conversation_id(A, B)
    honest = alice.append(ALICE, text("the real one"), 2)
    forked = sign_event(ALICE, conv, 2, (base.cid,), 2, 2, text("the other one"))
    later = bob.append(BOB, text("reply"), 3)
    blocks = [base.to_bytes(), honest.to_bytes(), forked.to_bytes(), later.to_bytes()]
    observers = []
    for order in ([0, 1, 2, 3], [3, 2, 1, 0], [2, 0, 3, 1]):
        observer = Ledger(A, B)
        outcomes = deliver(observer, [blocks[i] for i in order])
        flags = [o for o in outcomes if isinstance(o, EquivocationDetected)]
        assert flags == [EquivocationDetected(A, 2, tuple(sorted((honest.cid, forked.cid))))]
        observers.append(observer)
    assert_converged(*observers)
    assert {honest.cid, forked.cid} <= set(observers[0].heads())
