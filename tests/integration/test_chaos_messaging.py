"""Chaos: 2,000 messages between two daemons that are killed and partitioned at random.

Three daemons in separate processes, each in its own network namespace, joined by a
user-space switch that loses 10 % of the frames and delays each by 2-6 ms
(`lossy_switch.py`: this kernel has no netem). Alice and Bob write to each other (1,000
messages each way, interleaved in random bursts); Carol keeps the DHT (presence, prekey
bundles and the DHT mailboxes used while Alice and Bob can't reach each other) and is
never killed. While they write, the driver SIGKILLs Alice or Bob at random (and restarts
them after a random pause, as a user would: `scrambled-eggs daemon`) and cuts the link
between two hosts for a few seconds at random.

At the end, with every link healed and both daemons up: nothing lost, nothing duplicated,
each side's messages in the order they were written, the same heads on both sides
(`history verify`), and byte-identical history exports (the same total order).

The driver talks JSON-RPC over each daemon's control socket (as the CLI does), so 2,000
sends don't cost 2,000 process starts. The schedule is drawn from a seeded generator:
the seed is printed, and `CHAOS_SEED=<seed>` replays the same schedule (the switch's
loss pattern depends on packet timing, so a replay is close, not identical).
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from cli_helpers import Daemon, cli_json, run_cli
from lossy_switch import CAN_BUILD_HOSTS, Host, LossySwitch

from app.node.api import ExportHistory, ListMessages, Message, SendMessage, VerifyHistory
from app.node.control import ControlClient, connect_control
from app.node.paths import ProfilePaths

pytestmark = [pytest.mark.slow, CAN_BUILD_HOSTS]

PASS = "a passphrase for tests"
PER_SIDE = int(os.environ.get("CHAOS_PER_SIDE", "1000"))
PORT = 7000
LOSS, DELAY, JITTER = 0.10, 0.002, 0.004
CUTS = [("alice", "bob"), ("alice", "bob"), ("alice", "carol"), ("bob", "carol")]
SETTLE_TIMEOUT = float(os.environ.get("CHAOS_SETTLE", "240"))


@dataclass
class Node:
    """One of Alice and Bob: its host, profile, process and control connection."""

    name: str
    contact: str
    host: Host
    profile: Path
    bootstrap: str
    daemon: Daemon | None = None
    client: ControlClient | None = None
    sent: list[tuple[str, str]] = field(default_factory=list)
    """(id, text) of every message the daemon accepted, in order."""
    kills: int = 0

    def launch(self) -> Daemon:
        return Daemon(
            self.profile,
            "--listen",
            f"{self.host.ip}:{PORT}",
            "--no-lan",
            "--bootstrap",
            self.bootstrap,
            passphrase=PASS,
            prefix=self.host.prefix,
        )

    async def start(self) -> None:
        self.daemon = self.launch()
        await asyncio.to_thread(self.daemon.wait_ready, 60)
        self.client = await connect_control(ProfilePaths(self.profile))
        assert self.client is not None

    async def kill(self) -> None:
        assert self.daemon is not None and self.client is not None
        await self.client.close()
        self.client = None
        await asyncio.to_thread(self.daemon.stop, signal.SIGKILL)
        self.daemon = None
        self.kills += 1

    async def all_messages(self) -> list[Message]:
        assert self.client is not None
        found: list[Message] = []
        before = None
        while True:
            page = await self.client.list_messages(ListMessages(self.contact, before, 1000))
            found[:0] = page
            if len(page) < 1000:
                return found
            before = page[0].id


@pytest.fixture
def hosts() -> Iterator[tuple[LossySwitch, Host, Host, Host]]:
    seed = int(os.environ.get("CHAOS_SEED", random.SystemRandom().randrange(2**32)))
    switch = LossySwitch(loss=LOSS, delay=DELAY, jitter=JITTER, seed=seed)
    n = os.getpid() % 250 + 1
    try:
        made = [
            switch.add_host(name, f"se-chaos-{name}-{os.getpid()}", f"10.233.{n}.{i}")
            for i, name in enumerate(("alice", "bob", "carol"), 1)
        ]
        switch.start()
        yield switch, made[0], made[1], made[2]
    finally:
        switch.close()


def test_two_thousand_messages_survive_kills_partitions_and_loss(
    hosts: tuple[LossySwitch, Host, Host, Host], tmp_path: Path
) -> None:
    switch, host_a, host_b, host_c = hosts
    print(f"\nchaos seed: {switch.seed} (replay with CHAOS_SEED={switch.seed})")
    profiles = {name: tmp_path / name for name in ("alice", "bob", "carol")}
    for name, profile in profiles.items():
        cli_json(profile, "init", "--name", name.capitalize(), passphrase=PASS)
    carol = Daemon(
        profiles["carol"], "--listen", f"{host_c.ip}:{PORT}", "--no-lan",
        passphrase=PASS, prefix=host_c.prefix,
    )  # fmt: skip
    bootstrap = f"{host_c.ip}:{PORT}"
    alice = Node("alice", "Bob", host_a, profiles["alice"], bootstrap)
    bob = Node("bob", "Alice", host_b, profiles["bob"], bootstrap)
    try:
        carol.wait_ready(60)
        invites = {
            n.name: cli_json(n.profile, "whoami", passphrase=PASS)["invite"] for n in (alice, bob)
        }
        cli_json(alice.profile, "contacts", "add", invites["bob"], passphrase=PASS)
        cli_json(bob.profile, "contacts", "add", invites["alice"], passphrase=PASS)
        summary = asyncio.run(drive(switch, alice, bob, random.Random(switch.seed)))
        print(summary)
    except BaseException:
        for profile in profiles.values():
            log = profile / "logs" / "node.log"
            if log.exists():
                tail = log.read_text(errors="replace").splitlines()[-40:]
                print(f"--- {profile.name} log tail ---\n" + "\n".join(tail))
        raise
    finally:
        for node in (alice, bob):
            if node.daemon is not None:
                node.daemon.stop()
        carol.stop()

    # the same heads through the CLI, as a user would check
    heads_a = cli_json(alice.profile, "history", "verify", "Bob", passphrase=PASS)["heads"]
    heads_b = cli_json(bob.profile, "history", "verify", "Alice", passphrase=PASS)["heads"]
    assert heads_a == heads_b
    done = run_cli(alice.profile, "messages", "Bob", "--json", passphrase=PASS)
    assert done.returncode == 0, done.stderr


async def drive(switch: LossySwitch, alice: Node, bob: Node, rng: random.Random) -> str:
    started = time.monotonic()
    await asyncio.gather(alice.start(), bob.start())
    nodes = {"alice": alice, "bob": bob}
    restarts: set[asyncio.Task[None]] = set()
    partitions = 0

    async def restart_later(node: Node, pause: float) -> None:
        await asyncio.sleep(pause)
        await node.start()

    async def heal_later(pause: float) -> None:
        await asyncio.sleep(pause)
        switch.heal()

    heal_task: asyncio.Task[None] | None = None
    quota = {"alice": PER_SIDE, "bob": PER_SIDE}
    while any(quota.values()):
        ready = [n for n in nodes if quota[n] and nodes[n].client is not None]
        if not ready:
            await asyncio.sleep(0.1)
            continue
        node = nodes[rng.choice(ready)]
        for _ in range(min(rng.randint(1, 40), quota[node.name])):
            serial = PER_SIDE - quota[node.name]
            text = f"{node.name} {serial:04d} " + "x" * rng.randint(0, 120)
            assert node.client is not None
            message = await node.client.send_message(SendMessage(node.contact, text))
            node.sent.append((message.id, text))
            quota[node.name] -= 1
        # pace the writers a little so the chaos overlaps the whole run
        await asyncio.sleep(rng.uniform(0.0, 0.3))
        roll = rng.random()
        if roll < 0.06:
            victim = nodes[rng.choice(list(nodes))]
            if victim.client is not None:
                await victim.kill()
                task = asyncio.ensure_future(restart_later(victim, rng.uniform(0.5, 4.0)))
                restarts.add(task)
                task.add_done_callback(restarts.discard)
        elif roll < 0.12 and (heal_task is None or heal_task.done()):
            pair = rng.choice(
                [("alice", "bob"), ("alice", "bob"), ("alice", "carol"), ("bob", "carol")]
            )
            switch.partition(*pair)
            partitions += 1
            heal_task = asyncio.ensure_future(heal_later(rng.uniform(2.0, 12.0)))
    writing = time.monotonic() - started
    if heal_task is not None:
        heal_task.cancel()
    switch.heal()
    await asyncio.gather(*restarts)
    for node in nodes.values():
        if node.client is None:
            await node.start()

    expected = [*alice.sent, *bob.sent]
    deadline = time.monotonic() + SETTLE_TIMEOUT
    while True:
        lists = {n: await nodes[n].all_messages() for n in nodes}
        settled = all(len(found) >= len(expected) for found in lists.values()) and all(
            m.status.value in ("delivered", "read")
            for found in lists.values()
            for m in found
            if m.outgoing
        )
        if settled:
            break
        if time.monotonic() > deadline:
            counts = {n: len(found) for n, found in lists.items()}
            peers = {n: await nodes[n].client.peers() for n in nodes}  # type: ignore[union-attr]
            raise AssertionError(
                f"not settled in {SETTLE_TIMEOUT} s: {counts} of {len(expected)}; peers {peers}"
            )
        await asyncio.sleep(1.0)
    settle = time.monotonic() - started - writing

    for name, found in lists.items():
        ids = [m.id for m in found]
        assert len(ids) == len(set(ids)), f"{name} holds duplicated messages"
        by_id = {m.id: m for m in found}
        for writer in (alice, bob):
            assert [by_id[i].text for i, _ in writer.sent if i in by_id] == [
                t for _, t in writer.sent
            ]
            # each writer's messages appear in the order they were written
            positions = [ids.index(i) for i, _ in writer.sent]
            assert positions == sorted(positions), f"{name} shows {writer.name}'s out of order"
        assert set(ids) == {i for i, _ in expected}, f"{name} lost messages"
    # and both people see one conversation: the same messages in the same order
    assert [m.id for m in lists["alice"]] == [m.id for m in lists["bob"]]

    reports = {
        n: await nodes[n].client.verify_history(VerifyHistory(nodes[n].contact)) for n in nodes
    }  # type: ignore[union-attr]
    assert reports["alice"].heads == reports["bob"].heads
    assert reports["alice"].events == reports["bob"].events == len(expected)
    assert reports["alice"].equivocations == 0
    exports = {
        n: await nodes[n].client.export_history(ExportHistory(nodes[n].contact)) for n in nodes
    }  # type: ignore[union-attr]
    assert exports["alice"].data_b64 == exports["bob"].data_b64  # same events, same order
    for node in nodes.values():
        assert node.client is not None
        await node.client.close()
    return (
        f"chaos: {len(expected)} messages, {alice.kills + bob.kills} kills "
        f"(alice {alice.kills}, bob {bob.kills}), {partitions} partitions, switch {switch.stats}; "
        f"writing {writing:.1f} s, settling {settle:.1f} s"
    )
