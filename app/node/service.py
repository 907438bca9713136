"""NodeService: the node's command handlers and event fan-out, over an unlocked store.

It implements `app.node.api.NodeApi`. The same object serves the GUI in-process, the
control socket of a daemon, and the CLI when no daemon runs (then without networking).
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import time
import unicodedata
from collections.abc import AsyncIterator, Callable
from typing import Any, Protocol, TypeVar

from app.core.errors import InvalidAddress, InvalidInvite, InvalidSignature
from app.core.identity import decode_address, encode_address, parse_invite, safety_number
from app.node.api import (
    MAX_DRAFT_BYTES,
    MAX_MESSAGE_BYTES,
    AcceptTransfer,
    AddContact,
    AddedContact,
    AmbiguousContact,
    BadInvite,
    CancelTransfer,
    ChangePassphrase,
    Contact,
    ContactAdded,
    ContactExists,
    ContactNotFound,
    ContactRemoved,
    ContactRenamed,
    ContactVerified,
    Draft,
    ExportHistory,
    HistoryExport,
    HistoryReport,
    InvalidArgument,
    ListMessages,
    ListTransfers,
    MarkRead,
    Message,
    MessageAdded,
    MessageStatus,
    NameTaken,
    NodeEvent,
    PauseTransfer,
    Peer,
    Protection,
    RemoveContact,
    RenameContact,
    RetryTransfer,
    SaveDraft,
    SearchMessages,
    SecurityAlert,
    SendMessage,
    Settings,
    SettingsChanged,
    SetTyping,
    ShareFiles,
    Status,
    Transfer,
    UpdateSettings,
    Verification,
    VerifyContact,
    VerifyHistory,
    Whoami,
    WrongPassphrase,
    message_too_long,
)
from app.node.config import Config, downloads_folder
from app.node.dht import parse_host_port
from app.node.events import EventBus
from app.node.file_transfers import EncodedShares, FileTransfers
from app.node.futures import retrieve
from app.node.group_commit import GroupCommit
from app.node.history import export_stored, verify_stored
from app.node.ipfs import api_address_problem
from app.node.profile import checked_name, whoami_of
from app.node.setting_probes import machine_problems
from app.node.settings_store import load_settings, save_settings
from app.node.storage import vault
from app.node.storage.repositories import ContactRecord
from app.node.storage.store import ProfileStore, Reads
from app.node.transport.ice_urls import ice_list_problems

T = TypeVar("T")
MAX_PAGE = 1000
SHAPING_MODES = ("off", "balanced", "strict")
THEMES = ("system", "light", "dark")


class NetworkView(Protocol):
    """What the service needs to know of the running network stack."""

    def endpoints(self) -> list[str]: ...

    def peer_count(self) -> int: ...

    def peers(self) -> list[Peer]: ...

    @property
    def relay_problem(self) -> str:
        """Why the configured TURN server is left out of connections ("" if it is not)."""
        ...


class Delivery(Protocol):
    """What the service needs of the message delivery pipeline (the messenger)."""

    def enqueue(self, message: Message) -> None: ...

    async def send_new(self, message: Message) -> None: ...

    def want(self, address: str) -> None: ...

    def contact_updated(self, record: ContactRecord) -> None: ...

    def forget_contact(self, address: str) -> None: ...

    async def set_typing(self, address: str, typing: bool) -> None: ...

    async def mark_read(self, address: str) -> None: ...

    def not_added_back(self, address: str) -> bool:
        """True when the contact's node told us it does not have us as a contact."""
        ...

    def all_not_added_back(self) -> frozenset[str]:
        """Every contact whose node told us it does not have us as a contact."""
        ...

    @property
    def storage_problem(self) -> str:
        """Why what contacts send can't be stored right now ("" when it can)."""
        ...

    @property
    def clock_problem(self) -> str:
        """Why the computer's clock looks wrong ("" when it looks right)."""
        ...


def _public(record: ContactRecord, unread: int = 0, not_added_back: bool = False) -> Contact:
    return Contact(
        name=record.name,
        address=record.address,
        verified=record.verified,
        key_changed=record.key_changed,
        unread=unread,
        not_added_back=not_added_back,
    )


class NodeService:
    """Command handlers for one unlocked profile."""

    def __init__(self, store: ProfileStore, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self._clock = clock
        self._bus = EventBus()
        self._names: dict[str, list[str]] | None = None
        """Contacts' addresses by case-folded name (names change only by add/remove)."""
        self._outbox: GroupCommit[Message] = GroupCommit(
            lambda batch: store.call(store.messages.add_many, batch)
        )
        self._network: NetworkView | None = None
        self._delivery: Delivery | None = None
        self._config = load_settings(store)
        self.files = FileTransfers(store, lambda: self._config, self._bus.publish, clock=clock)
        self.files.on_offer = self._offered

    # ------------------------------------------------------------------ lifecycle

    def attach_network(self, network: NetworkView) -> None:
        """Mark the node as running on the network (daemon or GUI)."""
        self._network = network

    def attach_delivery(self, delivery: Delivery) -> None:
        """Hand queued messages to the delivery pipeline from now on."""
        self._delivery = delivery

    def publish(self, event: NodeEvent) -> None:
        """Tell every subscriber about `event` (used by the network side of the node)."""
        self._bus.publish(event)

    def close(self) -> None:
        """Tell subscribers the node is going away."""
        self._bus.close()

    def events(self) -> AsyncIterator[NodeEvent]:
        return self._bus.subscribe()

    # ------------------------------------------------------------------ identity

    def _endpoints(self) -> list[str]:
        return self._network.endpoints() if self._network else []

    async def whoami(self) -> Whoami:
        return whoami_of(self.store.identity, self.store.name, self._endpoints())

    async def status(self) -> Status:
        return Status(
            running=self._network is not None,
            address=self.store.identity.public.address,
            endpoints=self._endpoints(),
            dht_peers=self._network.peer_count() if self._network else 0,
            storage=self._delivery.storage_problem if self._delivery is not None else "",
            clock=self._delivery.clock_problem if self._delivery is not None else "",
            not_added_back=await self._names_not_added_back(),
            ipfs=self.files.ipfs_problem,
            turn=self._network.relay_problem if self._network else "",
        )

    async def _names_not_added_back(self) -> list[str]:
        """The names of the contacts whose nodes said they don't have us (`status` is
        polled: the contacts are read only while there is one)."""
        marked = self._delivery.all_not_added_back() if self._delivery is not None else ()
        if not marked:
            return []
        records = await self.store.read(lambda r: r.contacts.all())
        return [record.name for record in records if record.address in marked]

    # ------------------------------------------------------------------ contacts

    async def add_contact(self, command: AddContact) -> AddedContact:
        record = self._parse_contact(command)
        if record.address == self.store.identity.public.address:
            raise BadInvite("That is your own address; you can't add yourself as a contact.")
        existing = await self.store.call(self.store.contacts.all)
        for other in existing:
            if other.address == record.address:
                return await self._refresh_contact(other, record)
        for other in existing:
            if other.name.casefold() == record.name.casefold():
                raise NameTaken(f"You already have a contact named {other.name}.")
        self._names = None
        if not await self.store.call(self.store.contacts.add, record, int(self._clock())):
            raise ContactExists("That contact is already in your contacts.")
        contact = _public(record)
        self._bus.publish(ContactAdded(contact))
        if self._delivery is not None:
            self._delivery.want(record.address)
        return AddedContact(contact)

    async def _refresh_contact(self, other: ContactRecord, record: ContactRecord) -> AddedContact:
        """A contact added again: an invite with the same keys updates where to reach them
        (its endpoints, and the X25519 key of a contact added by address only); the name
        the user chose stays. An invite with another key changes nothing and is flagged."""
        if record.dh_key and other.dh_key and record.dh_key != other.dh_key:
            detail = (
                f"An invite for {other.name} carries a different encryption key than "
                "the one you added. Compare safety numbers before trusting it."
            )
            await self.store.call(self.store.contacts.set_key_changed, other.address)
            self._bus.publish(SecurityAlert(other.address, "key_changed", detail))
            raise ContactExists(
                f"{other.name} is already in your contacts, and this invite carries a "
                "different key: someone may be impersonating them. Nothing was changed."
            )
        learns_key = record.dh_key is not None and other.dh_key is None
        if not learns_key and (not record.endpoints or record.endpoints == other.endpoints):
            raise ContactExists(f"{other.name} is already in your contacts.")
        if learns_key and record.dh_key is not None:
            await self.store.call(self.store.contacts.set_dh_key, other.address, record.dh_key)
        if record.endpoints and record.endpoints != other.endpoints:
            await self.store.call(
                self.store.contacts.set_endpoints, other.address, record.endpoints
            )
        updated = await self.store.call(self.store.contacts.get, other.address)
        if updated is None:  # removed meanwhile
            raise ContactNotFound(f"{other.name} was removed meanwhile.")
        if self._delivery is not None:
            self._delivery.contact_updated(updated)
        return AddedContact(_public(updated), updated=True)

    def _parse_contact(self, command: AddContact) -> ContactRecord:
        text = _as_pasted(command.invite_or_address)
        if text.lower().startswith("eggs:"):
            try:
                invite = parse_invite(text)
            except InvalidInvite as exc:
                raise BadInvite(_invite_problem(exc)) from None
            name = checked_name(command.name or invite.name)
            return ContactRecord(
                invite.address,
                name,
                invite.identity.signing_key,
                invite.identity.dh_key,
                invite.endpoints,
                verified=False,
            )
        try:
            signing_key = decode_address(text)
        except InvalidAddress as exc:
            raise BadInvite(f"That is neither an invite link nor an address: {exc}.") from None
        address = encode_address(signing_key)
        name = checked_name(command.name or f"{address[:7]}…{address[-4:]}")
        return ContactRecord(address, name, signing_key, None, (), verified=False)

    def _not_added_back(self, address: str) -> bool:
        return self._delivery is not None and self._delivery.not_added_back(address)

    async def list_contacts(self) -> list[Contact]:
        def read(r: Reads) -> list[Contact]:
            records = r.contacts.all()
            unseen = r.messages.unseen([record.address for record in records])
            return [_public(record, unseen.get(record.address, 0)) for record in records]

        contacts = await self.store.read(read)
        delivery = self._delivery
        if delivery is None:
            return contacts
        return [
            dataclasses.replace(c, not_added_back=True) if delivery.not_added_back(c.address) else c
            for c in contacts
        ]

    async def find_contact(self, name_or_address: str) -> ContactRecord:
        """The contact named by display name (case-insensitive) or address."""
        try:
            address = encode_address(decode_address(name_or_address))
        except InvalidAddress:
            address = None
        if address is not None:
            record = await self._record(address)
            if record is None:
                raise ContactNotFound(f"No contact has the address {address}.")
            return record
        for _ in range(2):  # a second time if the cached names were stale
            match = self._named(await self._contact_names(), name_or_address)
            record = await self._record(match)
            wanted = _folded(name_or_address)
            if record is not None and _folded(record.name).startswith(wanted):
                return record
            self._names = None
        raise ContactNotFound(f"No contact is named {name_or_address.strip()!r}.")

    async def _record(self, address: str) -> ContactRecord | None:
        return await self.store.read(lambda r: r.contacts.get(address))

    async def _contact_address(self, name_or_address: str) -> str:
        """The address of the contact named by display name or address, like
        `find_contact` but from the cached names (no database read per message)."""
        names = await self._contact_names()
        try:
            address = encode_address(decode_address(name_or_address))
        except InvalidAddress:
            return self._named(names, name_or_address)
        if not any(address in addresses for addresses in names.values()):
            raise ContactNotFound(f"No contact has the address {address}.")
        return address

    async def _contact_names(self) -> dict[str, list[str]]:
        """Contacts' addresses by case-folded name; every contact's row is decrypted
        once, not per message (the cache is dropped when contacts are added or removed)."""
        if self._names is None:
            names: dict[str, list[str]] = {}
            records = await self.store.read(lambda r: r.contacts.all())
            for r in records:
                names.setdefault(_folded(r.name), []).append(r.address)
            self._names = names
        return self._names

    @staticmethod
    def _named(names: dict[str, list[str]], name: str) -> str:
        """The address of the contact named `name` (case-insensitive), or else of the one
        contact whose name starts with it ("Alice" for "Alice 🥚")."""
        wanted = _folded(name)
        matches = names.get(wanted, [])
        if not matches and wanted:
            matches = [
                a for n, addresses in names.items() if n.startswith(wanted) for a in addresses
            ]
            if len(matches) > 1:
                raise AmbiguousContact(
                    f"Several contacts' names start with {name.strip()!r}; "
                    "type more of the name, or use the address."
                )
        if not matches:
            raise ContactNotFound(f"No contact is named {name.strip()!r}.")
        if len(matches) > 1:
            raise AmbiguousContact(f"Several contacts are named {name.strip()!r}; use the address.")
        return matches[0]

    async def remove_contact(self, command: RemoveContact) -> Contact:
        record = await self.find_contact(command.contact)
        # first, while they are a contact: the cancels of unfinished transfers reach them
        await self.files.contact_removed(record.address)
        self._names = None
        if not await self.store.call(self.store.contacts.remove, record.address):
            raise ContactNotFound(f"{record.name} was already removed.")
        contact = _public(record)
        self._bus.publish(ContactRemoved(contact))
        if self._delivery is not None:
            self._delivery.forget_contact(record.address)
        return contact

    async def rename_contact(self, command: RenameContact) -> Contact:
        record = await self.find_contact(command.contact)
        name = checked_name(command.name)
        for other in await self.store.call(self.store.contacts.all):
            if other.address != record.address and other.name.casefold() == name.casefold():
                raise NameTaken(f"You already have a contact named {other.name}.")
        if not await self.store.call(self.store.contacts.set_name, record.address, name):
            raise ContactNotFound(f"{record.name} was removed meanwhile.")
        self._names = None
        renamed = dataclasses.replace(record, name=name)
        contact = _public(renamed, not_added_back=self._not_added_back(renamed.address))
        self._bus.publish(ContactRenamed(contact))
        if self._delivery is not None:
            self._delivery.contact_updated(renamed)
        return contact

    async def verify_contact(self, command: VerifyContact) -> Verification:
        record = await self.find_contact(command.contact)
        theirs = record.identity
        if theirs is None:
            raise InvalidArgument(
                f"{record.name}'s keys are not known yet (added by address only); "
                "add them from their invite link to compare safety numbers."
            )
        number = await _in_thread(safety_number, self.store.identity.public, theirs)
        verified = record.verified
        if command.confirm and not verified:
            await self.store.call(self.store.contacts.set_verified, record.address, True)
            verified = True
            contact = dataclasses.replace(
                _public(record, not_added_back=self._not_added_back(record.address)),
                verified=True,
            )
            self._bus.publish(ContactVerified(contact))
        return Verification(record.name, record.address, number, verified)

    # ------------------------------------------------------------------ messages

    async def send_message(self, command: SendMessage) -> Message:
        text = command.text
        if not text.strip():
            raise InvalidArgument("An empty message can't be sent.")
        try:
            size = len(text.encode("utf-8"))
        except UnicodeEncodeError:  # lone surrogates (a control-socket client's)
            raise InvalidArgument("The message holds characters that are not text.") from None
        if size > MAX_MESSAGE_BYTES:
            raise InvalidArgument(message_too_long(size))
        address = await self._contact_address(command.contact)
        message = Message(
            id=os.urandom(16).hex(),
            contact=address,
            sender=self.store.identity.public.address,
            outgoing=True,
            text=text,
            time=self._clock(),
            status=MessageStatus.QUEUED,
        )
        # persisted before anything else happens to it (concurrent sends share one
        # transaction; with a delivery pipeline, the same one as its history event)
        if self._delivery is not None:
            await self._delivery.send_new(message)  # publishes MessageAdded
        else:
            await self._outbox.add(message)
            self._bus.publish(MessageAdded(message))
        return message

    async def list_messages(self, command: ListMessages) -> list[Message]:
        record = await self.find_contact(command.contact)
        limit = max(1, min(command.limit, MAX_PAGE))
        page = await self.store.read(
            lambda r: r.messages.page(record.address, command.before, limit)
        )
        return await self._with_transfers(page)

    async def last_messages(self) -> list[Message]:
        """Each contact's newest message (those that have one), in one read: the list
        of conversations shows it under each name."""

        def read(r: Reads) -> list[Message]:
            return r.messages.newest_of_each([record.address for record in r.contacts.all()])

        return await self.store.read(read)

    async def _with_transfers(self, messages: list[Message]) -> list[Message]:
        """Messages that share a file carry their transfer's id (the same id)."""
        ids: dict[str, set[str]] = {}
        marked = []
        for m in messages:
            if m.contact not in ids:
                ids[m.contact] = await self.files.ids(m.contact)
            marked.append(dataclasses.replace(m, transfer=m.id) if m.id in ids[m.contact] else m)
        return marked

    async def set_typing(self, command: SetTyping) -> None:
        """Ephemeral: sent to a connected contact only (a no-op without a network)."""
        record = await self.find_contact(command.contact)
        if self._delivery is not None:
            await self._delivery.set_typing(record.address, command.typing)

    async def mark_read(self, command: MarkRead) -> None:
        """Mark received messages read (stored), then send the contact a read receipt
        if connected (else at the next connection of a running node)."""
        record = await self.find_contact(command.contact)
        await self.store.call(self.store.messages.mark_seen, record.address, command.up_to)
        if self._delivery is not None:
            await self._delivery.mark_read(record.address)

    async def save_draft(self, command: SaveDraft) -> None:
        """Keep (or, for empty text, drop) what is typed to a contact and not sent."""
        try:
            size = len(command.text.encode("utf-8"))
        except UnicodeEncodeError:  # lone surrogates (a control-socket client's)
            raise InvalidArgument("The draft holds characters that are not text.") from None
        if size > MAX_DRAFT_BYTES:
            raise InvalidArgument(
                f"This draft is {-(-size // 1024)} KiB: too long to keep (at most "
                f"{MAX_DRAFT_BYTES // 1024} KiB)."
            )
        record = await self.find_contact(command.contact)
        text = command.text if command.text.strip() else ""
        await self.store.call(self.store.drafts.save, record.address, text, self._clock())

    async def drafts(self) -> list[Draft]:
        """The drafts to current contacts (those to a removed contact come back with it)."""

        def read() -> list[Draft]:
            kept = self.store.drafts.all()
            contacts = [c.address for c in self.store.contacts.all()]
            return [Draft(address, kept[address]) for address in contacts if address in kept]

        return await self.store.call(read)

    async def search_messages(self, command: SearchMessages) -> list[Message]:
        text = command.text
        if not text.strip():
            return []

        def read(r: Reads) -> list[Message]:
            addresses = [record.address for record in r.contacts.all()]
            return r.messages.search(addresses, text.strip(), MAX_PAGE)

        return await self._with_transfers(await self.store.read(read))

    # ------------------------------------------------------------------ files

    async def share_files(self, command: ShareFiles) -> list[Transfer]:
        """Encrypt the files into the blockstore and offer them to the contact (sent now
        by a running node, else when the node starts)."""
        record = await self.find_contact(command.contact)
        early = self.files.early_candidate(command.paths)
        if early is not None:  # offered now, encrypted meanwhile (protocol.md 10.6)
            return [await self.files.offer_early(record.address, early)]
        encoded = await self.files.encode_shares(list(command.paths))
        # Cancelled while encoding (Ctrl+C on `share`), nothing is shared; from here on
        # every file is offered, whatever happens to the caller: a transfer recorded
        # without its message would never reach the contact.
        offer = asyncio.ensure_future(self._offer_shares(record.address, encoded))
        offer.add_done_callback(retrieve)
        return await asyncio.shield(offer)

    async def _offer_shares(self, address: str, encoded: EncodedShares) -> list[Transfer]:
        shared = await self.files.record_shares(address, encoded)
        for _, message in shared:  # stored with its transfer by `record_shares`
            self._offered(message)
        return [transfer for transfer, _ in shared]

    def _offered(self, message: Message) -> None:
        """Announce and send a stored message that offers a file."""
        self._bus.publish(MessageAdded(message))
        if self._delivery is not None:
            self._delivery.enqueue(message)

    async def list_transfers(self, command: ListTransfers) -> list[Transfer]:
        address = None
        if command.contact is not None:
            address = (await self.find_contact(command.contact)).address
        return await self.files.list(address)

    async def accept_transfer(self, command: AcceptTransfer) -> Transfer:
        return await self.files.accept(command.id)

    async def cancel_transfer(self, command: CancelTransfer) -> Transfer:
        return await self.files.cancel(command.id)

    async def pause_transfer(self, command: PauseTransfer) -> Transfer:
        return await self.files.pause(command.id)

    async def retry_transfer(self, command: RetryTransfer) -> Transfer:
        return await self.files.retry(command.id)

    # ------------------------------------------------------------------ network

    async def peers(self) -> list[Peer]:
        if self._network is None:
            return []
        records = await self.store.read(lambda r: r.contacts.all())
        names = {r.address: r.name for r in records}
        return [
            dataclasses.replace(
                p,
                contact=names.get(p.address),
                not_added_back=p.address in names and self._not_added_back(p.address),
            )
            for p in self._network.peers()
        ]

    # ------------------------------------------------------------------ history

    async def verify_history(self, command: VerifyHistory) -> HistoryReport:
        record = await self.find_contact(command.contact)
        return await verify_stored(self.store, record.address, record.name)

    async def export_history(self, command: ExportHistory) -> HistoryExport:
        record = await self.find_contact(command.contact)
        return await export_stored(self.store, record.address, record.name)

    # ------------------------------------------------------------------ settings

    @property
    def config(self) -> Config:
        """The settings in use, secrets included (a TURN server's password)."""
        return self._config

    def _settings(self) -> Settings:
        c = self._config
        return Settings(
            display_name=self.store.name,
            protection=self.store.header.key.protection,
            listen=c.listen,
            bootstrap=list(c.bootstrap),
            lan_discovery=c.lan_discovery,
            ice_servers=list(c.ice_servers),
            ipfs_api=c.ipfs_api,
            shaping_mode=c.shaping_mode,
            theme=c.theme,
            notifications=c.notifications,
            auto_accept_bytes=c.auto_accept_bytes,
            downloads_folder=str(downloads_folder(c)),
        )

    async def get_settings(self) -> Settings:
        return self._settings()

    async def update_settings(self, command: UpdateSettings) -> Settings:
        changes = {
            k: v
            for k, v in dataclasses.asdict(command).items()
            if v is not None and k != "display_name"
        }
        config = self._config.updated(**changes)
        changed = {
            k: v for k, v in dataclasses.asdict(config).items() if v != getattr(self._config, k)
        }
        # what this machine can't use is checked only for what changes: a listen address
        # that stopped working must not block a change of theme
        problems = config_problems(config) + list(
            (await _in_thread(machine_problems, changed)).values()
        )
        if problems:
            raise InvalidArgument(" ".join(problems))
        name = None if command.display_name is None else checked_name(command.display_name)
        if name is not None and name != self.store.name:
            await self.store.call(self.store.profile.set_name, self.store.key, name)
            self.store.name = name
        if config != self._config:
            await self.store.call(save_settings, self.store, config)
            self._config = config
        if "ipfs_api" in changed:  # a transfer waiting for a source may find it there
            self.files.sources_changed()
        settings = self._settings()
        self._bus.publish(SettingsChanged(settings))
        return settings

    async def keep_settings(self, **changes: Any) -> None:
        """Save settings the node chose itself (a listen port it picked, to keep it).

        Through the service, so a later `update_settings` starts from them instead of
        writing back the copy read at start."""
        config = self._config.updated(**changes)
        await self.store.call(save_settings, self.store, config)
        self._config = config

    async def change_passphrase(self, command: ChangePassphrase) -> None:
        address = self.store.identity.public.address
        await self._check_current_passphrase(command.current_passphrase, address)
        protection = await _in_thread(
            vault.change_passphrase, self.store.key, command.new_passphrase, address
        )
        old = self.store.header.key.protection
        await self.store.call(self.store.profile.set_protection, protection)
        self.store.header = dataclasses.replace(self.store.header, key=protection)
        await _in_thread(vault.forget_stored_key, old, address, self.store.paths.key_file)
        self._bus.publish(SettingsChanged(self._settings()))

    async def _check_current_passphrase(self, current: str | None, address: str) -> None:
        """Raise `WrongPassphrase` unless `current` unlocks a passphrase-protected profile."""
        header = self.store.header.key
        if header.protection is not Protection.PASSPHRASE:
            return
        if not current:
            raise WrongPassphrase("Type your current passphrase to change it.")
        try:
            await _in_thread(
                vault.unlock, header, address, self.store.paths.key_file, lambda: current
            )
        except WrongPassphrase:
            raise WrongPassphrase(
                "That is not your current passphrase; the passphrase was not changed."
            ) from None


_AROUND_A_LINK = "<>()[]{}\"'“”‘’«»"
_AFTER_A_LINK = ".,;:!?"


def _as_pasted(text: str) -> str:
    """An invite link or address as copied from a sentence or an e-mail: without the
    brackets or quotes around it, or the full stop after it (no invite or address
    starts or ends with one), which made "eggs:...s=abc." read "incomplete or damaged"
    and "<eggs:...>" "neither an invite link nor an address"."""
    while True:
        trimmed = text.strip().strip(_AROUND_A_LINK).rstrip(_AFTER_A_LINK)
        if trimmed == text:
            return text
        text = trimmed


def _invite_problem(exc: InvalidInvite) -> str:
    """One sentence for an invite link `parse_invite` refused. It wraps the errors of the
    link's parts (its context) as "the invite link is malformed: <part's rule>", which
    reads as two sentences run together, so those get a plain one here."""
    if isinstance(exc.__context__, InvalidAddress):
        return (
            "That invite link can't be used: the address after 'eggs:' is incomplete or mistyped."
        )
    if isinstance(exc.__context__, InvalidSignature):  # whole, but changed after it was made
        return (
            "That invite link can't be used: it was changed after it was made (its signature "
            "does not match). Ask your contact for their link again."
        )
    if exc.__context__ is not None or "field" in str(exc):  # a part missing: cut short
        return "That invite link can't be used: it is incomplete or damaged."
    return f"That invite link can't be used: {exc}."


def _folded(name: str) -> str:
    """A contact name as looked up: trimmed, case-folded and NFC-normalised, so "Zoë"
    typed as "e" + combining diaeresis (as some keyboards and copied text give it) finds
    the contact stored as "Zoë" (names are stored NFC)."""
    return unicodedata.normalize("NFC", unicodedata.normalize("NFC", name).strip().casefold())


def settings_problems(change: UpdateSettings) -> list[str]:
    """Every reason the node would refuse the settings in `change` (display name aside),
    checked without a profile; empty when they can be saved."""
    values = {
        k: v for k, v in dataclasses.asdict(change).items() if v is not None and k != "display_name"
    }
    try:
        config = Config().updated(**values)
    except InvalidArgument as exc:
        return [str(exc)]
    return config_problems(config)


def config_problems(config: Config) -> list[str]:
    """Every reason the node could not use `config`, one sentence each, in field order."""
    problems = [_host_port_problem("The listen address", config.listen, allow_port_zero=True)]
    problems += [_host_port_problem("The bootstrap peer", peer) for peer in config.bootstrap]
    if config.shaping_mode not in SHAPING_MODES:
        problems.append(f"Traffic shaping is one of: {', '.join(SHAPING_MODES)}.")
    if config.theme not in THEMES:
        problems.append(f"The theme is one of: {', '.join(THEMES)}.")
    problems += ice_list_problems(config.ice_servers)
    texts = [config.listen, *config.bootstrap, *config.ice_servers, config.ipfs_api]
    if any(vault.not_plain_text(text) for text in [*texts, config.downloads_folder]):
        # a NUL in the downloads folder left every transfer "running" for good
        problems.append("A setting holds control characters or is not valid text.")
    if config.ipfs_api:
        problems.append(api_address_problem(config.ipfs_api))
    if config.auto_accept_bytes < 0:
        problems.append("The auto-accept size can't be negative.")
    folder = os.path.expanduser(config.downloads_folder) if config.downloads_folder else ""
    if folder and not os.path.isabs(folder):
        problems.append("The downloads folder must be an absolute path.")
    elif folder and os.path.exists(folder) and not os.path.isdir(folder):
        problems.append(f"The downloads folder {folder} is a file, not a folder.")
    return [problem for problem in problems if problem]


def _host_port_problem(setting: str, text: str, *, allow_port_zero: bool = False) -> str | None:
    """Why `text` is no HOST:PORT, as a sentence naming the `setting` it is for."""
    try:
        parse_host_port(text, allow_port_zero=allow_port_zero)
    except InvalidArgument as exc:
        return f"{setting} {exc}"
    return None


async def _in_thread(fn: Callable[..., T], *args: object) -> T:
    """CPU-heavy work (KDFs, fingerprints) off the event loop."""
    return await asyncio.to_thread(fn, *args)
