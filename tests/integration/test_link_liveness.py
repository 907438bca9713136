"""A link that dies silently is noticed quickly when it matters; a slow one is not cut.

Two daemons in separate processes, each in a network namespace the test creates, joined
by the user-space switch of `lossy_switch.py` (this kernel has no netem). The switch
cuts the link silently (every frame dropped, both ways: no FIN, no RST), or makes it a
slow one (delay, 1 mbit/s each way, netem's 1000-frame queue). Traffic never leaves the
namespaces.

* Cut while a message is being sent: how long until Bob's `peers` stops saying Alice is
  connected (printed for every trial; `LIVENESS_MAX_DETECT` bounds it, default 6 s),
  and, once the link heals, every message is there exactly once and acknowledged.
* Slow but alive (300 ms each way, 1 mbit/s) while a file goes over it and messages go
  both ways: the connection is never given up.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import statistics
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cli_helpers import Daemon, cli_json
from lossy_switch import CAN_BUILD_HOSTS, Host, LossySwitch

from app.node.api import (
    ListMessages,
    ListTransfers,
    Message,
    MessageStatus,
    SendMessage,
    ShareFiles,
    TransferState,
)
from app.node.control import ControlClient, connect_control
from app.node.paths import ProfilePaths

pytestmark = [pytest.mark.slow, CAN_BUILD_HOSTS]

PASS = "a passphrase for tests"
PORT = 7000
TRIALS = int(os.environ.get("LIVENESS_TRIALS", "4"))
MAX_DETECT = float(os.environ.get("LIVENESS_MAX_DETECT", "6"))
SEED = int(os.environ.get("LIVENESS_SEED", "7"))


@pytest.fixture
def hosts() -> Iterator[tuple[LossySwitch, Host, Host]]:
    switch = LossySwitch(loss=0.0, delay=0.0005, jitter=0.0, seed=SEED)
    n = os.getpid() % 250 + 1
    try:
        a = switch.add_host("alice", f"se-live-a-{os.getpid()}", f"10.234.{n}.1")
        b = switch.add_host("bob", f"se-live-b-{os.getpid()}", f"10.234.{n}.2")
        switch.start()
        yield switch, a, b
    finally:
        switch.close()


def _pair(tmp_path: Path, a: Host, b: Host) -> tuple[Path, Path, list[Daemon]]:
    profiles = (tmp_path / "alice", tmp_path / "bob")
    for profile, name in zip(profiles, ("Alice", "Bob"), strict=True):
        cli_json(profile, "init", "--name", name, passphrase=PASS)
        config = {"version": 1, "downloads_folder": str(tmp_path / f"{name}-downloads")}
        (profile / "config.json").write_text(json.dumps(config))
    daemons = [
        Daemon(profiles[0], "--listen", f"{a.ip}:{PORT}", "--no-lan", passphrase=PASS,
               prefix=a.prefix),
        Daemon(profiles[1], "--listen", f"{b.ip}:{PORT}", "--no-lan", "--bootstrap",
               f"{a.ip}:{PORT}", passphrase=PASS, prefix=b.prefix),
    ]  # fmt: skip
    for daemon in daemons:
        daemon.wait_ready(60)
    invites = [cli_json(p, "whoami", passphrase=PASS)["invite"] for p in profiles]
    cli_json(profiles[0], "contacts", "add", invites[1], passphrase=PASS)
    cli_json(profiles[1], "contacts", "add", invites[0], passphrase=PASS)
    return profiles[0], profiles[1], daemons


async def _client(profile: Path) -> ControlClient:
    client = await connect_control(ProfilePaths(profile))
    assert client is not None
    return client


async def _connected(client: ControlClient, contact: str) -> str | None:
    """The path while `peers` says `contact` is connected, else None."""
    for peer in await client.peers():
        if peer.contact == contact and peer.state == "connected":
            return peer.path or "?"
    return None


async def _until(predicate: object, timeout: float, step: float = 0.05) -> float:
    """Seconds until the async `predicate()` is truthy (AssertionError after `timeout`)."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if await predicate():  # type: ignore[operator]
            return time.monotonic() - started
        await asyncio.sleep(step)
    raise AssertionError(f"not within {timeout} s")


async def _messages(client: ControlClient, contact: str) -> list[Message]:
    return await client.list_messages(ListMessages(contact, None, 1000))


def _log(profile: Path, needle: str) -> list[str]:
    log = profile / "logs" / "node.log"
    return [line for line in log.read_text(errors="replace").splitlines() if needle in line]


def test_a_silent_cut_is_noticed_quickly_and_no_message_is_lost_or_doubled(
    hosts: tuple[LossySwitch, Host, Host], tmp_path: Path
) -> None:
    switch, host_a, host_b = hosts
    a, b, daemons = _pair(tmp_path, host_a, host_b)
    try:
        detect = asyncio.run(_cut_while_sending(switch, a, b))
    finally:
        for daemon in daemons:
            daemon.stop()
    print(f"\nsilent cut -> Bob's peers says disconnected after (s): {detect}")
    print(f"median {statistics.median(detect):.2f} s, max {max(detect):.2f} s")
    assert max(detect) <= MAX_DETECT


async def _cut_while_sending(switch: LossySwitch, a: Path, b: Path) -> list[float]:
    alice, bob = await _client(a), await _client(b)
    rng = random.Random(SEED)
    detect: list[float] = []
    sent: list[Message] = []
    try:
        sent.append(await bob.send_message(SendMessage("Alice", "before the cuts")))
        for trial in range(TRIALS):
            await _until(lambda: _connected(bob, "Alice"), 120)
            await _until(lambda: _connected(alice, "Bob"), 120)
            # the cut lands anywhere in the keepalive cycle (5 s), the same in every run
            await asyncio.sleep(2.0 + rng.uniform(0.0, 5.0))
            path = await _connected(bob, "Alice")
            switch.partition("alice", "bob")
            cut = time.monotonic()
            sent.append(await bob.send_message(SendMessage("Alice", f"during cut {trial}")))
            await _until(lambda: _not(_connected(bob, "Alice")), 60, step=0.02)
            detect.append(round(time.monotonic() - cut, 2))
            print(f"trial {trial} ({path}): noticed after {detect[-1]} s")
            await asyncio.sleep(rng.uniform(0.5, 2.0))
            switch.heal()

        async def all_delivered() -> bool:
            texts = [m.text for m in await _messages(alice, "Bob")]
            statuses = {m.id: m.status for m in await _messages(bob, "Alice")}
            return all(m.text in texts for m in sent) and all(
                statuses[m.id] in (MessageStatus.DELIVERED, MessageStatus.READ) for m in sent
            )

        await _until(all_delivered, 180, step=0.5)
        texts = [m.text for m in await _messages(alice, "Bob")]
        assert sorted(texts) == sorted(m.text for m in sent)  # each exactly once
        assert [m.text for m in await _messages(bob, "Alice")] == [m.text for m in sent]
    finally:
        await alice.close()
        await bob.close()
    return detect


async def _not(awaitable: object) -> bool:
    return not await awaitable  # type: ignore[misc]


def test_a_slow_busy_link_is_not_cut(hosts: tuple[LossySwitch, Host, Host], tmp_path: Path) -> None:
    """300 ms each way, 1 mbit/s each way, netem's queue of 1000 frames; a 1.5 MiB file
    goes from Bob to Alice and both write to each other every second meanwhile."""
    switch, host_a, host_b = hosts
    a, b, daemons = _pair(tmp_path, host_a, host_b)
    shared = tmp_path / "slow.bin"
    shared.write_bytes(os.urandom(1536 * 1024))
    try:
        drops, took = asyncio.run(_slow_transfer(switch, a, b, shared))
    finally:
        for daemon in daemons:
            daemon.stop()
    given_up = _log(a, "link to a peer is dead") + _log(b, "link to a peer is dead")
    timeouts = _log(a, "keepalive timeout") + _log(b, "keepalive timeout")
    print(f"\nslow link: file over in {took:.1f} s; peers said disconnected {drops} times")
    print("\n".join(given_up + timeouts))
    assert drops == 0 and not given_up


async def _slow_transfer(switch: LossySwitch, a: Path, b: Path, shared: Path) -> tuple[int, float]:
    alice, bob = await _client(a), await _client(b)
    try:
        await bob.send_message(SendMessage("Alice", "hello"))
        await _until(lambda: _connected(bob, "Alice"), 120)
        await _until(lambda: _connected(alice, "Bob"), 120)
        switch.shape(loss=0.0, delay=0.3, jitter=0.0, rate=1_000_000)
        started = time.monotonic()
        (transfer,) = await bob.share_files(ShareFiles("Alice", [str(shared)]))
        drops = 0
        serial = 0
        while True:
            serial += 1
            await bob.send_message(SendMessage("Alice", f"bob {serial}"))
            await alice.send_message(SendMessage("Bob", f"alice {serial}"))
            for _ in range(5):
                if not await _connected(bob, "Alice") or not await _connected(alice, "Bob"):
                    drops += 1
                await asyncio.sleep(0.2)
            states = {t.id: t.state for t in await bob.list_transfers(ListTransfers("Alice"))}
            assert states[transfer.id] is not TransferState.FAILED
            if states[transfer.id] is TransferState.DONE:
                return drops, time.monotonic() - started
            assert time.monotonic() - started < 600
    finally:
        await alice.close()
        await bob.close()
