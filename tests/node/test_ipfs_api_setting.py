"""The IPFS API address is checked when set: an address where no daemon answers, or
where a web server that is not IPFS answers, made every later share fail ("Nothing was
shared") and was accepted without a word."""

from __future__ import annotations

import http.server
import socket
import threading
from collections.abc import Iterator

import pytest

from app.node.api import InvalidArgument, UpdateSettings, check_settings_here
from app.node.files_errors import IpfsRejected
from app.node.ipfs import IpfsBackend
from app.node.service import NodeService


@pytest.fixture
def web_server() -> Iterator[int]:
    """Python's own HTTP server on loopback (it answers POST with 501): its port."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.asyncio
async def test_an_address_where_no_daemon_answers_is_refused(node: NodeService) -> None:
    address = f"/ip4/127.0.0.1/tcp/{closed_port()}/http"
    with pytest.raises(InvalidArgument, match="no IPFS daemon answers there"):
        await node.update_settings(UpdateSettings(ipfs_api=address))
    assert (await node.get_settings()).ipfs_api == ""
    # the window asks the same before saving, to say it under the field
    [(name, sentence)] = check_settings_here(UpdateSettings(ipfs_api=address)).items()
    assert name == "ipfs_api" and address in sentence


@pytest.mark.asyncio
async def test_a_web_server_that_is_not_ipfs_is_refused(node: NodeService, web_server: int) -> None:
    address = f"/ip4/127.0.0.1/tcp/{web_server}/http"
    with pytest.raises(InvalidArgument, match="what answers there is not an IPFS daemon's API"):
        await node.update_settings(UpdateSettings(ipfs_api=address))
    assert (await node.get_settings()).ipfs_api == ""


def test_a_share_to_a_web_server_says_it_is_no_ipfs_daemon(web_server: int) -> None:
    """Set while a daemon ran there and another server took the port since: the share's
    error said "refused the request: HTTPError: 501 Server Error: Unsupported method
    ('POST') for url: http+ip4://..."."""
    backend = IpfsBackend(f"/ip4/127.0.0.1/tcp/{web_server}/http")
    try:
        with pytest.raises(IpfsRejected) as exc:
            backend.pin_add_sync(b"\x01\x55\x12\x20" + bytes(32))
    finally:
        backend.close()
    assert str(exc.value) == (
        f"what answers at /ip4/127.0.0.1/tcp/{web_server}/http is not an IPFS daemon's API "
        "(HTTP 501)"
    )


@pytest.mark.asyncio
async def test_clearing_the_address_needs_no_daemon(node: NodeService) -> None:
    await node.keep_settings(ipfs_api=f"/ip4/127.0.0.1/tcp/{closed_port()}/http")
    assert (await node.update_settings(UpdateSettings(ipfs_api=""))).ipfs_api == ""
