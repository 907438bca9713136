"""Each peer's session messages, handled in arrival order by a task of their own.

A connection's reader hands every payload on and reads the next one once it returns.
Handling a session message can take a while (decrypting, waiting for the contact's
lock, a `synchronous=FULL` commit, an answer that waits for a shaped slot), and the
block exchange's WANTs and BLOCKs (`app.node.block_exchange`) read behind it waited as
long: a folder of 600 small files between two shaped nodes spent most of each block's
round trip there (a request 2.3 s on average, of which 2.3 s before the sender even read
it). `PeerInboxes.put` queues the message and returns at once, so the reader goes on
to the next payload; the messages of one peer are still handled one at a time, in the
order they arrived (a handler may take the messages queued behind the one it handles,
`take_waiting`, and handle them with it: one transaction for a burst). A peer whose
queue is full (`MAX_WAITING` messages or
`MAX_WAITING_BYTES`) makes its reader wait for room, as every message did before.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)

MAX_WAITING = 64
"""Session messages of one peer queued, not yet handled, before its reader waits."""
MAX_WAITING_BYTES = 4 * 1024 * 1024
"""Their bytes (one message is always admitted, however large: at most 1 MiB)."""


class _Inbox:
    def __init__(self) -> None:
        self.items: deque[bytes] = deque()
        self.size = 0
        self.waiters = 0
        self.room = asyncio.Event()
        self.task: asyncio.Task[None] | None = None


class PeerInboxes:
    """One ordered queue and handler task per peer (see the module docstring)."""

    def __init__(
        self,
        handle: Callable[[str, bytes], Awaitable[object]],
        *,
        max_waiting: int = MAX_WAITING,
        max_bytes: int = MAX_WAITING_BYTES,
    ) -> None:
        self._handle = handle
        self._max_waiting = max_waiting
        self._max_bytes = max_bytes
        self._boxes: dict[str, _Inbox] = {}
        self._closed = False

    def waiting(self, address: str) -> int:
        """Messages of `address` queued and not yet handled."""
        box = self._boxes.get(address)
        return len(box.items) if box is not None else 0

    def take_waiting(self, address: str) -> list[bytes]:
        """Every message of `address` queued behind the one being handled, in order,
        for a handler that handles them together (what it can't, it gives back with
        `give_back`)."""
        box = self._boxes.get(address)
        if box is None or not box.items:
            return []
        taken = list(box.items)
        box.items.clear()
        box.size = 0
        box.room.set()
        return taken

    def give_back(self, address: str, payloads: list[bytes]) -> None:
        """Put messages from `take_waiting` back at the head of the queue, in order (they
        are handled next, one at a time). Call from the handler (its task drains them)."""
        box = self._boxes.get(address)
        if box is None or self._closed or not payloads:
            return
        box.items.extendleft(reversed(payloads))
        box.size += sum(len(p) for p in payloads)

    async def put(self, address: str, payload: bytes) -> None:
        """Queue `payload` for handling after the peer's earlier messages; return at
        once, or once there is room in the peer's queue (dropped once closed)."""
        if self._closed:
            return
        box = self._boxes.get(address)
        if box is None:
            box = self._boxes[address] = _Inbox()
        while box.items and (
            len(box.items) >= self._max_waiting or box.size + len(payload) > self._max_bytes
        ):
            box.room.clear()
            box.waiters += 1
            try:
                await box.room.wait()
            finally:
                box.waiters -= 1
            if self._closed:
                return
        box.items.append(payload)
        box.size += len(payload)
        if box.task is None:
            box.task = asyncio.ensure_future(self._drain(address, box))

    async def _drain(self, address: str, box: _Inbox) -> None:
        try:
            while box.items:
                payload = box.items.popleft()
                box.size -= len(payload)
                box.room.set()
                try:
                    await self._handle(address, payload)
                except Exception:  # the node's bug must not stop this peer's messages
                    log.exception("message handler failed")
        finally:
            box.task = None
            if not box.items and not box.waiters and self._boxes.get(address) is box:
                del self._boxes[address]

    async def close(self) -> None:
        """Stop handling: messages still queued are dropped (as unread ones were before:
        the sender's outbox keeps what was not acknowledged)."""
        self._closed = True
        tasks = [box.task for box in self._boxes.values() if box.task is not None]
        for box in self._boxes.values():
            box.items.clear()
            box.size = 0
            box.room.set()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._boxes.clear()
