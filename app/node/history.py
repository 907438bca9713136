"""Conversation histories on disk: load, verify and export the signed event DAGs.

The stored events (`HistoryRepository`) are the source of truth; a `Ledger` is rebuilt
from them off the event loop, a part at a time (`RESTORE_CHUNK`: a stopping node waits
for one part, not for a whole history). Every rule of the history is checked then; the
signatures are not checked again when the node loads a history to use it (the events
were verified before they were stored, and the store authenticates every row: decision
0022), and are by ``history verify`` and ``history export``.
"""

from __future__ import annotations

import asyncio
import base64
import logging
from pathlib import Path

from app.core.cid import Cid
from app.core.identity import decode_address
from app.core.ledger import EXPORT_FORMAT, Ledger, Restorer, VerifiedHistory, verify_export
from app.core.ledger_errors import LedgerError
from app.core.ledger_event import decode_strict_cbor
from app.node.api import (
    HistoryExport,
    HistoryInvalid,
    HistoryReport,
    InvalidArgument,
    ProfileUnreadable,
)
from app.node.storage.store import ProfileStore

log = logging.getLogger(__name__)

TEXT = "text"
"""Kind of the history events that carry a text message (body: id, text)."""
FILE = "file"
"""Kind of the events that offer a shared file (body: id, text = its name, m = the
encoded manifest with the file key); they are messages too (`MESSAGE_KINDS`)."""
FILE_SOON = "file_soon"
"""Offers a file still being encrypted (body: id, text = its name, m = the manifest
without its root, docs/protocol.md section 10.6); the ``file`` event with the same id
follows with the root. Not a message: the ``file`` event is."""
FILE_CANCEL = "file_cancel"
"""Either side cancelled the transfer named by ``id``."""
FILE_DONE = "file_done"
"""The receiver saved the file of transfer ``id`` completely."""
MESSAGE_KINDS = frozenset({TEXT, FILE})
"""Event kinds shown as messages (they carry ``id`` and ``text``)."""
FILE_KINDS = frozenset({FILE, FILE_SOON, FILE_CANCEL, FILE_DONE})
"""Event kinds handled by the file transfers (`app.node.file_transfers`)."""


def own_texts_behind(
    ledger: Ledger, starts: list[Cid], covered: int, own_key: bytes
) -> tuple[list[str], int]:
    """Ids of our own messages at or behind `starts` in the history DAG that earlier
    receipts did not cover, and the seq of ours covered now.

    A receipt for an event covers everything it builds on, and our events form a chain
    (each builds on our previous one), so what the receipts of a conversation covered
    is every event of ours up to one seq, `covered` (one int per conversation; a set of
    the events walked cost 42-105 bytes per event of the history, decision 0022). After
    an equivocation of ours (a profile restored from an older copy) the events of a
    forked seq are those `starts` build on, as the receipt that first reaches that seq
    finds them."""
    top = ledger.author_seq_at(starts, own_key)
    ids: list[str] = []
    for seq in range(covered + 1, top + 1):
        cids = ledger.author_events(own_key, seq)
        if len(cids) > 1:
            cids = tuple(sorted(ledger.held_by(starts, set(cids))))
        for cid in cids:
            event = ledger.get(cid)
            if event is not None and event.body.kind in MESSAGE_KINDS:
                ids.append(str(event.body.get("id")))
    return ids, max(covered, top)


MAX_EXPORT_FILE = 256 * 1024 * 1024


RESTORE_CHUNK = 2000
"""Stored events rebuilt per step off the event loop (~0.2 s of CPU, ~1 s verifying
signatures, on a slow shared core): cancelling a load waits for one step at most."""


async def load_ledger(store: ProfileStore, address: str, *, verify: bool = False) -> Ledger:
    """The history with `address`, rebuilt from the stored events (every rule of the
    history checked; with `verify`, every event's signature and encoding too).

    Raises `HistoryInvalid` (naming the event) if a stored event does not verify.
    """
    ours = store.identity.public.signing_key
    theirs = decode_address(address)
    try:
        blocks = await store.call(store.history.all, address)
    except ProfileUnreadable as exc:
        raise HistoryInvalid(f"The stored history does not verify: {exc}.") from None
    restorer = Restorer(ours, theirs, verify=verify)
    try:
        for start in range(0, len(blocks), RESTORE_CHUNK):
            await store.give_way()  # a front end's reads first (decision 0026)
            await asyncio.to_thread(restorer.feed, blocks[start : start + RESTORE_CHUNK])
        return restorer.finish()
    except LedgerError as exc:
        raise HistoryInvalid(f"The stored history does not verify: {exc}.") from None


def report(summary: VerifiedHistory, contact: str | None) -> HistoryReport:
    """The API view of a verified history."""
    return HistoryReport(
        contact=contact,
        heads=[str(c) for c in summary.heads],
        events=summary.event_count,
        equivocations=len(summary.equivocations),
    )


async def verify_stored(store: ProfileStore, address: str, contact: str) -> HistoryReport:
    """Re-verify every stored event of the conversation with `address`: its encoding,
    signature and place in the history, in one pass."""
    ledger = await load_ledger(store, address, verify=True)
    return report(ledger.summary(), contact)


async def export_stored(store: ProfileStore, address: str, contact: str) -> HistoryExport:
    """The conversation with `address` as an export file (base64 in the DTO); every
    event is verified first (nothing that does not verify leaves the node)."""
    ledger = await load_ledger(store, address, verify=True)
    data = await asyncio.to_thread(ledger.export)
    return HistoryExport(
        contact=contact,
        heads=[str(c) for c in ledger.heads()],
        events=len(ledger),
        data_b64=base64.b64encode(data).decode("ascii"),
    )


def verify_export_file(path: Path) -> HistoryReport:
    """Verify an export file offline; raise `HistoryInvalid` naming the first bad event."""
    try:
        if not path.is_file():  # a device or a pipe: unbounded, or never ending
            raise InvalidArgument(f"{path} is not a file.")
        with path.open("rb") as fh:  # at most the limit, whatever the size said
            data = fh.read(MAX_EXPORT_FILE + 1)
        if len(data) > MAX_EXPORT_FILE:
            raise InvalidArgument(f"{path} is too large to be a history export.")
    except OSError as exc:
        raise InvalidArgument(f"Can't read {path}: {exc.strerror}.") from None
    try:
        summary = verify_export(data)
    except LedgerError as exc:
        if not _names_the_export_format(data):  # words, not a decoder's reason
            log.info("a file to verify is not a history export: %s", exc)
            raise HistoryInvalid(
                f"{path} is not a history export: only a file saved by 'history export' "
                "(or Export history in the app) can be verified."
            ) from None
        raise HistoryInvalid(f"The history in {path} does not verify: {exc}.") from None
    return report(summary, None)


def _names_the_export_format(data: bytes) -> bool:
    """Whether `data` is a CBOR map naming the history export format (then a failure
    to verify is about its contents, and its reason names them)."""
    try:
        container = decode_strict_cbor(data)
    except LedgerError:
        return False
    return isinstance(container, dict) and container.get("format") == EXPORT_FORMAT
