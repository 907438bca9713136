"""The core layer's errors: one base, split by whose fault it is.

`LocalProtocolError` means we misused the core (a bug on our side); `RemoteProtocolError`
means data from outside (a peer, a pasted invite, a file on disk) is malformed or forged.
"""


class CoreError(Exception):
    """Base of every error raised by `app.core`."""


class LocalProtocolError(CoreError):
    """The caller broke a rule of the core API (our bug, not the peer's)."""


class RemoteProtocolError(CoreError):
    """Input from outside is malformed, forged or out of bounds."""


class InvalidAddress(RemoteProtocolError):
    """A text address is not a well-formed Scrambled Eggs address."""


class InvalidInvite(RemoteProtocolError):
    """An invite link is malformed, incomplete or its signature does not verify."""


class InvalidSignature(RemoteProtocolError):
    """A signature does not verify for the claimed key and context."""


class DecryptionFailed(RemoteProtocolError):
    """A ciphertext was tampered with, moved to another context, or the key is wrong."""
