"""Every file transfer the node knows, newest first, updated in place.

The node reports progress several times a second per running transfer; each report
replaces one row and emits `dataChanged` for that row only (and `transferUpdated`, which
the conversation model uses to repaint the matching file bubble). A whole snapshot
(`ListTransfers`) is only read once, at start.

The model also keeps two things a `Transfer` does not say. Whether our offer reached the
contact (`reached`: its message is delivered; the node reports that as the status of the
file message, whose id is the transfer's). And whether a running transfer is only
`starting`: it began (or bytes moved since) but the node has no speed for it yet, which
it reports as 0 for its first half second, as it does for a transfer that waits for a
gone peer; a report without progress, or `STARTING_SECONDS` without any, ends that.
"""

from __future__ import annotations

import time
from enum import IntEnum
from typing import Any

from PySide6.QtCore import (
    QAbstractListModel,
    QModelIndex,
    QObject,
    QPersistentModelIndex,
    Qt,
    QTimer,
    Signal,
)

from app.gui.views.transfer_text import accessible_text
from app.node.api import Message, MessageStatus, Transfer, TransferState

AnyIndex = QModelIndex | QPersistentModelIndex
ACTIVE = (TransferState.RUNNING, TransferState.OFFERED)
REACHED = (MessageStatus.DELIVERED, MessageStatus.READ)
STARTING_SECONDS = 3.0
"""How long a running transfer without a speed reads "starting" after its last progress
(the node measures a speed once bytes moved for half a second and reports 4 times a
second; a transfer still without one by then waits for its peer)."""


class TransferRole(IntEnum):
    """Custom data roles of `TransferModel`."""

    TRANSFER = Qt.ItemDataRole.UserRole + 1  # the `Transfer`
    REACHED = Qt.ItemDataRole.UserRole + 2  # bool: see `TransferModel.reached`
    STARTING = Qt.ItemDataRole.UserRole + 3  # bool: see `TransferModel.starting`


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
        self._reached: set[str] = set()  # ids of our offers whose message was delivered
        self._starting: dict[str, float] = {}  # id -> monotonic time of its last progress
        self._expiry = QTimer(self)
        self._expiry.setSingleShot(True)
        self._expiry.timeout.connect(self._expire_starting)

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

    def reached(self, transfer: Transfer) -> bool:
        """Whether the contact has the file's offer (always, for a file sent to us)."""
        return not transfer.outgoing or transfer.id in self._reached

    def starting(self, transfer_id: str) -> bool:
        """Whether a running transfer has just begun moving and has no speed yet (as
        opposed to one that waits for its peer)."""
        return transfer_id in self._starting

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
        if role == TransferRole.REACHED:
            return self.reached(transfer)
        if role == TransferRole.STARTING:
            return self.starting(transfer.id)
        if role == Qt.ItemDataRole.DisplayRole:
            return transfer.name
        if role in (Qt.ItemDataRole.AccessibleTextRole, Qt.ItemDataRole.ToolTipRole):
            return accessible_text(
                transfer, delivered=self.reached(transfer), starting=self.starting(transfer.id)
            )
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

    def message_added(self, message: Message) -> None:
        """A `MessageAdded`: a file message that is already delivered marks its offer."""
        if message.transfer is not None and message.outgoing:
            self.message_status(message.transfer, message.status)

    def message_status(self, message_id: str, status: MessageStatus) -> None:
        """A message's status (an event or a page read): the offer whose message it is
        has reached the contact once delivered (it never goes back)."""
        if status not in REACHED or message_id in self._reached:
            return
        self._reached.add(message_id)
        self._changed(message_id)

    def _changed(self, transfer_id: str) -> None:
        """Repaint a row whose text changed while its `Transfer` did not."""
        row = self._row_of.get(transfer_id)
        if row is not None:
            index = self.index(row)
            self.dataChanged.emit(index, index)
            self.transferUpdated.emit(transfer_id)

    def _note_start(self, transfer: Transfer, before: Transfer | None) -> None:
        """Keep `starting` true while a transfer that began runs without a speed and
        each report shows progress (a report without it is the node saying it waits)."""
        running = transfer.state is TransferState.RUNNING and transfer.speed_bps <= 0
        began = before is None or before.state is not TransferState.RUNNING
        moved = (
            before is not None
            and transfer.id in self._starting
            and transfer.done_bytes > before.done_bytes
        )
        if running and (began or moved):
            self._starting[transfer.id] = time.monotonic()
            if not self._expiry.isActive():
                self._expiry.start(int(STARTING_SECONDS * 1000))
        else:
            self._starting.pop(transfer.id, None)

    def _expire_starting(self) -> None:
        now = time.monotonic()
        expired = [i for i, when in self._starting.items() if now - when >= STARTING_SECONDS]
        for transfer_id in expired:
            del self._starting[transfer_id]
            self._changed(transfer_id)
        if self._starting:
            oldest = min(self._starting.values())
            wait = max(0.0, oldest + STARTING_SECONDS - now)
            self._expiry.start(int(wait * 1000) + 1)

    def _put(self, transfer: Transfer, touch: bool) -> None:
        if touch:
            self._sequence += 1
            self._touched[transfer.id] = self._sequence
        row = self._row_of.get(transfer.id)
        if row is None:
            self._note_start(transfer, None)
            position = self._insert_position(transfer)
            self.beginInsertRows(QModelIndex(), position, position)
            self._rows.insert(position, transfer)
            for moved in range(position, len(self._rows)):
                self._row_of[self._rows[moved].id] = moved
            self.endInsertRows()
        else:
            before = self._rows[row]
            was_starting = transfer.id in self._starting
            self._note_start(transfer, before)
            if before == transfer:  # nothing moved: only "starting" may have ended
                if was_starting and transfer.id not in self._starting:
                    self._changed(transfer.id)
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
