"""Profiles made by older versions of the app open with this one, everything in them
intact, and their queued messages are delivered once.

The fixtures in tests/data/profiles/<commit>/ were made by `tools/old_profiles.py` with
that commit's code (its `facts.json` says what they hold); see
docs/decisions/0019-profile-compatibility.md for what is promised."""

from __future__ import annotations

import json
import shutil
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from test_file_endings import SETTINGS, eventually

from app.node.api import (
    AcceptTransfer,
    ListMessages,
    ListTransfers,
    ProfileUnreadable,
    Protection,
    SearchMessages,
    TransferState,
    VerifyHistory,
    inspect_profile,
)
from app.node.config import load_config, save_config
from app.node.messenger import Messenger
from app.node.network import NetworkStack
from app.node.profile import open_store
from app.node.service import NodeService
from app.node.storage.database import connect, schema_version
from app.node.storage.schema import MIGRATIONS

FIXTURES = Path(__file__).resolve().parent.parent / "data" / "profiles"
COMMITS = sorted(p.name for p in FIXTURES.iterdir() if (p / "facts.json").is_file())
NAMES = ("alice", "bob", "carol")


def copied(commit: str, tmp_path: Path) -> tuple[Path, dict[str, Any]]:
    """The fixture of `commit` in `tmp_path`, downloads going there too; its facts."""
    root = tmp_path / commit
    shutil.copytree(FIXTURES / commit, root)
    for name in NAMES:
        path = root / name / "config.json"
        save_config(path, load_config(path).updated(downloads_folder=str(root / f"dl-{name}")))
    return root, json.loads((root / "facts.json").read_text("utf-8"))


def unlock(facts: dict[str, Any], name: str) -> Any:
    passphrase = facts["passphrases"][name]
    return None if passphrase is None else (lambda: passphrase)


def expected(facts: dict[str, Any], name: str, contact: str, queued_arrived: bool) -> list[str]:
    """The texts of `name`'s conversation with `contact`, in the order they were sent."""
    return [
        s["text"]
        for s in facts["sent"]
        if {s["from"], s["to"]} == {name, contact}
        and (queued_arrived or name != "carol" or s["id"] not in facts["queued"])
    ]


def test_there_are_fixtures() -> None:
    assert len(COMMITS) >= 2  # a fresh clone has them (tests/data is committed)


@pytest.mark.parametrize("commit", COMMITS)
@pytest.mark.asyncio
async def test_an_older_profile_opens_with_everything_in_it(commit: str, tmp_path: Path) -> None:
    root, facts = copied(commit, tmp_path)
    for name in NAMES:
        info = inspect_profile(root / name)
        assert info.exists and not info.in_use
        protected = facts["passphrases"][name] is not None
        assert info.protection is (Protection.PASSPHRASE if protected else Protection.KEY_FILE)
        store = open_store(root / name, unlock(facts, name))
        service = NodeService(store)
        try:
            assert schema_version(sqlite3.connect(root / name / "eggs.db")) == len(MIGRATIONS)
            contacts = {c.name.lower() for c in await service.list_contacts()}
            assert contacts == set(NAMES) - {name}
            for contact in sorted(contacts):
                messages = await service.list_messages(ListMessages(contact.capitalize()))
                texts = [m.text for m in messages if m.transfer is None]
                assert sorted(texts) == sorted(expected(facts, name, contact, False))
                report = await service.verify_history(VerifyHistory(contact.capitalize()))
                assert report.equivocations == 0 and len(report.heads) == 1
            found = await service.search_messages(SearchMessages("to Alice"))
            assert {m.text for m in found} == {
                s["text"]
                for s in facts["sent"]
                if s["to"] == "alice" and name in (s["from"], s["to"])
            }
            transfers = {t.id: t for t in await service.list_transfers(ListTransfers())}
            if name in ("alice", "bob"):
                received, offered = transfers[facts["received"]], transfers[facts["offered"]]
                assert (received.state, received.done_bytes) == (TransferState.DONE, received.size)
                # the receiver has not answered the offer (its sender's side depends on
                # the version: offered, or running once the offer was delivered)
                assert offered.outgoing == (name == "alice")
                if name == "bob":
                    assert offered.state is TransferState.OFFERED
            settings = await service.get_settings()
            for key, value in facts["settings"].get(name, {}).items():
                assert getattr(settings, key) == value
            assert settings.display_name == name.capitalize()
        finally:
            service.close()
            store.close()


@pytest.mark.parametrize("commit", COMMITS)
def test_a_profile_a_newer_version_wrote_is_refused_unchanged(commit: str, tmp_path: Path) -> None:
    """A user going back a version: the older one sees a schema newer than its own and
    refuses without writing. Every version since the first runs this check (`migrate`);
    here the profile, opened by this version, is marked as one the next will write."""
    root, facts = copied(commit, tmp_path)
    open_store(root / "bob", unlock(facts, "bob")).close()
    database = root / "bob" / "eggs.db"
    newer = sqlite3.connect(database)
    newer.execute(f"PRAGMA user_version={len(MIGRATIONS) + 1}")
    newer.close()
    before = database.read_bytes()
    with pytest.raises(ProfileUnreadable, match="newer version of Scrambled Eggs; update"):
        connect(database)
    with pytest.raises(ProfileUnreadable, match="newer version"):
        open_store(root / "bob", unlock(facts, "bob"))
    assert database.read_bytes() == before


@pytest_asyncio.fixture
async def started(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Any]:
    """Start nodes on the copied fixture; stops them at the end."""
    running: list[tuple[NodeService, Messenger, NetworkStack, Any]] = []

    async def start(root: Path, facts: dict[str, Any], name: str, join: NetworkStack | None):
        store = open_store(root / name, unlock(facts, name))
        service = NodeService(store)
        network = NetworkStack(store.identity, settings=SETTINGS)
        await network.start("127.0.0.1", 0)
        messenger = Messenger(store, network, service.publish)
        service.attach_network(network)
        messenger.files = service.files
        await service.files.start(network, messenger)
        await messenger.start()
        service.attach_delivery(messenger)
        await network.join([])
        if join is not None:
            await network.join_via(join.endpoints())
            await network.publish_presence()
            await join.publish_presence()
        running.append((service, messenger, network, store))
        return service, network

    yield start
    for service, messenger, network, store in reversed(running):
        service.close()
        await service.files.stop()
        await messenger.stop()
        await network.stop()
        store.close()


@pytest.mark.parametrize("commit", COMMITS)
@pytest.mark.asyncio
async def test_messages_an_older_version_queued_are_delivered_once_and_its_offer_accepted(
    commit: str, tmp_path: Path, started: Any
) -> None:
    """Carol gets what Alice and Bob queued for her; Bob accepts the file Alice offered,
    served from the blocks the older version stored (one file each before block packs)."""
    root, facts = copied(commit, tmp_path)
    _, alice_network = await started(root, facts, "alice", None)
    bob, _ = await started(root, facts, "bob", alice_network)
    carol, _ = await started(root, facts, "carol", alice_network)
    await bob.accept_transfer(AcceptTransfer(facts["offered"]))

    async def arrived() -> bool:
        texts = [
            m.text
            for contact in ("Alice", "Bob")
            for m in await carol.list_messages(ListMessages(contact))
        ]
        return all(s["text"] in texts for s in facts["sent"] if s["id"] in facts["queued"])

    await eventually(arrived, 60)
    for contact in ("alice", "bob"):
        messages = await carol.list_messages(ListMessages(contact.capitalize()))
        assert sorted(m.text for m in messages) == sorted(expected(facts, "carol", contact, True))

    async def received() -> Any:
        [offered] = [
            t for t in await bob.list_transfers(ListTransfers()) if t.id == facts["offered"]
        ]
        return offered.state is TransferState.DONE and offered

    await eventually(received, 60)
    offered = await received()
    assert Path(offered.path).stat().st_size == offered.size
