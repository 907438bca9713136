"""Errors of the end-to-end encryption core (prekeys, X3DH, Double Ratchet, sessions).

Every failure caused by data from outside is a `RemoteProtocolError`; every failure while
opening a message is a `DecryptionFailed`, so the node can catch one class per message and
drop it. The subclasses say *why*, for logs, metrics and the anomaly detector.
"""

from app.core.errors import DecryptionFailed, RemoteProtocolError


class InvalidPrekeyBundle(RemoteProtocolError):
    """A prekey bundle is malformed, too large, stale, or its signature does not verify."""


class CorruptState(RemoteProtocolError):
    """Serialized session or prekey state read back from storage is malformed."""


class MalformedMessage(DecryptionFailed):
    """A message or initial-message header is truncated, oversized or badly encoded."""


class InvalidKeyAgreement(DecryptionFailed):
    """An X25519 public key gave an all-zero shared secret (a low-order point)."""


class UnknownPrekey(DecryptionFailed):
    """An initial message names a signed or one-time prekey we do not hold (used or expired)."""


class ReplayedInitialMessage(DecryptionFailed):
    """An X3DH initial message was already accepted once (a replay)."""


class DuplicateMessage(DecryptionFailed):
    """A ratchet message was already decrypted, or its key was retired (replay or too old)."""


class SkipLimitExceeded(DecryptionFailed):
    """A message would make us skip more message keys than the bound allows (DoS guard)."""
