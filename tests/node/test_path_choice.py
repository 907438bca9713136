"""Which path the connection manager tries first for a peer."""

from __future__ import annotations

import ipaddress

import pytest

from app.node.network import on_attached_network

LAN = [ipaddress.IPv4Network("10.231.7.0/24"), ipaddress.IPv4Network("192.168.1.0/24")]


@pytest.mark.parametrize(
    ("endpoints", "direct"),
    [
        (["10.231.7.2:4000"], True),
        (["203.0.113.9:4000", "192.168.1.20:5000"], True),
        (["203.0.113.9:4000"], False),
        (["10.231.8.2:4000"], False),
        (["host.example:4000"], False),
        (["[::1]:4000"], False),
        ([], False),
        (["garbage"], False),
    ],
)
def test_direct_path_first_only_for_peers_on_an_attached_network(
    endpoints: list[str], direct: bool
) -> None:
    assert on_attached_network(endpoints, LAN) is direct
