"""Authenticated peer-to-peer connections: WebRTC data channels and a Noise WebSocket path.

The node uses `ConnectionManager`; the rest is exported for composition and tests.
"""

from .base import (
    AuthenticatedConnection,
    AuthenticationFailed,
    ConnectFailed,
    ConnectionClosed,
    FrameHook,
    IceServer,
    PassThroughHook,
    Signaller,
    TransportError,
    TransportSettings,
)
from .manager import (
    AuthenticationRefused,
    ConnectionManager,
    ConnectionStateChanged,
    EndpointResolver,
    PeerState,
    TransportEvent,
)

__all__ = [
    "AuthenticatedConnection",
    "AuthenticationFailed",
    "AuthenticationRefused",
    "ConnectFailed",
    "ConnectionClosed",
    "ConnectionManager",
    "ConnectionStateChanged",
    "EndpointResolver",
    "FrameHook",
    "IceServer",
    "PassThroughHook",
    "PeerState",
    "Signaller",
    "TransportError",
    "TransportEvent",
    "TransportSettings",
]
