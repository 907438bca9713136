"""Typed access to the tables. Sensitive values are sealed/opened here, nowhere else.

Every method runs on the store's worker thread (see `StoreWorker`), never on the loop.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, replace

from app.core.identity import IdentityKeys, PublicIdentity
from app.node.api import Message, MessageStatus, ProfileUnreadable, Protection
from app.node.storage.database import transaction
from app.node.storage.schema import UNORDERED
from app.node.storage.vault import DataKey, KeyProtection


@dataclass(frozen=True)
class ProfileHeader:
    """The profile row's public part: readable before unlocking."""

    address: str
    key: KeyProtection


@dataclass(frozen=True)
class ContactRecord:
    """A contact as the node knows it (decrypted, in memory only)."""

    address: str
    name: str
    signing_key: bytes
    dh_key: bytes | None
    endpoints: tuple[str, ...]
    verified: bool
    key_changed: bool = False

    @property
    def identity(self) -> PublicIdentity | None:
        """Both public keys, once the X25519 key is known."""
        return PublicIdentity(self.signing_key, self.dh_key) if self.dh_key else None


class ProfileRepository:
    """The single `profile` row: our identity and how the data key is protected."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def header(self) -> ProfileHeader | None:
        row = self._conn.execute(
            "SELECT address, protection, key_check, kdf_salt, kdf_ops, kdf_mem, wrapped_key "
            "FROM profile WHERE id = 1"
        ).fetchone()
        if row is None:
            return None
        address, protection, check, salt, ops, mem, wrapped = row
        return ProfileHeader(
            address, KeyProtection(Protection(protection), check, salt, ops, mem, wrapped)
        )

    def create(
        self, key: DataKey, protection: KeyProtection, identity: IdentityKeys, name: str, now: int
    ) -> None:
        address = identity.public.address
        with transaction(self._conn):
            self._conn.execute(
                "INSERT INTO profile (id, address, protection, kdf_salt, kdf_ops, kdf_mem, "
                "wrapped_key, key_check, identity_enc, name_enc, created_at) "
                "VALUES (1, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    address,
                    protection.protection.value,
                    protection.kdf_salt,
                    protection.kdf_ops,
                    protection.kdf_mem,
                    protection.wrapped_key,
                    protection.key_check,
                    key.seal("profile/identity", identity.to_bytes()),
                    key.seal("profile/name", name.encode()),
                    now,
                ),
            )

    def identity(self, key: DataKey) -> tuple[IdentityKeys, str]:
        row = self._conn.execute(
            "SELECT identity_enc, name_enc FROM profile WHERE id = 1"
        ).fetchone()
        keys = IdentityKeys.from_bytes(key.open("profile/identity", row[0]))
        return keys, key.open("profile/name", row[1]).decode()

    def set_name(self, key: DataKey, name: str) -> None:
        with transaction(self._conn):
            self._conn.execute(
                "UPDATE profile SET name_enc = ? WHERE id = 1",
                (key.seal("profile/name", name.encode()),),
            )

    def set_protection(self, protection: KeyProtection) -> None:
        with transaction(self._conn):
            self._conn.execute(
                "UPDATE profile SET protection = ?, kdf_salt = ?, kdf_ops = ?, kdf_mem = ?, "
                "wrapped_key = ?, key_check = ? WHERE id = 1",
                (
                    protection.protection.value,
                    protection.kdf_salt,
                    protection.kdf_ops,
                    protection.kdf_mem,
                    protection.wrapped_key,
                    protection.key_check,
                ),
            )


class SealedRepository:
    """Base of the repositories holding sealed values: the connection, the data key and
    the keyed tag that stands for a contact's address in every table."""

    def __init__(self, conn: sqlite3.Connection, key: DataKey) -> None:
        self._conn = conn
        self._key = key

    def _tag(self, address: str) -> bytes:
        return self._key.tag("contact-address", address)


class ContactRepository(SealedRepository):
    """The address book. Addresses, names, keys and endpoints are all sealed."""

    def add(self, record: ContactRecord, now: int) -> bool:
        """Insert; False if the address is already present."""
        tag = self._tag(record.address)
        ctx = tag.hex()
        seal = self._key.seal
        keys = {"s": record.signing_key.hex(), "x": record.dh_key.hex() if record.dh_key else None}
        with transaction(self._conn):
            cur = self._conn.execute(
                "INSERT OR IGNORE INTO contacts (address_tag, address_enc, name_enc, identity_enc, "
                "endpoints_enc, verified, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    tag,
                    seal(f"contacts/address/{ctx}", record.address.encode()),
                    seal(f"contacts/name/{ctx}", record.name.encode()),
                    seal(f"contacts/identity/{ctx}", json.dumps(keys).encode()),
                    seal(f"contacts/endpoints/{ctx}", json.dumps(list(record.endpoints)).encode()),
                    int(record.verified),
                    now,
                ),
            )
            return cur.rowcount == 1

    def all(self) -> list[ContactRecord]:
        rows = self._conn.execute(
            "SELECT address_tag, address_enc, name_enc, identity_enc, endpoints_enc, verified, "
            "key_changed FROM contacts ORDER BY id"
        ).fetchall()
        return [self._decode(*row) for row in rows]

    def get(self, address: str) -> ContactRecord | None:
        row = self._conn.execute(
            "SELECT address_tag, address_enc, name_enc, identity_enc, endpoints_enc, verified, "
            "key_changed FROM contacts WHERE address_tag = ?",
            (self._tag(address),),
        ).fetchone()
        return self._decode(*row) if row else None

    def set_dh_key(self, address: str, dh_key: bytes) -> bool:
        """Record a contact's X25519 key learnt from its signed prekey bundle."""
        tag = self._tag(address)
        record = self.get(address)
        if record is None:
            return False
        keys = {"s": record.signing_key.hex(), "x": dh_key.hex()}
        sealed = self._key.seal(f"contacts/identity/{tag.hex()}", json.dumps(keys).encode())
        with transaction(self._conn):
            cur = self._conn.execute(
                "UPDATE contacts SET identity_enc = ? WHERE address_tag = ?", (sealed, tag)
            )
            return cur.rowcount == 1

    def set_endpoints(self, address: str, endpoints: tuple[str, ...]) -> bool:
        """Replace a contact's endpoints (from a fresh invite of theirs)."""
        tag = self._tag(address)
        sealed = self._key.seal(
            f"contacts/endpoints/{tag.hex()}", json.dumps(list(endpoints)).encode()
        )
        with transaction(self._conn):
            cur = self._conn.execute(
                "UPDATE contacts SET endpoints_enc = ? WHERE address_tag = ?", (sealed, tag)
            )
            return cur.rowcount == 1

    def set_name(self, address: str, name: str) -> bool:
        """Give a contact another display name."""
        tag = self._tag(address)
        sealed = self._key.seal(f"contacts/name/{tag.hex()}", name.encode())
        with transaction(self._conn):
            cur = self._conn.execute(
                "UPDATE contacts SET name_enc = ? WHERE address_tag = ?", (sealed, tag)
            )
            return cur.rowcount == 1

    def set_key_changed(self, address: str) -> bool:
        """Flag the contact: a different key than the stored one was presented."""
        with transaction(self._conn):
            cur = self._conn.execute(
                "UPDATE contacts SET key_changed = 1 WHERE address_tag = ?", (self._tag(address),)
            )
            return cur.rowcount == 1

    def set_verified(self, address: str, verified: bool) -> bool:
        with transaction(self._conn):
            cur = self._conn.execute(
                "UPDATE contacts SET verified = ? WHERE address_tag = ?",
                (int(verified), self._tag(address)),
            )
            return cur.rowcount == 1

    def remove(self, address: str) -> bool:
        with transaction(self._conn):
            cur = self._conn.execute(
                "DELETE FROM contacts WHERE address_tag = ?", (self._tag(address),)
            )
            return cur.rowcount == 1

    def _decode(
        self,
        tag: bytes,
        address: bytes,
        name: bytes,
        identity: bytes,
        endpoints: bytes,
        verified: int,
        key_changed: int,
    ) -> ContactRecord:
        ctx = tag.hex()
        keys = json.loads(self._key.open(f"contacts/identity/{ctx}", identity))
        return ContactRecord(
            address=self._key.open(f"contacts/address/{ctx}", address).decode(),
            name=self._key.open(f"contacts/name/{ctx}", name).decode(),
            signing_key=bytes.fromhex(keys["s"]),
            dh_key=bytes.fromhex(keys["x"]) if keys["x"] else None,
            endpoints=tuple(json.loads(self._key.open(f"contacts/endpoints/{ctx}", endpoints))),
            verified=bool(verified),
            key_changed=bool(key_changed),
        )


class MessageRepository(SealedRepository):
    """Conversation history and the outbox. Text is sealed and bound to its message id;
    the contact is stored as the same keyed tag the address book uses."""

    def __init__(self, conn: sqlite3.Connection, key: DataKey, own_address: str) -> None:
        super().__init__(conn, key)
        self._own = own_address

    _INSERT = (
        "INTO messages (msg_id, contact_tag, outgoing, body_enc, sent_at, status) "
        "VALUES (?, ?, ?, ?, ?, ?)"
    )

    def _row(self, message: Message) -> tuple[object, ...]:
        return (
            message.id,
            self._tag(message.contact),
            int(message.outgoing),
            self._key.seal(f"messages/body/{message.id}", message.text.encode()),
            message.time,
            message.status.value,
        )

    def add(self, message: Message) -> None:
        self.add_many([message])

    def add_many(self, messages: list[Message]) -> None:
        """Insert new messages (e.g. several outbox rows) in one transaction."""
        with transaction(self._conn):
            self._conn.executemany("INSERT " + self._INSERT, [self._row(m) for m in messages])

    def add_if_absent(self, message: Message) -> bool:
        """Insert a received message unless its id is already stored (exactly once)."""
        return bool(self.add_many_if_absent([message]))

    def add_many_if_absent(
        self, messages: list[Message], order: dict[str, tuple[int, str]] | None = None
    ) -> list[Message]:
        """Insert received messages whose ids are not stored yet, in order, in one
        transaction; return those inserted (exactly once per id). `order` gives their
        place in the history (see `set_order`)."""
        added = []
        with transaction(self._conn):
            for message in messages:
                cur = self._conn.execute("INSERT OR IGNORE " + self._INSERT, self._row(message))
                if cur.rowcount == 1:
                    added.append(message)
            placed = {m.id: order[m.id] for m in added if order and m.id in order}
            for contact in {m.contact for m in added}:
                mine = {m.id for m in added if m.contact == contact}
                self.set_order(contact, {i: k for i, k in placed.items() if i in mine})
        return added

    def set_order(self, contact: str, order: dict[str, tuple[int, str]]) -> None:
        """Place `contact`'s messages (by id) in the history's total order: (Lamport
        time, CID bytes in hex) of the event that carries each. Messages without a place
        are listed last. Only that conversation's rows change (a peer naming another
        conversation's message id moves nothing)."""
        tag = self._tag(contact)
        with transaction(self._conn):
            self._conn.executemany(
                "UPDATE messages SET order_lamport = ?, order_cid = ? "
                "WHERE msg_id = ? AND contact_tag = ?",
                [(lamport, cid, msg_id, tag) for msg_id, (lamport, cid) in order.items()],
            )

    def followers(self, contact: str, ids: list[str]) -> dict[str, str | None]:
        """For each of `ids` (messages just added), the first message after it in the
        shared order that is not one of `ids`, or None when only `ids` follow it: where
        a view that shows the others inserts it (`MessageAdded.before`)."""
        tag = self._tag(contact)
        keys = [
            tuple(row)
            for msg_id in ids
            if (
                row := self._conn.execute(
                    "SELECT order_lamport, order_cid, seq FROM messages "
                    "WHERE msg_id = ? AND contact_tag = ?",
                    (msg_id, tag),
                ).fetchone()
            )
            is not None
        ]
        if not keys:
            return {}
        rows = self._conn.execute(
            "SELECT msg_id FROM messages WHERE contact_tag = ? "
            "AND (order_lamport, order_cid, seq) >= (?, ?, ?) "
            "ORDER BY order_lamport, order_cid, seq",
            (tag, *min(keys)),
        ).fetchall()
        wanted, waiting = set(ids), []
        found: dict[str, str | None] = {}
        for (msg_id,) in rows:
            if msg_id in wanted:
                waiting.append(msg_id)
            else:
                found.update((w, str(msg_id)) for w in waiting)
                waiting = []
        found.update((w, None) for w in waiting)
        return found

    def ids(self, contact: str) -> set[str]:
        """Ids of every message stored for `contact`."""
        rows = self._conn.execute(
            "SELECT msg_id FROM messages WHERE contact_tag = ?", (self._tag(contact),)
        ).fetchall()
        return {str(row[0]) for row in rows}

    def unsettled(self, contact: str) -> bool:
        """Whether the history may still have to catch up with `contact`'s messages: ours
        not delivered yet (queued or sent), or rows with no place in the history order."""
        row = self._conn.execute(
            "SELECT EXISTS (SELECT 1 FROM messages WHERE contact_tag = ? AND ("
            "(outgoing = 1 AND status IN (?, ?)) OR order_lamport = ?))",
            (
                self._tag(contact),
                MessageStatus.QUEUED.value,
                MessageStatus.SENT.value,
                UNORDERED,
            ),
        ).fetchone()
        return bool(row[0])

    def unordered_ids(self, contact: str) -> set[str]:
        """Ids of `contact`'s messages with no place in the history order yet."""
        rows = self._conn.execute(
            "SELECT msg_id FROM messages WHERE contact_tag = ? AND order_lamport = ?",
            (self._tag(contact), UNORDERED),
        ).fetchall()
        return {str(row[0]) for row in rows}

    def outgoing_with_status(self, contact: str, status: MessageStatus) -> list[Message]:
        """Our messages to `contact` in `status`, oldest first (e.g. the unsent outbox)."""
        rows = self._conn.execute(
            "SELECT msg_id, outgoing, body_enc, sent_at, status FROM messages "
            "WHERE contact_tag = ? AND outgoing = 1 AND status = ? ORDER BY seq",
            (self._tag(contact), status.value),
        ).fetchall()
        return [self._decode(contact, *row) for row in rows]

    def outgoing_ids_with_status(
        self, contact: str, statuses: tuple[MessageStatus, ...]
    ) -> list[str]:
        """Ids of our messages to `contact` in one of `statuses`, oldest first (no text
        is opened)."""
        marks = ", ".join("?" for _ in statuses)
        rows = self._conn.execute(
            f"SELECT msg_id FROM messages WHERE contact_tag = ? AND outgoing = 1 "
            f"AND status IN ({marks}) ORDER BY seq",
            (self._tag(contact), *(s.value for s in statuses)),
        ).fetchall()
        return [str(row[0]) for row in rows]

    def advance_status(
        self, msg_ids: list[str], status: MessageStatus, from_statuses: tuple[MessageStatus, ...]
    ) -> list[str]:
        """Move outgoing messages to `status` if they are in one of `from_statuses`;
        return the ids that changed (statuses never go backwards)."""
        changed = []
        marks = ", ".join("?" for _ in from_statuses)
        with transaction(self._conn):
            for msg_id in msg_ids:
                cur = self._conn.execute(
                    f"UPDATE messages SET status = ? WHERE msg_id = ? AND outgoing = 1 "
                    f"AND status IN ({marks})",
                    (status.value, msg_id, *(s.value for s in from_statuses)),
                )
                if cur.rowcount == 1:
                    changed.append(msg_id)
        return changed

    def page(self, contact: str, before: str | None, limit: int) -> list[Message]:
        """Up to `limit` messages that come before message `before` (newest last), in the
        history's total order, which both sides of a conversation share; messages not in
        the history yet (queued) come last, in the order they were written."""
        params: list[object] = [self._tag(contact)]
        where = "contact_tag = ?"
        if before is not None:
            where += (
                " AND (order_lamport, order_cid, seq) < "
                "(SELECT order_lamport, order_cid, seq FROM messages WHERE msg_id = ?)"
            )
            params.append(before)
        rows = self._conn.execute(
            "SELECT msg_id, outgoing, body_enc, sent_at, status FROM messages "
            f"WHERE {where} ORDER BY order_lamport DESC, order_cid DESC, seq DESC LIMIT ?",
            (*params, limit),
        ).fetchall()
        return [self._decode(contact, *row) for row in reversed(rows)]

    def newest_of_each(self, contacts: list[str]) -> list[Message]:
        """The newest message (as `page(contact, None, 1)` orders them) of each of
        `contacts` that is in the address book and has any, in one query; a message that
        shares a file carries its transfer's id (the same id, the same contact)."""
        by_tag = {self._tag(a): a for a in contacts}
        rows = self._conn.execute(
            "SELECT c.address_tag, m.msg_id, m.outgoing, m.body_enc, m.sent_at, m.status, "
            "EXISTS (SELECT 1 FROM transfers t "
            "WHERE t.transfer_id = m.msg_id AND t.contact_tag = m.contact_tag) "
            "FROM contacts c JOIN messages m ON m.seq = ("
            "SELECT seq FROM messages WHERE contact_tag = c.address_tag "
            "ORDER BY order_lamport DESC, order_cid DESC, seq DESC LIMIT 1)"
        ).fetchall()
        newest = []
        for tag, msg_id, outgoing, body, sent_at, status, shares_file in rows:
            contact = by_tag.get(bytes(tag))
            if contact is None:
                continue
            message = self._decode(contact, msg_id, outgoing, body, sent_at, status)
            newest.append(replace(message, transfer=msg_id) if shares_file else message)
        return newest

    def search(self, contacts: list[str], needle: str, limit: int) -> list[Message]:
        """Messages whose text contains `needle` (case-insensitive), newest first.

        Text is sealed at rest, so this decrypts and scans; see docs/decisions.
        """
        wanted = needle.casefold()
        by_tag = {self._tag(a): a for a in contacts}
        found: list[Message] = []
        cursor = self._conn.execute(
            "SELECT contact_tag, msg_id, outgoing, body_enc, sent_at, status FROM messages "
            "ORDER BY seq DESC"
        )
        open_ = self._key.open
        for tag, msg_id, outgoing, body, sent_at, status in cursor:
            contact = by_tag.get(tag)
            if contact is None:
                continue
            # only the text is opened to look; a message is made for a match only
            text = open_(f"messages/body/{msg_id}", body).decode()
            if wanted in text.casefold():
                found.append(self._decode(contact, msg_id, outgoing, body, sent_at, status))
                if len(found) >= limit:
                    break
        return found

    def mark_seen(self, contact: str, up_to: str | None = None) -> str | None:
        """Mark the messages received from `contact` as read by us: every one, or with
        `up_to` (a message id of this conversation) those stored no later than it (none
        if it is not one); return the id of the newest one read (None if none is)."""
        tag = self._tag(contact)
        bound = (
            ""
            if up_to is None
            else (" AND seq <= (SELECT seq FROM messages WHERE msg_id = ? AND contact_tag = ?)")
        )
        with transaction(self._conn):
            self._conn.execute(
                "UPDATE messages SET seen = 1 WHERE contact_tag = ? AND outgoing = 0 "
                "AND seen = 0" + bound,
                (tag,) if up_to is None else (tag, up_to, tag),
            )
        return self.last_seen(contact)

    def unseen(self, contacts: list[str]) -> dict[str, int]:
        """How many messages received from each of `contacts` we have not read."""
        rows = self._conn.execute(
            "SELECT contact_tag, COUNT(*) FROM messages WHERE outgoing = 0 AND seen = 0 "
            "GROUP BY contact_tag"
        ).fetchall()
        counts = {bytes(tag): int(count) for tag, count in rows}
        return {contact: counts.get(self._tag(contact), 0) for contact in contacts}

    def last_seen(self, contact: str) -> str | None:
        """The id of the newest message received from `contact` that we have read."""
        row = self._conn.execute(
            "SELECT msg_id FROM messages WHERE contact_tag = ? AND outgoing = 0 AND seen = 1 "
            "ORDER BY seq DESC LIMIT 1",
            (self._tag(contact),),
        ).fetchone()
        return None if row is None else str(row[0])

    def set_status(self, msg_id: str, status: MessageStatus) -> None:
        with transaction(self._conn):
            self._conn.execute(
                "UPDATE messages SET status = ? WHERE msg_id = ?", (status.value, msg_id)
            )

    def _decode(
        self, contact: str, msg_id: str, outgoing: int, body: bytes, sent_at: float, status: str
    ) -> Message:
        return Message(
            id=msg_id,
            contact=contact,
            sender=self._own if outgoing else contact,
            outgoing=bool(outgoing),
            text=self._key.open(f"messages/body/{msg_id}", body).decode(),
            time=sent_at,
            status=MessageStatus(status),
        )


class SessionRepository(SealedRepository):
    """Sealed end-to-end state: one ratchet session per contact, and our prekey store.

    Callers write the new state *before* the ciphertext made with it leaves the node.
    """

    def get(self, address: str) -> bytes | None:
        tag = self._tag(address)
        row = self._conn.execute(
            "SELECT state_enc FROM e2e_sessions WHERE contact_tag = ?", (tag,)
        ).fetchone()
        return self._key.open(f"e2e_sessions/state/{tag.hex()}", row[0]) if row else None

    def put(self, address: str, state: bytes, now: float) -> None:
        tag = self._tag(address)
        sealed = self._key.seal(f"e2e_sessions/state/{tag.hex()}", state)
        with transaction(self._conn):
            self._conn.execute(
                "INSERT INTO e2e_sessions (contact_tag, state_enc, updated_at) VALUES (?, ?, ?) "
                "ON CONFLICT (contact_tag) DO UPDATE SET state_enc = excluded.state_enc, "
                "updated_at = excluded.updated_at",
                (tag, sealed, now),
            )

    def put_with_prekeys(self, address: str, state: bytes, prekeys: bytes, now: float) -> None:
        """Commit a session accepted from an initial message together with the prekey
        store that consumed its one-time prekey (one transaction: both or neither)."""
        tag = self._tag(address)
        sealed = self._key.seal(f"e2e_sessions/state/{tag.hex()}", state)
        sealed_prekeys = self._key.seal("e2e_prekeys/state", prekeys)
        with transaction(self._conn):
            self._conn.execute(
                "INSERT INTO e2e_sessions (contact_tag, state_enc, updated_at) VALUES (?, ?, ?) "
                "ON CONFLICT (contact_tag) DO UPDATE SET state_enc = excluded.state_enc, "
                "updated_at = excluded.updated_at",
                (tag, sealed, now),
            )
            self._conn.execute(
                "INSERT INTO e2e_prekeys (id, state_enc) VALUES (1, ?) "
                "ON CONFLICT (id) DO UPDATE SET state_enc = excluded.state_enc",
                (sealed_prekeys,),
            )

    def delete(self, address: str) -> None:
        with transaction(self._conn):
            self._conn.execute(
                "DELETE FROM e2e_sessions WHERE contact_tag = ?", (self._tag(address),)
            )

    def prekeys(self) -> bytes | None:
        row = self._conn.execute("SELECT state_enc FROM e2e_prekeys WHERE id = 1").fetchone()
        return self._key.open("e2e_prekeys/state", row[0]) if row else None

    def put_prekeys(self, state: bytes) -> None:
        sealed = self._key.seal("e2e_prekeys/state", state)
        with transaction(self._conn):
            self._conn.execute(
                "INSERT INTO e2e_prekeys (id, state_enc) VALUES (1, ?) "
                "ON CONFLICT (id) DO UPDATE SET state_enc = excluded.state_enc",
                (sealed,),
            )


class HistoryRepository(SealedRepository):
    """The signed events of each conversation (sealed: they carry message text)."""

    def add(self, address: str, cid: str, event: bytes) -> bool:
        """Store an event; False if this conversation already holds it."""
        sealed = self._key.seal(f"history_events/event/{cid}", event)
        with transaction(self._conn):
            cur = self._conn.execute(
                "INSERT OR IGNORE INTO history_events (contact_tag, cid, event_enc) "
                "VALUES (?, ?, ?)",
                (self._tag(address), cid, sealed),
            )
            return cur.rowcount == 1

    def add_many(self, address: str, events: list[tuple[str, bytes]]) -> int:
        """Store several events (cid, bytes) in one transaction; how many were new."""
        tag = self._tag(address)
        added = 0
        with transaction(self._conn):
            for cid, event in events:
                sealed = self._key.seal(f"history_events/event/{cid}", event)
                cur = self._conn.execute(
                    "INSERT OR IGNORE INTO history_events (contact_tag, cid, event_enc) "
                    "VALUES (?, ?, ?)",
                    (tag, cid, sealed),
                )
                added += cur.rowcount
        return added

    def all(self, address: str) -> list[bytes]:
        rows = self._conn.execute(
            "SELECT cid, event_enc FROM history_events WHERE contact_tag = ? ORDER BY seq",
            (self._tag(address),),
        ).fetchall()
        events = []
        for index, (cid, sealed) in enumerate(rows):
            try:
                events.append(self._key.open(f"history_events/event/{cid}", sealed))
            except ProfileUnreadable:
                raise ProfileUnreadable(
                    f"stored event #{index} {cid} failed its integrity check "
                    "(the profile database was modified outside the app)"
                ) from None
        return events
