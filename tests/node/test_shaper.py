"""The shaper on real connections between two NetworkStacks on loopback."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from app.core.identity import IdentityKeys
from app.core.shaping import MODE_SCHEDULES, SCHEDULES, bucket_sizes
from app.core.unixfs import raw_cid
from app.core.wire import Frame, FrameType
from app.node.block_exchange import BlockExchange
from app.node.blockstore import Blockstore
from app.node.network import NetworkStack
from app.node.shaper import ScheduleModel, Shaper, TraceEvent
from app.node.transport import TransportSettings


def new_identity() -> IdentityKeys:
    return IdentityKeys.from_seeds(os.urandom(32), os.urandom(32))


@pytest.mark.parametrize("mode", ["balanced", "strict"])
@pytest.mark.asyncio
async def test_messages_cross_shaped_connections(mode: str) -> None:
    events: list[TraceEvent] = []
    shapers = [Shaper(mode, trace=events.append), Shaper(mode)]
    settings = TransportSettings(prefer_websocket=True)
    stacks = [NetworkStack(new_identity(), settings=settings, hook=s) for s in shapers]
    got: asyncio.Queue[bytes] = asyncio.Queue()

    async def inbox(address: str, payload: bytes) -> None:
        await got.put(payload)

    try:
        for stack in stacks:
            await stack.start("127.0.0.1", 0)
        await stacks[1].join_via(stacks[0].endpoints())
        await stacks[1].publish_presence()
        stacks[1].on_message(inbox)
        # payloads start as the messenger's do (0x01): a random first byte is a side
        # protocol's tag ~2 times in 256 (0xb1 is a bundle reply) and never reaches `inbox`
        big = b"\x01" + os.urandom(300_000 if mode == "balanced" else 20_000)
        messages = [b"hi", b"\x01" + os.urandom(3000), big, b"bye"]
        for m in messages:
            await asyncio.wait_for(stacks[0].manager.send(stacks[1].address, m), 60)
        received = [await asyncio.wait_for(got.get(), 30) for _ in messages]
        assert received == messages
        await asyncio.sleep(3.5)  # idle after the bulk dwell: cover only
        (link,) = shapers[0].links
        assert link.channel is not None and link.channel.decisions >= 1
        assert link.channel.sender.schedule.id in MODE_SCHEDULES[mode]
    finally:
        for stack in stacks:
            await stack.stop()
    sent = [e for e in events if e.kind in ("wire", "cover")]
    assert {e.size for e in sent} <= set(bucket_sizes(mode))
    assert any(e.kind == "cover" for e in sent)
    received_frames = {e.size for e in events if e.kind == "in"}
    assert received_frames <= set(bucket_sizes(mode))  # the peer's cover reached us, dropped
    assert len([e for e in events if e.kind == "delivered"]) >= len(messages)


@pytest.mark.asyncio
async def test_off_mode_peer_still_understands_a_shaping_peer() -> None:
    shapers = [Shaper("balanced"), Shaper("off")]
    stacks = [
        NetworkStack(new_identity(), settings=TransportSettings(prefer_websocket=True), hook=s)
        for s in shapers
    ]
    got: asyncio.Queue[bytes] = asyncio.Queue()

    async def inbox(address: str, payload: bytes) -> None:
        await got.put(payload)

    try:
        for stack in stacks:
            await stack.start("127.0.0.1", 0)
        await stacks[1].join_via(stacks[0].endpoints())
        await stacks[1].publish_presence()
        stacks[0].on_message(inbox)
        stacks[1].on_message(inbox)
        await asyncio.wait_for(stacks[0].manager.send(stacks[1].address, b"shaped"), 30)
        assert await asyncio.wait_for(got.get(), 10) == b"shaped"
        await asyncio.wait_for(stacks[1].manager.send(stacks[0].address, b"plain"), 30)
        assert await asyncio.wait_for(got.get(), 10) == b"plain"
    finally:
        for stack in stacks:
            await stack.stop()


def test_shipped_model_loads_and_picks_only_vetted_schedules() -> None:
    model = ScheduleModel.load()
    assert model.loaded, "resources/models/shaper.onnx must ship with the app"
    vetted = set(MODE_SCHEDULES["balanced"])
    rows = [
        (0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 3600.0, 0.0),
        (8.2, 1.0, 8.2, 8.2, 8.2, 0.0, 0.0, 0.0),
        (18.0, 4.0, 20.0, 18.0, 18.0, 20.0, 0.0, 2.0),
        (12.0, 10.0, 13.0, 11.0, 9.0, 12.0, 0.1, 1.0),
    ]
    picks = {model.pick(r) for r in rows}
    assert picks <= vetted
    assert 0 in picks and 2 in picks  # idle stays on the base rate; a bulk backlog bursts
    assert {model.pick((x, x, x, x, x, x, x, 9.0)) for x in (-5.0, 1e9)} <= vetted
    assert all(s.id == i for i, s in enumerate(SCHEDULES))


@pytest.mark.asyncio
async def test_daemon_option_sets_the_mode(tmp_path: Path) -> None:
    from app.cli import build_parser
    from app.node.api import DaemonOptions, InvalidArgument, UpdateSettings
    from app.node.daemon import hosted_node
    from app.node.profile import create_profile

    args = build_parser().parse_args(["daemon", "--shaping", "strict"])
    assert args.shaping == "strict"
    create_profile(tmp_path / "p", "P", "a passphrase 123")
    options = DaemonOptions(tmp_path / "p", listen="127.0.0.1:0", lan=False, shaping="strict")
    async with hosted_node(options, lambda: "a passphrase 123", log_to_profile=False) as node:
        network = node._network
        assert isinstance(network, NetworkStack)
        assert isinstance(network.manager._hook, Shaper) and network.manager._hook.mode == "strict"
    saved = DaemonOptions(tmp_path / "p", listen="127.0.0.1:0", lan=False)
    async with hosted_node(saved, lambda: "a passphrase 123", log_to_profile=False) as node:
        shaper = node._network.manager._hook  # type: ignore[union-attr]
        assert isinstance(shaper, Shaper) and shaper.mode == "balanced"  # the default setting
        await node.update_settings(UpdateSettings(shaping_mode="off"))
        for _ in range(50):
            if shaper.mode == "off":
                break
            await asyncio.sleep(0.02)
        assert shaper.mode == "off"
    bad = DaemonOptions(tmp_path / "p", listen="127.0.0.1:0", lan=False, shaping="loud")
    with pytest.raises(InvalidArgument):
        async with hosted_node(bad, lambda: "a passphrase 123", log_to_profile=False):
            pass


@pytest.mark.asyncio
async def test_a_malformed_padded_frame_closes_only_that_connection() -> None:
    settings = TransportSettings(prefer_websocket=True, backoff_initial=0.2, backoff_max=1.0)
    stacks = [
        NetworkStack(new_identity(), settings=settings),  # a peer that writes raw frames
        NetworkStack(new_identity(), settings=settings, hook=Shaper("balanced")),
    ]
    got: asyncio.Queue[bytes] = asyncio.Queue()

    async def inbox(address: str, payload: bytes) -> None:
        await got.put(payload)

    try:
        for stack in stacks:
            await stack.start("127.0.0.1", 0)
        await stacks[0].join_via(stacks[1].endpoints())
        await stacks[1].publish_presence()
        stacks[1].on_message(inbox)
        await asyncio.wait_for(stacks[0].manager.send(stacks[1].address, b"first"), 30)
        assert await asyncio.wait_for(got.get(), 10) == b"first"
        conn = stacks[0].manager.connection(stacks[1].address)
        assert conn is not None
        conn.write_frame(Frame(FrameType.PADDED, b"\x80" + (3).to_bytes(4, "big") + b"bad"))
        await asyncio.wait_for(conn.wait_closed(), 10)
        assert conn.close_reason is not None and "protocol error" in conn.close_reason
        # the shaping node is still up and takes a new connection
        await asyncio.wait_for(stacks[0].manager.send(stacks[1].address, b"again"), 30)
        assert await asyncio.wait_for(got.get(), 10) == b"again"
    finally:
        for stack in stacks:
            await stack.stop()


@pytest.mark.asyncio
async def test_a_fetch_raises_our_side_of_that_connection_to_burst_until_it_ends() -> None:
    """`NetworkStack.fetching_from`: the small block requests of a file fetch must not
    wait for the base schedule's slots (they capped a balanced transfer at ~22 MB/s)."""
    shapers = [Shaper("balanced"), Shaper("balanced")]
    settings = TransportSettings(prefer_websocket=True)
    stacks = [NetworkStack(new_identity(), settings=settings, hook=s) for s in shapers]
    try:
        for stack in stacks:
            await stack.start("127.0.0.1", 0)
        await stacks[1].join_via(stacks[0].endpoints())
        await stacks[1].publish_presence()
        await asyncio.wait_for(stacks[0].manager.send(stacks[1].address, b"hello"), 60)
        (link,) = shapers[0].links
        assert link.channel is not None
        sender = link.channel.sender
        with stacks[0].fetching_from(stacks[1].address):
            with stacks[0].fetching_from(stacks[1].address):  # two fetches from one peer
                assert sender.floor == 1 and sender.schedule.id >= 1
            assert sender.floor == 1  # the other fetch still runs
        assert sender.floor is None
        with stacks[0].fetching_from(stacks[1].address):  # a link opened during a fetch
            await stacks[0].manager.disconnect(stacks[1].address)
            await asyncio.wait_for(stacks[0].manager.send(stacks[1].address, b"again"), 60)
            assert shapers[0].links[-1].channel is not None
            assert shapers[0].links[-1].channel.sender.floor == 1
    finally:
        for stack in stacks:
            await stack.stop()


def test_check_models_names_a_missing_model(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """`--selftest` reports the shipped models; a build without them said nothing."""
    from app.node import api, ml

    assert api.check_models() == {"anomaly": "", "shaper": ""}
    monkeypatch.setattr(ml, "models_dir", lambda: tmp_path)
    found = api.check_models()
    assert "missing" in found["anomaly"] and found["shaper"]


@pytest.mark.asyncio
async def test_answering_block_requests_raises_our_side_to_burst(tmp_path: Path) -> None:
    """The model moves a connection to bulk only for a backlog of ~15 KB or more. A
    folder of small files is asked for 32 blocks of ~2 kB at a time: the sender stayed
    at the base schedule (~8 KB/s, about 3 files a second). While it answers a block
    request its side now runs at least at burst, like the fetching side."""
    shapers = [Shaper("balanced"), Shaper("balanced")]
    settings = TransportSettings(prefer_websocket=True)
    stacks = [NetworkStack(new_identity(), settings=settings, hook=s) for s in shapers]
    sender, receiver = stacks
    floors: list[int | None] = []

    class Policy:
        async def may_serve(self, address: str, root: bytes, cid: bytes) -> bool:
            (link,) = shapers[0].links
            assert link.channel is not None
            floors.append(link.channel.sender.floor)
            return True

        def served(self, address: str, root: bytes, cid: bytes, size: int) -> None:
            pass

    serving = BlockExchange(sender, Blockstore(tmp_path / "blocks"), Policy())
    asking = BlockExchange(receiver, Blockstore(tmp_path / "theirs"), Policy())
    try:
        for stack in stacks:
            await stack.start("127.0.0.1", 0)
        serving.start()
        asking.start()
        await receiver.join_via(sender.endpoints())
        await sender.publish_presence()
        await asyncio.wait_for(receiver.manager.send(sender.address, b"\x01hello"), 60)
        cid = raw_cid(b"a block the sender does not hold")
        assert await asyncio.wait_for(asking.request(sender.address, cid, cid), 30) is None
        assert floors == [1]  # burst while it answered
        (link,) = shapers[0].links
        assert link.channel is not None and link.channel.sender.floor is None
        with sender.serving_to(receiver.address), sender.fetching_from(receiver.address):
            assert link.channel.sender.floor == 1
        assert link.channel.sender.floor is None
    finally:
        await serving.stop()
        await asking.stop()
        for stack in stacks:
            await stack.stop()
