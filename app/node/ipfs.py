"""Backend for an IPFS daemon the user configured (Kubo or js-ipfs HTTP RPC API).

When the user sets an IPFS API address, the blocks of every shared file are also put
on that daemon (and the file's root pinned), and receivers may fetch blocks from it.
Only blocks from the blockstore are ever sent, and those are ciphertext.

`ipfshttpclient.Client(addr)` is built directly: `ipfshttpclient.connect()` refuses
daemon versions it does not know (js-ipfs, recent Kubo). Each block put asks for a
CIDv1 with the block's own codec (raw for leaves, dag-pb for tree nodes) and sha2-256,
and the CID the daemon answers must equal ours; every block fetched is re-hashed.
All calls are blocking HTTP, so the coroutine methods run them in a worker thread.
`ipfshttpclient` (and `requests` under it, ~15 MB) is imported only when a backend is
made, i.e. only on nodes where the user set an IPFS API address.
"""

from __future__ import annotations

import asyncio
import io
import warnings
from collections.abc import Callable
from types import ModuleType
from typing import Any

from app.core.unixfs import CODEC_RAW, InvalidBlock, block_matches, cid_codec, cid_to_str
from app.node.files_errors import BlockNotFound, IpfsRejected, IpfsUnavailable

DEFAULT_TIMEOUT = 30.0
PROBE_TIMEOUT = 5.0
"""Seconds the check of a newly set address waits for the daemon's answer."""
CONNECT_TIMEOUT = 5.0
"""Seconds any call waits for the daemon to take the connection: a daemon behind a
firewall that drops packets held each block request for the whole `DEFAULT_TIMEOUT`
(a worker thread each), and read as a daemon searching for a block it lacks."""
ClientFactory = Callable[[str, float], Any]


def _default_client(api_addr: str, timeout: float) -> Any:
    import ipfshttpclient

    # ipfshttpclient 0.8 passes urllib3 a `strict=True` it no longer needs, and urllib3
    # printed a FutureWarning about it on the first request, on the daemon's terminal
    # and on the CLI's (`settings --ipfs-api`, `share` run without a node)
    warnings.filterwarnings(
        "ignore", message="The 'strict' parameter is no longer needed", category=FutureWarning
    )

    # (connect, read): see CONNECT_TIMEOUT
    return ipfshttpclient.Client(api_addr, timeout=(min(CONNECT_TIMEOUT, timeout), timeout))


def _client_errors() -> ModuleType:
    import ipfshttpclient.exceptions

    errors: ModuleType = ipfshttpclient.exceptions
    return errors


def api_address_problem(api_addr: str) -> str | None:
    """Why `api_addr` can't be an IPFS API address, or None: the rules `ipfshttpclient`
    applies when a backend is made (a multiaddr such as /ip4/127.0.0.1/tcp/5001/http,
    /dns/HOST/tcp/PORT/https or /unix/PATH), checked without connecting."""
    from ipfshttpclient.http_common import multiaddr_to_url_data

    try:
        multiaddr_to_url_data(api_addr, "/api/v0/")
    except _client_errors().AddressError:
        return (
            f"{api_addr!r} is not an IPFS API address: give a multiaddr such as "
            "/ip4/127.0.0.1/tcp/5001/http."
        )
    return None


def _connect_timeout(exc: Exception) -> bool:
    """Whether `exc` (a client timeout) came before the daemon took the connection."""
    from requests.exceptions import ConnectTimeout

    return isinstance(getattr(exc, "original", None), ConnectTimeout)


def _short(exc: Exception) -> str:
    """The gist of an HTTP failure ("HTTP 501"), not the whole request URL."""
    response = getattr(getattr(exc, "original", None), "response", None)
    status = getattr(response, "status_code", None)
    return f"HTTP {status}" if isinstance(status, int) else type(exc).__name__


class IpfsBackend:
    """Put, get and pin encrypted blocks on a user-configured IPFS daemon.

    `problem` says why the daemon can't be used now ("" while it answers, or before it
    was asked): set by every call that finds nothing answering, cleared by every call
    the daemon answers (refusals included). Calls run in worker threads; the attribute
    is one reference, read by the event loop (`app.node.ipfs_watch`)."""

    def __init__(
        self,
        api_addr: str,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        client_factory: ClientFactory = _default_client,
    ) -> None:
        self.api_addr = api_addr
        self.problem = ""
        self._errors = ipfs_exc = _client_errors()
        try:
            self._client = client_factory(api_addr, timeout)
        except ipfs_exc.AddressError as exc:
            raise IpfsUnavailable(f"the IPFS API address {api_addr!r} is not valid") from exc

    # ----------------------------------------------------------------- sync API

    def block_put_sync(self, cid: bytes, data: bytes) -> None:
        """Store one block on the daemon; its answer must name the same CID."""
        if not block_matches(cid, data):
            raise IpfsRejected("refusing to upload a block that does not match its CID")
        codec = "raw" if cid_codec(cid) == CODEC_RAW else "dag-pb"
        opts = {
            # "format" for js-ipfs and older Kubo, "cid-codec" for current Kubo.
            "format": codec,
            "cid-codec": codec,
            "mhtype": "sha2-256",
            "version": "1",
            "cid-base": "base32",
        }
        answer = self._call(lambda: self._client.block.put(io.BytesIO(data), opts=opts))
        key = answer.get("Key") if hasattr(answer, "get") else None
        if key != cid_to_str(cid):
            raise IpfsRejected("the IPFS daemon stored the block under an unexpected CID")

    def block_get_sync(self, cid: bytes) -> bytes:
        """Fetch one block from the daemon, verified against its CID."""
        text = cid_to_str(cid)
        try:
            # A daemon that lacks the block searches for it until the timeout: that, or a
            # refusal, means "not available from there", not "daemon down".
            data = self._call(lambda: self._client.block.get(text), timeout_is_down=False)
        except IpfsRejected as exc:
            raise BlockNotFound(f"the IPFS daemon does not have block {text}") from exc
        if not isinstance(data, bytes) or not block_matches(cid, data):
            raise IpfsRejected("the IPFS daemon returned a block that does not match its CID")
        return data

    def pin_add_sync(self, cid: bytes) -> None:
        """Pin the DAG rooted at `cid` on the daemon (every block must be there)."""
        self._call(lambda: self._client.pin.add(cid_to_str(cid), recursive=True))

    def version_sync(self) -> str:
        """The daemon's version: a call every IPFS daemon answers, to tell that the
        address is one (`IpfsUnavailable` if nothing answers, `IpfsRejected` if what
        answers is no IPFS API)."""
        answer = self._call(self._client.version)
        version = answer.get("Version") if hasattr(answer, "get") else None
        if not isinstance(version, str) or not version:
            raise IpfsRejected(self._not_ipfs)
        return version

    @property
    def _not_ipfs(self) -> str:
        return f"what answers at {self.api_addr} is not an IPFS daemon's API"

    def close(self) -> None:
        """Release the HTTP client."""
        close = getattr(self._client, "close", None)
        if callable(close):
            close()

    def _call(self, request: Callable[[], Any], *, timeout_is_down: bool = True) -> Any:
        try:
            answer = self._answer(request, timeout_is_down)
        except IpfsUnavailable as exc:
            self.problem = str(exc)
            raise
        except IpfsRejected:
            self.problem = ""  # it answered
            raise
        self.problem = ""
        return answer

    def _answer(self, request: Callable[[], Any], timeout_is_down: bool) -> Any:
        ipfs_exc = self._errors
        try:
            return request()
        except ipfs_exc.TimeoutError as exc:
            if not timeout_is_down and not _connect_timeout(exc):
                raise IpfsRejected("the IPFS daemon did not answer in time") from exc
            raise IpfsUnavailable(
                f"the IPFS daemon at {self.api_addr} did not answer in time"
            ) from exc
        except ipfs_exc.ConnectionError as exc:
            raise IpfsUnavailable(
                f"the IPFS daemon at {self.api_addr} cannot be reached; is it running?"
            ) from exc
        except ipfs_exc.ErrorResponse as exc:  # the daemon's own error message
            raise IpfsRejected(f"the IPFS daemon refused the request: {exc}") from exc
        except (ipfs_exc.StatusError, ipfs_exc.ProtocolError, ipfs_exc.DecodingError) as exc:
            # an HTTP error without an IPFS error body, or an answer that is no JSON: a
            # web server that is not the daemon ("501 Unsupported method ('POST')")
            raise IpfsRejected(f"{self._not_ipfs} ({_short(exc)})") from exc
        except ipfs_exc.Error as exc:
            raise IpfsRejected(f"the IPFS daemon refused the request: {exc}") from exc
        except InvalidBlock as exc:
            raise IpfsRejected(str(exc)) from exc

    # ----------------------------------------------------------------- async API

    async def block_put(self, cid: bytes, data: bytes) -> None:
        """`block_put_sync` in a worker thread."""
        await asyncio.to_thread(self.block_put_sync, cid, data)

    async def block_get(self, cid: bytes) -> bytes:
        """`block_get_sync` in a worker thread."""
        return await asyncio.to_thread(self.block_get_sync, cid)

    async def pin_add(self, cid: bytes) -> None:
        """`pin_add_sync` in a worker thread."""
        await asyncio.to_thread(self.pin_add_sync, cid)

    async def version(self) -> str:
        """`version_sync` in a worker thread (`problem` tells the outcome too)."""
        return await asyncio.to_thread(self.version_sync)

    async def get_block(self, cid: bytes) -> bytes | None:
        """Serve as a block source for a transfer: the block, or None if absent."""
        try:
            return await self.block_get(cid)
        except BlockNotFound:
            return None
