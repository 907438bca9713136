"""Hostile input from a contact with a valid session, and tampering with stored history.

Two real nodes in one process (see test_messenger.py). The hostile payloads are genuine
ratchet messages from Alice's session, so they pass decryption and exercise what comes
after it: plaintext parsing, the ledger's checks, storage. Each is refused and counted,
the node keeps running, and nothing Alice really sent is lost or duplicated.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import cbor2
import pytest
import pytest_asyncio
from test_messenger import Node, eventually, start_node, stop_node

from app.core.cid import Cid
from app.core.identity import IdentityKeys, make_invite
from app.core.ledger import Ledger
from app.core.ledger_event import EventBody, conversation_id, decode_event, sign_event
from app.core.session import encrypt
from app.node.api import (
    AddContact,
    HistoryInvalid,
    ListMessages,
    MessageStatus,
    SendMessage,
    VerifyHistory,
)
from app.node.history import load_ledger
from app.node.messenger import MAX_PAYLOAD
from app.node.state_message import MAX_EVENTS, StateMessage

CAROL = IdentityKeys.from_seeds(os.urandom(32), os.urandom(32))


@pytest_asyncio.fixture
async def linked(tmp_path: Path) -> AsyncIterator[tuple[Node, Node]]:
    """Alice and Bob, contacts of each other, with a session (one delivered message)."""
    alice = await start_node(tmp_path, "Alice")
    bob = await start_node(tmp_path, "Bob")
    await bob.network.join_via(alice.network.endpoints())
    await bob.network.publish_presence()
    await alice.network.publish_presence()
    await bob.service.add_contact(AddContact((await alice.service.whoami()).invite))
    await alice.service.add_contact(AddContact((await bob.service.whoami()).invite))
    await alice.service.send_message(SendMessage("Bob", "hello"))
    await eventually(lambda: _all_delivered(alice))
    yield alice, bob
    await stop_node(alice)
    await stop_node(bob)


async def _all_delivered(node: Node) -> bool:
    found = await node.service.list_messages(ListMessages("Bob"))
    return bool(found) and {m.status for m in found} == {MessageStatus.DELIVERED}


async def _texts(node: Node, contact: str) -> list[str]:
    return [m.text for m in await node.service.list_messages(ListMessages(contact))]


async def sealed_by(alice: Node, bob: Node, plaintext: bytes) -> bytes:
    """A genuine session message from Alice to Bob carrying `plaintext`."""
    async with alice.messenger.conversation(bob.address):
        session = await alice.messenger.sessions.for_sending(bob.address)
        session, wire = encrypt(session, plaintext, os.urandom)
        await alice.messenger.sessions.save(bob.address, session)
    return wire


def _keys(node: Node) -> IdentityKeys:
    return node.service.store.identity


@pytest.mark.asyncio
async def test_hostile_payloads_from_a_contact_are_refused_and_lose_nothing(
    linked: tuple[Node, Node],
) -> None:
    alice, bob = linked
    a_key, b_key = _keys(alice).public.signing_key, _keys(bob).public.signing_key
    conv = conversation_id(a_key, b_key)
    ledger = await alice.messenger._ledger(bob.address)
    heads = list(ledger.heads())
    hello = ledger.get_bytes(heads[0])
    assert hello is not None
    top = decode_event(hello)

    def body(text: str) -> EventBody:
        return EventBody.of("text", id=os.urandom(8).hex(), text=text)

    forged = sign_event(CAROL, conv, 1, (), 1, 1, body("I am not a member")).to_bytes()
    as_alice = sign_event(_keys(alice), conv, top.seq + 1, heads, top.lamport + 1, 2, body("x"))
    impersonated = cbor2.loads(as_alice.to_bytes())
    impersonated["sig"] = sign_event(CAROL, conv, 1, (), 1, 1, body("y")).signature
    elsewhere = Ledger(a_key, CAROL.public.signing_key).append(_keys(alice), body("spliced"), 3)
    nested = b"\x81" * 100_000 + b"\x00"
    state = cbor2.loads(StateMessage([], heads, False).encode())
    hostile_plaintexts = {
        "oversize event": StateMessage([b"\xa0" * 70_000], heads, False).encode(),
        "deeply nested event": StateMessage([nested], heads, False).encode(),
        "deeply nested plaintext": nested,
        "nested inside the state map": cbor2.dumps({**state, "e": [[[[b"x"]]]]}),
        "too many events": cbor2.dumps({**state, "e": [b""] * (MAX_EVENTS + 1)}),
        "a sending time that is not a time": cbor2.dumps({**state, "w": "tomorrow"}),
        "a sending time out of range": cbor2.dumps({**state, "w": -1}),
        "forged author": StateMessage([forged], heads, False).encode(),
        "signed by someone else": StateMessage([cbor2.dumps(impersonated)], heads, False).encode(),
        "from another conversation": StateMessage([elsewhere.to_bytes()], heads, False).encode(),
        "replayed event": StateMessage([hello], heads, True).encode(),
        "not CBOR": os.urandom(200),
    }
    stats = bob.messenger.stats
    before = (stats["malformed"], stats["event_rejected"])
    for name, plaintext in hostile_plaintexts.items():
        await bob.messenger.handle_payload(alice.address, await sealed_by(alice, bob, plaintext))
        assert stats["errors"] == 0, name
    # too large to be opened at all: refused before decryption
    oversize = await sealed_by(alice, bob, os.urandom(MAX_PAYLOAD))
    await bob.messenger.handle_payload(alice.address, oversize)

    malformed, rejected = stats["malformed"] - before[0], stats["event_rejected"] - before[1]
    # nested plaintext, bad event list, too many, 2 bad sending times, not CBOR, oversize
    assert malformed == 7
    assert rejected == 5  # oversize, nested, forged, impersonated, spliced events
    assert stats["errors"] == 0
    assert bob.messenger.clock_problem == ""  # one contact's clock can't make ours wrong
    assert await _texts(bob, "Alice") == ["hello"]  # nothing stored, nothing duplicated
    b_ledger = await bob.messenger._ledger(alice.address)
    assert len(b_ledger) == 1 and b_ledger.equivocations() == ()

    # the node and the session still work, both ways; the histories agree
    await alice.service.send_message(SendMessage("Bob", "still here"))
    await bob.service.send_message(SendMessage("Alice", "me too"))
    expected = ["hello", "me too", "still here"]
    await eventually(lambda: _equal(_sorted_texts(bob, "Alice"), expected))
    await eventually(lambda: _equal(_sorted_texts(alice, "Bob"), expected))

    async def same_heads() -> bool:
        a = await alice.service.verify_history(VerifyHistory("Bob"))
        b = await bob.service.verify_history(VerifyHistory("Alice"))
        return a.heads == b.heads and a.events == b.events == 3

    await eventually(same_heads)


async def _sorted_texts(node: Node, contact: str) -> list[str]:
    return sorted(await _texts(node, contact))


async def _equal(value: object, expected: object) -> bool:
    return bool(await value == expected)  # type: ignore[misc]


@pytest.mark.asyncio
async def test_replaying_a_whole_ciphertext_changes_nothing(linked: tuple[Node, Node]) -> None:
    alice, bob = linked
    wire = await sealed_by(alice, bob, StateMessage([], [], True).encode())
    await bob.messenger.handle_payload(alice.address, wire)
    refused = bob.messenger.stats["decrypt_failed"]
    for _ in range(3):
        await bob.messenger.handle_payload(alice.address, wire)
    assert bob.messenger.stats["decrypt_failed"] == refused + 3
    assert await _texts(bob, "Alice") == ["hello"]
    assert bob.messenger.stats["session_reset"] == 0  # replays don't count as divergence


# --------------------------------------------------------------------------- storage


def _event_rows(node: Node) -> list[tuple[int, str]]:
    path = node.service.store.paths.database
    with sqlite3.connect(path) as conn:
        return [
            (int(r[0]), str(r[1]))
            for r in conn.execute("SELECT seq, cid FROM history_events ORDER BY seq")
        ]


def _rewrite(node: Node, seq: int, cid: str, sealed: bytes) -> None:
    with sqlite3.connect(node.service.store.paths.database) as conn:
        conn.execute("UPDATE history_events SET event_enc = ? WHERE seq = ?", (sealed, seq))
        conn.execute("UPDATE history_events SET cid = ? WHERE seq = ?", (cid, seq))


@pytest.mark.asyncio
@pytest.mark.parametrize("tamper", ["text", "signature", "spliced", "raw bytes"])
async def test_tampering_with_a_stored_event_fails_verify_naming_it(
    tmp_path: Path, tamper: str
) -> None:
    alice = await start_node(tmp_path, "Alice")
    bob_keys = IdentityKeys.from_seeds(os.urandom(32), os.urandom(32))
    try:
        await alice.service.add_contact(AddContact(make_invite(bob_keys, "Bob", [])))
        for i in range(4):
            await alice.service.send_message(SendMessage("Bob", f"line {i}"))

        async def appended() -> bool:
            return (await alice.service.verify_history(VerifyHistory("Bob"))).events == 4

        await eventually(appended)
        store = alice.service.store
        rows = _event_rows(alice)
        seq, cid = rows[2]
        original = (await store.call(store.history.all, bob_keys.public.address))[2]
        value = cbor2.loads(original)
        if tamper == "text":
            value["body"] = {**value["body"], "text": "LINE 2"}
            data = cbor2.dumps(value, canonical=True)
        elif tamper == "signature":
            value["sig"] = bytes([value["sig"][0] ^ 1]) + value["sig"][1:]
            data = cbor2.dumps(value, canonical=True)
        elif tamper == "spliced":  # an event of Alice's conversation with Carol
            other = Ledger(_keys(alice).public.signing_key, CAROL.public.signing_key)
            data = other.append(_keys(alice), EventBody.of("text", id="x", text="hi"), 1).to_bytes()
        else:
            data = b""
        if tamper == "raw bytes":  # someone without the key flips a bit on disk
            with sqlite3.connect(store.paths.database) as conn:
                (sealed,) = conn.execute(
                    "SELECT event_enc FROM history_events WHERE seq = ?", (seq,)
                ).fetchone()
            _rewrite(alice, seq, cid, bytes([sealed[0] ^ 1]) + sealed[1:])
            named = cid
        else:  # someone with the key re-seals a changed event
            named = str(Cid.for_block(data))
            _rewrite(alice, seq, named, store.key.seal(f"history_events/event/{named}", data))
        with pytest.raises(HistoryInvalid, match=rf"event #2 {named}"):
            await alice.service.verify_history(VerifyHistory("Bob"))
        # the running node keeps going: it refuses to load the history, says why
        assert (await alice.service.status()).running
        # loading it for use (signatures not checked again) refuses it too: the seal,
        # the conversation id, or the next event's link to the one changed
        with pytest.raises(HistoryInvalid):
            await load_ledger(store, bob_keys.public.address)
    finally:
        await stop_node(alice)


@pytest.mark.asyncio
@pytest.mark.parametrize("tamper", ["forged head", "moved row", "swapped rows"])
async def test_a_stored_event_changed_on_disk_is_caught_by_the_seal_or_by_verify(
    tmp_path: Path, tamper: str
) -> None:
    """The node loads a history without checking its signatures again (they were
    checked before the events were stored; decision 0022). What changes a stored event
    is caught all the same: a row moved to another conversation (the seal does not
    bind the conversation, the event's signed conversation id does), rows whose sealed
    values were swapped (the seal binds the CID), and a re-sealed head, which only a
    holder of the data key can write, is named by `history verify`."""
    alice = await start_node(tmp_path, "Alice")
    bob_keys = IdentityKeys.from_seeds(os.urandom(32), os.urandom(32))
    try:
        for keys, name in ((bob_keys, "Bob"), (CAROL, "Carol")):
            await alice.service.add_contact(AddContact(make_invite(keys, name, [])))
            for i in range(3):
                await alice.service.send_message(SendMessage(name, f"{name} {i}"))

        async def appended() -> bool:
            reports = [
                await alice.service.verify_history(VerifyHistory(n)) for n in ("Bob", "Carol")
            ]
            return [r.events for r in reports] == [3, 3]

        await eventually(appended)
        store = alice.service.store
        bob = bob_keys.public.address
        rows = _event_rows(alice)  # Bob's three, then Carol's three
        db = store.paths.database
        if tamper == "forged head":
            seq, _ = rows[2]
            head = (await store.call(store.history.all, bob))[2]
            data = cbor2.dumps({**cbor2.loads(head), "sig": bytes(64)}, canonical=True)
            named = str(Cid.for_block(data))
            _rewrite(alice, seq, named, store.key.seal(f"history_events/event/{named}", data))
            ledger = await load_ledger(store, bob)  # the seal opens: the key wrote it
            assert len(ledger) == 3
            with pytest.raises(HistoryInvalid, match=rf"event #2 {named}"):
                await alice.service.verify_history(VerifyHistory("Bob"))
            return
        with sqlite3.connect(db) as conn:
            if tamper == "moved row":  # Carol's first event into Bob's conversation
                conn.execute(
                    "UPDATE history_events SET contact_tag = ? WHERE seq = ?",
                    (store.contact_tag(bob), rows[3][0]),
                )
            else:  # Bob's first two events' sealed values trade places
                (first,), (second,) = (
                    conn.execute(
                        "SELECT event_enc FROM history_events WHERE seq = ?", (s,)
                    ).fetchone()
                    for s, _ in rows[:2]
                )
                conn.execute(
                    "UPDATE history_events SET event_enc = ? WHERE seq = ?", (second, rows[0][0])
                )
                conn.execute(
                    "UPDATE history_events SET event_enc = ? WHERE seq = ?", (first, rows[1][0])
                )
        expected = "another conversation" if tamper == "moved row" else "integrity check"
        with pytest.raises(HistoryInvalid, match=expected):
            await load_ledger(store, bob)
        with pytest.raises(HistoryInvalid, match=expected):
            await alice.service.verify_history(VerifyHistory("Bob"))
    finally:
        await stop_node(alice)
