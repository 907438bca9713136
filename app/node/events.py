"""Fan-out of node events to any number of subscribers (GUI bridge, control clients)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from app.node.api import NodeEvent, NodeStopping

MAX_BACKLOG = 1000


class EventBus:
    """Each subscriber gets its own bounded queue; a subscriber too slow to keep up
    is cut off (it gets `NodeStopping("overflow")`) instead of stalling the node."""

    def __init__(self) -> None:
        self._queues: set[asyncio.Queue[NodeEvent]] = set()

    def publish(self, event: NodeEvent) -> None:
        for queue in list(self._queues):
            if queue.full():
                self._queues.discard(queue)
                queue.get_nowait()
                queue.put_nowait(NodeStopping("overflow"))
            else:
                queue.put_nowait(event)

    async def subscribe(self) -> AsyncIterator[NodeEvent]:
        queue: asyncio.Queue[NodeEvent] = asyncio.Queue(MAX_BACKLOG)
        self._queues.add(queue)
        try:
            while True:
                event = await queue.get()
                yield event
                if isinstance(event, NodeStopping):
                    return
        finally:
            self._queues.discard(queue)

    def close(self, reason: str = "stopped") -> None:
        self.publish(NodeStopping(reason))
