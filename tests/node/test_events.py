"""EventBus: a burst reaches a subscriber that keeps up; a stuck one is cut off."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from app.node import events
from app.node.api import NodeEvent, NodeStopping, TypingChanged
from app.node.events import EventBus


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def subscribed(bus: EventBus) -> tuple[AsyncIterator[NodeEvent], asyncio.Future[NodeEvent]]:
    """A subscription that is registered and waiting for its first event."""
    stream = bus.subscribe()
    first = asyncio.ensure_future(stream.__anext__())
    await asyncio.sleep(0)
    return stream, first


async def drain(stream: AsyncIterator[NodeEvent]) -> list[NodeEvent]:
    return [event async for event in stream]


def typing(i: int) -> TypingChanged:
    return TypingChanged(f"peer{i}", bool(i % 2))


@pytest.mark.asyncio
async def test_a_burst_reaches_a_subscriber_that_keeps_up() -> None:
    """A burst of 5,000 events published in one go (a long history synced at once) cut
    the window's own event stream off: the bus dropped any subscriber 1,000 behind."""
    clock = Clock()
    bus = EventBus(clock)
    stream, first = await subscribed(bus)
    for i in range(5000):
        bus.publish(typing(i))
    bus.close()
    received = [await first, *await drain(stream)]
    assert received[:-1] == [typing(i) for i in range(5000)]
    assert received[-1] == NodeStopping("stopped")


@pytest.mark.asyncio
async def test_a_subscriber_that_takes_nothing_for_30_s_is_cut_off() -> None:
    clock = Clock()
    bus = EventBus(clock)
    stream, first = await subscribed(bus)
    bus.publish(typing(0))
    assert await first == typing(0)  # it took one, then nothing more
    for i in range(1, events.STUCK_BACKLOG + 1):
        bus.publish(typing(i))
    clock.now += events.STUCK_SECONDS
    bus.publish(typing(-1))
    bus.publish(typing(-2))  # nobody listens any more
    received = await drain(stream)
    assert received[-1] == NodeStopping("overflow")
    assert typing(-1) not in received and typing(-2) not in received


@pytest.mark.asyncio
async def test_an_idle_subscriber_is_not_stuck_and_a_huge_backlog_is_cut(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = Clock()
    bus = EventBus(clock)
    stream, first = await subscribed(bus)
    clock.now += 3600  # an hour with nothing to say, then a burst
    for i in range(events.STUCK_BACKLOG + 10):
        bus.publish(typing(i))
    assert await first == typing(0)
    monkeypatch.setattr(events, "MAX_BACKLOG", 20)
    small, small_first = await subscribed(bus)
    for i in range(30):
        bus.publish(typing(i))
    assert isinstance(await small_first, TypingChanged)
    assert (await drain(small))[-1] == NodeStopping("overflow")  # 20 behind: cut at once
    bus.close()
    received = await drain(stream)  # the first subscriber was never cut off
    assert received[-1] == NodeStopping("stopped") and len(received) == events.STUCK_BACKLOG + 40
