"""A contact offering more files than it serves: offers are kept, fetches are bounded.

Between two real nodes in one process (the fixtures of `test_file_endings`). Found by the
hostile-peer campaign: 200 offers of 1 MiB (each under the auto-accept size) from a
contact that never serves a block made the receiver fetch all 200 at once, with 200 open,
preallocated part files (200 MiB of disk, 200 file descriptors); thousands of offers in
one state message would have run the node out of descriptors or disk.
"""

from __future__ import annotations

import asyncio
import os

import pytest
from test_file_endings import Node, eventually, pair, saved_files

from app.core.file_crypto import FileManifest, encode_manifest, padded_size
from app.core.ledger_event import EventBody
from app.node.api import CancelTransfer, ListTransfers, TransferState
from app.node.file_transfers import MAX_FETCHES_PER_CONTACT
from app.node.history import FILE

__all__ = ["pair"]  # the fixture, imported for pytest

MiB = 1 << 20


async def offer_unserved_file(alice: Node, bob_address: str, name: str) -> str:
    """Alice offers Bob a 1 MiB file whose blocks nobody has; the transfer id."""
    manifest = FileManifest(
        root_cid=bytes.fromhex("01701220") + os.urandom(32),
        file_key=os.urandom(32),
        padded_size=padded_size(MiB),
        size=MiB,
        name=name,
        mime_type="application/octet-stream",
    )
    transfer_id = os.urandom(8).hex()
    body = EventBody.of(FILE, id=transfer_id, text=name, m=encode_manifest(manifest))
    await alice.messenger.append_event(bob_address, body)
    return transfer_id


def part_files(node: Node) -> set[str]:
    return {p.name for p in saved_files(node) if p.name.endswith(".part")}


@pytest.mark.asyncio
async def test_many_unserved_offers_open_a_bounded_number_of_part_files(
    pair: list[Node],
) -> None:
    alice, bob = pair
    bob_address = (await bob.service.whoami()).address
    count = 3 * MAX_FETCHES_PER_CONTACT
    offered = [await offer_unserved_file(alice, bob_address, f"f{i}.bin") for i in range(count)]

    async def all_accepted() -> bool:
        found = await bob.service.list_transfers(ListTransfers())
        return sum(t.state is TransferState.RUNNING for t in found) == count

    await eventually(all_accepted)
    await eventually(lambda: len(part_files(bob)) == MAX_FETCHES_PER_CONTACT)
    await asyncio.sleep(1.0)  # and no more than that, however long they wait
    first = part_files(bob)
    assert len(first) == MAX_FETCHES_PER_CONTACT

    # nothing is lost: cancelling the fetched ones lets the waiting ones run
    running = [t for t in offered if any(t in name for name in first)]
    for transfer_id in running:
        await bob.service.cancel_transfer(CancelTransfer(transfer_id))
    await eventually(
        lambda: len(part_files(bob)) == MAX_FETCHES_PER_CONTACT and not first & part_files(bob)
    )
