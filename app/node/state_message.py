"""The plaintexts of session messages between two contacts (see messenger.py).

Three kinds, told apart by the CBOR map's ``"t"``: ``"state"`` (history events and
heads, stored), and two ephemeral signals that are never stored: ``"typing"``
(``{"t": "typing", "y": bool}``) and ``"read"`` (``{"t": "read", "r": CID bytes}``, the
newest of the recipient's own events the sender has read). docs/protocol.md, section 7.
A fourth, ``"mbox"`` (``{"t": "mbox", "n": epoch, "k": 32-byte seed}``), announces a new
mailbox epoch after a key rotation (section 12). A fifth ephemeral signal, ``"xfer"``
(``{"t": "xfer", "i": transfer id, "s": "running"|"paused"|"failed", "r": reason code,
"d": bytes held}``),
tells the sender of a file what became of it on the receiver's side (section 10.3);
``"xfers"`` (``{"t": "xfers", "x": [2 to MAX_TOLD such maps without "t"]}``) tells it
of several of its files in one message.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import cbor2

from app.core.cid import Cid
from app.core.errors import RemoteProtocolError

MAX_EVENTS = 4096
"""Most events one state message may carry. An honest sender batches ~256 KiB of events
(a few thousand at the very most); a hostile one could pack a million empty items into a
1 MiB payload and make us try each: such a message is refused whole."""


class NoSession(Exception):
    """No end-to-end session with the peer can be started yet (no bundle, key change)."""


@dataclass(frozen=True)
class StateMessage:
    """The plaintext of every session message (see the module docstring)."""

    events: list[bytes]
    heads: list[Cid]
    query: bool
    sent_ms: int | None = None
    """The sender's wall clock when it sealed the message (ms since the epoch), sent only
    over a live connection (``"w"``): the receiver's check of its own clock
    (`app.core.clock_check`). Older nodes neither send nor read it."""

    def encode(self) -> bytes:
        fields: dict[str, object] = {
            "t": "state",
            "e": self.events,
            "h": [c.raw for c in self.heads],
            "q": self.query,
        }
        if self.sent_ms is not None:
            fields["w"] = self.sent_ms
        return bytes(cbor2.dumps(fields, canonical=True))

    @classmethod
    def decode(cls, raw: bytes) -> StateMessage:
        """Parse a plaintext; raise `ValueError` for anything malformed."""
        try:
            fields: Any = cbor2.loads(raw)
        except Exception:  # cbor2 raises many types on garbage
            raise ValueError("not CBOR") from None
        if not isinstance(fields, dict) or fields.get("t") != "state":
            raise ValueError("not a state message")
        events, heads, query = fields.get("e"), fields.get("h"), fields.get("q")
        if not isinstance(events, list) or not all(isinstance(e, bytes) for e in events):
            raise ValueError("bad event list")
        if len(events) > MAX_EVENTS:
            raise ValueError("too many events in one message")
        if not isinstance(heads, list) or len(heads) > 256:
            raise ValueError("bad head list")
        try:
            cids = [Cid(h) for h in heads]
        except (RemoteProtocolError, TypeError, ValueError):
            raise ValueError("bad head CID") from None
        sent_ms = fields.get("w")
        if sent_ms is not None and (type(sent_ms) is not int or not 0 <= sent_ms < 2**63):
            raise ValueError("bad sending time")
        return cls(events, cids, query is True, sent_ms)


@dataclass(frozen=True)
class Typing:
    """Ephemeral: the sender is (or stopped) typing to the recipient."""

    typing: bool

    def encode(self) -> bytes:
        return bytes(cbor2.dumps({"t": "typing", "y": self.typing}, canonical=True))


@dataclass(frozen=True)
class ReadUpTo:
    """Ephemeral: the sender has read everything up to `cid`, an event of the recipient."""

    cid: Cid

    def encode(self) -> bytes:
        return bytes(cbor2.dumps({"t": "read", "r": self.cid.raw}, canonical=True))


TRANSFER_STATES = frozenset({"running", "paused", "failed"})
"""What a receiver may say of a file it receives (`TransferStatus`)."""
FAILURE_REASONS = frozenset({"", "disk_full", "permission", "corrupt", "other"})
"""Why a receiver's transfer failed, as a code: the sender shows its own words for it
(never a peer's text, nor the receiver's folder names)."""


MAX_TOLD = 128
"""Most transfer states one ``xfers`` message carries: a sender splits more into several
messages, a receiver refuses a longer list whole. At most 104 bytes each (a 64-character
id), so under 14 KiB, far below the session message's 1 MiB."""


@dataclass(frozen=True)
class TransferStatus:
    """Ephemeral: the receiver's transfer `transfer_id` is now `state` (one of
    `TRANSFER_STATES`); `reason` (one of `FAILURE_REASONS`) says why it failed."""

    transfer_id: str
    state: str
    reason: str = ""
    done: int = 0
    """File bytes the receiver holds (what a resume starts from)."""

    def fields(self) -> dict[str, object]:
        """The map of this state, as sent alone (with ``"t"``) or in a list."""
        return {"i": self.transfer_id, "s": self.state, "r": self.reason, "d": self.done}

    def encode(self) -> bytes:
        return bytes(cbor2.dumps({"t": "xfer", **self.fields()}, canonical=True))

    @classmethod
    def parse(cls, fields: dict[Any, Any]) -> TransferStatus:
        """The state a map carries; `ValueError` for anything malformed."""
        transfer_id, state, reason = fields.get("i"), fields.get("s"), fields.get("r")
        if not isinstance(transfer_id, str) or not 0 < len(transfer_id) <= 64:
            raise ValueError("bad transfer id")
        if state not in TRANSFER_STATES:
            raise ValueError("bad transfer state")
        if reason not in FAILURE_REASONS:
            raise ValueError("bad transfer failure reason")
        done = fields.get("d", 0)
        if type(done) is not int or not 0 <= done < 2**63:
            raise ValueError("bad transfer progress")
        return cls(transfer_id, state, reason, done)


@dataclass(frozen=True)
class TransferStatuses:
    """Ephemeral: the states of several transfers of one sender (2 to `MAX_TOLD`, each
    named once), in one message (a folder of small files accepted at once: one message
    where there were as many as files, each waiting for its shaped slot)."""

    statuses: tuple[TransferStatus, ...]

    def encode(self) -> bytes:
        listed = [status.fields() for status in self.statuses]
        return bytes(cbor2.dumps({"t": "xfers", "x": listed}, canonical=True))

    @classmethod
    def parse(cls, fields: dict[Any, Any]) -> TransferStatuses:
        """The states an ``xfers`` map carries; `ValueError` for anything malformed (a
        list too long or too short, an item that is not a valid state, an id twice)."""
        listed = fields.get("x")
        if not isinstance(listed, list) or not 2 <= len(listed) <= MAX_TOLD:
            raise ValueError("bad transfer state list")
        if not all(isinstance(item, dict) for item in listed):
            raise ValueError("bad transfer state")
        statuses = tuple(TransferStatus.parse(item) for item in listed)
        if len({status.transfer_id for status in statuses}) != len(statuses):
            raise ValueError("a transfer named twice")
        return cls(statuses)


def encode_statuses(statuses: list[TransferStatus]) -> bytes:
    """One message telling `statuses` (1 to `MAX_TOLD`, each transfer once): a single
    state as ``xfer``, which every version reads; several as ``xfers``."""
    if not 0 < len(statuses) <= MAX_TOLD:
        raise ValueError("1 to MAX_TOLD transfer states per message")
    if len(statuses) == 1:
        return statuses[0].encode()
    return TransferStatuses(tuple(statuses)).encode()


@dataclass(frozen=True, repr=False)
class NewMailboxEpoch:
    """The sender issued mailbox epoch `epoch` (seed `seed`) for what we leave it offline."""

    epoch: int
    seed: bytes

    def __repr__(self) -> str:
        return f"NewMailboxEpoch(<secret>, epoch={self.epoch})"

    def encode(self) -> bytes:
        return bytes(cbor2.dumps({"t": "mbox", "n": self.epoch, "k": self.seed}, canonical=True))


Signal = Typing | ReadUpTo
Plaintext = StateMessage | Signal | NewMailboxEpoch | TransferStatus | TransferStatuses


def decode_plaintext(raw: bytes) -> Plaintext:
    """Parse any session plaintext; raise `ValueError` for anything malformed."""
    try:
        fields: Any = cbor2.loads(raw)
    except Exception:  # cbor2 raises many types on garbage
        raise ValueError("not CBOR") from None
    if not isinstance(fields, dict):
        raise ValueError("not a plaintext map")
    kind = fields.get("t")
    if kind == "mbox":
        epoch, seed = fields.get("n"), fields.get("k")
        if type(epoch) is not int or not 0 < epoch < 2**32:
            raise ValueError("bad mailbox epoch")
        if not isinstance(seed, bytes) or len(seed) != 32:
            raise ValueError("bad mailbox epoch seed")
        return NewMailboxEpoch(epoch, seed)
    if kind == "typing":
        typing = fields.get("y")
        if not isinstance(typing, bool):
            raise ValueError("bad typing flag")
        return Typing(typing)
    if kind == "xfer":
        return TransferStatus.parse(fields)
    if kind == "xfers":
        return TransferStatuses.parse(fields)
    if kind == "read":
        cid = fields.get("r")
        if not isinstance(cid, bytes):
            raise ValueError("bad read position")
        try:
            return ReadUpTo(Cid(cid))
        except (RemoteProtocolError, TypeError, ValueError):
            raise ValueError("bad read position CID") from None
    return StateMessage.decode(raw)
