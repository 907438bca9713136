"""Domain-separation labels for every signing and encryption context.

Each context gets its own label so that a signature or ciphertext produced for one
purpose can never be accepted for another (e.g. a DHT record replayed as an invite).
"""

from enum import Enum


class Domain(Enum):
    """A signing or encryption context. The value is mixed into what is signed/sealed."""

    INVITE = "invite"
    DH_KEY_BINDING = "dh-key-binding"
    DHT_RECORD = "dht-record"
    PREKEY_BUNDLE = "prekey-bundle"
    CONNECTION_BINDING = "connection-binding"
    MESSAGE = "message"
    HISTORY_EVENT = "history-event"
    FILE_KEY = "file-key"
    STORAGE_FIELD = "storage-field"
    DATA_KEY_WRAP = "data-key-wrap"

    def tag(self) -> bytes:
        """The byte prefix bound into signatures and associated data for this context."""
        return b"scrambled-eggs/v1/" + self.value.encode("ascii") + b"\x00"
