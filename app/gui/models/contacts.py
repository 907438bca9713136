"""The address book as a list model, with unread counts and the last message of each
conversation (both kept from `MessageAdded` events), and whether each contact is connected
(from the bridge's `peers()` poll). Contacts whose names read the same on screen are
flagged (`looks_like_another`), so the views can tell them apart (see `lookalike_names`)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

from PySide6.QtCore import (
    QAbstractListModel,
    QCoreApplication,
    QModelIndex,
    QObject,
    QPersistentModelIndex,
    Qt,
    Signal,
)

from app.gui.models.lookalike_names import lookalikes
from app.node.api import Contact, Message, Peer

AnyIndex = QModelIndex | QPersistentModelIndex
CONNECTED = "connected"
PATH_NAMES = {"webrtc": "WebRTC", "websocket": "WebSocket", "turn": "TURN"}


def is_online(peer: Peer | None) -> bool:
    """True when the transport holds a live connection to the peer."""
    return peer is not None and peer.state == CONNECTED


def presence_text(peer: Peer | None) -> str:
    """While connected e.g. "Online · WebRTC · 0.4 ms", else "Offline"."""
    if not is_online(peer):
        return QCoreApplication.translate("Presence", "Offline")
    assert peer is not None
    parts = [QCoreApplication.translate("Presence", "Online")]
    if peer.path:
        parts.append(PATH_NAMES.get(peer.path, peer.path))
    if peer.rtt_ms is not None:
        parts.append(QCoreApplication.translate("Presence", "{0} ms").format(f"{peer.rtt_ms:.1f}"))
    return " · ".join(parts)


def _without_rtt(peer: Peer | None) -> Peer | None:
    return None if peer is None else dataclasses.replace(peer, rtt_ms=None)


class ContactRole(IntEnum):
    """Custom data roles of `ContactModel`."""

    CONTACT = Qt.ItemDataRole.UserRole + 1  # the `Contact`
    UNREAD = Qt.ItemDataRole.UserRole + 2  # int
    LAST_MESSAGE = Qt.ItemDataRole.UserRole + 3  # Message | None
    ADDRESS = Qt.ItemDataRole.UserRole + 4  # str
    PEER = Qt.ItemDataRole.UserRole + 5  # Peer | None (the transport's view of the contact)
    ONLINE = Qt.ItemDataRole.UserRole + 6  # bool
    LOOKALIKE = Qt.ItemDataRole.UserRole + 7  # bool: its name reads like another contact's


@dataclass
class ContactRow:
    """One row: the contact plus what the GUI tracks about the conversation."""

    contact: Contact
    unread: int = 0
    last: Message | None = None
    peer: Peer | None = None


class ContactModel(QAbstractListModel):
    """Contacts in address-book order."""

    unreadChanged = Signal(int)  # total unread messages
    lookalikesChanged = Signal()  # which contacts' names read like another's changed

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._rows: list[ContactRow] = []
        self._lookalikes: set[str] = set()  # addresses

    # ------------------------------------------------------------------ Qt model API

    def rowCount(self, parent: AnyIndex = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self._rows)

    def data(self, index: AnyIndex, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid() or not 0 <= index.row() < len(self._rows):
            return None
        row = self._rows[index.row()]
        if role == Qt.ItemDataRole.DisplayRole:
            return row.contact.name
        if role == ContactRole.CONTACT:
            return row.contact
        if role == ContactRole.UNREAD:
            return row.unread
        if role == ContactRole.LAST_MESSAGE:
            return row.last
        if role == ContactRole.ADDRESS:
            return row.contact.address
        if role == ContactRole.PEER:
            return row.peer
        if role == ContactRole.ONLINE:
            return is_online(row.peer)
        if role == ContactRole.LOOKALIKE:
            return row.contact.address in self._lookalikes
        if role == Qt.ItemDataRole.AccessibleTextRole:
            parts = [row.contact.name, presence_text(row.peer)]
            if row.contact.verified:
                parts.append(QCoreApplication.translate("ContactModel", "verified"))
            if row.contact.not_added_back:
                parts.append(QCoreApplication.translate("ContactModel", "has not added you yet"))
            if row.contact.address in self._lookalikes:
                parts.append(
                    QCoreApplication.translate(
                        "ContactModel", "name looks like another contact's, address ends {0}"
                    ).format(row.contact.address[-6:])
                )
            if row.unread:
                parts.append(
                    QCoreApplication.translate("ContactModel", "{0} unread").format(row.unread)
                )
            return ", ".join(parts)
        if role == Qt.ItemDataRole.ToolTipRole:
            tip = f"{row.contact.address}\n{presence_text(row.peer)}"
            if row.contact.not_added_back:
                tip += "\n" + QCoreApplication.translate(
                    "ContactModel",
                    "Has not added you yet: your messages wait until they do (share your invite)",
                )
            return tip
        return None

    # ------------------------------------------------------------------ queries

    def row_of(self, address: str) -> int:
        """The row of a contact, or -1."""
        for i, row in enumerate(self._rows):
            if row.contact.address == address:
                return i
        return -1

    def contact(self, address: str) -> Contact | None:
        """The contact with `address`, if listed."""
        row = self.row_of(address)
        return self._rows[row].contact if row >= 0 else None

    def contact_at(self, row: int) -> Contact:
        """The contact in `row`."""
        return self._rows[row].contact

    def peer(self, address: str) -> Peer | None:
        """What the transport last said about a contact (None: never seen)."""
        row = self.row_of(address)
        return self._rows[row].peer if row >= 0 else None

    def looks_like_another(self, address: str) -> bool:
        """Whether the contact's name reads like another contact's on screen."""
        return address in self._lookalikes

    def unread(self, address: str) -> int:
        """Unread messages from one contact."""
        row = self.row_of(address)
        return self._rows[row].unread if row >= 0 else 0

    def total_unread(self) -> int:
        """Unread messages over all conversations."""
        return sum(r.unread for r in self._rows)

    # ------------------------------------------------------------------ updates

    def set_contacts(self, contacts: list[Contact]) -> None:
        """Replace the list (keeps what was known about conversations still present)."""
        previous = {r.contact.address: r for r in self._rows}
        self.beginResetModel()
        self._rows = [
            dataclasses.replace(previous[c.address], contact=c)
            if c.address in previous
            else ContactRow(c, unread=c.unread)  # received while the window was closed
            for c in contacts
        ]
        self.endResetModel()
        self.unreadChanged.emit(self.total_unread())
        self._find_lookalikes()

    def add(self, contact: Contact) -> None:
        """A contact was added (or changed)."""
        row = self.row_of(contact.address)
        if row >= 0:
            renamed = self._rows[row].contact.name != contact.name
            self._rows[row].contact = contact
            self._changed(row)
            if renamed:
                self._find_lookalikes()
            return
        self.beginInsertRows(QModelIndex(), len(self._rows), len(self._rows))
        self._rows.append(ContactRow(contact))
        self.endInsertRows()
        self._find_lookalikes()

    def remove(self, address: str) -> None:
        """A contact was removed."""
        row = self.row_of(address)
        if row < 0:
            return
        self.beginRemoveRows(QModelIndex(), row, row)
        del self._rows[row]
        self.endRemoveRows()
        self.unreadChanged.emit(self.total_unread())
        self._find_lookalikes()

    def set_last(self, address: str, message: Message | None) -> None:
        """The newest message of a conversation, as read when the list was loaded."""
        row = self.row_of(address)
        if row >= 0:
            self._rows[row].last = message
            self._changed(row)

    def note_message(self, message: Message, *, seen: bool, newest: bool = True) -> None:
        """A message was added to a conversation; count it as unread unless `seen`.

        `newest`: it comes after every other message of the conversation in the history's
        order (one the node places before another does not); the row shows the newest by
        that order, never by the times shown, which come from clocks that may be wrong (a
        message written while our clock ran a day ahead stayed the row's last for a day).
        Not `newest` and the row has none yet: it is shown."""
        row = self.row_of(message.contact)
        if row < 0:
            return
        entry = self._rows[row]
        if entry.last is None or newest:
            entry.last = message
        if not message.outgoing and not seen:
            entry.unread += 1
            self.unreadChanged.emit(self.total_unread())
        self._changed(row)

    def set_peers(self, peers: list[Peer]) -> None:
        """The transport's peers, as polled: every contact not listed is offline. Only rows
        whose state changed are repainted: a new round-trip time alone (nearly every
        poll, every 3 s) is kept for the tooltip and accessible text, which read it when
        asked, but the row doesn't show it."""
        by_address = {p.address: p for p in peers}
        for i, row in enumerate(self._rows):
            peer = by_address.get(row.contact.address)
            if peer != row.peer:
                repaint = _without_rtt(peer) != _without_rtt(row.peer)
                row.peer = peer
                if repaint:
                    self._changed(i)

    def clear_unread(self, address: str) -> None:
        """The user has seen a conversation."""
        row = self.row_of(address)
        if row >= 0 and self._rows[row].unread:
            self._rows[row].unread = 0
            self._changed(row)
            self.unreadChanged.emit(self.total_unread())

    def _find_lookalikes(self) -> None:
        found = lookalikes((r.contact.address, r.contact.name) for r in self._rows)
        if found == self._lookalikes:
            return
        flipped = found ^ self._lookalikes
        self._lookalikes = found
        for i, row in enumerate(self._rows):
            if row.contact.address in flipped:
                self._changed(i)
        self.lookalikesChanged.emit()

    def _changed(self, row: int) -> None:
        index = self.index(row)
        self.dataChanged.emit(index, index)
