"""Fan-out of node events to any number of subscribers (GUI bridge, control clients)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from app.node.api import NodeEvent, NodeStopping

STUCK_BACKLOG = 1000
"""A subscriber with this many events waiting ..."""
STUCK_SECONDS = 30.0
"""... that has taken none for this long is stuck: it is cut off."""
MAX_BACKLOG = 50_000
"""A subscriber this far behind is cut off at once (the node's memory is bounded). A
burst of events, e.g. a long history synced at once, can put thousands in a queue before
the subscriber's next turn: a backlog alone (it was 1,000) cut the window's own event
stream off while it was keeping up."""


@dataclass(eq=False)
class _Subscriber:
    queue: asyncio.Queue[NodeEvent]
    moved: float
    """Clock time when the subscriber last took an event or its queue was empty."""


class EventBus:
    """Each subscriber gets its own queue; a subscriber that stops taking events is cut
    off (it gets `NodeStopping("overflow")`) instead of stalling the node or filling its
    memory."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._subscribers: set[_Subscriber] = set()

    def publish(self, event: NodeEvent) -> None:
        now = self._clock()
        for subscriber in list(self._subscribers):
            queue = subscriber.queue
            behind = queue.qsize()
            if behind == 0:
                subscriber.moved = now  # idle, not stuck
            stuck = behind >= STUCK_BACKLOG and now - subscriber.moved >= STUCK_SECONDS
            if stuck or queue.full():
                self._subscribers.discard(subscriber)
                if queue.full():
                    queue.get_nowait()  # room for the last word
                queue.put_nowait(NodeStopping("overflow"))
            else:
                queue.put_nowait(event)

    async def subscribe(self) -> AsyncIterator[NodeEvent]:
        subscriber = _Subscriber(asyncio.Queue(MAX_BACKLOG), self._clock())
        self._subscribers.add(subscriber)
        try:
            while True:
                event = await subscriber.queue.get()
                subscriber.moved = self._clock()
                yield event
                if isinstance(event, NodeStopping):
                    return
        finally:
            self._subscribers.discard(subscriber)

    def close(self, reason: str = "stopped") -> None:
        self.publish(NodeStopping(reason))
