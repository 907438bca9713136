"""The asker's side of the bulk stream (`app.core.bulk`; docs/protocol.md section 10.5).

`BulkStream.run` (blocking: call it in a worker thread) connects to the sender's bulk
port, names its ticket, and asks for what a `BulkSink` wants, keeping up to `WINDOW`
blocks asked and not yet answered. Answers come back in the order asked. DAG nodes are
handed to the sink in this thread (they name more blocks to ask for); leaves go to
`CHECKERS` threads that verify, decrypt and write them, so hashing uses every core
while this thread reads the socket. A block the sender does not hold stays wanted (the
want-list asks elsewhere afterwards); a block that does not match its CID ends the
stream and marks the sender as serving tampered blocks.

`abort()` (from any thread) ends a running stream at once; `run` returns only after every
block it handed out has been written or dropped.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol

from app.core.bulk import (
    HEADER_SIZE,
    MAX_RECORD,
    MAX_WANTS,
    RecordOpener,
    RecordSealer,
    decode_answer,
    encode_indices,
    encode_wants,
    stream_keys,
    ticket_id,
)
from app.core.unixfs import CODEC_RAW, cid_codec
from app.node.bulk_server import recv_exact, recv_into

WINDOW = 64
"""Blocks asked for and not yet answered (16 MiB of leaves at most, in socket buffers)."""
CHECKERS = 2
MAX_CHECKING = 8
"""Leaves received and not yet verified and written (bounds memory: 2 MiB)."""
CONNECT_TIMEOUT = 5.0
READ_TIMEOUT = 30.0


@dataclass(frozen=True)
class BulkTicket:
    """Where and how to open one bulk stream (given by the sender for one file)."""

    host: str
    port: int
    secret: bytes
    by_index: bool = False
    """A stream by chunk index (a file offered before its root was known)."""


@dataclass(frozen=True)
class BulkOutcome:
    """How a stream ended."""

    leaves: int
    """Leaves verified and written."""
    tampered: bool
    """The sender served a block that does not match its CID."""


class BulkSink(Protocol):
    """Where a stream's blocks go: the receiver's fetch plan."""

    def take_fresh(self) -> list[bytes]:
        """CIDs newly wanted since the last call, in order."""
        ...

    def accept_sync(self, cid: bytes, data: bytes | memoryview) -> bool:
        """Verify and use a block (any thread); False if it does not match its CID."""
        ...


class IndexSink(Protocol):
    """Where a stream by chunk index puts its leaves (`app.node.early_fetch`)."""

    def take_fresh(self) -> list[int]:
        """Chunk indices newly wanted since the last call, in order."""
        ...

    def accept_sync(self, index: int, data: bytes | memoryview) -> bool:
        """Check and use a leaf (any thread); False if it does not authenticate."""
        ...


class BulkStream:
    """One bulk stream from a sender into a sink (see the module docstring)."""

    def __init__(self, ticket: BulkTicket) -> None:
        self._ticket = ticket
        self._sock: socket.socket | None = None
        self._aborted = threading.Event()
        self._lock = threading.Lock()

    def abort(self) -> None:
        """End the stream now (any thread)."""
        self._aborted.set()
        with self._lock:
            if self._sock is not None:
                with contextlib.suppress(OSError):
                    self._sock.shutdown(socket.SHUT_RDWR)

    def run(self, sink: BulkSink | IndexSink) -> BulkOutcome:
        """Fetch what `sink` wants until it wants nothing more (blocking).

        Raises `OSError` if the stream fails (unreachable, reset, timed out),
        `CoreError` if the sender breaks the record protocol, and whatever the sink
        raises for a block it cannot take (e.g. disk full)."""
        sock = socket.create_connection(
            (self._ticket.host, self._ticket.port), timeout=CONNECT_TIMEOUT
        )
        with self._lock:
            self._sock = sock
        if self._aborted.is_set():
            sock.close()
            raise ConnectionAbortedError("the bulk stream was aborted")
        checkers = ThreadPoolExecutor(CHECKERS, thread_name_prefix="bulk-check")
        checking: deque[Future[bool]] = deque()
        leaves = 0
        tampered = False
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.settimeout(READ_TIMEOUT)
            sock.sendall(ticket_id(self._ticket.secret))
            asked_key, answer_key = stream_keys(self._ticket.secret)
            sealer, opener = RecordSealer(asked_key), RecordOpener(answer_key)
            by_index = self._ticket.by_index
            to_ask: deque[Any] = deque()
            asked: deque[Any] = deque()
            body = memoryview(bytearray(MAX_RECORD))  # one receive buffer, reused
            while not tampered:
                to_ask.extend(sink.take_fresh())
                if to_ask and len(asked) <= WINDOW // 2:
                    count = min(len(to_ask), WINDOW - len(asked), MAX_WANTS)
                    batch = [to_ask.popleft() for _ in range(count)]
                    asking = encode_indices(batch) if by_index else encode_wants(batch)
                    sock.sendall(sealer.seal(asking))
                    asked.extend(batch)
                if not asked:
                    break  # nothing more wanted (leaves being checked name no blocks)
                header = recv_exact(sock, HEADER_SIZE)
                record = body[: opener.length(header)]
                recv_into(sock, record)
                data = decode_answer(opener.open(header, record))
                cid = asked.popleft()
                if data is None:
                    continue  # stays wanted: the want-list asks elsewhere
                if not by_index and cid_codec(cid) != CODEC_RAW:
                    tampered = not sink.accept_sync(cid, bytes(data))
                    continue
                checking.append(checkers.submit(sink.accept_sync, cid, data))
                matched, mismatched = _settle(checking, MAX_CHECKING)
                leaves, tampered = leaves + matched, tampered or mismatched
            matched, mismatched = _settle(checking, 0)
            leaves, tampered = leaves + matched, tampered or mismatched
            if self._aborted.is_set():
                raise ConnectionAbortedError("the bulk stream was aborted")
            return BulkOutcome(leaves, tampered)
        finally:
            with self._lock:
                self._sock = None
            sock.close()
            for pending in checking:
                pending.cancel()
            checkers.shutdown(wait=True)


def _settle(checking: deque[Future[bool]], keep: int) -> tuple[int, bool]:
    """Collect the checks that are done, oldest first, and wait for the oldest while
    more than `keep` are pending: (leaves that matched, whether one did not). Raises
    what a check raised."""
    matched, mismatched = 0, False
    while checking and (checking[0].done() or len(checking) > keep):
        if checking.popleft().result():
            matched += 1
        else:
            mismatched = True
    return matched, mismatched
