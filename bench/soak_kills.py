"""Soak: three daemons that write and share files to each other while being SIGKILLed.

Alice, Bob and Carol (real `scrambled-eggs daemon` processes on loopback, each a
contact of the other two) send messages in every direction and share files while the
driver SIGKILLs one of them at random moments and starts it again after a random pause,
as a user would (`scrambled-eggs daemon`). Most messages go through the control socket
(as the CLI does, without 1,000 process starts); some through `scrambled-eggs send`,
now and then killing the writer while one runs (a send cut off is "maybe sent": it must
be there at most once); files through `scrambled-eggs share`, also while the node is
down (the share is recorded and offered when it starts).

At the end, with all three up, once everything settled (or `--settle` seconds passed),
what a user would check, through the CLI:

- every message a daemon accepted is on both sides exactly once, nothing else is there
  but the maybe-sent ones (each at most once), each writer's messages in the order
  written, and both sides show the conversation in the same order (`messages --json`);
- `history verify` passes on every node for every contact, with the same heads on both
  sides;
- every file shared is received, every received file (also of a share a kill cut
  off) is `done`, its SHA-256 equals the source's, its path is not a `.part`, no
  `.part` is left in any downloads folder, and no other file is there.

Not a test (nothing here runs in CI): prints one JSON object per round, with the seed,
and exits 1 if any check failed. The schedule comes from `--seed` (random if not given;
a replay is close, not identical, since kills land at other moments of the daemons'
work).

    .venv/bin/python bench/soak_kills.py --seed 7 --minutes 10 [--keep DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from daemons import ROOT, node_env, run_cli, spawn_daemon

from app.node.api import ListMessages, ListTransfers, Message, SendMessage
from app.node.control import ControlClient, connect_control
from app.node.paths import ProfilePaths

PASS = "a passphrase for the soak"
NAMES = ("Alice", "Bob", "Carol")
KiB, MiB = 1024, 1024 * 1024
PAGE = 1000
"""The most messages the node answers at a time (`ListMessages`): longer conversations
are read page by page."""
WHOLE = 1_000_000
"""`messages --limit` for a whole conversation (the CLI asks page by page). With
`--minutes 6` a conversation held ~1,400 messages, and a check of only the newest 1,000
reported the older ones lost."""


@dataclass
class Node:
    name: str
    profile: Path
    downloads: Path
    env: dict[str, str]
    address: str = ""
    process: subprocess.Popen[bytes] | None = None
    client: ControlClient | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    """Held while the daemon starts and by CLI commands run while it is down (the CLI
    then opens the profile itself; the daemon waits for the profile's lock anyway)."""
    kills: int = 0

    @property
    def up(self) -> bool:
        return self.client is not None

    async def start(self) -> None:
        async with self.lock:
            self.process = spawn_daemon(self.profile, "balanced", self.env)
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise RuntimeError(f"{self.name}'s daemon exited ({self.process.returncode})")
                client = await connect_control(ProfilePaths(self.profile), timeout=1.0)
                if client is not None:
                    with contextlib.suppress(Exception):
                        if (await client.status()).running:
                            self.client = client
                            return
                    await client.close()
                await asyncio.sleep(0.2)
            raise RuntimeError(f"{self.name}'s daemon did not come up")

    async def kill(self) -> None:
        client, process = self.client, self.process
        self.client = None
        if process is not None:
            process.send_signal(signal.SIGKILL)
            await asyncio.to_thread(process.wait)
        if client is not None:
            with contextlib.suppress(Exception):
                await client.close()
        self.process = None
        self.kills += 1

    async def stop(self) -> None:
        if self.client is not None:
            with contextlib.suppress(Exception):
                await self.client.close()
            self.client = None
        if self.process is not None:
            self.process.send_signal(signal.SIGTERM)
            try:
                await asyncio.to_thread(self.process.wait, 30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                await asyncio.to_thread(self.process.wait)
            self.process = None

    async def cli(self, *args: str) -> Any:
        """`scrambled-eggs ARGS --json`; through the daemon if it runs, else on the
        profile (holding `lock`, so a restart waits)."""
        if self.up:
            return await asyncio.to_thread(run_cli, self.profile, *args, env=self.env)
        async with self.lock:
            return await asyncio.to_thread(run_cli, self.profile, *args, env=self.env)


@dataclass
class Ledger:
    """What the driver did, to check the end state against."""

    sent: dict[tuple[str, str], list[tuple[str, str]]] = field(default_factory=dict)
    """(writer, reader) -> (id, text) of every message the writer's node accepted."""
    maybe: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    """(writer, reader) -> texts whose `send` was cut off by a kill."""
    files: dict[str, tuple[str, str, str]] = field(default_factory=dict)
    """transfer id -> (sender, receiver, SHA-256 of the source)."""
    maybe_shares: int = 0
    via_cli: set[str] = field(default_factory=set)
    """Ids of messages sent with `scrambled-eggs send`: these run beside the driver's
    writes, so their place among the writer's other messages is not known to it."""


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(MiB):
            digest.update(chunk)
    return digest.hexdigest()


def make_file(folder: Path, rng: random.Random, serial: int) -> Path:
    sizes = [0, 1, 1000, 200 * KiB, 256 * KiB - 16, 1 * MiB + 7, 3 * MiB, 9 * MiB, 40 * MiB]
    size = rng.choice(sizes)
    path = folder / f"f{serial:04d}.bin"
    path.write_bytes(rng.randbytes(size))
    return path


async def setup(work: Path) -> dict[str, Node]:
    nodes = {}
    for name in NAMES:
        profile = work / name.lower()
        downloads = work / f"{name.lower()}-downloads"
        env = node_env(ROOT, PASS)
        node = Node(name, profile, downloads, env)
        await asyncio.to_thread(run_cli, profile, "init", "--name", name, env=env)
        config = json.loads((profile / "config.json").read_text())
        config.update(downloads_folder=str(downloads), auto_accept_bytes=1 << 30)
        (profile / "config.json").write_text(json.dumps(config))
        nodes[name] = node
    # invites made while the daemons run carry the endpoints they listen on
    await asyncio.gather(*(n.start() for n in nodes.values()))
    invites = {}
    for node in nodes.values():
        me = await asyncio.to_thread(run_cli, node.profile, "whoami", env=node.env)
        node.address, invites[node.name] = me["address"], me["invite"]
    for node in nodes.values():
        for other in NAMES:
            if other != node.name:
                await node.cli("contacts", "add", invites[other])
    return nodes


async def drive(
    nodes: dict[str, Node], rng: random.Random, seconds: float, files_dir: Path
) -> Ledger:
    ledger = Ledger()
    pending: set[asyncio.Task[None]] = set()
    serial = 0
    end = time.monotonic() + seconds

    def later(coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        pending.add(task)
        task.add_done_callback(pending.discard)

    async def restart_after(node: Node, pause: float) -> None:
        await asyncio.sleep(pause)
        await node.start()

    async def cli_send(writer: Node, reader: str, text: str) -> None:
        key = (writer.name, reader)
        try:
            answer = await writer.cli("send", reader, text)
        except RuntimeError:  # cut off by a kill: maybe recorded, maybe not
            ledger.maybe.setdefault(key, []).append(text)
            return
        ledger.sent.setdefault(key, []).append((answer["id"], text))
        ledger.via_cli.add(answer["id"])

    async def cli_share(writer: Node, reader: str, path: Path) -> None:
        digest = sha256(path)
        try:
            answer = await writer.cli("share", reader, str(path))
        except RuntimeError:
            ledger.maybe_shares += 1
            return
        for tid in answer["transfers"]:
            ledger.files[tid] = (writer.name, reader, digest)

    while time.monotonic() < end:
        writer = nodes[rng.choice(NAMES)]
        reader = rng.choice([n for n in NAMES if n != writer.name])
        roll = rng.random()
        if roll < 0.05:
            serial += 1
            later(cli_share(writer, reader, make_file(files_dir, rng, serial)))
        elif roll < 0.12:
            serial += 1
            later(cli_send(writer, reader, f"{writer.name}>{reader} cli {serial:05d}"))
        elif roll < 0.14 and writer.up:  # a kill while `send` runs
            serial += 1
            later(cli_send(writer, reader, f"{writer.name}>{reader} cli {serial:05d}"))
            await asyncio.sleep(rng.uniform(0.3, 1.5))
            if writer.up:
                await writer.kill()
                later(restart_after(writer, rng.uniform(0.3, 6.0)))
        elif roll < 0.16:
            victim = nodes[rng.choice(NAMES)]
            if victim.up:
                await victim.kill()
                later(restart_after(victim, rng.uniform(0.3, 6.0)))
        elif writer.up:
            for _ in range(rng.randint(1, 6)):
                serial += 1
                text = f"{writer.name}>{reader} {serial:05d} " + "x" * rng.randint(0, 200)
                assert writer.client is not None
                try:
                    message = await writer.client.send_message(SendMessage(reader, text))
                except Exception:  # the client went with a kill
                    ledger.maybe.setdefault((writer.name, reader), []).append(text)
                    break
                ledger.sent.setdefault((writer.name, reader), []).append((message.id, text))
                if writer.client is None:
                    break
        await asyncio.sleep(rng.uniform(0.0, 0.4))
    await asyncio.gather(*pending)
    for node in nodes.values():
        if not node.up:
            await node.start()
    return ledger


async def whole_conversation(client: ControlClient, other: str) -> list[Message]:
    """Every message of the conversation with `other`, oldest first, page by page."""
    found: list[Message] = []
    before: str | None = None
    while page := await client.list_messages(ListMessages(other, before, PAGE)):
        found[:0] = page
        before = page[0].id
    return found


async def settled(nodes: dict[str, Node], ledger: Ledger) -> tuple[bool, dict[str, Any]]:
    """Whether every message is delivered and every file received (asked through the
    control sockets, as polling with the CLI would cost a dozen process starts a time);
    what is missing."""
    missing: dict[str, Any] = {}
    for name, node in nodes.items():
        assert node.client is not None
        for other in NAMES:
            if other == name:
                continue
            found = await whole_conversation(node.client, other)
            ids = {m.id for m in found}
            want = [i for i, _ in ledger.sent.get((name, other), [])]
            want += [i for i, _ in ledger.sent.get((other, name), [])]
            lost = [i for i in want if i not in ids]
            undelivered = [
                m.id for m in found if m.outgoing and m.status.value not in ("delivered", "read")
            ]
            if lost or undelivered:
                missing[f"{name}/{other}"] = {"absent": len(lost), "undelivered": len(undelivered)}
        held = {t.id: t for t in await node.client.list_transfers(ListTransfers())}
        for tid, (sender, receiver, _) in ledger.files.items():
            if name in (sender, receiver):
                t = held.get(tid)
                if t is None or t.state.value != "done":
                    state = "absent" if t is None else t.state.value
                    missing.setdefault("transfers", []).append((name, tid, state))
    return not missing, missing


def check(nodes: dict[str, Node], ledger: Ledger, sources: Path) -> list[str]:
    """Every promise, through the CLI; the broken ones as sentences."""
    errors: list[str] = []
    convo: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for name, node in nodes.items():
        for other in NAMES:
            if other != name:
                convo[name, other] = run_cli(
                    node.profile, "messages", other, "--limit", str(WHOLE), env=node.env
                )
    for (name, other), found in convo.items():
        ids = [m["id"] for m in found]
        if len(ids) != len(set(ids)):
            errors.append(f"{name} holds duplicated messages with {other}")
        texts = [m["text"] for m in found if m["transfer"] is None]
        for writer in (name, other):
            sent = ledger.sent.get((writer, other if writer == name else name), [])
            by_id = {m["id"]: m for m in found}
            absent = [i for i, _ in sent if i not in by_id]
            if absent:
                errors.append(f"{name} lacks {len(absent)} of {writer}'s messages with {other}")
            if [by_id[i]["text"] for i, _ in sent if i in by_id] != [
                t for i, t in sent if i in by_id
            ]:
                errors.append(f"{name} shows other text for {writer}'s messages")
            positions = [ids.index(i) for i, _ in sent if i in by_id and i not in ledger.via_cli]
            if positions != sorted(positions):
                errors.append(f"{name} shows {writer}'s messages to/from {other} out of order")
            for text in ledger.maybe.get((writer, other if writer == name else name), []):
                if texts.count(text) > 1:
                    errors.append(f"{name} holds a maybe-sent message {texts.count(text)} times")
        known = {
            i
            for w in (name, other)
            for i, _ in ledger.sent.get((w, other if w == name else name), [])
        }
        maybe = set(ledger.maybe.get((name, other), [])) | set(ledger.maybe.get((other, name), []))
        strays = [
            m
            for m in found
            if m["transfer"] is None and m["id"] not in known and m["text"] not in maybe
        ]
        if strays:
            errors.append(f"{name} holds {len(strays)} messages with {other} nobody sent")
    for name, other in convo:
        if name < other and [m["id"] for m in convo[name, other]] != [
            m["id"] for m in convo[other, name]
        ]:
            a, b = convo[name, other], convo[other, name]
            errors.append(
                f"{name} and {other} see the conversation differently ({len(a)} vs {len(b)})"
            )
    heads: dict[tuple[str, str], list[str]] = {}
    for name, node in nodes.items():
        for other in NAMES:
            if other == name:
                continue
            try:
                report = run_cli(node.profile, "history", "verify", other, env=node.env)
            except RuntimeError as exc:
                errors.append(f"history verify fails on {name} for {other}: {exc}")
                continue
            heads[name, other] = report["heads"]
            if report.get("equivocations"):
                errors.append(f"{name} finds equivocations with {other}")
    for (name, other), h in heads.items():
        if (other, name) in heads and heads[other, name] != h:
            errors.append(f"{name} and {other} have other heads")
    for name, node in nodes.items():
        listed = run_cli(node.profile, "transfers", env=node.env)
        saved = {Path(t["path"]) for t in listed if not t["outgoing"] and t["state"] == "done"}
        if node.downloads.exists():
            # a file under a final name is a finished transfer's, never a half-written one
            files = [p for p in node.downloads.rglob("*") if p.is_file()]
            unknown = [p for p in files if p not in saved and not p.name.endswith(".part")]
            if unknown:
                errors.append(f"{name} holds {len(unknown)} files no finished transfer saved")
        for t in listed:
            if t["outgoing"]:
                continue
            # also the files of shares a kill cut off (each source's name is unique)
            if t["state"] != "done":
                errors.append(f"{name}'s transfer {t['id']} is {t['state']}: {t['error']}")
                continue
            path = Path(t["path"])
            if path.name.endswith(".part"):
                errors.append(f"{name}'s transfer {t['id']} is done as a .part")
            if sha256(path) != sha256(sources / t["name"]):
                errors.append(f"{name}'s file {path.name} differs from its source")
        if node.downloads.exists():
            parts = [p.name for p in node.downloads.rglob("*.part")]
            if parts:
                errors.append(f"{name} left {len(parts)} .part files: {parts[:3]}")
    return errors


async def soak(seed: int, seconds: float, settle: float, work: Path) -> dict[str, Any]:
    rng = random.Random(seed)
    files_dir = work / "sources"
    files_dir.mkdir(parents=True)
    started = time.monotonic()
    nodes = await setup(work)
    try:
        ledger = await drive(nodes, rng, seconds, files_dir)
        wrote = time.monotonic() - started
        deadline = time.monotonic() + settle
        while True:
            done, missing = await settled(nodes, ledger)
            if done or time.monotonic() > deadline:
                break
            await asyncio.sleep(2.0)
        errors = await asyncio.to_thread(check, nodes, ledger, files_dir)
        if not done:
            errors.insert(0, f"not settled in {settle:.0f} s: {missing}")
        return {
            "seed": seed,
            "ok": not errors,
            "errors": errors,
            "messages": sum(len(v) for v in ledger.sent.values()),
            "maybe_sent": sum(len(v) for v in ledger.maybe.values()),
            "files": len(ledger.files),
            "maybe_shared": ledger.maybe_shares,
            "kills": {n.name: n.kills for n in nodes.values()},
            "writing_s": round(wrote, 1),
            "settling_s": round(time.monotonic() - started - wrote, 1),
        }
    finally:
        await asyncio.gather(*(n.stop() for n in nodes.values()))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, help="the first round's seed (default: random)")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--minutes", type=float, default=3.0, help="of writing, per round")
    parser.add_argument("--settle", type=float, default=300.0, help="seconds to settle")
    parser.add_argument("--keep", type=Path, help="keep each round's profiles under DIR")
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**32)
    failed = 0
    for round_ in range(args.rounds):
        work = Path(tempfile.mkdtemp(prefix="soak-", dir=args.keep)).resolve()
        result = asyncio.run(soak(seed + round_, args.minutes * 60, args.settle, work))
        result["work"] = str(work)
        print(json.dumps(result), flush=True)
        failed += not result["ok"]
        if result["ok"] and args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
