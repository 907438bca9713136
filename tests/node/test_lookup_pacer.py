"""The token bucket that paces a node's background DHT lookups."""

from __future__ import annotations

import asyncio
import time

import pytest

from app.node import lookup_pacer
from app.node.lookup_pacer import LookupPacer


@pytest.mark.asyncio
async def test_a_burst_goes_at_once_then_lookups_wait_for_the_rate(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    slept: list[float] = []
    real_sleep = asyncio.sleep

    async def recording(delay: float) -> None:
        slept.append(delay)
        await real_sleep(delay)

    monkeypatch.setattr(lookup_pacer.asyncio, "sleep", recording)
    pacer = LookupPacer(burst=3, per_minute=600)  # 10 a second after the burst
    for _ in range(3):
        await pacer.wait()
    assert slept == []  # the burst goes at once
    started = time.monotonic()
    for _ in range(4):
        await pacer.wait()
    assert time.monotonic() - started >= 0.35  # 4 more at 10/s: ~0.4 s, never sooner


@pytest.mark.asyncio
async def test_waiters_are_served_first_come_first_served() -> None:
    pacer = LookupPacer(burst=1, per_minute=1200)
    order: list[int] = []

    async def lookup(n: int) -> None:
        await pacer.wait()
        order.append(n)

    await asyncio.gather(*(lookup(n) for n in range(5)))
    assert order == [0, 1, 2, 3, 4]
