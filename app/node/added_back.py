"""Whether a contact's node has us as a contact ("added back"), as far as it told us.

A contact we added may not have added us: its node drops what we send (it has no use
for a stranger's session messages), and our messages would stay "sent" with no word
why. Its node now says so, once per connection, with the `NOT_A_CONTACT` payload over
the authenticated, encrypted connection (docs/protocol.md, section 7); a node that
closes our connection because it holds too many strangers' says the same in its CLOSE
reason. Either way we mark the contact "has not added you yet" and show it; never
guessed from silence (an older node says nothing, and nothing is shown).

The mark goes when anything from the contact's node opens in our session with it (it
accepted our session: it knows us now), or when the contact is removed. It is kept in
memory only: after a restart the next connection tells it again.

What a stranger learns: only whether it is among our contacts, which it could already
tell from whether our node answers its first message; nothing about who our contacts
are. One notice per connection, so a stranger's payloads cost us one small send.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Callable

from app.node.api import AddedBackChanged, NodeEvent
from app.node.network import NOT_A_CONTACT
from app.node.transport.base import AuthenticatedConnection, TransportError
from app.node.transport.manager import TOO_MANY_STRANGERS

log = logging.getLogger(__name__)

REFUSED_AS_STRANGER = f"peer closed: {TOO_MANY_STRANGERS}"
"""The close reason of a connection the peer refused because we are a stranger to it."""


class AddedBack:
    """Tells strangers they are not contacts, and remembers which contacts told us so."""

    def __init__(
        self, publish: Callable[[NodeEvent], None], is_contact: Callable[[str], bool]
    ) -> None:
        self._publish = publish
        self._is_contact = is_contact
        self._not_added: set[str] = set()
        self._told: weakref.WeakSet[AuthenticatedConnection] = weakref.WeakSet()
        self.stats = {"told": 0}

    def not_added_back(self, address: str) -> bool:
        """True when `address`'s node told us it does not have us as a contact."""
        return address in self._not_added

    def all_not_added_back(self) -> frozenset[str]:
        """Every contact whose node told us it does not have us as a contact."""
        return frozenset(self._not_added)

    # ------------------------------------------------------------------ their side

    async def tell_stranger(self, conn: AuthenticatedConnection | None) -> None:
        """A stranger's session message came over `conn`: say we don't know it (once
        per connection; a failed send is not tried again)."""
        if conn is None or not conn.is_open or conn in self._told:
            return
        self._told.add(conn)
        self.stats["told"] += 1
        try:
            await conn.send(NOT_A_CONTACT)
        except TransportError as exc:
            log.info("could not tell a stranger it is not a contact: %s", exc)

    # ------------------------------------------------------------------ our side

    def told_not_a_contact(self, address: str) -> None:
        """`address`'s node said it does not have us as a contact."""
        if address in self._not_added or not self._is_contact(address):
            return
        self._not_added.add(address)
        log.info("a contact's node does not have us as a contact yet")
        self._publish(AddedBackChanged(address, True))

    def closed(self, address: str, reason: str | None) -> None:
        """A connection to `address` closed with `reason` (an authenticated one)."""
        if reason == REFUSED_AS_STRANGER:
            self.told_not_a_contact(address)

    def heard(self, address: str) -> None:
        """Something from `address` opened in our session with it: it knows us."""
        if address in self._not_added:
            self._not_added.discard(address)
            self._publish(AddedBackChanged(address, False))

    def forget(self, address: str) -> None:
        """`address` is no longer a contact."""
        self._not_added.discard(address)
