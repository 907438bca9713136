"""Errors of the transport layer's sans-I/O parts (frames, bindings, Noise).

They extend the core's `LocalProtocolError` / `RemoteProtocolError` split, so a caller can
catch "the peer sent something bad" once for every transport without knowing which part
noticed it.
"""

from app.core.errors import LocalProtocolError, RemoteProtocolError


class FrameError(RemoteProtocolError):
    """A frame from the peer is malformed."""


class UnsupportedFrameVersion(FrameError):
    """A frame carries a protocol version this build does not speak."""


class FrameTooLarge(FrameError):
    """A frame announces a payload longer than the hard limit."""


class UnknownFrameType(FrameError):
    """A frame has a type byte this build does not know (garbage or a newer peer)."""


class BindingError(RemoteProtocolError):
    """A connection binding is malformed or does not match this connection."""


class HandshakeError(RemoteProtocolError):
    """A Noise handshake message is malformed, forged or out of order."""


class HandshakeStateError(LocalProtocolError):
    """A Noise handshake or cipher state was driven out of order by our own code."""
