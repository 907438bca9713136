"""The plaintexts of session messages between two contacts (see messenger.py).

Three kinds, told apart by the CBOR map's ``"t"``: ``"state"`` (history events and
heads, stored), and two ephemeral signals that are never stored: ``"typing"``
(``{"t": "typing", "y": bool}``) and ``"read"`` (``{"t": "read", "r": CID bytes}``, the
newest of the recipient's own events the sender has read). docs/protocol.md, section 7.
A fourth, ``"mbox"`` (``{"t": "mbox", "n": epoch, "k": 32-byte seed}``), announces a new
mailbox epoch after a key rotation (section 12). A fifth ephemeral signal, ``"xfer"``
(``{"t": "xfer", "i": transfer id, "s": "running"|"paused"|"failed", "r": reason code,
"d": bytes held}``),
tells the sender of a file what became of it on the receiver's side (section 10).
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


@dataclass(frozen=True)
class TransferStatus:
    """Ephemeral: the receiver's transfer `transfer_id` is now `state` (one of
    `TRANSFER_STATES`); `reason` (one of `FAILURE_REASONS`) says why it failed."""

    transfer_id: str
    state: str
    reason: str = ""
    done: int = 0
    """File bytes the receiver holds (what a resume starts from)."""

    def encode(self) -> bytes:
        fields = {
            "t": "xfer",
            "i": self.transfer_id,
            "s": self.state,
            "r": self.reason,
            "d": self.done,
        }
        return bytes(cbor2.dumps(fields, canonical=True))


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
Plaintext = StateMessage | Signal | NewMailboxEpoch | TransferStatus


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
        return TransferStatus(transfer_id, state, reason, done)
    if kind == "read":
        cid = fields.get("r")
        if not isinstance(cid, bytes):
            raise ValueError("bad read position")
        try:
            return ReadUpTo(Cid(cid))
        except (RemoteProtocolError, TypeError, ValueError):
            raise ValueError("bad read position CID") from None
    return StateMessage.decode(raw)
