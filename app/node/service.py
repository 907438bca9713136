"""NodeService: the node's command handlers and event fan-out, over an unlocked store.

It implements `app.node.api.NodeApi`. The same object serves the GUI in-process, the
control socket of a daemon, and the CLI when no daemon runs (then without networking).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from typing import Protocol

from app.core.errors import InvalidAddress, InvalidInvite
from app.core.identity import decode_address, encode_address, parse_invite
from app.node.api import (
    AddContact,
    AmbiguousContact,
    BadInvite,
    Contact,
    ContactAdded,
    ContactExists,
    ContactNotFound,
    ContactRemoved,
    NodeEvent,
    RemoveContact,
    Status,
    Whoami,
)
from app.node.events import EventBus
from app.node.profile import checked_name, whoami_of
from app.node.storage.repositories import ContactRecord
from app.node.storage.store import ProfileStore


class NetworkView(Protocol):
    """What the service needs to know of the running network stack."""

    def endpoints(self) -> list[str]: ...

    def peer_count(self) -> int: ...


def _public(record: ContactRecord) -> Contact:
    return Contact(name=record.name, address=record.address, verified=record.verified)


class NodeService:
    """Command handlers for one unlocked profile."""

    def __init__(self, store: ProfileStore, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self._clock = clock
        self._bus = EventBus()
        self._network: NetworkView | None = None

    # ------------------------------------------------------------------ lifecycle

    def attach_network(self, network: NetworkView) -> None:
        """Mark the node as running on the network (daemon or GUI)."""
        self._network = network

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
        )

    # ------------------------------------------------------------------ contacts

    async def add_contact(self, command: AddContact) -> Contact:
        record = self._parse_contact(command)
        if record.address == self.store.identity.public.address:
            raise BadInvite("That is your own address; you can't add yourself as a contact.")
        existing = await self.store.call(self.store.contacts.all)
        for other in existing:
            if other.address == record.address:
                raise ContactExists(f"{other.name} is already in your contacts.")
            if other.name.casefold() == record.name.casefold():
                raise ContactExists(
                    f"You already have a contact named {other.name}; choose another with --name."
                )
        if not await self.store.call(self.store.contacts.add, record, int(self._clock())):
            raise ContactExists("That contact is already in your contacts.")
        contact = _public(record)
        self._bus.publish(ContactAdded(contact))
        return contact

    def _parse_contact(self, command: AddContact) -> ContactRecord:
        text = command.invite_or_address.strip()
        if text.lower().startswith("eggs:"):
            try:
                invite = parse_invite(text)
            except InvalidInvite as exc:
                raise BadInvite(f"That invite link can't be used: {exc}.") from None
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

    async def list_contacts(self) -> list[Contact]:
        return [_public(r) for r in await self.store.call(self.store.contacts.all)]

    async def find_contact(self, name_or_address: str) -> ContactRecord:
        """The contact named by display name (case-insensitive) or address."""
        try:
            address = encode_address(decode_address(name_or_address))
        except InvalidAddress:
            address = None
        if address is not None:
            record = await self.store.call(self.store.contacts.get, address)
            if record is None:
                raise ContactNotFound(f"No contact has the address {address}.")
            return record
        wanted = name_or_address.strip().casefold()
        matches = [
            r for r in await self.store.call(self.store.contacts.all) if r.name.casefold() == wanted
        ]
        if not matches:
            raise ContactNotFound(f"No contact is named {name_or_address.strip()!r}.")
        if len(matches) > 1:
            raise AmbiguousContact(
                f"Several contacts are named {name_or_address.strip()!r}; use the address."
            )
        return matches[0]

    async def remove_contact(self, command: RemoveContact) -> Contact:
        record = await self.find_contact(command.contact)
        if not await self.store.call(self.store.contacts.remove, record.address):
            raise ContactNotFound(f"{record.name} was already removed.")
        contact = _public(record)
        self._bus.publish(ContactRemoved(contact))
        return contact
