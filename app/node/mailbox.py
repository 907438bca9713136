"""Offline delivery: sealed envelopes left in the DHT under pairwise, daily mailbox keys.

For the direction sender -> recipient and UTC day ``d`` both contacts can derive, from
the static X25519 secret they share (``X25519(our identity dh key, theirs)``)::

    okm = HKDF-SHA256(ikm = shared, salt = 32 zero bytes,
                      info = "scrambled-eggs/v1/mailbox" || sender key || recipient key || d (4 B))
    signing seed = okm[0:32]    -> DerivedSigningKey: the mailbox record's owner
    sealing key  = okm[32:64]   -> AES-256-GCM key of the payload

The mailbox is a `SignedRecord` of kind ``mailbox`` owned by the derived key (slot
empty), so its DHT key changes every day and reveals neither identity; only the two
contacts can write it or read it. Its payload is ``nonce (12) || AES-GCM(sealing key,
nonce, CBOR [session message, ...], aad = owner)``: the session messages are exactly
what would have been sent over a connection, so the receiver handles them the same way
(the ratchet refuses replays, the ledger ignores duplicates). A newer record (higher
``seq``) replaces the older: the sender always posts everything the recipient lacks.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import cbor2
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from app.core.identity import IdentityKeys
from app.core.ratchet import hkdf_sha256, x25519_shared_secret
from app.core.records import (
    MAX_RECORD_BYTES,
    DerivedSigningKey,
    RecordKind,
    SignedRecord,
    dht_key,
    sign_record,
)

if TYPE_CHECKING:
    from app.node.messenger import Messenger
    from app.node.network import NetworkStack
    from app.node.storage.repositories import ContactRecord
    from app.node.storage.store import ProfileStore

log = logging.getLogger(__name__)

DAY_SECONDS = 86400
MAILBOX_TTL = 2 * DAY_SECONDS
"""A mailbox record lives two days: yesterday's box is still read today."""
MAX_PAYLOAD = MAX_RECORD_BYTES - 400
"""Room for the envelope inside one record (record fields and signature take the rest)."""
MAX_ENVELOPES = 16
REPOST_SECONDS = 600.0
"""An unchanged backlog already stored in the DHT is not posted again sooner."""
_INFO = b"scrambled-eggs/v1/mailbox"
_NONCE = 12


def day_of(now: float) -> int:
    """The UTC day number of `now` (seconds since the epoch)."""
    return int(now // DAY_SECONDS)


@dataclass(frozen=True, repr=False)
class MailboxKey:
    """The keys of one direction's mailbox on one day (secret: no repr)."""

    signer: DerivedSigningKey
    sealing_key: bytes
    day: int

    def __repr__(self) -> str:
        return f"MailboxKey(<secret>, day={self.day})"

    @property
    def owner(self) -> bytes:
        """The record owner (derived public key)."""
        return self.signer.public_key

    @property
    def dht_key(self) -> bytes:
        """Where the mailbox record lives in the DHT."""
        return dht_key(RecordKind.MAILBOX, self.owner)


def mailbox_key(
    ours: IdentityKeys, their_dh_key: bytes, sender: bytes, recipient: bytes, day: int
) -> MailboxKey:
    """The mailbox of `sender` -> `recipient` (Ed25519 keys) on `day`."""
    shared = x25519_shared_secret(ours.dh_secret, their_dh_key)
    info = _INFO + sender + recipient + day.to_bytes(4, "big")
    okm = hkdf_sha256(shared, bytes(32), info, 64)
    return MailboxKey(DerivedSigningKey(okm[:32]), okm[32:], day)


def seal_envelopes(key: MailboxKey, envelopes: list[bytes], nonce: bytes) -> bytes:
    """The record payload carrying `envelopes` (raise `ValueError` if they don't fit)."""
    plain = cbor2.dumps(envelopes, canonical=True)
    payload = nonce + AESGCM(key.sealing_key).encrypt(nonce, plain, key.owner)
    if len(payload) > MAX_PAYLOAD:
        raise ValueError("the envelopes don't fit in one mailbox record")
    return payload


def open_envelopes(key: MailboxKey, payload: bytes) -> list[bytes]:
    """The envelopes of a mailbox record; raise `ValueError` if it doesn't open."""
    if len(payload) < _NONCE + 16:
        raise ValueError("mailbox payload too short")
    try:
        plain = AESGCM(key.sealing_key).decrypt(payload[:_NONCE], payload[_NONCE:], key.owner)
    except InvalidTag:
        raise ValueError("mailbox payload does not authenticate") from None
    try:
        items: Any = cbor2.loads(plain)
    except Exception:  # cbor2 raises many types on garbage
        raise ValueError("mailbox payload is not CBOR") from None
    if not isinstance(items, list) or len(items) > MAX_ENVELOPES:
        raise ValueError("mailbox payload is not a list of envelopes")
    if not all(isinstance(item, bytes) for item in items):
        raise ValueError("a mailbox envelope is not bytes")
    return list(items)


def mailbox_record(key: MailboxKey, payload: bytes, now: float) -> SignedRecord:
    """The signed record to put in the DHT (seq = now in ms: newer posts win)."""
    return sign_record(
        key.signer.sign,
        key.owner,
        RecordKind.MAILBOX,
        seq=int(now * 1000),
        expires_at=int(now) + MAILBOX_TTL,
        payload=payload,
    )


def poll_days(now: float | None = None) -> list[int]:
    """The days whose mailboxes a recipient reads: today and yesterday."""
    today = day_of(time.time() if now is None else now)
    return [today, today - 1]


class MailboxCourier:
    """Posts envelopes for contacts we can't reach and reads the ones left for us.

    `post` is called when dialling a contact failed; `poll` runs once the DHT is joined
    and then every `poll_interval` seconds (it also re-posts for unreachable contacts
    whose backlog changed).
    """

    def __init__(
        self,
        store: ProfileStore,
        network: NetworkStack,
        messenger: Messenger,
        *,
        poll_interval: float = 60.0,
        clock: Callable[[], float] = time.time,
        random: Callable[[int], bytes] = os.urandom,
    ) -> None:
        self._store = store
        self._network = network
        self._messenger = messenger
        self._keys = store.identity
        self._own = store.identity.public.signing_key
        self._poll_interval = poll_interval
        self._clock = clock
        self._random = random
        self._seen: dict[tuple[str, int], int] = {}
        self._posted: dict[str, tuple[int, bool, float]] = {}
        """address -> (events lacking, stored on another node, when) of the last post."""
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    def start(self, joined: Awaitable[object]) -> None:
        """Poll once `joined` completes, then periodically."""
        self._task = asyncio.ensure_future(self._run(joined))

    async def stop(self) -> None:
        """Stop polling (a post in progress is abandoned; the outbox keeps its events)."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self, joined: Awaitable[object]) -> None:
        with contextlib.suppress(Exception):
            await joined
        while True:
            try:
                await self.poll()
                await self._repost()
            except Exception:  # one failed round must not end the polling
                log.exception("mailbox round failed")
            await asyncio.sleep(self._poll_interval)

    async def _contacts(self) -> list[ContactRecord]:
        return [r for r in await self._store.call(self._store.contacts.all) if r.dh_key]

    async def post(self, address: str) -> None:
        """Leave everything `address` lacks in today's mailbox (best effort, never raises)."""
        try:
            await self._post(address)
        except Exception as exc:  # offline delivery is best effort; the outbox remains
            log.info("posting to a mailbox failed: %r", exc)

    async def _post(self, address: str) -> None:
        record = await self._store.call(self._store.contacts.get, address)
        if record is None or record.dh_key is None:
            return
        async with self._lock:
            lacking = len(self._messenger.lacking(address))
            previous = self._posted.get(address)
            already = previous is not None and previous[:2] == (lacking, True)
            if already and previous is not None and self._clock() - previous[2] < REPOST_SECONDS:
                return  # that backlog is already in the DHT
            envelope = await self._messenger.offline_envelope(address, MAX_PAYLOAD - 64)
            if envelope is None:
                return
            now = self._clock()
            key = await asyncio.to_thread(
                mailbox_key, self._keys, record.dh_key, self._own, record.signing_key, day_of(now)
            )
            payload = seal_envelopes(key, [envelope], self._random(_NONCE))
            stored = await self._network.dht.put_record(mailbox_record(key, payload, now))
            self._posted[address] = (lacking, stored > 0, now)
            log.info("left %d bytes in a mailbox (%d nodes keep it)", len(payload), stored)

    async def _repost(self) -> None:
        for record in await self._contacts():
            address = record.address
            if self._network.manager.connection(address) is not None:
                continue
            lacking = len(self._messenger.lacking(address))
            if not lacking:
                continue
            # post again if the backlog changed or the last post reached no other node
            previous = self._posted.get(address)
            if previous is None or previous[:2] != (lacking, True):
                await self.post(address)

    async def poll(self) -> int:
        """Read today's and yesterday's mailboxes of every contact; envelopes handled."""
        handled = 0
        for record in await self._contacts():
            assert record.dh_key is not None
            for day in poll_days(self._clock()):
                key = await asyncio.to_thread(
                    mailbox_key, self._keys, record.dh_key, record.signing_key, self._own, day
                )
                found = await self._network.dht.get_record(key.dht_key)
                if found is None or found.seq <= self._seen.get((record.address, day), -1):
                    continue
                self._seen[(record.address, day)] = found.seq
                try:
                    envelopes = open_envelopes(key, found.payload)
                except ValueError as exc:
                    log.info("ignoring a mailbox that does not open: %s", exc)
                    continue
                for envelope in envelopes:
                    await self._messenger.handle_payload(record.address, envelope)
                    handled += 1
        return handled
