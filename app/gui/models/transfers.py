"""Every file transfer the node knows, newest first, updated in place.

The node reports progress several times a second per running transfer; each report
replaces one row and emits `dataChanged` for that row only (and `transferUpdated`, which
the conversation model uses to repaint the matching file bubble). A whole snapshot
(`ListTransfers`) is only read once, at start.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Any

from PySide6.QtCore import (
    QAbstractListModel,
    QModelIndex,
    QObject,
    QPersistentModelIndex,
    Qt,
    Signal,
)

from app.gui.views.transfer_text import accessible_text
from app.node.api import Transfer, TransferState

AnyIndex = QModelIndex | QPersistentModelIndex
ACTIVE = (TransferState.RUNNING, TransferState.OFFERED)


class TransferRole(IntEnum):
    """Custom data roles of `TransferModel`."""

    TRANSFER = Qt.ItemDataRole.UserRole + 1  # the `Transfer`


class TransferModel(QAbstractListModel):
    """All transfers (both directions, every contact), newest first."""

    transferUpdated = Signal(str)  # transfer id: added or changed
    activeChanged = Signal(int)  # how many transfers run or wait for an answer (emitted
    # also when that many stay but offers to us among them changed)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._rows: list[Transfer] = []
        self._row_of: dict[str, int] = {}
        self._touched: dict[str, int] = {}  # id -> sequence number of its last event
        self._sequence = 0
        self._active = (0, 0, 0)

    # ------------------------------------------------------------------ reading

    def transfer(self, transfer_id: str) -> Transfer | None:
        """The latest state of a transfer, if known."""
        row = self._row_of.get(transfer_id)
        return None if row is None else self._rows[row]

    def offers_to_answer(self) -> int:
        """Files offered to us that wait for Accept or Decline."""
        return sum(1 for t in self._rows if t.state is TransferState.OFFERED and not t.outgoing)

    def offers_awaiting_answer(self) -> int:
        """Files we offered that wait for the contact's Accept or Decline."""
        return sum(1 for t in self._rows if t.state is TransferState.OFFERED and t.outgoing)

    def transfer_at(self, row: int) -> Transfer:
        """The transfer shown in `row`."""
        return self._rows[row]

    def row_of(self, transfer_id: str) -> int:
        """The row of a transfer, or -1."""
        return self._row_of.get(transfer_id, -1)

    @property
    def active(self) -> int:
        """How many transfers are running or offered."""
        return self._active[0]

    def rowCount(self, parent: AnyIndex = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self._rows)

    def data(self, index: AnyIndex, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid() or not 0 <= index.row() < len(self._rows):
            return None
        transfer = self._rows[index.row()]
        if role == TransferRole.TRANSFER:
            return transfer
        if role == Qt.ItemDataRole.DisplayRole:
            return transfer.name
        if role in (Qt.ItemDataRole.AccessibleTextRole, Qt.ItemDataRole.ToolTipRole):
            return accessible_text(transfer)
        return None

    # ------------------------------------------------------------------ writing

    def snapshot_token(self) -> int:
        """Call before reading a snapshot; pass the result to `merge_snapshot`."""
        return self._sequence

    def merge_snapshot(self, transfers: list[Transfer], token: int) -> None:
        """Take in a `ListTransfers` answer read since `token`: transfers that an event
        updated meanwhile keep the event's (newer) state."""
        for transfer in sorted(transfers, key=lambda t: t.time):
            if self._touched.get(transfer.id, -1) > token:
                continue
            self._put(transfer, touch=False)

    def upsert(self, transfer: Transfer) -> None:
        """A `TransferAdded` or `TransferChanged`: add the row or replace it in place."""
        self._put(transfer, touch=True)

    def _put(self, transfer: Transfer, touch: bool) -> None:
        if touch:
            self._sequence += 1
            self._touched[transfer.id] = self._sequence
        row = self._row_of.get(transfer.id)
        if row is None:
            position = self._insert_position(transfer)
            self.beginInsertRows(QModelIndex(), position, position)
            self._rows.insert(position, transfer)
            for moved in range(position, len(self._rows)):
                self._row_of[self._rows[moved].id] = moved
            self.endInsertRows()
        else:
            if self._rows[row] == transfer:
                return
            self._rows[row] = transfer
            index = self.index(row)
            self.dataChanged.emit(index, index)
        self.transferUpdated.emit(transfer.id)
        self._count_active()

    def _insert_position(self, transfer: Transfer) -> int:
        """Newest first: before the first row that is not newer (usually row 0)."""
        for row, other in enumerate(self._rows):
            if other.time <= transfer.time:
                return row
        return len(self._rows)

    def _count_active(self) -> None:
        active = sum(1 for t in self._rows if t.state in ACTIVE)
        # also when an offer starts running
        counts = (active, self.offers_to_answer(), self.offers_awaiting_answer())
        if counts != self._active:
            self._active = counts
            self.activeChanged.emit(active)
