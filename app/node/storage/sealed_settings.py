"""Settings that are secrets, sealed in the profile's database (decision 0034).

Each is a JSON value sealed under the data key, bound to its name, so a copied profile
shows only which secret settings are kept, never their values.
"""

from __future__ import annotations

import json

from app.node.storage.database import transaction
from app.node.storage.repositories import SealedRepository


class SealedSettingRepository(SealedRepository):
    """Named lists of strings (e.g. the `ice_servers` entries with a password)."""

    def _label(self, name: str) -> str:
        return f"settings/{name}"

    def texts(self, name: str) -> list[str]:
        """The list kept under `name`; empty if none is."""
        row = self._conn.execute(
            "SELECT value_enc FROM sealed_settings WHERE name = ?", (name,)
        ).fetchone()
        if row is None:
            return []
        value = json.loads(self._key.open(self._label(name), row[0]))
        return [str(text) for text in value]

    def keep(self, name: str, texts: list[str]) -> None:
        """Keep `texts` under `name` (replacing what was); an empty list: nothing."""
        with transaction(self._conn):
            if not texts:
                self._conn.execute("DELETE FROM sealed_settings WHERE name = ?", (name,))
                return
            sealed = self._key.seal(self._label(name), json.dumps(texts).encode())
            self._conn.execute(
                "INSERT OR REPLACE INTO sealed_settings (name, value_enc) VALUES (?, ?)",
                (name, sealed),
            )
