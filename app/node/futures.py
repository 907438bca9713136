"""Small helpers for asyncio futures the node starts and does not await."""

from __future__ import annotations

import asyncio
from typing import Any


def retrieve(future: asyncio.Future[Any]) -> None:
    """Done-callback marking a future's exception as seen: its failure is expected and
    handled elsewhere (a send whose awaiter was cancelled, a PING nobody waits for, an
    aborted bulk stream), so asyncio must not log it as never retrieved."""
    if not future.cancelled():
        future.exception()


async def cancel_and_wait(task: asyncio.Future[Any] | None) -> None:
    """Cancel a background task (None: none runs) and wait until it has ended, whatever
    it ended with: a component's `stop`."""
    if task is None:
        return
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
