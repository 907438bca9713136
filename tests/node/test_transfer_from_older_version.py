"""A file half-received by a version before part files (schema < 9), between real nodes
in one process (the fixtures of `test_file_endings`).

Those versions kept every received block in the profile's blockstore and no bitmap; the
transfer row says how far it got (`done_bytes`). After the update the blocks must count
at once, with or without the sender: the receiver showed "0 B of N, waiting for the
peer" (and stored 0) until the sender came back, and one whose blocks were all there
waited for a sender it did not need."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from test_file_endings import Node, eventually, in_state, share, start_node, stop_node
from test_file_resume import refuses

from app.core.file_crypto import CHUNK_PLAINTEXT_SIZE, decode_manifest
from app.core.unixfs import decode_file_node
from app.node.api import AddContact, ListTransfers, TransferState
from app.node.blockstore import Blockstore, blockstore_dir
from app.node.config import downloads_folder, load_config
from app.node.part_file import part_path
from app.node.storage.database import connect

KiB = 1024
SIZE = 2048 * KiB


@pytest_asyncio.fixture
async def pair(tmp_path: Path) -> AsyncIterator[list[Node]]:
    """[alice, bob], contacts of each other; the running nodes (stopped at the end)."""
    alice = await start_node(tmp_path / "alice")
    bob = await start_node(tmp_path / "bob", join=alice.network)
    await bob.service.add_contact(AddContact((await alice.service.whoami()).invite))
    await alice.service.add_contact(AddContact((await bob.service.whoami()).invite))
    nodes = [alice, bob]
    yield nodes
    for node in nodes:
        await stop_node(node)


async def left_by_an_older_version(
    pair: list[Node], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chunks: int | None
) -> tuple[str, bytes, int]:
    """Alice shares a file; both stop with Bob's transfer running and his profile as a
    version before part files left it: the tree's root and the first `chunks` leaves
    (None: all) in his blockstore, no part file, no bitmap, `done_bytes` counting those leaves.
    Returns (transfer id, the file, the bytes Bob holds); `pair` is left empty."""
    alice, bob = pair
    refuses(alice, monkeypatch)  # Bob starts fetching and gets nothing
    transfer_id, data = await share(alice, tmp_path, SIZE)
    await eventually(lambda: in_state(bob, transfer_id, TransferState.RUNNING))
    record = await bob.transfer(transfer_id)
    assert record is not None
    source = alice.service.files.blockstore
    leaves = [link.cid for link in decode_file_node(source.get_sync(record.root)).links]
    blocks = {cid: source.get_sync(cid) for cid in [record.root, *leaves[:chunks]]}
    manifest = decode_manifest(record.manifest)
    pair.clear()
    await stop_node(bob)
    await stop_node(alice)
    held = Blockstore(blockstore_dir(bob.root))
    for cid, block in blocks.items():
        held.put_sync(cid, block, verified=True)
    downloads = downloads_folder(load_config(bob.root / "config.json"))
    part_path(manifest, downloads, transfer_id).unlink(missing_ok=True)
    done = SIZE if chunks is None else chunks * CHUNK_PLAINTEXT_SIZE
    conn = connect(bob.root / "eggs.db")
    conn.execute(
        "UPDATE transfers SET done_bytes = ?, received = NULL WHERE transfer_id = ?",
        (done, transfer_id),
    )
    conn.close()
    return transfer_id, data, done


async def shown(node: Node, transfer_id: str) -> tuple[TransferState, int]:
    [transfer] = [
        t for t in await node.service.list_transfers(ListTransfers()) if t.id == transfer_id
    ]
    return transfer.state, transfer.done_bytes


@pytest.mark.asyncio
async def test_blocks_an_older_version_received_count_while_the_sender_is_away(
    pair: list[Node], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    transfer_id, data, done = await left_by_an_older_version(pair, tmp_path, monkeypatch, 4)
    bob = await start_node(tmp_path / "bob")  # Alice is away
    pair.append(bob)

    async def holds_what_it_had() -> bool:
        return await shown(bob, transfer_id) == (TransferState.RUNNING, done)

    await eventually(holds_what_it_had)
    record = await bob.transfer(transfer_id)
    assert record is not None and record.done_bytes == done  # stored: a restart keeps it

    alice = await start_node(tmp_path / "alice", join=bob.network)
    pair.append(alice)
    monkeypatch.undo()  # this run of Alice serves
    await alice.network.publish_presence()
    await eventually(lambda: in_state(bob, transfer_id, TransferState.DONE), 60)
    assert (bob.downloads / "data.bin").read_bytes() == data


@pytest.mark.asyncio
async def test_a_file_an_older_version_received_whole_is_saved_without_the_sender(
    pair: list[Node], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    transfer_id, data, _ = await left_by_an_older_version(pair, tmp_path, monkeypatch, None)
    bob = await start_node(tmp_path / "bob")  # Alice is away
    pair.append(bob)
    await eventually(lambda: in_state(bob, transfer_id, TransferState.DONE))
    assert (bob.downloads / "data.bin").read_bytes() == data
    assert await shown(bob, transfer_id) == (TransferState.DONE, SIZE)
