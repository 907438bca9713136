"""Prekey bundles (what we publish in the DHT) and the private `PrekeyStore` behind them.

A `PrekeyBundle` carries an identity's public keys, one signed prekey and up to
`MAX_BUNDLE_ONE_TIME_PREKEYS` one-time prekeys. One Ed25519 signature (context
`Domain.PREKEY_BUNDLE`) covers *everything* in it, so nobody relaying the bundle can swap
or strip a key. Wire format: canonical CBOR (RFC 8949 core deterministic encoding) of ::

    [version=1, ed25519_pub, x25519_pub, created_at, spk_id, spk_pub, [[otpk_id, otpk_pub]...],
     signature]

The signature is over the canonical CBOR of the first seven items. A bundle is at most
`MAX_BUNDLE_BYTES` so it fits an 8 KiB DHT record together with the record's envelope.

`PrekeyStore` is pure state: signed prekeys rotated every `SIGNED_PREKEY_ROTATION` seconds
(the previous ones kept for `SIGNED_PREKEY_GRACE` so messages in flight still open),
one-time prekeys replenished to a target count, and a bounded record of the X3DH initial
messages already accepted so a replay is refused even when it used no one-time prekey.
Time (`now`, seconds since the epoch) and randomness (`random(n)`) are passed in.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, replace
from typing import Any

import cbor2

from app.core.domains import Domain
from app.core.e2e_errors import (
    CorruptState,
    InvalidPrekeyBundle,
    ReplayedInitialMessage,
    UnknownPrekey,
)
from app.core.errors import InvalidSignature, LocalProtocolError
from app.core.identity import IdentityKeys, PublicIdentity
from app.core.ratchet import KEY_SIZE, RandomSource, x25519_public_key

BUNDLE_VERSION = 1
STORE_VERSION = 1
SIGNATURE_SIZE = 64
MAX_BUNDLE_BYTES = 6 * 1024
MAX_BUNDLE_ONE_TIME_PREKEYS = 100
TARGET_ONE_TIME_PREKEYS = 100
MAX_STORED_ONE_TIME_PREKEYS = 1000
SIGNED_PREKEY_ROTATION = 48 * 3600
SIGNED_PREKEY_GRACE = 7 * 24 * 3600
MAX_SIGNED_PREKEYS = 5
MAX_BUNDLE_AGE = 30 * 24 * 3600
MAX_CLOCK_SKEW = 24 * 3600
"""How far ahead of ours a bundle's creation time may be: the publisher's clock may run
up to a day ahead (decision 0020; it was an hour, and a contact whose clock was a day
ahead could not be written to while offline)."""
MAX_SEEN_INITIAL_MESSAGES = 4096
REPLAY_TAG_SIZE = 16
MAX_KEY_ID = 2**32 - 1


@dataclass(frozen=True)
class OneTimePrekey:
    """A published one-time prekey: its id and X25519 public key."""

    key_id: int
    public_key: bytes


@dataclass(frozen=True)
class PrekeyBundle:
    """A signed prekey bundle as published in the DHT (see the module docstring)."""

    identity: PublicIdentity
    created_at: int
    signed_prekey_id: int
    signed_prekey: bytes
    one_time_prekeys: tuple[OneTimePrekey, ...]
    signature: bytes

    def signed_payload(self) -> bytes:
        """The exact bytes the signature covers (without the domain tag)."""
        return cbor2.dumps(self._body(), canonical=True)

    def _body(self) -> list[Any]:
        return [
            BUNDLE_VERSION,
            self.identity.signing_key,
            self.identity.dh_key,
            self.created_at,
            self.signed_prekey_id,
            self.signed_prekey,
            [[k.key_id, k.public_key] for k in self.one_time_prekeys],
        ]

    def to_bytes(self) -> bytes:
        """Canonical CBOR wire form (at most `MAX_BUNDLE_BYTES`)."""
        raw = cbor2.dumps([*self._body(), self.signature], canonical=True)
        if len(raw) > MAX_BUNDLE_BYTES:
            raise LocalProtocolError("prekey bundle exceeds its size limit")
        return raw

    @classmethod
    def from_bytes(cls, raw: bytes) -> PrekeyBundle:
        """Parse a bundle and check its structure (not its signature: call `verify`)."""
        if len(raw) > MAX_BUNDLE_BYTES:
            raise InvalidPrekeyBundle("prekey bundle is too large")
        try:
            items = cbor2.loads(raw)
        except Exception:  # cbor2 raises several unrelated types on garbage
            raise InvalidPrekeyBundle("prekey bundle is not valid CBOR") from None
        if not isinstance(items, list) or len(items) != 8 or items[0] != BUNDLE_VERSION:
            raise InvalidPrekeyBundle("prekey bundle has an unknown layout or version")
        _, signing_key, dh_key, created_at, spk_id, spk, otpks_raw, signature = items
        if not isinstance(otpks_raw, list) or len(otpks_raw) > MAX_BUNDLE_ONE_TIME_PREKEYS:
            raise InvalidPrekeyBundle("prekey bundle lists too many one-time prekeys")
        otpks = []
        for entry in otpks_raw:
            if not isinstance(entry, list) or len(entry) != 2:
                raise InvalidPrekeyBundle("malformed one-time prekey entry")
            otpks.append(OneTimePrekey(_bundle_id(entry[0]), _bundle_key(entry[1])))
        if len({k.key_id for k in otpks}) != len(otpks):
            raise InvalidPrekeyBundle("one-time prekey ids repeat")
        if type(created_at) is not int or not 0 <= created_at < 2**63:
            raise InvalidPrekeyBundle("bad creation time")
        if not isinstance(signature, bytes) or len(signature) != SIGNATURE_SIZE:
            raise InvalidPrekeyBundle("bad signature field")
        bundle = cls(
            identity=PublicIdentity(_bundle_key(signing_key), _bundle_key(dh_key)),
            created_at=created_at,
            signed_prekey_id=_bundle_id(spk_id),
            signed_prekey=_bundle_key(spk),
            one_time_prekeys=tuple(otpks),
            signature=signature,
        )
        if bundle.to_bytes() != raw:  # one value, one encoding: no malleable variants
            raise InvalidPrekeyBundle("prekey bundle is not canonically encoded")
        return bundle

    def verify(self, now: float | None = None) -> None:
        """Check the signature and, given `now`, that the bundle is neither stale nor from
        the future; raise `InvalidPrekeyBundle` otherwise."""
        try:
            self.identity.verify(Domain.PREKEY_BUNDLE, self.signed_payload(), self.signature)
        except InvalidSignature:
            raise InvalidPrekeyBundle("prekey bundle signature does not verify") from None
        if now is not None:
            if self.created_at > now + MAX_CLOCK_SKEW:
                raise InvalidPrekeyBundle("prekey bundle is dated in the future")
            if self.created_at < now - MAX_BUNDLE_AGE:
                raise InvalidPrekeyBundle("prekey bundle is too old")


def _bundle_key(value: Any) -> bytes:
    if not isinstance(value, bytes) or len(value) != KEY_SIZE:
        raise InvalidPrekeyBundle("expected a 32-byte key")
    return value


def _bundle_id(value: Any) -> int:
    if type(value) is not int or not 0 <= value <= MAX_KEY_ID:
        raise InvalidPrekeyBundle("expected a 32-bit key id")
    return value


def verify_bundle(raw: bytes, now: float | None) -> PrekeyBundle:
    """Parse and fully verify a bundle fetched from the DHT; `now` None for one its owner
    just handed over an authenticated connection (fresh, whatever either clock says: its
    dates are checked only against replay from the DHT)."""
    bundle = PrekeyBundle.from_bytes(raw)
    bundle.verify(now)
    return bundle


@dataclass(frozen=True, repr=False)
class SignedPrekeySecret:
    """One of our signed prekeys: id, X25519 secret and creation time (seconds)."""

    key_id: int
    secret: bytes
    created_at: float


@dataclass(frozen=True, repr=False)
class PrekeyStore:
    """Our private prekeys and the replay record. Immutable; every change returns a copy.

    `signed_prekeys` is oldest first (the last one is current and published);
    `one_time_prekeys` holds (id, secret) pairs; `seen_initial` holds
    (signed prekey id, replay tag) of accepted initial messages, oldest first.
    """

    signed_prekeys: tuple[SignedPrekeySecret, ...]
    one_time_prekeys: tuple[tuple[int, bytes], ...]
    next_key_id: int
    seen_initial: tuple[tuple[int, bytes], ...] = ()

    def __repr__(self) -> str:
        return (
            f"PrekeyStore(<secret>, signed={len(self.signed_prekeys)}, "
            f"one_time={len(self.one_time_prekeys)}, seen={len(self.seen_initial)})"
        )

    @classmethod
    def create(
        cls, now: float, random: RandomSource, one_time_target: int = TARGET_ONE_TIME_PREKEYS
    ) -> PrekeyStore:
        """A fresh store with one signed prekey and `one_time_target` one-time prekeys."""
        empty = cls(signed_prekeys=(), one_time_prekeys=(), next_key_id=1)
        return empty._add_signed_prekey(now, random).replenish(random, one_time_target)

    @property
    def current(self) -> SignedPrekeySecret:
        """The signed prekey we publish now."""
        if not self.signed_prekeys:
            raise LocalProtocolError("the prekey store has no signed prekey")
        return self.signed_prekeys[-1]

    def _allocate_ids(self, count: int) -> tuple[PrekeyStore, range]:
        if self.next_key_id + count > MAX_KEY_ID:
            raise LocalProtocolError("prekey ids exhausted")
        ids = range(self.next_key_id, self.next_key_id + count)
        return replace(self, next_key_id=self.next_key_id + count), ids

    def _add_signed_prekey(self, now: float, random: RandomSource) -> PrekeyStore:
        store, ids = self._allocate_ids(1)
        fresh = SignedPrekeySecret(ids[0], _secret(random), now)
        return replace(store, signed_prekeys=(*store.signed_prekeys, fresh))

    def rotation_due(self, now: float) -> bool:
        """Whether the current signed prekey is older than `SIGNED_PREKEY_ROTATION`, or
        dated more than `MAX_CLOCK_SKEW` ahead of `now`: it was made while our clock ran
        ahead (a wrong date, since corrected), and every peer refuses a bundle dated in
        the future; waiting for it to age would have kept us unreachable that long."""
        if not self.signed_prekeys:
            return True
        age = now - self.current.created_at
        return age >= SIGNED_PREKEY_ROTATION or age < -MAX_CLOCK_SKEW

    def rotate(self, now: float, random: RandomSource) -> PrekeyStore:
        """Start a new signed prekey now (also used by forced key rotation)."""
        return self._add_signed_prekey(now, random).expire(now)

    def expire(self, now: float) -> PrekeyStore:
        """Drop signed prekeys replaced more than `SIGNED_PREKEY_GRACE` ago (and at most
        `MAX_SIGNED_PREKEYS` kept), with their replay records."""
        spks = self.signed_prekeys
        kept = [
            spk
            for spk, successor in itertools.pairwise(spks)
            if now - successor.created_at < SIGNED_PREKEY_GRACE
        ]
        kept = ([*kept, spks[-1]] if spks else kept)[-MAX_SIGNED_PREKEYS:]
        live = {spk.key_id for spk in kept}
        seen = tuple(entry for entry in self.seen_initial if entry[0] in live)
        return replace(self, signed_prekeys=tuple(kept), seen_initial=seen)

    def replenish(self, random: RandomSource, target: int = TARGET_ONE_TIME_PREKEYS) -> PrekeyStore:
        """Top the one-time prekeys up to `target`."""
        if not 0 <= target <= MAX_STORED_ONE_TIME_PREKEYS:
            raise LocalProtocolError("one-time prekey target out of range")
        missing = target - len(self.one_time_prekeys)
        if missing <= 0:
            return self
        store, ids = self._allocate_ids(missing)
        fresh = tuple((key_id, _secret(random)) for key_id in ids)
        return replace(store, one_time_prekeys=store.one_time_prekeys + fresh)

    def maintain(
        self, now: float, random: RandomSource, one_time_target: int = TARGET_ONE_TIME_PREKEYS
    ) -> PrekeyStore:
        """Periodic upkeep: rotate the signed prekey when due, expire old ones, replenish."""
        store = self.rotate(now, random) if self.rotation_due(now) else self.expire(now)
        return store.replenish(random, one_time_target)

    def bundle(self, identity: IdentityKeys) -> PrekeyBundle:
        """The signed bundle to publish: current signed prekey and the oldest one-time keys."""
        spk = self.current
        otpks = tuple(
            OneTimePrekey(key_id, x25519_public_key(secret))
            for key_id, secret in self.one_time_prekeys[:MAX_BUNDLE_ONE_TIME_PREKEYS]
        )
        unsigned = PrekeyBundle(
            identity.public,
            int(spk.created_at),
            spk.key_id,
            x25519_public_key(spk.secret),
            otpks,
            bytes(SIGNATURE_SIZE),
        )
        signature = identity.sign(Domain.PREKEY_BUNDLE, unsigned.signed_payload())
        return replace(unsigned, signature=signature)

    def consume(
        self, signed_prekey_id: int, one_time_prekey_id: int | None, replay_tag: bytes
    ) -> tuple[PrekeyStore, bytes, bytes | None]:
        """Look up the secrets an initial message names; return the store with the one-time
        prekey removed and the message recorded, plus (signed secret, one-time secret).

        The caller commits the returned store only once the first message decrypted.
        Raises `ReplayedInitialMessage` or `UnknownPrekey`.
        """
        if len(replay_tag) != REPLAY_TAG_SIZE:
            raise LocalProtocolError("replay tags are 16 bytes")
        if any(tag == replay_tag for _, tag in self.seen_initial):
            raise ReplayedInitialMessage("this initial message was already accepted")
        spk = next((k for k in self.signed_prekeys if k.key_id == signed_prekey_id), None)
        if spk is None:
            raise UnknownPrekey("initial message names an unknown or expired signed prekey")
        one_time_secret = None
        remaining = self.one_time_prekeys
        if one_time_prekey_id is not None:
            found = [secret for key_id, secret in remaining if key_id == one_time_prekey_id]
            if not found:
                raise UnknownPrekey("initial message names a used or unknown one-time prekey")
            one_time_secret = found[0]
            remaining = tuple(e for e in remaining if e[0] != one_time_prekey_id)
        seen = (*self.seen_initial, (signed_prekey_id, replay_tag))[-MAX_SEEN_INITIAL_MESSAGES:]
        store = replace(self, one_time_prekeys=remaining, seen_initial=seen)
        return store, spk.secret, one_time_secret

    def to_bytes(self) -> bytes:
        """Canonical CBOR of the store (secret: seal it before it touches disk)."""
        return cbor2.dumps(
            [
                STORE_VERSION,
                [[k.key_id, k.secret, k.created_at] for k in self.signed_prekeys],
                [[key_id, secret] for key_id, secret in self.one_time_prekeys],
                self.next_key_id,
                [[spk_id, tag] for spk_id, tag in self.seen_initial],
            ],
            canonical=True,
        )

    @classmethod
    def from_bytes(cls, raw: bytes) -> PrekeyStore:
        """Inverse of `to_bytes`; raise `CorruptState` for anything malformed."""
        try:
            items = cbor2.loads(raw)
        except Exception:  # cbor2 raises several unrelated types on garbage
            raise CorruptState("prekey store is not valid CBOR") from None
        if not isinstance(items, list) or len(items) != 5 or items[0] != STORE_VERSION:
            raise CorruptState("prekey store has an unknown layout or version")
        _, spks_raw, otpks_raw, next_id, seen_raw = items
        try:
            spks = tuple(
                SignedPrekeySecret(_store_id(i), _store_key(s), _store_time(t))
                for i, s, t in _store_list(spks_raw, MAX_SIGNED_PREKEYS)
            )
            otpks = tuple(
                (_store_id(i), _store_key(s))
                for i, s in _store_list(otpks_raw, MAX_STORED_ONE_TIME_PREKEYS)
            )
            seen = tuple(
                (_store_id(i), _store_tag(t))
                for i, t in _store_list(seen_raw, MAX_SEEN_INITIAL_MESSAGES)
            )
        except (TypeError, ValueError):
            raise CorruptState("malformed prekey store entry") from None
        return cls(spks, otpks, _store_id(next_id), seen)


def _secret(random: RandomSource) -> bytes:
    secret = random(KEY_SIZE)
    if len(secret) != KEY_SIZE:
        raise LocalProtocolError("the random source returned the wrong number of bytes")
    return secret


def _store_list(value: Any, limit: int) -> list[Any]:
    if not isinstance(value, list) or len(value) > limit:
        raise CorruptState("expected a bounded list")
    return value


def _store_key(value: Any) -> bytes:
    if not isinstance(value, bytes) or len(value) != KEY_SIZE:
        raise CorruptState("expected a 32-byte key")
    return value


def _store_tag(value: Any) -> bytes:
    if not isinstance(value, bytes) or len(value) != REPLAY_TAG_SIZE:
        raise CorruptState("expected a 16-byte replay tag")
    return value


def _store_time(value: Any) -> float:
    if type(value) not in (int, float) or not 0 <= value < 2**63:
        raise CorruptState("expected a time in seconds")
    return float(value)


def _store_id(value: Any) -> int:
    if type(value) is not int or not 0 <= value <= MAX_KEY_ID:
        raise CorruptState("expected a 32-bit key id")
    return value
