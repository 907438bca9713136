"""NodeService commands over a real unlocked profile (no network)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import subprocess
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

from app import cli
from app.node.api import (
    AddContact,
    AmbiguousContact,
    BadInvite,
    ChangePassphrase,
    ContactAdded,
    ContactExists,
    ContactNotFound,
    ContactRenamed,
    InvalidArgument,
    ListMessages,
    MessageAdded,
    MessageStatus,
    RemoveContact,
    RenameContact,
    SearchMessages,
    SendMessage,
    StorageFailed,
    UpdateSettings,
    VerifyContact,
    WrongPassphrase,
    check_settings,
)
from app.node.profile import create_profile, open_store
from app.node.service import NodeService
from app.node.storage.store import ProfileStore


@contextlib.contextmanager
def open_store_of(root: Path) -> Iterator[ProfileStore]:
    store = open_store(root, None)
    try:
        yield store
    finally:
        store.close()


def invite_of(tmp_path: Path, name: str) -> str:
    return create_profile(tmp_path / name, name, None).whoami.invite


@pytest.mark.asyncio
async def test_contacts_add_list_find_remove(node: NodeService, tmp_path: Path) -> None:
    bob = (await node.add_contact(AddContact(invite_of(tmp_path, "Bob")))).contact
    carol_addr = create_profile(tmp_path / "c", "Carol", None).whoami.address
    carol = (await node.add_contact(AddContact(carol_addr, name="Carol"))).contact
    assert [c.name for c in await node.list_contacts()] == ["Bob", "Carol"]
    assert (await node.find_contact("bob")).address == bob.address
    assert (await node.find_contact(carol.address.upper())).name == "Carol"
    removed = await node.remove_contact(RemoveContact("Bob"))
    assert removed.address == bob.address
    with pytest.raises(ContactNotFound):
        await node.remove_contact(RemoveContact("Bob"))
    assert [c.name for c in await node.list_contacts()] == ["Carol"]
    # names are looked up from a cache: a new contact under a freed name is found
    other = (await node.add_contact(AddContact(invite_of(tmp_path, "Bob2"), name="bob"))).contact
    assert (await node.find_contact("BOB")).address == other.address != bob.address
    with pytest.raises(ContactNotFound):
        await node.find_contact("Bob2")


@pytest.mark.asyncio
async def test_removing_a_contact_says_the_conversation_is_kept_as_it_is(
    node: NodeService, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`contacts remove Bob` said "Removed Bob" alone: read as if the conversation were
    deleted, while it stays in the profile and comes back when Bob is added again (the
    window's confirmation said so)."""
    invite = invite_of(tmp_path, "Bob")
    await node.add_contact(AddContact(invite))
    await node.send_message(SendMessage("Bob", "kept?"))
    args = argparse.Namespace(json=False, contacts_command="remove", contact="Bob")
    assert await cli.cmd_contacts(args, node) == 0  # type: ignore[arg-type]
    said = capsys.readouterr().out
    assert said.startswith("Removed Bob. Your conversation stays on this computer and comes ")
    await node.add_contact(AddContact(invite))
    assert [m.text for m in await node.list_messages(ListMessages("Bob"))] == ["kept?"]


@pytest.mark.asyncio
async def test_a_contact_is_found_by_the_start_of_its_name_when_only_one_matches(
    node: NodeService, tmp_path: Path
) -> None:
    """Found by a tester: `messages Alice` failed for a contact named "Alice 🥚"."""
    alice = (await node.add_contact(AddContact(invite_of(tmp_path, "A"), "Alice 🥚"))).contact
    await node.add_contact(AddContact(invite_of(tmp_path, "B"), "Albert"))
    assert (await node.find_contact("alice")).address == alice.address
    sent = await node.send_message(SendMessage("Alice", "hi"))
    assert sent.contact == alice.address
    with pytest.raises(AmbiguousContact, match="start with 'al'"):
        await node.find_contact("al")
    with pytest.raises(AmbiguousContact):
        await node.send_message(SendMessage("Al", "hi"))
    with pytest.raises(ContactNotFound):
        await node.find_contact("Bob")


@pytest.mark.asyncio
async def test_a_contact_is_found_by_a_name_typed_in_decomposed_form(
    node: NodeService, tmp_path: Path
) -> None:
    """Found by a tester: a contact added as "Zoë 🥚" was "No contact is named 'Zoë'" when
    the ë came as e + combining diaeresis (names are stored NFC; lookups were not)."""
    zoe = (
        await node.add_contact(AddContact(invite_of(tmp_path, "Z"), "Zo\u00eb \U0001f95a"))
    ).contact
    await node.add_contact(AddContact(invite_of(tmp_path, "E"), "Zoe"))
    for typed in ("Zoe\u0308", "ZOE\u0308 \U0001f95a", "zoe\u0308 "):
        assert (await node.find_contact(typed)).address == zoe.address
    sent = await node.send_message(SendMessage("zoe\u0308", "hi"))
    assert sent.contact == zoe.address
    renamed = await node.rename_contact(RenameContact("Zoe\u0308", "Zo\u00eb"))
    assert renamed.address == zoe.address
    assert (await node.find_contact("Zoe")).address != zoe.address


@pytest.mark.asyncio
async def test_a_contact_is_renamed_and_found_under_its_new_name(
    node: NodeService, tmp_path: Path
) -> None:
    bob = (await node.add_contact(AddContact(invite_of(tmp_path, "Bob")))).contact
    await node.add_contact(AddContact(invite_of(tmp_path, "Carol")))
    seen: list[object] = []

    async def listen() -> None:
        async for event in node.events():
            seen.append(event)
            return

    task = asyncio.create_task(listen())
    await asyncio.sleep(0)
    renamed = await node.rename_contact(RenameContact("bob", "  Robert  "))
    await asyncio.wait_for(task, 5)
    assert seen == [ContactRenamed(renamed)]
    assert (renamed.address, renamed.name) == (bob.address, "Robert")
    assert (await node.find_contact("robert")).address == bob.address
    with pytest.raises(ContactNotFound):
        await node.find_contact("Bob")
    assert [c.name for c in await node.list_contacts()] == ["Robert", "Carol"]
    with pytest.raises(ContactExists):  # two contacts under one name could not be told apart
        await node.rename_contact(RenameContact("Robert", "carol"))
    with pytest.raises(InvalidArgument):
        await node.rename_contact(RenameContact("Robert", "   "))
    assert (await node.rename_contact(RenameContact("Robert", "ROBERT"))).name == "ROBERT"


@pytest.mark.asyncio
async def test_a_fresh_invite_of_a_contact_updates_their_endpoints(
    node: NodeService, tmp_path: Path
) -> None:
    """Their port changed: adding their new invite (same keys) replaces the endpoints the
    node dials, keeps the name the user chose, and says it updated, not added."""
    from app.core.identity import IdentityKeys, make_invite

    keys = IdentityKeys.from_seeds(os.urandom(32), os.urandom(32))
    first = await node.add_contact(AddContact(make_invite(keys, "Bob", ["127.0.0.1:4000"]), "Bo"))
    assert not first.updated and first.contact.name == "Bo"
    events = node.events()
    seen = asyncio.ensure_future(asyncio.wait_for(_all(events), 10))
    await asyncio.sleep(0)  # subscribed before the update
    fresh = make_invite(keys, "Robert", ["127.0.0.1:4001", "192.0.2.7:4001"])
    updated = await node.add_contact(AddContact(fresh))
    assert updated.updated and updated.contact == first.contact
    record = await node.find_contact("Bo")
    assert record.endpoints == ("127.0.0.1:4001", "192.0.2.7:4001")
    assert [c.name for c in await node.list_contacts()] == ["Bo"]
    with pytest.raises(ContactExists, match="already in your contacts"):
        await node.add_contact(AddContact(fresh))  # nothing new in it
    impostor = IdentityKeys.from_seeds(keys.signing_seed, os.urandom(32))
    with pytest.raises(ContactExists, match="different key"):
        await node.add_contact(AddContact(make_invite(impostor, "Bob", ["192.0.2.66:1"])))
    record = await node.find_contact("Bo")
    assert record.endpoints == ("127.0.0.1:4001", "192.0.2.7:4001") and record.key_changed
    assert record.dh_key == keys.public.dh_key
    node.close()
    kinds = [type(e).__name__ for e in await seen]
    assert "SecurityAlert" in kinds and "ContactAdded" not in kinds  # no second row


async def _all(events: AsyncIterator[object]) -> list[object]:
    return [event async for event in events]


@pytest.mark.asyncio
async def test_an_invite_completes_a_contact_added_by_address(
    node: NodeService, tmp_path: Path
) -> None:
    me = create_profile(tmp_path / "bob", "Bob", None).whoami
    await node.add_contact(AddContact(me.address, name="Bob"))
    assert (await node.find_contact("Bob")).dh_key is None
    updated = await node.add_contact(AddContact(me.invite))
    assert updated.updated and not updated.contact.key_changed
    with open_store_of(tmp_path / "bob") as bob_store:
        assert (await node.find_contact("Bob")).identity == bob_store.identity.public


@pytest.mark.asyncio
async def test_contact_rules(node: NodeService, tmp_path: Path) -> None:
    invite = invite_of(tmp_path, "Bob")
    await node.add_contact(AddContact(invite))
    with pytest.raises(ContactExists):
        await node.add_contact(AddContact(invite, name="Other"))
    with pytest.raises(ContactExists, match="named"):
        await node.add_contact(AddContact(invite_of(tmp_path, "bob2"), name="BOB"))
    with pytest.raises(BadInvite, match="own address"):
        await node.add_contact(AddContact((await node.whoami()).invite))
    # one signature character changed (not the last ones: they carry S's top bits, which
    # are zero for every Ed25519 signature, so "...aaa" was the same invite 1 time in 256)
    altered = invite[:-10] + ("b" if invite[-10] == "a" else "a") + invite[-9:]
    for bad in ["eggs:garbage", "hello", altered, ""]:
        with pytest.raises(BadInvite):
            await node.add_contact(AddContact(bad))
    assert len(await node.list_contacts()) == 1


@pytest.mark.asyncio
async def test_a_bad_invite_is_explained_in_one_sentence(node: NodeService, tmp_path: Path) -> None:
    with pytest.raises(BadInvite) as caught:
        await node.add_contact(AddContact("eggs:garbage"))
    assert str(caught.value) == (
        "That invite link can't be used: the address after 'eggs:' is incomplete or mistyped."
    )
    damaged_key = re.sub(r"x=[a-z2-7]+", "x=a1", invite_of(tmp_path, "Bob"))
    with pytest.raises(BadInvite) as caught:
        await node.add_contact(AddContact(damaged_key))
    assert str(caught.value) == "That invite link can't be used: it is incomplete or damaged."
    cut_short = invite_of(tmp_path, "Carol").split("&s=")[0]  # pasted without its end
    with pytest.raises(BadInvite) as caught:  # was: "the invite needs exactly one 's' field"
        await node.add_contact(AddContact(cut_short))
    assert str(caught.value) == "That invite link can't be used: it is incomplete or damaged."
    renamed = invite_of(tmp_path, "Dave").replace("n=Dave&", "n=Dove&")  # whole, but altered
    with pytest.raises(BadInvite) as caught:  # was: "incomplete or damaged"
        await node.add_contact(AddContact(renamed))
    assert "changed after it was made (its signature does not match)" in str(caught.value)


@pytest.mark.asyncio
async def test_an_invite_copied_with_what_surrounds_it_is_added(
    node: NodeService, tmp_path: Path
) -> None:
    """Found pasting invites as they are copied from a chat or an e-mail: with the full
    stop of its sentence it was "incomplete or damaged", between angle brackets "neither
    an invite link nor an address: an address starts with 'egg'" (it did)."""
    for name, pasted in [
        ("Bob", "{0}."),
        ("Carol", "<{0}>"),
        ("Dave", "  (“{0}”),\n"),
    ]:
        text = pasted.format(invite_of(tmp_path, name))
        assert (await node.add_contact(AddContact(text))).contact.name == name
    address = invite_of(tmp_path, "Erin").split("?")[0].removeprefix("eggs:")
    assert (await node.add_contact(AddContact(f"<{address}>.", "Erin"))).contact.name == "Erin"


@pytest.mark.asyncio
async def test_events_are_published(node: NodeService, tmp_path: Path) -> None:
    received = []

    async def listen() -> None:
        async for event in node.events():
            received.append(event)
            if len(received) == 2:
                return

    task = asyncio.create_task(listen())
    await asyncio.sleep(0)
    contact = (await node.add_contact(AddContact(invite_of(tmp_path, "Bob")))).contact
    message = await node.send_message(SendMessage("Bob", "hi"))
    await asyncio.wait_for(task, 5)
    assert received == [ContactAdded(contact), MessageAdded(message)]


@pytest.mark.asyncio
async def test_messages_are_persisted_paged_and_searchable(
    node: NodeService, tmp_path: Path
) -> None:
    await node.add_contact(AddContact(invite_of(tmp_path, "Bob")))
    sent = [await node.send_message(SendMessage("Bob", f"message {i}")) for i in range(25)]
    assert all(m.status is MessageStatus.QUEUED and m.outgoing for m in sent)
    last = await node.list_messages(ListMessages("Bob", limit=10))
    assert [m.text for m in last] == [f"message {i}" for i in range(15, 25)]
    older = await node.list_messages(ListMessages("Bob", before=last[0].id, limit=10))
    assert [m.text for m in older] == [f"message {i}" for i in range(5, 15)]
    found = await node.search_messages(SearchMessages("MESSAGE 1"))
    assert {m.text for m in found} == {"message 1"} | {f"message {i}" for i in range(10, 20)}
    for bad in ["", "   ", "x" * 70_000]:
        with pytest.raises(InvalidArgument):
            await node.send_message(SendMessage("Bob", bad))
    with pytest.raises(ContactNotFound):
        await node.send_message(SendMessage("Nobody", "hi"))


@pytest.mark.asyncio
async def test_verify_contact(node: NodeService, tmp_path: Path) -> None:
    await node.add_contact(AddContact(invite_of(tmp_path, "Bob")))
    first = await node.verify_contact(VerifyContact("Bob"))
    assert not first.verified and len(first.safety_number.replace(" ", "")) == 60
    confirmed = await node.verify_contact(VerifyContact("Bob", confirm=True))
    assert confirmed.verified and confirmed.safety_number == first.safety_number
    assert (await node.list_contacts())[0].verified
    address_only = create_profile(tmp_path / "d", "Dan", None).whoami.address
    await node.add_contact(AddContact(address_only, name="Dan"))
    with pytest.raises(InvalidArgument, match="not known yet"):
        await node.verify_contact(VerifyContact("Dan"))


@pytest.mark.asyncio
async def test_settings_validate_and_persist(node: NodeService) -> None:
    settings = await node.update_settings(
        UpdateSettings(display_name="New Me", theme="dark", bootstrap=["127.0.0.1:4000"])
    )
    assert settings.display_name == "New Me" and settings.theme == "dark"
    for bad in [
        UpdateSettings(theme="purple"),
        UpdateSettings(bootstrap=["nope"]),
        UpdateSettings(shaping_mode="max"),
        UpdateSettings(ice_servers=["http://x"]),
        UpdateSettings(display_name="\u202e"),
        # found by a tester: `settings --name ''` was ignored and said nothing (exit 0)
        UpdateSettings(display_name="", theme="light"),
        UpdateSettings(display_name="  "),
    ]:
        with pytest.raises(InvalidArgument):
            await node.update_settings(bad)
    assert (await node.get_settings()).theme == "dark"
    assert (await node.whoami()).name == "New Me"


SmallTmpfs = Callable[[Path, str], contextlib.AbstractContextManager[Path]]


@pytest.mark.asyncio
async def test_settings_on_a_full_disk_are_refused_clearly_and_kept(
    tmp_path: Path, small_tmpfs: SmallTmpfs, fill_disk: Callable[[Path], Path]
) -> None:
    """Found on a full (and on a read-only) profile disk: changing a setting answered
    "internal error; see the node's log", and the log could not be written either. The
    user is told why, the old settings stay in force and on disk, no temporary file is
    left, and the same change works once space is freed."""
    with small_tmpfs(tmp_path / "disk", "2m") as disk:
        root = disk / "me"
        create_profile(root, "Me", None)
        store = open_store(root, None)
        service = NodeService(store)
        try:
            config = root / "config.json"
            before = config.read_bytes()
            filler = fill_disk(disk)
            with pytest.raises(StorageFailed, match=r"settings .* the disk is full"):
                await service.update_settings(UpdateSettings(theme="dark"))
            assert (await service.get_settings()).theme != "dark"
            assert config.read_bytes() == before
            assert sorted(p.name for p in root.iterdir() if p.name.endswith(".tmp")) == []
            filler.unlink()
            assert (await service.update_settings(UpdateSettings(theme="dark"))).theme == "dark"
        finally:
            service.close()
            store.close()


def test_a_read_only_disk_is_named_as_such(tmp_path: Path) -> None:
    """The same failure on a read-only file system names that, not a full disk."""
    import errno

    from app.node.fsutil import write_failure

    refused = OSError(errno.EROFS, "Read-only file system")
    assert write_failure(refused, tmp_path) == "the disk is read-only"
    assert write_failure(OSError(errno.ENOSPC, "No space"), tmp_path) == "the disk is full"
    assert write_failure(OSError(errno.ENAMETOOLONG, "File name too long"), tmp_path) is None


@pytest.mark.asyncio
async def test_settings_report_every_problem_at_once(node: NodeService, tmp_path: Path) -> None:
    bad = UpdateSettings(
        listen="nowhere", bootstrap=["nope"], ice_servers=["http://x"], ipfs_api="zzz"
    )
    problems = check_settings(bad)
    assert len(problems) == 4
    assert "'nowhere'" in problems[0] and "'nope'" in problems[1]
    assert "stun:" in problems[2] and "IPFS API address" in problems[3]
    with pytest.raises(InvalidArgument) as caught:
        await node.update_settings(bad)
    assert str(caught.value) == " ".join(problems)
    assert (await node.get_settings()).ipfs_api == ""
    for good in ["/ip4/127.0.0.1/tcp/5001", "/dns/localhost/tcp/5001/https"]:
        assert check_settings(UpdateSettings(ipfs_api=good)) == []
    assert check_settings(UpdateSettings(ipfs_api="")) == []
    # found by a tester: a server with no host, a file as the downloads folder
    # a host of numbers and dots is an IPv4 address or nothing (it used to stop the start)
    for typo in ["256.1.1.1:0", "10.0.0:4000", "1.2.3.4.5:4000"]:
        [problem] = check_settings(UpdateSettings(listen=typo))
        assert problem.startswith(f"The listen address {typo!r} is not HOST:PORT"), problem
        assert "is not an IP address" in problem, typo
    [problem] = check_settings(UpdateSettings(bootstrap=["300.1.1.1:4000"]))
    assert problem.startswith("The bootstrap peer '300.1.1.1:4000' is not HOST:PORT")
    assert "stun:HOST:PORT" in check_settings(UpdateSettings(ice_servers=["stun:"]))[0]
    assert "port" in check_settings(UpdateSettings(ice_servers=["stun:h:99999"]))[0]
    good = ["stun:127.0.0.1:3478", "turn:u:p@127.0.0.1:3478?transport=udp"]
    assert check_settings(UpdateSettings(ice_servers=good)) == []
    assert check_settings(UpdateSettings(ice_servers=["stun:host"])) == []
    a_file = tmp_path / "notes.txt"
    a_file.write_text("x")
    [problem] = check_settings(UpdateSettings(downloads_folder=str(a_file)))
    assert "is a file, not a folder" in problem
    assert check_settings(UpdateSettings(downloads_folder=str(tmp_path / "new"))) == []


@pytest.mark.asyncio
async def test_change_passphrase_needs_the_current_one(tmp_path: Path) -> None:
    root = tmp_path / "p"
    create_profile(root, "Me", "the first passphrase")
    store = open_store(root, lambda: "the first passphrase")
    service = NodeService(store)
    for current in [None, "", "not the first passphrase"]:
        with pytest.raises(WrongPassphrase):
            await service.change_passphrase(ChangePassphrase("a second passphrase", current))
    await service.change_passphrase(
        ChangePassphrase("a second passphrase", current_passphrase="the first passphrase")
    )
    store.close()
    with pytest.raises(WrongPassphrase):
        open_store(root, lambda: "the first passphrase")
    open_store(root, lambda: "a second passphrase").close()


@pytest.mark.asyncio
async def test_change_passphrase_removes_key_file(tmp_path: Path) -> None:
    root = tmp_path / "p"
    create_profile(root, "Me", None)
    store = open_store(root, None)
    service = NodeService(store)
    with pytest.raises(InvalidArgument):
        await service.change_passphrase(ChangePassphrase("short"))
    await service.change_passphrase(ChangePassphrase("a much better passphrase"))
    store.close()
    assert not (root / "data.key").exists()
    with pytest.raises(WrongPassphrase):
        open_store(root, lambda: "wrong passphrase")
    open_store(root, lambda: "a much better passphrase").close()


@pytest.mark.asyncio
async def test_an_invite_with_another_key_flags_the_contact(
    node: NodeService, tmp_path: Path
) -> None:
    from app.core.identity import IdentityKeys, make_invite
    from app.node.api import SecurityAlert

    real = create_profile(tmp_path / "bob", "Bob", None).whoami
    await node.add_contact(AddContact(real.invite))
    # a forged invite: Bob's address, but an attacker-chosen X25519 key, correctly signed
    # only if the attacker had Bob's signing key -- simulate the stolen-key case
    with open_store_of(tmp_path / "bob") as bob_store:
        stolen = bob_store.identity
    forged_keys = IdentityKeys(stolen.signing_seed, bytes(32 * [7]))
    alerts = []

    async def listen() -> None:
        async for event in node.events():
            if isinstance(event, SecurityAlert):
                alerts.append(event)
                return

    task = asyncio.create_task(listen())
    await asyncio.sleep(0)
    with pytest.raises(ContactExists, match="different key"):
        await node.add_contact(AddContact(make_invite(forged_keys, "Bob", [])))
    await asyncio.wait_for(task, 5)
    assert alerts[0].kind == "key_changed"
    (bob,) = await node.list_contacts()
    assert bob.key_changed
    await node.remove_contact(RemoveContact("Bob"))
    assert not (await node.add_contact(AddContact(real.invite))).contact.key_changed


@pytest.mark.asyncio
async def test_a_downloads_folder_that_cannot_be_used_is_refused_when_set(
    node: NodeService, tmp_path: Path
) -> None:
    """It used to be saved, and then every received file failed ("the downloads folder
    can't be used")."""
    before = (await node.get_settings()).downloads_folder
    notes = tmp_path / "notes.txt"
    notes.write_text("x")
    for bad, why in [
        (notes / "Downloads", f"can't be created: {notes} is a file, not a folder"),
        (notes, "is a file, not a folder"),
        (tmp_path / "gone", "is a link to nothing"),
    ]:
        if bad.name == "gone":
            bad.symlink_to(tmp_path / "nothing here")
        with pytest.raises(InvalidArgument, match=re.escape(why)) as refused:
            await node.update_settings(UpdateSettings(downloads_folder=str(bad), theme="dark"))
        assert "The downloads folder" in str(refused.value)
        settings = await node.get_settings()
        assert settings.downloads_folder == before and settings.theme == "system"
    # a folder that does not exist yet but can be created is fine, and is not made yet
    later = tmp_path / "new" / "Downloads"
    saved = await node.update_settings(UpdateSettings(downloads_folder=str(later)))
    assert saved.downloads_folder == str(later) and not (tmp_path / "new").exists()


@pytest.mark.asyncio
async def test_a_downloads_folder_on_a_read_only_disk_is_named_as_such(
    node: NodeService, tmp_path: Path, small_tmpfs: SmallTmpfs
) -> None:
    """Found setting the downloads folder to a read-only mount: "can't be written to
    (permission denied)" sent the user to the folder's permissions, which were fine.
    The disk is named, with the words a failed download uses."""
    with small_tmpfs(tmp_path / "disk", "1m") as disk:
        subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True)
        try:
            with pytest.raises(InvalidArgument, match=re.escape("(a read-only file system)")):
                await node.update_settings(UpdateSettings(downloads_folder=str(disk)))
        finally:
            subprocess.run(["mount", "-o", "remount,rw", str(disk)], check=True)


@pytest.mark.asyncio
@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into any folder")
async def test_a_downloads_folder_without_write_permission_is_refused_when_set(
    node: NodeService, tmp_path: Path
) -> None:
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    for bad, why in [(locked, "can't be written to"), (locked / "sub", "can't be created")]:
        with pytest.raises(InvalidArgument, match=why):
            await node.update_settings(UpdateSettings(downloads_folder=str(bad)))
