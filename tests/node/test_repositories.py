"""Sealed repositories: E2E state and history events."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.node.api import Message, MessageStatus, ProfileUnreadable
from app.node.paths import ProfilePaths
from app.node.profile import create_profile, open_store
from app.node.storage.store import ProfileStore

BOB = "egg" + "b" * 58
CAROL = "egg" + "c" * 58


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ProfileStore]:
    create_profile(tmp_path / "p", "Me", None)
    opened = open_store(tmp_path / "p", None)
    yield opened
    opened.close()


def test_session_state_upserts_and_is_sealed(store: ProfileStore) -> None:
    assert store.sessions.get(BOB) is None
    store.sessions.put(BOB, b"state-one-SECRET", 1.0)
    store.sessions.put(BOB, b"state-two-SECRET", 2.0)
    store.sessions.put(CAROL, b"carol-state", 2.0)
    assert store.sessions.get(BOB) == b"state-two-SECRET"
    store.sessions.delete(CAROL)
    assert store.sessions.get(CAROL) is None
    store.sessions.put_prekeys(b"prekeys-1")
    store.sessions.put_prekeys(b"prekeys-2")
    assert store.sessions.prekeys() == b"prekeys-2"
    raw = ProfilePaths(store.paths.root).database.read_bytes()
    assert b"SECRET" not in raw


def test_state_moved_to_another_contact_is_detected(store: ProfileStore) -> None:
    store.sessions.put(BOB, b"bob", 1.0)
    store.sessions.put(CAROL, b"carol", 1.0)
    conn = sqlite3.connect(store.paths.database)
    bob_state = conn.execute("SELECT state_enc FROM e2e_sessions ORDER BY rowid").fetchone()[0]
    conn.execute("UPDATE e2e_sessions SET state_enc = ? WHERE rowid = 2", (bob_state,))
    conn.commit()
    conn.close()
    with pytest.raises(ProfileUnreadable):
        store.sessions.get(CAROL)


def test_history_events_are_deduplicated_per_conversation(store: ProfileStore) -> None:
    assert store.history.add(BOB, "bafy1", b"event one")
    assert not store.history.add(BOB, "bafy1", b"event one")
    assert store.history.add(BOB, "bafy2", b"event two")
    assert store.history.add(CAROL, "bafy1", b"event one")
    assert store.history.all(BOB) == [b"event one", b"event two"]
    assert store.history.all(CAROL) == [b"event one"]


def _message(msg_id: str, contact: str, seq: int) -> Message:
    return Message(
        id=msg_id,
        contact=contact,
        sender=contact,
        outgoing=False,
        text=f"text {seq}",
        time=float(seq),
        status=MessageStatus.RECEIVED,
    )


def test_messages_are_listed_in_history_order_and_a_peer_moves_only_its_own(
    store: ProfileStore,
) -> None:
    messages = store.messages
    bob, carol = BOB, CAROL
    messages.add_many_if_absent(
        [_message("b1", bob, 1), _message("b2", bob, 2), _message("b3", bob, 3)],
        {"b1": (5, "aa"), "b2": (3, "ff"), "b3": (3, "0a")},
    )
    messages.add_many_if_absent([_message("c1", carol, 1)], {"c1": (1, "00")})
    assert [m.id for m in messages.page(bob, None, 10)] == ["b3", "b2", "b1"]
    assert [m.id for m in messages.page(bob, "b1", 10)] == ["b3", "b2"]
    assert [m.id for m in messages.page(bob, "b2", 10)] == ["b3"]
    messages.add_many_if_absent([_message("b4", bob, 4)])  # not placed yet: listed last
    assert [m.id for m in messages.page(bob, None, 10)] == ["b3", "b2", "b1", "b4"]
    assert messages.unordered_ids(bob) == {"b4"}
    # Bob sends an event reusing Carol's message id with another place: nothing moves
    assert messages.add_many_if_absent([_message("c1", bob, 9)], {"c1": (99, "ff")}) == []
    messages.set_order(bob, {"c1": (99, "ff")})
    assert [m.id for m in messages.page(carol, None, 10)] == ["c1"]
    row = store._conn.execute(
        "SELECT order_lamport, order_cid FROM messages WHERE msg_id = 'c1'"
    ).fetchone()
    assert tuple(row) == (1, "00")
