"""Capture (time, direction, size) traces between two full nodes on loopback.

Runs two complete nodes (`app.node.daemon.hosted_node`: store, DHT, transports, shaper,
messenger, control socket) in this process on 127.0.0.1, makes them contacts, and
records at Alice's shaper boundary every frame that crosses the Alice<->Bob connection:

* ``app``  an application message handed to a shaper (Alice's: out, Bob's: in); this is
  what `generate.py` replays through `app.core.shaping`;
* ``wire`` / ``cover``  a frame Alice's shaper wrote (out), ``in`` a frame Alice received;
* ``delivered``  a message fully written (size = its added latency in µs).

Activities (each side acts through the node API, as the GUI would):

* idle      nothing (keepalive PINGs bypass the shaper and are not recorded);
* presence  both sides have the conversation open and glance at it: every 5-20 s one
            side starts and stops typing within 0.2-1.5 s (read receipts are only sent
            when something new was read, so an open window alone sends nothing);
* typing    one side types without sending: typing=True refreshes every 0.5-2 s with
            pauses (typing=False) of 2-6 s;
* chatting  turns: the writer types 1-8 s, sends 5-300 characters, the reader marks read;
* file      a file transfer. `share_files` is not on this branch yet, so the block
            exchange is emulated on the same connection: the file (100 KB-4 MB, size
            padded with Padmé) is cut into 256 KiB blocks; the receiver asks for each
            block with a 96-byte want message and the sender answers with the block.

Usage: python -m tools.shaping.capture --out traces/raw --mode off --sessions 4 --duration 45
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from app.core.padme import padme
from app.node.api import AddContact, DaemonOptions, MarkRead, SendMessage, SetTyping
from app.node.daemon import hosted_node
from app.node.profile import create_profile
from app.node.service import NodeService
from app.node.shaper import TraceEvent

ACTIVITIES = ("idle", "presence", "typing", "chatting", "file")
PASSPHRASE = "trace capture passphrase 1"
BLOCK = 256 * 1024


class Recorder:
    """Keeps the events of one session, timed from its start."""

    def __init__(self, alice: str, bob: str) -> None:
        self.alice, self.bob = alice, bob
        self.events: list[tuple[float, str, str, int]] = []
        self.start = time.time()
        self.active = False

    def sink(self, side: str) -> Callable[[TraceEvent], None]:
        def record(event: TraceEvent) -> None:
            if not self.active:
                return
            t = round(event.time - self.start, 6)
            if side == "alice" and event.peer == self.bob:
                direction = "in" if event.kind == "in" else "out"
                self.events.append((t, direction, event.kind, event.size))
            elif side == "bob" and event.peer == self.alice and event.kind == "app":
                self.events.append((t, "in", "app", event.size))

        return record

    def begin(self) -> None:
        self.events = []
        self.start = time.time()
        self.active = True

    def end(self) -> list[tuple[float, str, str, int]]:
        self.active = False
        return self.events


async def _until(deadline: float) -> bool:
    return time.monotonic() < deadline


async def idle(
    a: NodeService, b: NodeService, ab: str, ba: str, end: float, rng: random.Random
) -> None:
    await asyncio.sleep(max(0.0, end - time.monotonic()))


async def presence(
    a: NodeService, b: NodeService, ab: str, ba: str, end: float, rng: random.Random
) -> None:
    async def side(node: NodeService, contact: str) -> None:
        while await _until(end):
            await asyncio.sleep(rng.uniform(5, 20))
            if time.monotonic() < end:
                await node.set_typing(SetTyping(contact, True))
                await asyncio.sleep(rng.uniform(0.2, 1.5))
                await node.set_typing(SetTyping(contact, False))

    await asyncio.gather(side(a, ab), side(b, ba))


async def typing(
    a: NodeService, b: NodeService, ab: str, ba: str, end: float, rng: random.Random
) -> None:
    node, contact = (a, ab) if rng.random() < 0.5 else (b, ba)
    while await _until(end):
        burst_end = time.monotonic() + rng.uniform(3, 12)
        while time.monotonic() < min(burst_end, end):
            await node.set_typing(SetTyping(contact, True))
            await asyncio.sleep(rng.uniform(0.5, 2.0))
        await node.set_typing(SetTyping(contact, False))
        await asyncio.sleep(rng.uniform(2, 6))


async def chatting(
    a: NodeService, b: NodeService, ab: str, ba: str, end: float, rng: random.Random
) -> None:
    sides = [(a, ab, b, ba), (b, ba, a, ab)]
    turn = rng.randrange(2)
    while await _until(end):
        writer, to, reader, back = sides[turn]
        typing_for = time.monotonic() + rng.uniform(1, 8)
        while time.monotonic() < min(typing_for, end):
            await writer.set_typing(SetTyping(to, True))
            await asyncio.sleep(rng.uniform(0.5, 1.5))
        if time.monotonic() >= end:
            break
        text = "".join(
            rng.choice("abcdefghij klmnop qrstuvwxyz") for _ in range(rng.randint(5, 300))
        )
        await writer.send_message(SendMessage(to, text))
        await asyncio.sleep(rng.uniform(0.3, 2.0))
        await reader.mark_read(MarkRead(back))
        if rng.random() < 0.6:
            turn = 1 - turn


def file_activity(nets: tuple[Any, Any]) -> Callable[..., Awaitable[None]]:
    async def run(
        a: NodeService, b: NodeService, ab: str, ba: str, end: float, rng: random.Random
    ) -> None:
        sender, receiver = nets if rng.random() < 0.5 else (nets[1], nets[0])
        while await _until(end - 1.0):
            size = padme(rng.randint(100_000, 4_000_000))
            blocks = [min(BLOCK, size - off) for off in range(0, size, BLOCK)]
            for block in blocks:
                if time.monotonic() >= end:
                    return
                await receiver.manager.send(sender.address, b"\xf7" + os.urandom(95))
                await sender.manager.send(receiver.address, b"\xf6" + os.urandom(block - 1))
            await asyncio.sleep(rng.uniform(1, 10))  # the next file is picked after a while

    return run


async def capture(out: Path, mode: str, sessions: int, duration: float, seed: int) -> None:
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        inv_a = create_profile(root / "alice", "Alice", PASSPHRASE).whoami
        inv_b = create_profile(root / "bob", "Bob", PASSPHRASE).whoami
        recorder = Recorder(inv_a.address, inv_b.address)
        opts_a = DaemonOptions(root / "alice", listen="127.0.0.1:0", lan=False, shaping=mode)
        async with hosted_node(
            opts_a, lambda: PASSPHRASE, log_to_profile=False, frame_trace=recorder.sink("alice")
        ) as alice:
            endpoint = (await alice.status()).endpoints[0]
            opts_b = DaemonOptions(
                root / "bob", listen="127.0.0.1:0", lan=False, bootstrap=[endpoint], shaping=mode
            )
            async with hosted_node(
                opts_b, lambda: PASSPHRASE, log_to_profile=False, frame_trace=recorder.sink("bob")
            ) as bob:
                contact_b = (await alice.add_contact(AddContact(inv_b.invite))).contact.address
                contact_a = (await bob.add_contact(AddContact(inv_a.invite))).contact.address
                await alice.send_message(SendMessage(contact_b, "hello"))
                for _ in range(300):
                    if any(m.text == "hello" for m in await bob.list_messages(_list(contact_a))):
                        break
                    await asyncio.sleep(0.2)
                else:
                    raise SystemExit("the two nodes never connected")
                await asyncio.sleep(3.0)
                nets = (alice._network, bob._network)
                for net in nets:
                    _drop_emulated_blocks(net)
                runners = {
                    "idle": idle,
                    "presence": presence,
                    "typing": typing,
                    "chatting": chatting,
                    "file": file_activity(nets),
                }
                for index in range(sessions):
                    for activity in ACTIVITIES:
                        recorder.begin()
                        end = time.monotonic() + duration
                        run = runners[activity](alice, bob, contact_b, contact_a, end, rng)
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(run, duration)  # stop exactly at the end
                        await asyncio.sleep(max(0.0, end - time.monotonic()))
                        events = recorder.end()
                        name = f"{mode}-{activity}-{index:02d}.json"
                        record = {
                            "activity": activity,
                            "mode": mode,
                            "session": index,
                            "duration": duration,
                            "events": events,
                        }
                        (out / name).write_text(json.dumps(record))
                        print(name, len(events), "events", flush=True)
                        await asyncio.sleep(2.5)  # let the last bursts' dwell run out


def _drop_emulated_blocks(net: Any) -> None:
    """Keep the emulated block exchange away from the messenger (it is not a message)."""
    deliver = net._on_message

    def handler(address: str, payload: bytes) -> Any:
        if payload[:1] in (b"\xf6", b"\xf7"):
            return None
        return deliver(address, payload)

    net.on_message(handler)


def _list(contact: str) -> Any:
    from app.node.api import ListMessages

    return ListMessages(contact)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("traces/raw"))
    parser.add_argument("--mode", choices=("off", "balanced", "strict"), default="off")
    parser.add_argument("--sessions", type=int, default=4)
    parser.add_argument("--duration", type=float, default=45.0)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    asyncio.run(capture(args.out, args.mode, args.sessions, args.duration, args.seed))


if __name__ == "__main__":
    main()
