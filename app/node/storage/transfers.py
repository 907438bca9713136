"""The `transfers` table: every file shared with or offered by a contact.

Names, local paths, the manifest (which holds the file key) and error text are sealed in
one JSON box bound to the transfer id; the contact and the file's root CID are keyed
tags (lookups without revealing them). State, size and progress are plain: a copied
profile shows that files of some size were exchanged, never which, with whom, or how to
decrypt them. Every write is its own transaction (``synchronous=FULL``), so the state
survives a SIGKILL.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass

from app.node.api import TransferState
from app.node.storage.database import transaction
from app.node.storage.repositories import SealedRepository


@dataclass(frozen=True)
class TransferRecord:
    """One transfer as the node keeps it (decrypted, in memory only)."""

    id: str
    contact: str
    outgoing: bool
    state: TransferState
    size: int
    done_bytes: int
    time: float
    name: str
    mime: str
    manifest: bytes
    """The encoded `FileManifest` (root CID, file key, sizes, name)."""
    root: bytes
    """The binary root CID."""
    path: str | None = None
    error: str | None = None
    reason: str = ""
    """Why an incoming transfer failed, as the code its sender is told
    (`app.node.transfer_status`); for a cancelled one, who ended it and how
    (`transfer_status.ended_reason`); empty otherwise."""


_COLUMNS = "transfer_id, outgoing, state, size, done_bytes, created_at, details_enc"


class TransferRepository(SealedRepository):
    """Sealed transfer rows (see the module docstring)."""

    def _root_tag(self, root: bytes) -> bytes:
        return self._key.tag("transfer-root", root.hex())

    def _details(self, record: TransferRecord) -> bytes:
        details = {
            "contact": record.contact,
            "name": record.name,
            "mime": record.mime,
            "manifest": base64.b64encode(record.manifest).decode("ascii"),
            "root": record.root.hex(),
            "path": record.path,
            "error": record.error,
            "reason": record.reason,
        }
        return self._key.seal(f"transfers/details/{record.id}", json.dumps(details).encode())

    def add(self, record: TransferRecord) -> bool:
        """Insert; False if a transfer with this id exists already (exactly once)."""
        with transaction(self._conn):
            cur = self._conn.execute(
                "INSERT OR IGNORE INTO transfers (transfer_id, contact_tag, root_tag, outgoing, "
                "state, size, done_bytes, created_at, details_enc) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    record.id,
                    self._tag(record.contact),
                    self._root_tag(record.root),
                    int(record.outgoing),
                    record.state.value,
                    record.size,
                    record.done_bytes,
                    record.time,
                    self._details(record),
                ),
            )
            return cur.rowcount == 1

    def get(self, transfer_id: str) -> TransferRecord | None:
        row = self._conn.execute(
            f"SELECT {_COLUMNS} FROM transfers WHERE transfer_id = ?", (transfer_id,)
        ).fetchone()
        return self._decode(*row) if row else None

    def all(self, contact: str | None = None) -> list[TransferRecord]:
        """Every transfer (of `contact` if given), oldest first."""
        if contact is None:
            rows = self._conn.execute(f"SELECT {_COLUMNS} FROM transfers ORDER BY seq").fetchall()
        else:
            rows = self._conn.execute(
                f"SELECT {_COLUMNS} FROM transfers WHERE contact_tag = ? ORDER BY seq",
                (self._tag(contact),),
            ).fetchall()
        return [self._decode(*row) for row in rows]

    def unfinished(self, contact: str) -> list[TransferRecord]:
        """`contact`'s transfers that are neither done nor cancelled, oldest first (only
        those rows are decrypted)."""
        rows = self._conn.execute(
            f"SELECT {_COLUMNS} FROM transfers WHERE contact_tag = ? "
            "AND state NOT IN (?, ?) ORDER BY seq",
            (self._tag(contact), TransferState.DONE.value, TransferState.CANCELLED.value),
        ).fetchall()
        return [self._decode(*row) for row in rows]

    def with_root(self, root: bytes) -> list[TransferRecord]:
        """The transfers of the file whose root CID is `root`."""
        rows = self._conn.execute(
            f"SELECT {_COLUMNS} FROM transfers WHERE root_tag = ? ORDER BY seq",
            (self._root_tag(root),),
        ).fetchall()
        return [self._decode(*row) for row in rows]

    def ids(self, contact: str) -> set[str]:
        """The ids of `contact`'s transfers (they are also the ids of their messages)."""
        rows = self._conn.execute(
            "SELECT transfer_id FROM transfers WHERE contact_tag = ?", (self._tag(contact),)
        ).fetchall()
        return {str(r[0]) for r in rows}

    def update(self, record: TransferRecord) -> bool:
        """Store the record's state, progress, path and error; False (nothing stored) if
        the transfer is done or cancelled already: those states are final, so a step
        racing the end (a pause) cannot undo it."""
        with transaction(self._conn):
            cur = self._conn.execute(
                "UPDATE transfers SET state = ?, done_bytes = ?, details_enc = ? "
                "WHERE transfer_id = ? AND state NOT IN (?, ?)",
                (
                    record.state.value,
                    record.done_bytes,
                    self._details(record),
                    record.id,
                    TransferState.DONE.value,
                    TransferState.CANCELLED.value,
                ),
            )
            return cur.rowcount == 1

    def set_manifest(self, record: TransferRecord) -> bool:
        """Store the record's manifest and root (a file offered before its root was
        known: the root came, or the received file was checked against it), with its
        details; False (nothing stored) if the transfer is done or cancelled."""
        with transaction(self._conn):
            cur = self._conn.execute(
                "UPDATE transfers SET root_tag = ?, details_enc = ? "
                "WHERE transfer_id = ? AND state NOT IN (?, ?)",
                (
                    self._root_tag(record.root),
                    self._details(record),
                    record.id,
                    TransferState.DONE.value,
                    TransferState.CANCELLED.value,
                ),
            )
            return cur.rowcount == 1

    def set_progress(self, transfer_id: str, done_bytes: int) -> None:
        with transaction(self._conn):
            self._conn.execute(
                "UPDATE transfers SET done_bytes = ? WHERE transfer_id = ?",
                (done_bytes, transfer_id),
            )

    def set_received(self, transfer_id: str, done_bytes: int, received: bytes | None) -> None:
        """Store a receiving transfer's progress and the bitmap of chunks its part file
        holds (`app.node.part_file`; None forgets it: the part was removed)."""
        with transaction(self._conn):
            self._conn.execute(
                "UPDATE transfers SET done_bytes = ?, received = ? WHERE transfer_id = ?",
                (done_bytes, received, transfer_id),
            )

    def received(self, transfer_id: str) -> bytes | None:
        """The bitmap stored by `set_received` (None if none)."""
        row = self._conn.execute(
            "SELECT received FROM transfers WHERE transfer_id = ?", (transfer_id,)
        ).fetchone()
        return bytes(row[0]) if row and row[0] is not None else None

    def with_received(self) -> set[str]:
        """The ids of the transfers a bitmap is stored for (`set_received`)."""
        rows = self._conn.execute(
            "SELECT transfer_id FROM transfers WHERE received IS NOT NULL"
        ).fetchall()
        return {str(r[0]) for r in rows}

    def _decode(
        self,
        transfer_id: str,
        outgoing: int,
        state: str,
        size: int,
        done_bytes: int,
        created_at: float,
        details_enc: bytes,
    ) -> TransferRecord:
        details = json.loads(self._key.open(f"transfers/details/{transfer_id}", details_enc))
        return TransferRecord(
            id=transfer_id,
            contact=details["contact"],
            outgoing=bool(outgoing),
            state=TransferState(state),
            size=size,
            done_bytes=done_bytes,
            time=created_at,
            name=details["name"],
            mime=details["mime"],
            manifest=base64.b64decode(details["manifest"]),
            root=bytes.fromhex(details["root"]),
            path=details["path"],
            error=details["error"],
            reason=str(details.get("reason", "")),
        )
