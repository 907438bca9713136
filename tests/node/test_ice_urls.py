"""STUN/TURN entries: what is accepted is what aiortc uses, what is refused says why
without the password, and a hand-edited entry aiortc can't parse never reaches it."""

from __future__ import annotations

import logging

import pytest
from aiortc import RTCPeerConnection
from aiortc.rtcicetransport import connection_kwargs

from app.node.api import UpdateSettings, check_settings
from app.node.network import NetworkStack
from app.node.transport.base import IceServer, TransportSettings
from app.node.transport.ice_urls import ice_list_problems, ice_servers_of
from app.node.transport.webrtc import build_configuration
from tests.node.conftest import new_identity

SECRET = "S3cr@t:pw"
"""A password with the two characters that separate the other parts."""


def aiortc_sees(texts: list[str]) -> dict[str, object]:
    """What aioice is given for `texts` through the node's own configuration."""
    config = build_configuration(TransportSettings(ice_servers=ice_servers_of(texts)))
    assert config.iceServers is not None  # always an explicit list
    return connection_kwargs(config.iceServers)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("stun:127.0.0.1:3478", {"stun_server": ("127.0.0.1", 3478)}),
        ("stun:stun.example", {"stun_server": ("stun.example", 3478)}),
        (
            f"turn:alice:{SECRET}@127.0.0.1:3478",
            {"turn_server": ("127.0.0.1", 3478), "turn_ssl": False, "turn_transport": "udp",
             "turn_username": "alice", "turn_password": SECRET},
        ),
        (
            f"TURN:alice:{SECRET}@relay.example?transport=tcp",
            {"turn_server": ("relay.example", 3478), "turn_ssl": False, "turn_transport": "tcp",
             "turn_username": "alice", "turn_password": SECRET},
        ),
        (
            f"turns:alice:{SECRET}@relay.example:443",
            {"turn_server": ("relay.example", 443), "turn_ssl": True, "turn_transport": "tcp",
             "turn_username": "alice", "turn_password": SECRET},
        ),
    ],
)  # fmt: skip
def test_an_accepted_entry_is_what_aiortc_uses(text: str, expected: dict[str, object]) -> None:
    assert ice_list_problems([text]) == []
    assert check_settings(UpdateSettings(ice_servers=[text])) == []
    assert aiortc_sees([text]) == expected


REFUSED = [
    # each was accepted before; aiortc then raised "malformed uri" on every WebRTC
    # offer and answer (the first three), or dropped the server without a word
    (f"stun:alice:{SECRET}@127.0.0.1:3478", "a STUN server takes no user name"),
    (f"turn:alice:{SECRET}@[::1]:3478", "IPv6"),
    (f"turn:alice:{SECRET}@127.0.0.1 :3478", "no valid host name"),
    (f"turn:alice:{SECRET}@ 127.0.0.1:3478", "no valid host name"),
    (f"turn: alice:{SECRET}@127.0.0.1:3478", "user name holds a space"),
    (f"turn://alice:{SECRET}@127.0.0.1:3478", "not a STUN or TURN server"),
    ("turn:127.0.0.1:3478", "needs a user name and a password"),
    ("turn:alice@127.0.0.1:3478", "needs a user name and a password"),
    (f"turn:alice:{SECRET}@127.0.0.1:3478?transport=sctp", "only ?transport=udp"),
    (f"turns:alice:{SECRET}@127.0.0.1:5349?transport=udp", "only ?transport=tcp"),
    (f"turn:alice:{SECRET}@127.0.0.1:", "no valid port"),
    (f"turn:alice:{SECRET}@127.0.0.1:70000", "no valid port"),
    ("stun:127.0.0.1:3478?transport=udp", "takes no '?' part"),
    ("stun:", "no valid host name"),
    ("http://x", "not a STUN or TURN server"),
]


@pytest.mark.parametrize(("text", "why"), REFUSED)
def test_an_entry_aiortc_cant_use_is_refused_without_its_password(text: str, why: str) -> None:
    [problem] = check_settings(UpdateSettings(ice_servers=[text]))
    assert why in problem
    assert SECRET not in problem


@pytest.mark.asyncio
@pytest.mark.parametrize(("text", "why"), REFUSED)
async def test_a_hand_edited_entry_aiortc_cant_use_never_reaches_it(
    text: str, why: str, caplog: pytest.LogCaptureFixture
) -> None:
    """config.json is read at start without the checks: such an entry made every
    `RTCPeerConnection` of the node fail ("ValueError: malformed uri")."""
    caplog.set_level(logging.INFO)
    good = "stun:127.0.0.1:3478"
    assert aiortc_sees([text, good]) == {"stun_server": ("127.0.0.1", 3478)}
    stack = NetworkStack(new_identity(), ice_servers=[text])
    assert stack.settings.ice_servers == ()
    connection = RTCPeerConnection(build_configuration(stack.settings))
    connection.createDataChannel("x")  # where "malformed uri" was raised
    await connection.close()
    assert "ignoring ice_servers entry 1" in caplog.text
    assert SECRET not in caplog.text


def test_only_one_server_of_each_kind() -> None:
    """aiortc uses the first STUN and the first TURN server and ignores the others: a
    second one was saved and silently never tried."""
    turns = [f"turn:a:{SECRET}@relay1.example", f"turn:b:{SECRET}@relay2.example"]
    [problem] = check_settings(UpdateSettings(ice_servers=["stun:s.example", *turns]))
    assert "Only one TURN server" in problem and SECRET not in problem
    [problem] = check_settings(UpdateSettings(ice_servers=["stun:s1.example", "stun:s2"]))
    assert "Only one STUN server" in problem
    assert ice_servers_of([*turns, "stun:s1.example", "stun:s2"]) == (
        IceServer(("turn:relay1.example",), "a", SECRET),
        IceServer(("stun:s1.example",)),
    )
