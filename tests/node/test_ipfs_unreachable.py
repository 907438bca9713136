"""An IPFS daemon whose port takes no connection (a firewall dropping packets, or a daemon
too stuck to accept): a block request is "the daemon does not answer" after the connect
timeout, and the backend says so (`problem`). Before, each request waited the whole
30 s read timeout and counted as "the daemon lacks this block", so the daemon was never
known to be down and every fetch round asked it again, a worker thread per block."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator

import pytest

from app.core.unixfs import raw_cid
from app.node.files_errors import IpfsUnavailable
from app.node.ipfs import IpfsBackend


@pytest.fixture
def port_taking_no_connection() -> Iterator[int]:
    """A loopback port whose listener's queue is full: new connections are not taken
    (their SYNs are dropped, as a firewall would)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = int(listener.getsockname()[1])
    queued = []
    for _ in range(3):
        client = socket.socket()
        client.setblocking(False)
        with contextlib.suppress(BlockingIOError):  # the connection is queued meanwhile
            client.connect(("127.0.0.1", port))
        queued.append(client)
    yield port
    for client in queued:
        client.close()
    listener.close()


@pytest.mark.slow
def test_a_daemon_that_takes_no_connection_does_not_answer(
    port_taking_no_connection: int,
) -> None:
    backend = IpfsBackend(f"/ip4/127.0.0.1/tcp/{port_taking_no_connection}/http")
    assert backend.problem == ""
    with pytest.raises(IpfsUnavailable, match="did not answer in time"):
        backend.block_get_sync(raw_cid(b"a block"))
    assert f"127.0.0.1/tcp/{port_taking_no_connection}" in backend.problem
    backend.close()


def test_nothing_listening_is_said_by_the_backend() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    backend = IpfsBackend(f"/ip4/127.0.0.1/tcp/{port}/http")
    with pytest.raises(IpfsUnavailable):
        backend.version_sync()
    assert "cannot be reached" in backend.problem
    backend.close()
