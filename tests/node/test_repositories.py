"""Sealed repositories: E2E state and history events."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.node.api import ProfileUnreadable
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
