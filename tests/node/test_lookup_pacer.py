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
async def test_looking_again_for_a_contact_goes_before_mailbox_reads() -> None:
    pacer = LookupPacer(burst=1, per_minute=600)
    await pacer.wait()  # the burst is spent
    order: list[str] = []

    async def lookup(name: str, urgent: bool) -> None:
        await pacer.wait(urgent=urgent)
        order.append(name)

    reads = [asyncio.ensure_future(lookup(f"mailbox {n}", False)) for n in range(3)]
    await asyncio.sleep(0)  # the reads wait first
    await lookup("contact", True)
    await asyncio.gather(*reads)
    assert order[0] == "contact"


@pytest.mark.asyncio
async def test_a_larger_network_gets_more_lookups_a_minute() -> None:
    """A lookup asks only some nodes of a larger network: each sees a share."""
    nodes = [3]
    pacer = LookupPacer(burst=1, per_minute=60, nodes=lambda: nodes[0])
    await pacer.wait()
    nodes[0] = 300  # 100 times the rate: the next token comes in ~10 ms, not ~1 s
    started = time.monotonic()
    await asyncio.wait_for(pacer.wait(), 0.9)
    assert time.monotonic() - started < 0.9
