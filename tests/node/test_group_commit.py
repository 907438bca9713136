"""GroupCommit: concurrent writers share commits, in order; a failed commit fails its
whole batch and nothing after it."""

from __future__ import annotations

import asyncio

import pytest

from app.node.group_commit import GroupCommit


class Store:
    def __init__(self, fail_batch: int | None = None) -> None:
        self.batches: list[list[int]] = []
        self.fail_batch = fail_batch

    async def commit(self, batch: list[int]) -> None:
        await asyncio.sleep(0.01)  # the store thread is busy for a while
        if len(self.batches) == self.fail_batch:
            self.batches.append([])
            raise OSError("disk full")
        self.batches.append(batch)


@pytest.mark.asyncio
async def test_writers_during_a_commit_share_the_next_one_in_order() -> None:
    store = Store()
    group: GroupCommit[int] = GroupCommit(store.commit)
    first = asyncio.ensure_future(group.add(0))
    await asyncio.sleep(0.001)  # its commit is running
    await asyncio.gather(*(group.add(i) for i in range(1, 50)), first)
    assert store.batches == [[0], list(range(1, 50))]  # who came meanwhile went together
    await group.add(50)  # idle again: a lone writer commits alone
    assert store.batches[-1] == [50]


@pytest.mark.asyncio
async def test_a_failed_commit_fails_every_writer_of_its_batch_only() -> None:
    store = Store(fail_batch=1)
    group: GroupCommit[int] = GroupCommit(store.commit)
    first = asyncio.ensure_future(group.add(0))
    await asyncio.sleep(0.001)
    results = await asyncio.gather(*(group.add(i) for i in range(1, 5)), return_exceptions=True)
    assert await first is None
    assert all(isinstance(r, OSError) for r in results)
    await group.add(99)
    assert store.batches[-1] == [99]
