"""A receiver tells the sender the states of many transfers in few messages (``xfers``),
between two (or three) real nodes in one process, wired as the daemon wires them; and a
hostile receiver's ``xfers`` is applied only to what it may speak of."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path

import cbor2
import pytest
import pytest_asyncio
from test_file_endings import Node, _stuck_fetch, eventually, in_state, start_node, stop_node

from app.node import file_transfers
from app.node.api import (
    AddContact,
    ShareFiles,
    StorageFailed,
    TransferChanged,
    TransferState,
    UpdateSettings,
)
from app.node.state_message import (
    MAX_TOLD,
    TransferStatus,
    TransferStatuses,
    decode_plaintext,
    encode_statuses,
)


@pytest_asyncio.fixture
async def pair(tmp_path: Path) -> AsyncIterator[list[Node]]:
    """[alice, bob], contacts of each other (as in test_file_endings)."""
    alice = await start_node(tmp_path / "alice")
    bob = await start_node(tmp_path / "bob", join=alice.network)
    await bob.service.add_contact(AddContact((await alice.service.whoami()).invite))
    await alice.service.add_contact(AddContact((await bob.service.whoami()).invite))
    yield [alice, bob]
    await stop_node(alice)
    await stop_node(bob)


def test_a_list_of_states_round_trips_and_stays_small() -> None:
    one = TransferStatus("ab" * 16, "running")
    assert decode_plaintext(encode_statuses([one])) == one  # alone: the form every node reads
    longest = [
        TransferStatus(f"{i:064x}", "failed", "permission", 2**63 - 1) for i in range(MAX_TOLD)
    ]
    raw = encode_statuses(longest)
    assert decode_plaintext(raw) == TransferStatuses(tuple(longest))
    assert len(raw) < 14 * 1024  # protocol.md 10.3; the session message takes 1 MiB
    with pytest.raises(ValueError):
        encode_statuses([])
    with pytest.raises(ValueError):
        encode_statuses([*longest, one])


def test_a_malformed_list_of_states_is_refused_whole() -> None:
    good = {"i": "ab" * 16, "s": "running", "r": "", "d": 0}
    other = {**good, "i": "cd" * 16}
    many = [{**good, "i": f"{i:032x}"} for i in range(MAX_TOLD + 1)]
    for fields in (
        {"t": "xfers"},
        {"t": "xfers", "x": "not a list"},
        {"t": "xfers", "x": []},
        {"t": "xfers", "x": [good]},  # one state goes as "xfer"
        {"t": "xfers", "x": many},  # more than MAX_TOLD
        {"t": "xfers", "x": [0] * 1_000_000},  # cheap to send: refused before any is read
        {"t": "xfers", "x": [good, 7]},
        {"t": "xfers", "x": [good, [other]]},
        {"t": "xfers", "x": [good, {**other, "s": "done"}]},  # done is told by an event
        {"t": "xfers", "x": [good, {**other, "r": "\x1b]0;owned\x07"}]},  # free text
        {"t": "xfers", "x": [good, {**other, "i": "a" * 65}]},
        {"t": "xfers", "x": [good, {**other, "i": 7}]},
        {"t": "xfers", "x": [good, {**other, "d": -1}]},
        {"t": "xfers", "x": [good, {**other, "d": 2**63}]},
        {"t": "xfers", "x": [good, {**good, "s": "paused"}]},  # one transfer named twice
    ):
        with pytest.raises(ValueError):
            decode_plaintext(cbor2.dumps(fields))


@pytest.mark.asyncio
async def test_many_transfers_accepted_at_once_reach_the_sender_in_few_messages(
    pair: list[Node], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """90 small files dropped on a conversation are accepted at once by the receiver; its
    state signals went one per file, one at a time, each waiting for its shaped slot
    (120 ms on a balanced connection), and the sender showed most of them as offered
    ("asked whether to accept") for seconds. Every waiting state now goes in one
    message (still one message at a time): 2 messages here where there were 40, and
    the sender's window gets one change per transfer, to running."""
    alice, bob = pair
    _stuck_fetch(bob, monkeypatch)  # no block is served: only Bob's word moves Alice's rows
    conversation = bob.service.files._conversation
    assert conversation is not None
    real_send = conversation.send_signal
    held = asyncio.Event()
    told: list[object] = []

    async def held_back(address: str, plaintext: bytes) -> bool:
        await held.wait()  # a shaped slot: the other states queue meanwhile
        told.append(decode_plaintext(plaintext))
        return await real_send(address, plaintext)

    monkeypatch.setattr(conversation, "send_signal", held_back)
    shown: list[tuple[str, TransferState]] = []
    real_publish = alice.service.files._publish

    def recording(event: object) -> None:
        if isinstance(event, TransferChanged):
            shown.append((event.transfer.id, event.transfer.state))
        real_publish(event)  # type: ignore[arg-type]

    monkeypatch.setattr(alice.service.files, "_publish", recording)
    paths = []
    for i in range(40):
        path = tmp_path / f"{i}.jpg"
        path.write_bytes(os.urandom(2000))
        paths.append(str(path))
    transfers = await alice.service.share_files(ShareFiles("Bob", paths))
    ids = {t.id for t in transfers}
    for transfer in transfers:
        await eventually(lambda t=transfer: in_state(bob, t.id, TransferState.RUNNING))
    assert all([await in_state(alice, i, TransferState.OFFERED) for i in ids])
    held.set()
    for transfer in transfers:
        await eventually(lambda t=transfer: in_state(alice, t.id, TransferState.RUNNING), 10)
    assert len(told) <= 2  # the one on its way when the rest queued, then all of them
    assert sorted(shown) == sorted((i, TransferState.RUNNING) for i in ids)


@pytest.mark.asyncio
async def test_a_receivers_list_of_states_moves_only_the_transfers_it_may_speak_of(
    pair: list[Node], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A hostile receiver's ``xfers`` names, beside a transfer Alice sent it, one she
    sent Carol, one it sent her, and ids nobody knows: only its own moves. Malformed
    lists are dropped whole, each counted, and the session goes on."""
    alice, bob = pair
    carol = await start_node(tmp_path / "carol", join=alice.network)
    try:
        await carol.service.update_settings(UpdateSettings(auto_accept_bytes=0))
        await carol.service.add_contact(AddContact((await alice.service.whoami()).invite))
        await alice.service.add_contact(AddContact((await carol.service.whoami()).invite))
        _stuck_fetch(bob, monkeypatch)
        source = tmp_path / "data.bin"
        source.write_bytes(os.urandom(3000))
        [to_bob] = await alice.service.share_files(ShareFiles("Bob", [str(source)]))
        [to_carol] = await alice.service.share_files(ShareFiles("Carol", [str(source)]))
        [from_bob] = await bob.service.share_files(ShareFiles("Alice", [str(source)]))
        await eventually(lambda: in_state(alice, to_bob.id, TransferState.RUNNING))
        await eventually(lambda: in_state(carol, to_carol.id, TransferState.OFFERED))
        await eventually(lambda: in_state(alice, from_bob.id, TransferState.DONE))
        await eventually(lambda: in_state(bob, from_bob.id, TransferState.DONE))
        alice_address = alice.network.address
        stats = alice.messenger.stats

        async def bob_says(*items: dict[str, object]) -> None:
            raw = cbor2.dumps({"t": "xfers", "x": list(items)}, canonical=True)
            assert await bob.messenger.send_signal(alice_address, raw)

        def state(transfer_id: str, s: str, done: int = 0) -> dict[str, object]:
            return {"i": transfer_id, "s": s, "r": "", "d": done}

        await bob_says(
            state("ee" * 16, "failed"),
            state(to_carol.id, "paused"),
            state(from_bob.id, "failed"),
            state(to_bob.id, "paused", 1000),
            state("ff" * 32, "running"),
        )
        # one transaction for the whole list: the others were weighed with it
        await eventually(lambda: in_state(alice, to_bob.id, TransferState.PAUSED), 10)
        assert await in_state(alice, to_carol.id, TransferState.OFFERED)
        assert await in_state(alice, from_bob.id, TransferState.DONE)
        record = await alice.transfer(to_bob.id)
        assert record is not None and record.done_bytes == 1000

        malformed = stats["malformed"]
        too_many = [state(f"{i:032x}", "running") for i in range(MAX_TOLD)]
        await bob_says(*too_many, state(to_bob.id, "running"))
        await bob_says(state(to_bob.id, "running"), state(to_bob.id, "running"))
        await bob_says(state(to_bob.id, "running"), {"i": to_carol.id, "s": "running"})
        await eventually(lambda: stats["malformed"] == malformed + 3, 10)
        assert await in_state(alice, to_bob.id, TransferState.PAUSED)
        await bob_says(state(to_bob.id, "running"), state("ee" * 16, "running"))
        await eventually(lambda: in_state(alice, to_bob.id, TransferState.RUNNING), 10)
        assert await in_state(alice, to_carol.id, TransferState.OFFERED)
        assert stats["malformed"] == malformed + 3
    finally:
        await stop_node(carol)


@pytest.mark.asyncio
async def test_states_the_full_disk_held_back_go_together_and_only_if_still_true(
    pair: list[Node], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Bob's profile disk is full as he accepts five files: the message telling Alice
    can't go (its session state is stored first: here only the signals' meet the full
    disk) and is tried again. A transfer he
    paused meanwhile is not told as running: its pause follows, and all arrive."""
    alice, bob = pair
    monkeypatch.setattr(file_transfers, "TELL_RETRY_SECONDS", 0.2)
    _stuck_fetch(bob, monkeypatch)
    full = True
    conversation = bob.service.files._conversation
    assert conversation is not None
    real_send = conversation.send_signal
    told: list[object] = []

    async def recording(address: str, plaintext: bytes) -> bool:
        if full:  # what a signal's session state, stored first, meets
            raise StorageFailed("Couldn't save to the profile database: the disk is full.")
        sent = await real_send(address, plaintext)
        told.append(decode_plaintext(plaintext))
        return sent

    monkeypatch.setattr(conversation, "send_signal", recording)
    paths = []
    for i in range(5):
        path = tmp_path / f"{i}.txt"
        path.write_bytes(os.urandom(2000))
        paths.append(str(path))
    transfers = await alice.service.share_files(ShareFiles("Bob", paths))
    for transfer in transfers:
        await eventually(lambda t=transfer: in_state(bob, t.id, TransferState.RUNNING))
    paused = transfers[2].id
    await bob.service.files.pause(paused)
    await asyncio.sleep(0.5)  # tried, and tried again: nothing could be sent
    assert not told
    full = False  # space was freed
    for transfer in transfers:
        state = TransferState.PAUSED if transfer.id == paused else TransferState.RUNNING
        await eventually(lambda t=transfer, s=state: in_state(alice, t.id, s), 10)
    sent = [
        status
        for message in told
        for status in (message.statuses if isinstance(message, TransferStatuses) else [message])
        if isinstance(status, TransferStatus)
    ]
    assert [s.state for s in sent if s.transfer_id == paused] == ["paused"]
    assert len(told) <= 3  # the offers may come in two runs; then the pause
