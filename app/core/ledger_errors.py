"""Errors of the conversation history (ledger): every one is the remote side's fault.

Each error names the offending event by its CID where one is known (the hash of the
bytes as received) and, for exports and stored histories, by its position in the list,
so the user can be told *which* event failed to verify.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from app.core.errors import RemoteProtocolError

if TYPE_CHECKING:
    from app.core.cid import Cid


class InvalidCid(RemoteProtocolError):
    """A content identifier is malformed or of an unsupported kind."""


class LedgerError(RemoteProtocolError):
    """A history event or export does not verify. `cid`/`index` name the event."""

    def __init__(self, reason: str, cid: Cid | None = None, index: int | None = None) -> None:
        self.reason = reason
        self.cid = cid
        self.index = index
        where = []
        if index is not None:
            where.append(f"#{index}")
        if cid is not None:
            where.append(str(cid))
        prefix = f"event {' '.join(where)}: " if where else ""
        super().__init__(prefix + reason)

    def at(self, index: int) -> LedgerError:
        """The same error, also naming the event's position in a list."""
        return type(self)(self.reason, self.cid, index)


class MalformedEvent(LedgerError):
    """An event is not well-formed: bad CBOR, wrong schema, types or limits."""


class EventTooLarge(MalformedEvent):
    """An event is larger than the hard size limit."""


class NonCanonicalEvent(MalformedEvent):
    """An event is valid CBOR but not in its single canonical encoding."""


class BadEventSignature(LedgerError):
    """An event's signature does not verify for its claimed author."""


class WrongConversation(LedgerError):
    """An event belongs to another conversation (spliced in from elsewhere)."""


class ForgedAuthor(LedgerError):
    """An event claims an author who is not a member of the conversation."""


class InconsistentEvent(LedgerError):
    """An event's Lamport time or sequence number contradicts its parents."""


class ParentRejected(LedgerError):
    """An event builds on an event that was rejected, so it can never verify."""


class MissingParents(LedgerError):
    """A stored or exported history refers to events it does not contain."""


class PendingBufferFull(LedgerError):
    """Too many events are waiting for their parents; this one was dropped (re-send later)."""


class InvalidExport(LedgerError):
    """A history export file is malformed, out of order, or for another conversation."""
