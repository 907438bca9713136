"""Mailbox epochs of each contact (sealed seeds; see docs/protocol.md, section 12).

`incoming` rows are the epochs we issued for the mailbox the contact writes to us (we
poll them); the `outgoing` row is the newest epoch the contact issued to us (we write
under it). Epoch 0 has no row and no seed: the mailbox of section 7.
"""

from __future__ import annotations

from dataclasses import dataclass

from app.node.storage.database import transaction
from app.node.storage.repositories import SealedRepository


@dataclass(frozen=True, repr=False)
class MailboxEpoch:
    """One epoch: its number, 32-byte seed, when it was made and when a newer one was."""

    epoch: int
    seed: bytes
    created_at: float
    superseded_at: float | None = None

    def __repr__(self) -> str:
        return f"MailboxEpoch(<secret>, epoch={self.epoch})"


class MailboxEpochRepository(SealedRepository):
    """Sealed mailbox epoch seeds per contact and direction."""

    def _context(self, address: str, incoming: bool, epoch: int) -> str:
        return f"mailbox_epochs/seed/{self._tag(address).hex()}/{int(incoming)}/{epoch}"

    def put(self, address: str, incoming: bool, entry: MailboxEpoch) -> None:
        """Store an epoch; for incoming ones, mark every older one superseded now."""
        tag = self._tag(address)
        sealed = self._key.seal(self._context(address, incoming, entry.epoch), entry.seed)
        with transaction(self._conn):
            if incoming:
                self._conn.execute(
                    "UPDATE mailbox_epochs SET superseded_at = ? WHERE contact_tag = ? "
                    "AND incoming = 1 AND epoch < ? AND superseded_at IS NULL",
                    (entry.created_at, tag, entry.epoch),
                )
            else:
                self._conn.execute(
                    "DELETE FROM mailbox_epochs WHERE contact_tag = ? AND incoming = 0", (tag,)
                )
            self._conn.execute(
                "INSERT OR REPLACE INTO mailbox_epochs (contact_tag, incoming, epoch, seed_enc, "
                "created_at, superseded_at) VALUES (?, ?, ?, ?, ?, NULL)",
                (tag, int(incoming), entry.epoch, sealed, entry.created_at),
            )

    def get(self, address: str, incoming: bool) -> list[MailboxEpoch]:
        """The stored epochs of one direction, oldest first."""
        rows = self._conn.execute(
            "SELECT epoch, seed_enc, created_at, superseded_at FROM mailbox_epochs "
            "WHERE contact_tag = ? AND incoming = ? ORDER BY epoch",
            (self._tag(address), int(incoming)),
        ).fetchall()
        return [
            MailboxEpoch(
                epoch, self._key.open(self._context(address, incoming, epoch), sealed), at, gone
            )
            for epoch, sealed, at, gone in rows
        ]

    def prune(self, address: str, superseded_before: float) -> None:
        """Forget incoming epochs superseded before `superseded_before`."""
        with transaction(self._conn):
            self._conn.execute(
                "DELETE FROM mailbox_epochs WHERE contact_tag = ? AND incoming = 1 "
                "AND superseded_at IS NOT NULL AND superseded_at < ?",
                (self._tag(address), superseded_before),
            )
