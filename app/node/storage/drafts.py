"""Drafts: what the user typed to a contact and has not sent, kept across restarts.

One row per contact, keyed by the tag every table uses for a contact; the address and
the text are sealed together, bound to that tag, so a copied profile shows only how many
conversations hold a draft and when each was last changed.
"""

from __future__ import annotations

import json

from app.node.storage.database import transaction
from app.node.storage.repositories import SealedRepository


class DraftRepository(SealedRepository):
    """The unsent text of each conversation (at most one draft per contact)."""

    def _label(self, tag: bytes) -> str:
        return f"drafts/body/{tag.hex()}"

    def save(self, contact: str, text: str, at: float) -> None:
        """Keep `text` as the draft to `contact` (replacing any); empty text: none."""
        tag = self._tag(contact)
        with transaction(self._conn):
            if not text:
                self._conn.execute("DELETE FROM drafts WHERE contact_tag = ?", (tag,))
                return
            body = json.dumps({"contact": contact, "text": text}).encode()
            self._conn.execute(
                "INSERT OR REPLACE INTO drafts (contact_tag, body_enc, at) VALUES (?, ?, ?)",
                (tag, self._key.seal(self._label(tag), body), at),
            )

    def all(self) -> dict[str, str]:
        """Every draft: contact address -> text."""
        found = {}
        for tag, sealed in self._conn.execute("SELECT contact_tag, body_enc FROM drafts"):
            body = json.loads(self._key.open(self._label(tag), sealed))
            found[str(body["contact"])] = str(body["text"])
        return found
