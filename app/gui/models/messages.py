"""One conversation as a list model that loads lazily, newest page first.

A file message (`Message.transfer` set) also answers `MessageRole.TRANSFER` with the
transfer's latest state from the shared `TransferModel`; a progress report repaints just
that row.

Only the newest `PAGE` messages are read when a conversation opens, so a history of any
length opens at once; `canFetchMore`/`fetchMore` bring in the page before the oldest row
(`ListMessages(before=<oldest id>)`) and prepend it. Rows are oldest first, like the view.
`drop_oldest` forgets the oldest rows again (the pane calls it while the user follows the
newest messages), so a conversation left open for a long time stays as cheap to update as
a freshly opened one.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
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

from app.gui.bridge import ActionFailed, NodeBridge
from app.gui.models.transfers import TransferModel
from app.gui.views.transfer_text import accessible_text, reached_them
from app.node.api import Message, MessageStatus, Transfer

PAGE = 100
AnyIndex = QModelIndex | QPersistentModelIndex


class MessageRole(IntEnum):
    """Custom data roles of `MessageModel`."""

    MESSAGE = Qt.ItemDataRole.UserRole + 1  # the `Message`
    DAY_HEADER = Qt.ItemDataRole.UserRole + 2  # bool: first message of its day
    TRANSFER = Qt.ItemDataRole.UserRole + 3  # the `Transfer` of a file message, or None
    STARTING = Qt.ItemDataRole.UserRole + 4  # bool: see `TransferModel.starting`


def local_day(timestamp: float) -> dt.date:
    """The calendar day of a timestamp in local time."""
    return dt.datetime.fromtimestamp(timestamp).date()


class MessageModel(QAbstractListModel):
    """The messages of the open conversation, loaded page by page from the node."""

    loadingChanged = Signal(bool)
    olderLoaded = Signal(int)  # number of rows prepended
    opened = Signal(str)  # contact address, once the newest page is in

    def __init__(
        self,
        bridge: NodeBridge,
        parent: QObject | None = None,
        page: int = PAGE,
        transfers: TransferModel | None = None,
    ):
        super().__init__(parent)
        self._bridge = bridge
        self._transfers = transfers
        self._file_messages: dict[str, str] = {}  # transfer id -> message id (loaded rows)
        if transfers is not None:
            transfers.transferUpdated.connect(self._transfer_updated)
        self._page = page
        self._rows: list[Message] = []
        self._ids: set[str] = set()
        self._contact: str | None = None
        self._has_older = False
        self._loading = False
        self._generation = 0
        self._task: asyncio.Task[int] | None = None

    # ------------------------------------------------------------------ state

    @property
    def contact(self) -> str | None:
        """The address of the open conversation."""
        return self._contact

    @property
    def loading(self) -> bool:
        """True while a page is being read."""
        return self._loading

    def message_at(self, row: int) -> Message:
        """The message shown in `row`."""
        return self._rows[row]

    def row_of(self, message_id: str) -> int:
        """The row of a message id, or -1 if it isn't loaded."""
        if message_id not in self._ids:
            return -1
        for row in range(len(self._rows) - 1, -1, -1):
            if self._rows[row].id == message_id:
                return row
        return -1

    # ------------------------------------------------------------------ Qt model API

    def rowCount(self, parent: AnyIndex = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self._rows)

    def data(self, index: AnyIndex, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid() or not 0 <= index.row() < len(self._rows):
            return None
        message = self._rows[index.row()]
        if role == MessageRole.MESSAGE:
            return message
        if role == MessageRole.TRANSFER:
            return self._transfer_of(message)
        if role == MessageRole.STARTING:
            return self._starting(message)
        if role == MessageRole.DAY_HEADER:
            row = index.row()
            return row == 0 or local_day(self._rows[row - 1].time) != local_day(message.time)
        if role == Qt.ItemDataRole.DisplayRole:
            return message.text
        if role == Qt.ItemDataRole.AccessibleTextRole:
            transfer = self._transfer_of(message)
            if transfer is None:
                return message.text
            return self._spoken(message, transfer)
        if role == Qt.ItemDataRole.ToolTipRole:
            stamp = dt.datetime.fromtimestamp(message.time).strftime("%c")
            transfer = self._transfer_of(message)
            if transfer is None:
                return stamp
            return f"{self._spoken(message, transfer)}\n{stamp}"
        return None

    def _spoken(self, message: Message, transfer: Transfer) -> str:
        starting = self._starting(message)
        return accessible_text(transfer, delivered=reached_them(message), starting=starting)

    def _starting(self, message: Message) -> bool:
        if message.transfer is None or self._transfers is None:
            return False
        return self._transfers.starting(message.transfer)

    def _transfer_of(self, message: Message) -> Transfer | None:
        if message.transfer is None or self._transfers is None:
            return None
        return self._transfers.transfer(message.transfer)

    def canFetchMore(self, parent: AnyIndex) -> bool:
        return not parent.isValid() and self._has_older and not self._loading

    def fetchMore(self, parent: AnyIndex) -> None:
        if self.canFetchMore(parent) and self._contact is not None and self._rows:
            self._set_loading(True)  # at once: one page at a time
            self._task = asyncio.ensure_future(self._fetch_older())

    # ------------------------------------------------------------------ loading

    def _set_loading(self, loading: bool) -> None:
        self._loading = loading
        self.loadingChanged.emit(loading)

    def close(self) -> None:
        """Show no conversation (a page still being read is dropped)."""
        self._generation += 1
        if self._task is not None and not self._task.done():
            self._task.cancel()
        self._task = None
        self.beginResetModel()
        self._rows, self._ids, self._contact, self._has_older = [], set(), None, False
        self._file_messages = {}
        self.endResetModel()
        self._set_loading(False)

    async def open(self, address: str) -> None:
        """Show the conversation with `address`: its newest page only."""
        self._generation += 1
        generation = self._generation
        self.beginResetModel()
        self._rows, self._ids, self._contact, self._has_older = [], set(), address, False
        self._file_messages = {}
        self.endResetModel()
        self._set_loading(True)
        try:
            page = await self._bridge.messages(address, None, self._page)
        except ActionFailed as exc:
            if generation == self._generation:
                self._set_loading(False)
                self._bridge.errorOccurred.emit(str(exc))
            return
        if generation != self._generation:
            return  # another conversation was opened meanwhile
        known = list(self._rows)  # messages that arrived while the page was read
        fresh = [m for m in page if m.id not in self._ids]
        self.beginResetModel()
        self._rows = fresh + known
        self._ids = {m.id for m in self._rows}
        self._file_messages = {m.transfer: m.id for m in self._rows if m.transfer}
        self._has_older = len(page) >= self._page
        self.endResetModel()
        self._set_loading(False)
        self.opened.emit(address)

    async def load_older(self) -> int:
        """Prepend the page before the oldest loaded message; returns how many rows came."""
        if not self.canFetchMore(QModelIndex()) or self._contact is None or not self._rows:
            return 0
        self._set_loading(True)
        return await self._fetch_older()

    async def _fetch_older(self) -> int:
        assert self._contact is not None
        generation = self._generation
        try:
            page = await self._bridge.messages(self._contact, self._rows[0].id, self._page)
        except ActionFailed as exc:
            if generation == self._generation:
                self._set_loading(False)
                self._bridge.errorOccurred.emit(str(exc))
            return 0
        if generation != self._generation:
            return 0
        older = [m for m in page if m.id not in self._ids]
        self._has_older = len(page) >= self._page
        if older:
            self.beginInsertRows(QModelIndex(), 0, len(older) - 1)
            self._rows[0:0] = older
            self._ids.update(m.id for m in older)
            self._file_messages.update((m.transfer, m.id) for m in older if m.transfer)
            self.endInsertRows()
            # the old first row may lose its day header now that its predecessor is known
            first_old = self.index(len(older))
            self.dataChanged.emit(first_old, first_old, [MessageRole.DAY_HEADER])
        self._set_loading(False)
        self.olderLoaded.emit(len(older))
        return len(older)

    # ------------------------------------------------------------------ live updates

    def add(self, message: Message, before: str | None = None) -> bool:
        """Add a new message of the open conversation (from `MessageAdded`): at the end,
        or in front of message `before` when it comes earlier in the shared order (both
        sides then show the same order, as `ListMessages` does)."""
        if message.contact != self._contact or message.id in self._ids:
            return False
        row = len(self._rows)
        if before is not None and (found := self.row_of(before)) >= 0:
            row = found
        self.beginInsertRows(QModelIndex(), row, row)
        self._rows.insert(row, message)
        self._ids.add(message.id)
        if message.transfer:
            self._file_messages[message.transfer] = message.id
        self.endInsertRows()
        if row + 1 < len(self._rows):  # the next row's day header may go
            following = self.index(row + 1)
            self.dataChanged.emit(following, following, [MessageRole.DAY_HEADER])
        return True

    def drop_oldest(self, keep: int) -> int:
        """Forget all but the newest `keep` rows (they are read again, page by page, when
        the user scrolls up to them); returns how many rows went. An open conversation
        that only grows would make every arrival cost more: Qt lays out all rows again.
        Nothing is dropped while a page is being read (it goes before the oldest row)."""
        count = len(self._rows) - max(keep, 1)
        if count <= 0 or self._loading:
            return 0
        self.beginRemoveRows(QModelIndex(), 0, count - 1)
        gone, self._rows = self._rows[:count], self._rows[count:]
        for message in gone:
            self._ids.discard(message.id)
            if message.transfer:
                self._file_messages.pop(message.transfer, None)
        self._has_older = True
        self.endRemoveRows()
        first = self.index(0)  # now the first row: it shows its day
        self.dataChanged.emit(first, first, [MessageRole.DAY_HEADER])
        return count

    def set_status(self, message_id: str, status: MessageStatus) -> bool:
        """Update the delivery state of a loaded message."""
        row = self.row_of(message_id)
        if row < 0:
            return False
        old = self._rows[row]
        self._rows[row] = dataclasses.replace(old, status=status)
        index = self.index(row)
        self.dataChanged.emit(index, index, [MessageRole.MESSAGE])
        return True

    def _transfer_updated(self, transfer_id: str) -> None:
        """A transfer progressed: repaint its bubble if it is loaded (nothing else)."""
        message_id = self._file_messages.get(transfer_id)
        if message_id is None:
            return
        row = self.row_of(message_id)
        if row >= 0:
            index = self.index(row)
            self.dataChanged.emit(index, index, [MessageRole.TRANSFER])
