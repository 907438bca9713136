"""The sender's side of the bulk stream (`app.core.bulk`; docs/protocol.md section 10.5).

`BulkServer` listens on a TCP port of its own beside the WebSocket listener. The event
loop issues tickets (`issue`) to contacts the serving policy allowed, for one file each;
everything after that runs in threads, so a large file's blocks never touch the event
loop: an accept thread, and one thread per stream that reads the asker's records,
`pread`s the blocks (`Blockstore.serve_sync`) and writes the answers.

Limits against strangers on the port: a connection must name a live ticket within
`HELLO_TIMEOUT` seconds, and at most `MAX_HELLOS_PER_HOST` connections of one address
(`MAX_HELLOS` in all) may be waiting to do so, so silent connections from one host
cannot keep a contact on another host out; a ticket is used once and expires after
`TICKET_TTL` seconds; at most `MAX_STREAMS` streams run at once (a connection over the
limit is closed before its ticket is used); a stream silent for `IDLE_TIMEOUT` seconds is
closed, and only blocks of the ticket's file are served. Cancelling the file's transfer
closes its streams (`revoke`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from app.core.bulk import (
    BLOCK,
    HEADER_SIZE,
    NOT_HELD,
    SECRET_SIZE,
    TICKET_ID_SIZE,
    RecordOpener,
    RecordSealer,
    decode_indices,
    decode_wants,
    stream_keys,
    ticket_id,
)
from app.core.errors import CoreError
from app.node.blockstore import Blockstore
from app.node.files_errors import FilesError

log = logging.getLogger(__name__)
_Key = TypeVar("_Key")

TICKET_TTL = 30.0
HELLO_TIMEOUT = 5.0
IDLE_TIMEOUT = 60.0
MAX_STREAMS = 4
MAX_HELLOS = 64
MAX_HELLOS_PER_HOST = 4
MAX_TICKETS = 64
SERVED_BATCH = 16
"""Blocks served between two progress reports to the event loop..."""
REPORT_EVERY = 0.25
"""...or fewer, once this many seconds passed since the last report: on a slow link
(a block every few seconds) 16 blocks took a minute, and the sender showed nothing
moving, then bursts far above the link's rate."""

Served = Callable[[str, bytes, bytes, int], None]
"""`ServePolicy.served(address, root, cid, size)`, called on the event loop."""


LeafByIndex = Callable[[int], bytes | None]
"""A file's leaf by chunk index (a bulk stream's thread; may wait for it), or None."""
ServedIndex = Callable[[list[int]], None]
"""`(indices)`: leaves served by index, called on the event loop once per batch."""


@dataclass(frozen=True)
class _Ticket:
    address: str
    root: bytes
    """The file's root CID, or for a stream by index the key it was issued under."""
    secret: bytes
    expires: float
    by_index: tuple[LeafByIndex, ServedIndex] | None = None
    """Set for a stream by chunk index (docs/protocol.md section 10.6)."""


class BulkServer:
    """Serves bulk streams (see the module docstring)."""

    def __init__(
        self,
        blockstore: Blockstore,
        served: Served,
        *,
        monotonic: Callable[[], float] = time.monotonic,
        random_bytes: Callable[[int], bytes] = os.urandom,
    ) -> None:
        self._store = blockstore
        self._served = served
        self._monotonic = monotonic
        self._random = random_bytes
        self._lock = threading.Lock()
        self._tickets: dict[bytes, _Ticket] = {}
        self._streams: dict[socket.socket, bytes] = {}
        """Open connections and the root each serves (empty until its ticket is used)."""
        self._hellos: dict[str, int] = {}
        """Connections per remote host that have not named a ticket yet."""
        self._listening: socket.socket | None = None
        self._threads: set[threading.Thread] = set()
        self._stopping = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self.port = 0

    async def start(self, host: str) -> int:
        """Listen on `host` (a port the system picks); return the port."""
        self._loop = asyncio.get_running_loop()
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        listening = socket.socket(family, socket.SOCK_STREAM)
        try:
            listening.bind((host, 0))
            listening.listen(MAX_HELLOS)  # blocking: `stop` wakes the accept thread
        except OSError:
            listening.close()
            raise
        self._listening = listening
        self.port = int(listening.getsockname()[1])
        self._spawn(self._accept_loop, "bulk-accept")
        return self.port

    async def stop(self) -> None:
        """Close the port and every stream; wait for the threads."""
        self._stopping.set()
        if self._listening is not None:
            await asyncio.to_thread(_wake_accept, self._listening)
        with self._lock:
            streams = list(self._streams)
        for conn in streams:
            _shut(conn)
        threads = list(self._threads)
        await asyncio.to_thread(_join_all, threads)
        if self._listening is not None:
            self._listening.close()

    def issue(
        self,
        address: str,
        root: bytes,
        by_index: tuple[LeafByIndex, ServedIndex] | None = None,
    ) -> bytes | None:
        """A ticket's secret for `address` to fetch the file rooted at `root` (event
        loop), or None while too many tickets are outstanding. With `by_index` (the
        leaves by chunk index, and what to tell of each served) the stream asks by
        index, and `root` is the key `revoke` ends it with."""
        now = self._monotonic()
        with self._lock:
            for key in [k for k, t in self._tickets.items() if t.expires <= now]:
                del self._tickets[key]
            if len(self._tickets) >= MAX_TICKETS or self._listening is None:
                return None
            secret = self._random(SECRET_SIZE)
            self._tickets[ticket_id(secret)] = _Ticket(
                address, root, secret, now + TICKET_TTL, by_index
            )
        return secret

    def revoke(self, root: bytes) -> None:
        """The file rooted at `root` may no longer be served: close its streams, drop
        its tickets."""
        with self._lock:
            for key in [k for k, t in self._tickets.items() if t.root == root]:
                del self._tickets[key]
            streams = [conn for conn, served in self._streams.items() if served == root]
        for conn in streams:
            _shut(conn)

    # ------------------------------------------------------------------ threads

    def _spawn(self, target: Callable[..., None], name: str, *args: object) -> None:
        thread = threading.Thread(target=self._run, args=(target, *args), name=name, daemon=True)
        self._threads.add(thread)
        thread.start()

    def _run(self, target: Callable[..., None], *args: object) -> None:
        try:
            target(*args)
        except Exception:  # our bug must be seen, and must not take the node down
            log.exception("a bulk stream thread failed")
        finally:
            self._threads.discard(threading.current_thread())

    def _accept_loop(self) -> None:
        assert self._listening is not None
        while not self._stopping.is_set():
            try:
                conn, remote = self._listening.accept()
            except OSError:
                if self._stopping.is_set():
                    return
                time.sleep(0.1)  # e.g. out of file descriptors: do not spin
                continue
            if self._stopping.is_set():  # the connection `stop` made to wake us
                conn.close()
                return
            host = str(remote[0])
            with self._lock:
                waiting = self._hellos.get(host, 0)
                busy = waiting >= MAX_HELLOS_PER_HOST or sum(self._hellos.values()) >= MAX_HELLOS
                if not busy:
                    self._hellos[host] = waiting + 1
                    self._streams[conn] = b""
            if busy:
                conn.close()
                continue
            self._spawn(self._serve, "bulk-stream", conn, host)

    def _serve(self, conn: socket.socket, host: str) -> None:
        try:
            try:
                conn.settimeout(HELLO_TIMEOUT)
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                key = bytes(recv_exact(conn, TICKET_ID_SIZE))
            finally:
                self._hello_done(host)
            ticket = self._redeem(conn, key)
            if ticket is None:
                return
            conn.settimeout(IDLE_TIMEOUT)
            self._stream(conn, ticket)
        except (OSError, CoreError) as exc:
            log.info("bulk stream ended: %s", exc or type(exc).__name__)
        finally:
            with self._lock:
                self._streams.pop(conn, None)
            conn.close()

    def _hello_done(self, host: str) -> None:
        with self._lock:
            left = self._hellos.get(host, 1) - 1
            if left:
                self._hellos[host] = left
            else:
                self._hellos.pop(host, None)

    def _redeem(self, conn: socket.socket, key: bytes) -> _Ticket | None:
        """The ticket named `key` for this connection, used up; None (and the ticket
        kept) while `MAX_STREAMS` streams run, or if revoked or stopping meanwhile."""
        with self._lock:
            running = sum(1 for root in self._streams.values() if root)
            if running >= MAX_STREAMS or conn not in self._streams:
                log.info("bulk stream refused: %d streams run", running)
                return None
            ticket = self._tickets.pop(key, None)
            if ticket is None or ticket.expires <= self._monotonic():
                log.info("bulk stream refused: unknown or expired ticket")
                return None
            self._streams[conn] = ticket.root
        return ticket

    def _stream(self, conn: socket.socket, ticket: _Ticket) -> None:
        asked_key, answer_key = stream_keys(ticket.secret)
        opener, sealer = RecordOpener(asked_key), RecordSealer(answer_key)
        if ticket.by_index is not None:  # leaves by chunk index, each once written (10.6)
            leaf, told = ticket.by_index
            self._answer(
                conn,
                opener,
                sealer,
                decode_indices,
                leaf,
                lambda served: self._report_indices(told, served),
            )
            return
        members = self._store.dag_sync(ticket.root)
        self._answer(
            conn,
            opener,
            sealer,
            decode_wants,
            lambda cid: self._block(cid, members),
            lambda served: self._report(ticket, served),
        )

    def _answer(
        self,
        conn: socket.socket,
        opener: RecordOpener,
        sealer: RecordSealer,
        decode: Callable[[bytes], list[_Key]],
        lookup: Callable[[_Key], bytes | None],
        report: Callable[[list[tuple[_Key, int]]], None],
    ) -> None:
        """Answer the asker's records until it is done: each key `decode` finds (CIDs,
        or chunk indices) with its block (`lookup`) or NOT_HELD; what was served is
        `report`ed in batches."""
        served: list[tuple[_Key, int]] = []
        reported = self._monotonic()
        try:
            while not self._stopping.is_set():
                header = recv_exact(conn, HEADER_SIZE, eof_ok=True)
                if not header:
                    return  # the asker is done
                body = recv_exact(conn, opener.length(header))
                for key in decode(opener.open(header, body)):
                    data = lookup(key)
                    if data is None:
                        conn.sendall(sealer.seal(bytes([NOT_HELD])))
                        continue
                    conn.sendall(sealer.seal(bytes([BLOCK]) + data))
                    served.append((key, len(data)))
                    now = self._monotonic()
                    if len(served) >= SERVED_BATCH or now - reported >= REPORT_EVERY:
                        report(served)
                        served, reported = [], now
        finally:
            report(served)

    def _report_indices(self, report: ServedIndex, served: list[tuple[int, int]]) -> None:
        if not served or self._loop is None:
            return

        def told() -> None:
            report([index for index, _ in served])

        with contextlib.suppress(RuntimeError):  # the loop is closed: the node is gone
            self._loop.call_soon_threadsafe(told)

    def _block(self, cid: bytes, members: frozenset[bytes]) -> bytes | None:
        if cid not in members:
            return None
        try:
            return self._store.serve_sync(cid)
        except FilesError:  # not held, damaged (and dropped), unreadable
            return None

    def _report(self, ticket: _Ticket, served: list[tuple[bytes, int]]) -> None:
        if not served or self._loop is None:
            return

        def report() -> None:
            for cid, size in served:
                self._served(ticket.address, ticket.root, cid, size)

        with contextlib.suppress(RuntimeError):  # the loop is closed: the node is gone
            self._loop.call_soon_threadsafe(report)


def recv_exact(conn: socket.socket, size: int, *, eof_ok: bool = False) -> bytearray:
    """Exactly `size` bytes from `conn`; an empty buffer at a clean end of stream if
    `eof_ok`, else `ConnectionError` when the stream ends early."""
    buffer = bytearray(size)
    return buffer if recv_into(conn, memoryview(buffer), eof_ok=eof_ok) else bytearray()


def recv_into(conn: socket.socket, view: memoryview, *, eof_ok: bool = False) -> bool:
    """Fill `view` from `conn`; False at a clean end of stream if `eof_ok`, else
    `ConnectionError` when the stream ends early."""
    got, size = 0, len(view)
    while got < size:
        n = conn.recv_into(view[got:])
        if n == 0:
            if eof_ok and got == 0:
                return False
            raise ConnectionError("the bulk stream ended in the middle of a record")
        got += n
    return True


def _wake_accept(listening: socket.socket) -> None:
    """End a blocked `accept` on `listening` (the accept thread then sees it is
    stopping): shutting it down does on Linux; a connection to it does everywhere.
    Polling with a timeout woke that thread twice a second for the node's lifetime."""
    with contextlib.suppress(OSError):
        listening.shutdown(socket.SHUT_RDWR)
    host, port = listening.getsockname()[:2]
    host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=1.0):
        pass


def _shut(conn: socket.socket) -> None:
    with contextlib.suppress(OSError):
        conn.shutdown(socket.SHUT_RDWR)


def _join_all(threads: list[threading.Thread]) -> None:
    for thread in threads:
        if thread.ident is not None:  # not one being spawned this instant (it sees the stop)
            thread.join(timeout=5.0)
