"""Stopping a node with many incoming transfers that wait for a source (the sender
went away): stopping writes nothing for them and they resume at the next start;
while they wait they hold no timers."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from app.core.file_crypto import encode_manifest
from app.node import file_transfers, setting_probes
from app.node.api import (
    AddContact,
    NodeEvent,
    TransferChanged,
    TransferState,
    UpdateSettings,
)
from app.node.blockstore import Blockstore
from app.node.file_io import share_file_sync
from app.node.file_transfers import FileTransfers
from app.node.profile import create_profile, open_store
from app.node.service import NodeService
from app.node.storage.transfers import TransferRecord
from app.node.transport import ConnectionStateChanged, PeerState, TransportEvent

STALLED = 200


@pytest.fixture(autouse=True)
def every_transfer_fetches(monkeypatch: pytest.MonkeyPatch) -> None:
    """All `STALLED` fetch at once, as for contacts that each have their share of them
    (one contact's are fetched `MAX_FETCHES_PER_CONTACT` at a time): what each waiting
    fetch costs is what is measured."""
    monkeypatch.setattr(file_transfers, "MAX_FETCHES_PER_CONTACT", STALLED)


class Manager:
    """No peer is connected, and none connects (`heard` is what it tells)."""

    connected_peers: tuple[str, ...] = ()

    def __init__(self) -> None:
        self.heard: Callable[[TransportEvent], None] = lambda event: None

    def subscribe(self, callback: Callable[[TransportEvent], None]) -> None:
        self.heard = callback

    def connection(self, address: str) -> None:
        return None


class Network:
    """What `FileTransfers` needs of the stack while no source is reachable."""

    listen_host = "127.0.0.1"

    def __init__(self) -> None:
        self.manager = Manager()

    def on_tagged(self, tag: int, handler: object) -> None:
        pass


@pytest_asyncio.fixture
async def node(tmp_path: Path) -> AsyncIterator[NodeService]:
    """A profile with `STALLED` running incoming transfers from Bob, none of whose
    blocks are held (Bob went away before sending any)."""
    create_profile(tmp_path / "me", "Me", None)
    store = open_store(tmp_path / "me", None)
    service = NodeService(store)
    bob = create_profile(tmp_path / "bob", "Bob", None).whoami
    await service.add_contact(AddContact(bob.invite))
    source = tmp_path / "small.bin"
    source.write_bytes(os.urandom(2000))
    manifest = share_file_sync(source, Blockstore(tmp_path / "bobs-blocks"), os.urandom(32))
    for n in range(STALLED):
        record = TransferRecord(
            id=f"{n:032x}",
            contact=bob.address,
            outgoing=False,
            state=TransferState.RUNNING,
            size=manifest.size,
            done_bytes=0,
            time=1.0,
            name=f"f{n}.bin",
            mime="application/octet-stream",
            manifest=encode_manifest(manifest),
            root=manifest.root_cid,
        )
        assert await store.call(store.transfers.add, record)
    yield service
    service.close()
    store.close()


async def _all_waiting(files: FileTransfers) -> None:
    """Run the loop until every transfer's fetch waits for a source."""
    for _ in range(10_000):
        if len(files._watches) == STALLED:
            break
        await asyncio.sleep(0.001)
    assert len(files._watches) == STALLED


def _timers() -> int:
    """Timers pending on the running loop (each is a wake-up to come)."""
    loop: Any = asyncio.get_running_loop()
    return sum(1 for timer in loop._scheduled if not timer.cancelled())


@pytest.mark.asyncio
async def test_stopping_writes_nothing_for_transfers_that_wait_and_they_resume(
    node: NodeService, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = node.store
    files = node.files
    await files.start(Network(), conversation=None)  # type: ignore[arg-type]
    await _all_waiting(files)
    writes: list[str] = []
    set_received = store.transfers.set_received

    def counting(transfer_id: str, *args: Any) -> None:
        writes.append(transfer_id)
        set_received(transfer_id, *args)

    monkeypatch.setattr(store.transfers, "set_received", counting)
    await files.stop()
    # before: one part sync and one committed transaction per transfer (minutes on a
    # slow disk with thousands)
    assert writes == []
    records = await store.call(store.transfers.all)
    assert [r.state for r in records] == [TransferState.RUNNING] * STALLED

    again = FileTransfers(store, lambda: node._config, node.publish)
    await again.start(Network(), conversation=None)  # type: ignore[arg-type]
    try:
        await _all_waiting(again)  # every one resumed
        assert sorted(again._tasks) == sorted(r.id for r in records)
    finally:
        await again.stop()
    assert writes == []


@pytest.mark.asyncio
async def test_transfers_that_wait_for_a_source_hold_no_timers(node: NodeService) -> None:
    files = node.files
    before = _timers()
    await files.start(Network(), conversation=None)  # type: ignore[arg-type]
    try:
        await _all_waiting(files)
        # before: a checkpoint timer each, firing PROGRESS_HZ times a second, and a retry
        # timer each (`WAIT_FOR_SOURCE`): 12,300 wake-ups a second for 3,000 transfers
        assert _timers() - before <= 5
    finally:
        await files.stop()


@pytest.mark.asyncio
async def test_an_ipfs_address_set_wakes_the_transfers_waiting_for_a_source(
    node: NodeService, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = node.files
    rounds: list[str] = []
    sources = files._sources

    def counting(record: TransferRecord) -> Any:
        rounds.append(record.id)
        return {} if len(rounds) > STALLED else sources(record)  # no IPFS traffic

    monkeypatch.setattr(files, "_sources", counting)
    monkeypatch.setattr("app.node.file_transfers.WAIT_FOR_SOURCE", 3600.0)  # no retry timer
    # no daemon runs here (`counting` gives the fetches no source): skip the check that
    # one answers at the address, which `update_settings` makes before saving it
    monkeypatch.setitem(setting_probes.PROBES, "ipfs_api", lambda _address: None)
    await files.start(Network(), conversation=None)  # type: ignore[arg-type]
    try:
        await _all_waiting(files)
        assert len(rounds) == STALLED
        await node.update_settings(UpdateSettings(ipfs_api="/ip4/127.0.0.1/tcp/9/http"))
        for _ in range(10_000):  # the loop runs until every transfer tried again
            if len(rounds) == 2 * STALLED:
                break
            await asyncio.sleep(0.001)
        assert sorted(rounds[STALLED:]) == sorted(rounds[:STALLED])
    finally:
        await files.stop()


@pytest.mark.asyncio
async def test_redials_of_a_gone_sender_tell_the_stalled_transfers_once(
    node: NodeService, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = node.store
    files = node.files
    shown: list[NodeEvent] = []
    files._publish = shown.append
    reads: list[str] = []
    unfinished = store.transfers.unfinished

    def counting(address: str) -> Any:
        reads.append(address)
        return unfinished(address)

    monkeypatch.setattr(store.transfers, "unfinished", counting)
    network = Network()
    await files.start(network, conversation=None)  # type: ignore[arg-type]
    try:
        await _all_waiting(files)
        [record, *_] = await store.call(store.transfers.all)
        shown.clear()

        async def redial_fails() -> None:
            for state in (PeerState.CONNECTING, PeerState.WAITING_TO_RETRY):
                network.manager.heard(ConnectionStateChanged(record.contact, state))
            while files._background:
                await asyncio.wait(set(files._background))

        await redial_fails()  # each shows no speed now
        assert len([e for e in shown if isinstance(e, TransferChanged)]) == STALLED
        assert len(reads) == 1
        for _ in range(3):  # the manager's next attempts: nothing changes
            await redial_fails()
        # before: every failed attempt read all of them and published each again
        assert len([e for e in shown if isinstance(e, TransferChanged)]) == STALLED
        assert len(reads) == 1
    finally:
        await files.stop()


@pytest.mark.asyncio
async def test_a_connection_closing_after_stop_starts_nothing(node: NodeService) -> None:
    """The network's connections close after the transfers stopped (the node's stop
    order): that must not start a task reading the store, which may be closed by then
    ("cannot schedule new futures after shutdown", never retrieved)."""
    files = node.files
    network = Network()
    await files.start(network, conversation=None)  # type: ignore[arg-type]
    await _all_waiting(files)
    [record, *_] = await node.store.call(node.store.transfers.all)
    await files.stop()
    network.manager.heard(ConnectionStateChanged(record.contact, PeerState.WAITING_TO_RETRY))
    assert not files._background
