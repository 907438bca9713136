"""Group commit: concurrent writers share one transaction (one fsync) instead of queueing
one transaction each behind the store thread.

A writer's `add` returns only once its item is committed, so "stored before we answer"
still holds for each caller; items are committed in the order they were added.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class GroupCommit(Generic[T]):
    """Batches `add` calls made while a commit is running into the next commit."""

    def __init__(self, commit: Callable[[list[T]], Awaitable[object]]) -> None:
        """`commit` stores a whole batch in one transaction (all or nothing)."""
        self._commit = commit
        self._waiting: list[tuple[T, asyncio.Future[None]]] = []
        self._flushing: asyncio.Future[None] | None = None

    async def add(self, item: T) -> None:
        """Store `item`; raises whatever the commit of its batch raised."""
        done = asyncio.get_running_loop().create_future()
        self._waiting.append((item, done))
        if self._flushing is None or self._flushing.done():
            self._flushing = asyncio.ensure_future(self._flush())
        await done

    async def _flush(self) -> None:
        while self._waiting:
            batch, self._waiting = self._waiting, []
            try:
                await self._commit([item for item, _ in batch])
            except Exception as exc:  # every writer of the batch gets the error
                for _, done in batch:
                    if not done.done():
                        done.set_exception(exc)
            else:
                for _, done in batch:
                    if not done.done():
                        done.set_result(None)
