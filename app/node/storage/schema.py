"""Schema migrations, in order. Never edit a shipped migration: append a new one.

Columns ending in `_enc` hold values sealed by the vault (see vault.py); `*_tag`
columns hold keyed hashes used for lookups without revealing the value.
"""

MIGRATIONS: list[list[str]] = [
    # 1: profile header and address book
    [
        """
        CREATE TABLE profile (
            id INTEGER PRIMARY KEY CHECK (id = 1),
            address TEXT NOT NULL,
            protection TEXT NOT NULL,
            kdf_salt BLOB,
            kdf_ops INTEGER,
            kdf_mem INTEGER,
            wrapped_key BLOB,
            key_check BLOB NOT NULL,
            identity_enc BLOB NOT NULL,
            name_enc BLOB NOT NULL,
            created_at INTEGER NOT NULL
        )
        """,
        """
        CREATE TABLE contacts (
            id INTEGER PRIMARY KEY,
            address_tag BLOB NOT NULL UNIQUE,
            address_enc BLOB NOT NULL,
            name_enc BLOB NOT NULL,
            identity_enc BLOB NOT NULL,
            endpoints_enc BLOB NOT NULL,
            verified INTEGER NOT NULL DEFAULT 0,
            created_at INTEGER NOT NULL
        )
        """,
    ],
]

MIGRATIONS.append(
    # 2: conversation history and outbox (text sealed, bound to the message id)
    [
        """
        CREATE TABLE messages (
            seq INTEGER PRIMARY KEY,
            msg_id TEXT NOT NULL UNIQUE,
            contact_tag BLOB NOT NULL,
            outgoing INTEGER NOT NULL,
            body_enc BLOB NOT NULL,
            sent_at REAL NOT NULL,
            status TEXT NOT NULL
        )
        """,
        "CREATE INDEX messages_by_contact ON messages (contact_tag, seq)",
    ]
)

MIGRATIONS.append(
    # 3: end-to-end session state, our prekeys, and the signed history events
    [
        """
        CREATE TABLE e2e_sessions (
            contact_tag BLOB PRIMARY KEY,
            state_enc BLOB NOT NULL,
            updated_at REAL NOT NULL
        )
        """,
        """
        CREATE TABLE e2e_prekeys (
            id INTEGER PRIMARY KEY CHECK (id = 1),
            state_enc BLOB NOT NULL
        )
        """,
        """
        CREATE TABLE history_events (
            seq INTEGER PRIMARY KEY,
            contact_tag BLOB NOT NULL,
            cid TEXT NOT NULL,
            event_enc BLOB NOT NULL,
            UNIQUE (contact_tag, cid)
        )
        """,
    ]
)

MIGRATIONS.append(
    # 4: a contact whose key changed (an invite, bundle or first message carried another
    # X25519 key than the stored one) stays flagged until removed and re-added
    ["ALTER TABLE contacts ADD COLUMN key_changed INTEGER NOT NULL DEFAULT 0"]
)

MIGRATIONS.append(
    # 5: received messages the user has read (read receipts; outgoing rows keep 0)
    ["ALTER TABLE messages ADD COLUMN seen INTEGER NOT NULL DEFAULT 0"]
)

MIGRATIONS.append(
    # 6: file transfers (name, path, manifest with the file key and error sealed; the
    # root CID is a keyed tag so blocks can be matched to transfers without revealing it)
    [
        """
        CREATE TABLE transfers (
            seq INTEGER PRIMARY KEY,
            transfer_id TEXT NOT NULL UNIQUE,
            contact_tag BLOB NOT NULL,
            root_tag BLOB NOT NULL,
            outgoing INTEGER NOT NULL,
            state TEXT NOT NULL,
            size INTEGER NOT NULL,
            done_bytes INTEGER NOT NULL,
            created_at REAL NOT NULL,
            details_enc BLOB NOT NULL
        )
        """,
        "CREATE INDEX transfers_by_root ON transfers (root_tag)",
    ]
)

MIGRATIONS.append(
    # 7: security events (anomaly alerts, key rotations) and mailbox epochs, sealed;
    # `peer_tag` is the keyed tag of the peer (a contact, or a DHT sender)
    [
        """
        CREATE TABLE security_events (
            seq INTEGER PRIMARY KEY,
            event_id TEXT NOT NULL UNIQUE,
            peer_tag BLOB NOT NULL,
            body_enc BLOB NOT NULL,
            at REAL NOT NULL
        )
        """,
        "CREATE INDEX security_events_by_peer ON security_events (peer_tag, seq)",
        # mailbox epochs (key rotation): seeds we issued for our incoming mailbox from a
        # contact (incoming = 1), and the newest the contact issued to us (incoming = 0)
        """
        CREATE TABLE mailbox_epochs (
            contact_tag BLOB NOT NULL,
            incoming INTEGER NOT NULL,
            epoch INTEGER NOT NULL,
            seed_enc BLOB NOT NULL,
            created_at REAL NOT NULL,
            superseded_at REAL,
            PRIMARY KEY (contact_tag, incoming, epoch)
        )
        """,
    ]
)

UNORDERED = 2**62
"""`messages.order_lamport` of a message not (yet) in the signed history: listed last."""

MIGRATIONS.append(
    # 8: messages are listed in the history's total order (Lamport time, then CID), the
    # same on both sides; rows from before get their keys at the next start (the
    # messenger's reconcile), queued messages once they are appended
    [
        f"ALTER TABLE messages ADD COLUMN order_lamport INTEGER NOT NULL DEFAULT {UNORDERED}",
        "ALTER TABLE messages ADD COLUMN order_cid TEXT NOT NULL DEFAULT ''",
        "CREATE INDEX messages_in_history_order "
        "ON messages (contact_tag, order_lamport, order_cid, seq)",
    ]
)

MIGRATIONS.append(
    # 9: a file being received is decrypted straight into its part file; `received` is
    # the bitmap of chunks flushed there (NULL: none), so a restart resumes from it
    ["ALTER TABLE transfers ADD COLUMN received BLOB"]
)

MIGRATIONS.append(
    # 10: what the user typed to a contact and did not send (the window's composer), kept
    # across restarts; the contact's address and the text are sealed together
    ["CREATE TABLE drafts (contact_tag BLOB PRIMARY KEY, body_enc BLOB NOT NULL, at REAL NOT NULL)"]
)

MIGRATIONS.append(
    # 11: settings that are secrets (a TURN server's password: the `ice_servers` entries
    # that hold one), sealed, bound to their name; `config.json` keeps them as
    # `turn:USER:•••@HOST:PORT` (decision 0034)
    ["CREATE TABLE sealed_settings (name TEXT PRIMARY KEY, value_enc BLOB NOT NULL)"]
)
