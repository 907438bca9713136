"""Sealed security events: anomaly alerts and key rotations, kept in the profile.

The peer, kind and sentence are sealed together (bound to a random event id); the peer
is also stored as the keyed tag every table uses for a contact, so a copied profile
shows only how many events there were and when.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

from app.node.storage.database import transaction
from app.node.storage.repositories import SealedRepository

MAX_EVENTS = 10_000
"""Oldest events are deleted beyond this many."""


@dataclass(frozen=True)
class SecurityEventRecord:
    """One stored security event (decrypted, in memory only)."""

    event_id: str
    peer: str
    kind: str
    detail: str
    at: float


class SecurityEventRepository(SealedRepository):
    """Append-only (bounded) log of security events."""

    def add(self, peer: str, kind: str, detail: str, at: float) -> str:
        """Store one event; its id."""
        event_id = os.urandom(16).hex()
        body = json.dumps({"peer": peer, "kind": kind, "detail": detail}).encode()
        with transaction(self._conn):
            self._conn.execute(
                "INSERT INTO security_events (event_id, peer_tag, body_enc, at) "
                "VALUES (?, ?, ?, ?)",
                (
                    event_id,
                    self._tag(peer),
                    self._key.seal(f"security_events/body/{event_id}", body),
                    at,
                ),
            )
            self._conn.execute(
                "DELETE FROM security_events WHERE seq <= "
                "(SELECT MAX(seq) FROM security_events) - ?",
                (MAX_EVENTS,),
            )
        return event_id

    def recent(self, limit: int = 100) -> list[SecurityEventRecord]:
        """The newest `limit` events, newest last."""
        rows = self._conn.execute(
            "SELECT event_id, body_enc, at FROM security_events ORDER BY seq DESC LIMIT ?",
            (limit,),
        ).fetchall()
        found = []
        for event_id, sealed, at in reversed(rows):
            body = json.loads(self._key.open(f"security_events/body/{event_id}", sealed))
            found.append(
                SecurityEventRecord(event_id, body["peer"], body["kind"], body["detail"], at)
            )
        return found
