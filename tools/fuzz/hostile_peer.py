"""Hostile-peer campaigns against a running node, on loopback only.

    python -m tools.fuzz.hostile_peer CAMPAIGN --endpoint 127.0.0.1:PORT --target ADDRESS
        [--bulk-port PORT] [--contact-seeds FILE] [--cases N] [--seed S]

`--endpoint` is the node's endpoint as `status --json` prints it (DHT on UDP and the
WebSocket listener on TCP share the port); `--target` its address. Campaigns:

  raw        garbage, partial HTTP, oversize headers and TLS hellos on the TCP port
  handshake  mutated Noise handshake messages and text messages (as a stranger)
  contact    after a real handshake as a contact: random frame streams, oversize and
             unknown frames, PING/PONG/COVER floods, HELLO/BINDING, random and
             block-exchange DATA payloads, split and truncated frames
  sybil      `cases` strangers, each a new identity, hold handshaken connections 20 s
  slowloris  `cases` silent WebSocket connections from 127.0.0.2, then a contact dials
  restricted `cases` strangers one after another, each reconnecting quickly until the
             anomaly monitor restricts it, then sending 8 MiB it holds back, and leaving
  bulk       random ticket ids, lengths and records on the bulk port
  dht        random and structured kademlia datagrams (bad types, nesting, counts)
  records    `cases` valid mailbox records under made-up identities, stored from
             127.0.0.2 over many source ports (see tools/fuzz/record_flood.py)

`contact-seeds FILE` holds `{"s": hex, "d": hex}` (an identity's two seeds); `python -m
tools.fuzz.hostile_peer invite --contact-seeds FILE` makes one and prints its invite, for
the node to add as a contact. After a campaign check that the node still answers
`status`, its log (profile/logs/node.log) shows rejections but no ERROR or traceback,
messages between two honest nodes still arrive once, `history verify` passes, and its RSS
and descriptor count settle. Nothing here sends to any address but 127.0.0.0/8.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import os
import random
import struct
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import umsgpack  # type: ignore[import-untyped]
from websockets.asyncio.client import connect

from app.core.identity import IdentityKeys, decode_address, make_invite
from app.core.noise import IdentityHandshake, NoiseTransport
from app.core.wire import FrameDecoder, FrameType
from tools.fuzz.mutation import mutate as mutate_bytes
from tools.fuzz.record_flood import flood

Tally = Counter[str]


def loopback(endpoint: str) -> tuple[str, int]:
    """`host:port`, refused unless the host is a loopback address."""
    host, _, port = endpoint.rpartition(":")
    if not ipaddress.ip_address(host.strip("[]")).is_loopback:
        raise SystemExit(f"{endpoint}: campaigns only target loopback addresses")
    return host.strip("[]"), int(port)


def mutate(rng: random.Random, data: bytes) -> bytes:
    """Frames and handshake messages mutated 1 to 4 times, with appends up to 70,000
    bytes (past the frame limit)."""
    return mutate_bytes(rng, data, rounds=4, appends=(1, 16, 1000, 70000), repeat=(64, 50))


def frame(kind: int, payload: bytes, version: int = 1, length: int | None = None) -> bytes:
    """A wire frame with any header values, lying about its length if asked."""
    size = len(payload) if length is None else length
    return bytes([version, kind]) + struct.pack(">I", size) + payload


def hostile_frames(rng: random.Random) -> list[bytes]:
    """One case of the `contact` campaign: a list of frame-stream chunks to send."""
    cid = bytes.fromhex("01551220") + rng.randbytes(32)
    payloads = [
        b"\xb2" + rng.randbytes(4) + cid + cid,  # WANT
        b"\xb5" + rng.randbytes(4) + cid,  # BULK_ASK
        b"\xb3" + rng.randbytes(4) + rng.randbytes(1000),  # unsolicited BLOCK
        b"\xb4" + rng.randbytes(4),  # DONT_HAVE
        b"\xb6" + rng.randbytes(38),  # BULK_TICKET
        b"\xb0" + rng.randbytes(300),  # prekey bundles
        b"\xb1" + rng.randbytes(300),
        b"\x01" + rng.randbytes(300),  # ratchet messages
        b"\x02" + rng.randbytes(300),
    ]
    cases: list[list[bytes]] = [
        [rng.randbytes(rng.randint(1, 60000))],
        [frame(1, b"", length=(1 << 20) + 1)],
        [frame(rng.randint(8, 255), rng.randbytes(10))],
        [frame(1, rng.randbytes(8), version=rng.randint(2, 255))],
        [frame(2, rng.randbytes(rng.choice([0, 8, 64, 60000])))] * rng.randint(1, 200),
        [frame(3, rng.randbytes(rng.randint(0, 100)))] * rng.randint(1, 50),
        [frame(rng.choice([4, 5]), rng.randbytes(rng.randint(0, 200)))],
        [frame(6, rng.randbytes(rng.randint(0, 5000)))],
        [frame(7, rng.randbytes(rng.randint(0, 5000)))] * rng.randint(1, 20),
        [frame(1, mutate(rng, rng.randbytes(rng.randint(0, 3000)))) for _ in range(30)],
        [
            frame(1, mutate(rng, p) if rng.random() < 0.3 else p)
            for p in rng.choices(payloads, k=100)
        ],
        [frame(1, rng.randbytes(rng.choice([65519, 200_000, 1 << 20])))],
    ]
    whole = frame(1, rng.randbytes(5000))
    cases.append([whole[i : i + 7] for i in range(0, rng.randrange(len(whole)), 7)])
    return rng.choice(cases)


def _binary(message: str | bytes) -> bytes:
    if isinstance(message, str):
        raise ValueError("text message from the node")
    return message


class Peer:
    """A Noise-handshaken WebSocket connection to the target, as `keys`."""

    def __init__(self, ws: Any, transport: NoiseTransport) -> None:
        self.ws = ws
        self.transport = transport
        self.decoder = FrameDecoder()

    @classmethod
    async def dial(cls, uri: str, keys: IdentityKeys, target: bytes, **options: Any) -> Peer:
        ws = await connect(uri, proxy=None, max_size=None, compression=None, **options)
        handshake = IdentityHandshake(
            keys, initiator=True, ephemeral_secret=os.urandom(32), expected_peer=target
        )
        await ws.send(handshake.write_message())
        handshake.read_message(_binary(await ws.recv()))
        await ws.send(handshake.write_message())
        return cls(ws, handshake.transport())

    async def send(self, data: bytes) -> None:
        for message in self.transport.encrypt(data):
            await self.ws.send(message)

    async def listen(self, seconds: float) -> int:
        """Answer PINGs (a live peer) for `seconds`; how many messages came."""
        end, count = time.monotonic() + seconds, 0
        while (left := end - time.monotonic()) > 0:
            try:
                message = await asyncio.wait_for(self.ws.recv(), left)
            except TimeoutError:
                break
            count += 1
            for item in self.decoder.feed(self.transport.decrypt(message)):
                if item.type == FrameType.PING:
                    await self.send(frame(FrameType.PONG, item.payload))
        return count


async def raw(host: str, port: int, rng: random.Random, cases: int) -> Tally:
    canned = [
        b"GET / HTTP/1.1\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nX-A: " + b"a" * 100_000 + b"\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAA==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        b"\x16\x03\x01\x00\xa5\x01\x00",
    ]
    tally: Tally = Counter()
    for i in range(cases):
        try:
            reader, writer = await asyncio.open_connection(host, port)
        except OSError as exc:
            tally[f"connect: {type(exc).__name__}"] += 1
            continue
        try:
            writer.write(rng.choice(canned) if i % 2 else rng.randbytes(rng.randint(0, 5000)))
            await writer.drain()
            answer = await asyncio.wait_for(reader.read(200), 0.5)
            tally["answered" if answer else "closed"] += 1
        except (TimeoutError, OSError) as exc:
            tally[type(exc).__name__] += 1
        finally:
            writer.close()
    return tally


async def handshake(uri: str, target: bytes, rng: random.Random, cases: int) -> Tally:
    stranger = IdentityKeys.from_seeds(os.urandom(32), os.urandom(32))
    tally: Tally = Counter()
    for i in range(cases):
        try:
            async with asyncio.timeout(3), connect(uri, proxy=None, max_size=None) as ws:
                state = IdentityHandshake(
                    stranger, initiator=True, ephemeral_secret=os.urandom(32), expected_peer=target
                )
                first = state.write_message()
                if i % 3 == 0:
                    await ws.send(mutate(rng, first))
                elif i % 3 == 1:
                    await ws.send("text" * rng.randint(0, 10))
                else:
                    await ws.send(first)
                    state.read_message(_binary(await ws.recv()))
                    await ws.send(mutate(rng, state.write_message()))
                await ws.recv()
                tally["answered"] += 1
        except Exception as exc:  # every way of being refused is counted
            tally[type(exc).__name__] += 1
    return tally


async def contact(
    uri: str, target: bytes, keys: IdentityKeys, rng: random.Random, cases: int
) -> Tally:
    tally: Tally = Counter()
    for _ in range(cases):
        try:
            async with asyncio.timeout(10):
                peer = await Peer.dial(uri, keys, target, ping_interval=None)
                for chunk in hostile_frames(rng):
                    await peer.send(chunk)
                await peer.listen(0.3)
                tally["still open"] += 1
                await peer.ws.close()
        except Exception as exc:  # closed by the node: the expected answer to most cases
            tally[type(exc).__name__] += 1
    return tally


async def sybil(uri: str, target: bytes, cases: int, hold: float = 20.0) -> Tally:
    tally: Tally = Counter()

    async def one() -> None:
        keys = IdentityKeys.from_seeds(os.urandom(32), os.urandom(32))
        try:
            async with asyncio.timeout(hold + 30):
                peer = await Peer.dial(uri, keys, target, ping_interval=None)
                tally["handshaken"] += 1
                await peer.listen(hold)
                tally["held to the end" if peer.ws.close_code is None else "closed"] += 1
                await peer.ws.close()
        except Exception as exc:
            tally[type(exc).__name__] += 1

    tasks = []
    for _ in range(cases):
        tasks.append(asyncio.create_task(one()))
        await asyncio.sleep(0.01)
    await asyncio.gather(*tasks)
    return tally


async def slowloris(uri: str, target: bytes, keys: IdentityKeys, cases: int) -> Tally:
    tally: Tally = Counter()
    silent = []
    for _ in range(cases):
        try:
            silent.append(await connect(uri, proxy=None, local_addr=("127.0.0.2", 0)))
        except Exception as exc:
            tally[f"silent refused: {type(exc).__name__}"] += 1
    await asyncio.sleep(0.5)
    try:
        peer = await Peer.dial(uri, keys, target, ping_interval=None)
        tally["contact got in"] += 1
        await peer.ws.close()
    except Exception as exc:
        tally[f"contact refused: {type(exc).__name__}"] += 1
    for ws in silent:
        try:
            await asyncio.wait_for(ws.recv(), 0.01)
        except TimeoutError:
            tally["silent still open"] += 1
        except Exception:
            tally["silent closed"] += 1
        await ws.close()
    return tally


async def restricted(uri: str, target: bytes, rng: random.Random, cases: int) -> Tally:
    """Strangers that get themselves rate-limited (connection churn: 25 quick
    reconnections), then fill what the node holds back for a restricted peer (512
    frames of 16 KB, 8 MiB) and leave; each a new identity. The node's memory must not
    grow with their number."""
    tally: Tally = Counter()
    for _ in range(cases):
        keys = IdentityKeys.from_seeds(os.urandom(32), os.urandom(32))
        try:
            async with asyncio.timeout(60):
                for _ in range(25):
                    churn = await Peer.dial(uri, keys, target, ping_interval=None)
                    await churn.ws.close()
                await asyncio.sleep(2.5)  # one evaluation of the detector
                peer = await Peer.dial(uri, keys, target, ping_interval=None)
                for _ in range(520):
                    await peer.send(frame(1, b"\x01" + rng.randbytes(16_000)))
                await asyncio.sleep(0.5)
                tally["left"] += 1
                await peer.ws.close()
        except Exception as exc:
            tally[type(exc).__name__] += 1
    return tally


async def bulk(host: str, port: int, rng: random.Random, cases: int) -> Tally:
    tally: Tally = Counter()
    for i in range(cases):
        try:
            reader, writer = await asyncio.open_connection(host, port)
            if i % 4 == 0:
                writer.write(rng.randbytes(16))
            elif i % 4 == 1:
                length = struct.pack(">I", rng.choice([0, 15, 1 << 31]))
                writer.write(rng.randbytes(16) + length + rng.randbytes(100))
            elif i % 4 == 2:
                writer.write(rng.randbytes(rng.randint(0, 15)))
                writer.write_eof()
            else:
                writer.write(rng.randbytes(rng.randint(17, 100_000)))
            await writer.drain()
            tally[f"closed after {len(await asyncio.wait_for(reader.read(100), 7))} bytes"] += 1
            writer.close()
        except Exception as exc:
            tally[type(exc).__name__] += 1
    return tally


def dht_datagram(rng: random.Random) -> bytes:
    """One hostile kademlia datagram (rpcudp framing: kind, 20-byte id, msgpack)."""
    head = b"\x00" + rng.randbytes(20)
    node_id = rng.randbytes(rng.choice([20, 20, 0, 19, 21]))
    odd: list[object] = [None, True, -1, 2**63, 1.5, "x" * 3000, b"\0" * 8000, [], {},
                         [[[[[[[[]]]]]]]], {"a": [1, 2]}, rng.randbytes(32)]  # fmt: skip
    names: list[object] = ["ping", "store", "find_node", "find_value", "signal", "nope", 7, None]
    choices = [
        lambda: bytes([rng.choice([0, 1, 2, 255])]) + rng.randbytes(rng.randint(20, 9000)),
        lambda: head + umsgpack.packb([rng.choice(names), rng.choices(odd, k=rng.randint(0, 6))]),
        lambda: head + umsgpack.packb(["store", [node_id, rng.randbytes(20), rng.randbytes(300)]]),
        lambda: head + umsgpack.packb(["signal", [mutate(rng, rng.randbytes(500))]]),
        lambda: head + b"\x91" * rng.choice([100, 1000, 4000]) + b"\xc0",
        lambda: head + rng.choice([b"\xdd\xff\xff\xff\xff", b"\xdf\xff\xff\xff\xff"]),
        lambda: b"\x01" + head[1:] + umsgpack.packb(rng.choice(odd)),
        lambda: head + umsgpack.packb(["find_value", [node_id, rng.randbytes(20)]]),
    ]
    data: bytes = rng.choice(choices)()  # type: ignore[no-untyped-call]
    return data[:65000]


async def dht(host: str, port: int, rng: random.Random, cases: int) -> Tally:
    tally: Tally = Counter()

    class Counting(asyncio.DatagramProtocol):
        def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
            tally["answers"] += 1

    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(Counting, local_addr=("127.0.0.1", 0))
    for i in range(cases):
        transport.sendto(dht_datagram(rng), (host, port))
        tally["sent"] += 1
        if i % 50 == 0:
            await asyncio.sleep(0.01)
    await asyncio.sleep(1)
    transport.close()
    return tally


def contact_keys(path: str | None) -> IdentityKeys:
    if path is None:
        raise SystemExit("this campaign needs --contact-seeds (see `invite`)")
    seeds = json.loads(Path(path).read_text())
    return IdentityKeys.from_seeds(bytes.fromhex(seeds["s"]), bytes.fromhex(seeds["d"]))


async def run(args: argparse.Namespace) -> Tally:
    rng = random.Random(args.seed)
    host, port = loopback(args.endpoint)
    uri = f"ws://{host}:{port}/"
    target = decode_address(args.target)
    campaign = args.campaign
    if campaign == "raw":
        return await raw(host, port, rng, args.cases)
    if campaign == "handshake":
        return await handshake(uri, target, rng, args.cases)
    if campaign == "contact":
        return await contact(uri, target, contact_keys(args.contact_seeds), rng, args.cases)
    if campaign == "sybil":
        return await sybil(uri, target, args.cases)
    if campaign == "slowloris":
        return await slowloris(uri, target, contact_keys(args.contact_seeds), args.cases)
    if campaign == "restricted":
        return await restricted(uri, target, rng, args.cases)
    if campaign == "bulk":
        if args.bulk_port is None:
            raise SystemExit("the bulk campaign needs --bulk-port")
        return await bulk(host, args.bulk_port, rng, args.cases)
    if campaign == "dht":
        return await dht(host, port, rng, args.cases)
    if campaign == "records":
        return await flood(host, port, args.cases)
    raise SystemExit(f"unknown campaign {campaign!r}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("campaign")
    parser.add_argument("--endpoint", help="the node's HOST:PORT (loopback)")
    parser.add_argument("--target", help="the node's address")
    parser.add_argument("--bulk-port", type=int)
    parser.add_argument("--contact-seeds", help="JSON file with an identity's seeds")
    parser.add_argument("--cases", type=int, default=200)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    if args.campaign == "invite":
        signing, dh = os.urandom(32), os.urandom(32)
        Path(contact_keys_path(args)).write_text(json.dumps({"s": signing.hex(), "d": dh.hex()}))
        print(make_invite(IdentityKeys.from_seeds(signing, dh), f"Mallory {signing[:2].hex()}", []))
        return
    if args.endpoint is None or args.target is None:
        parser.error("--endpoint and --target are required")
    started = time.monotonic()
    tally = asyncio.run(run(args))
    seconds = round(time.monotonic() - started, 1)
    print(json.dumps({"campaign": args.campaign, "cases": args.cases, "seed": args.seed,
                      "seconds": seconds, "outcomes": dict(tally)}))  # fmt: skip


def contact_keys_path(args: argparse.Namespace) -> str:
    if args.contact_seeds is None:
        sys.exit("invite needs --contact-seeds FILE to write the seeds to")
    return str(args.contact_seeds)


if __name__ == "__main__":
    main()
