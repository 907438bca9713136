"""Prekey bundles (encoding, limits, signature, freshness) and the `PrekeyStore` lifecycle."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import replace

import cbor2
import pytest

from app.core.domains import Domain
from app.core.e2e_errors import (
    CorruptState,
    InvalidPrekeyBundle,
    ReplayedInitialMessage,
    UnknownPrekey,
)
from app.core.errors import InvalidSignature, LocalProtocolError
from app.core.identity import IdentityKeys, verify_signature
from app.core.prekeys import (
    MAX_BUNDLE_AGE,
    MAX_BUNDLE_BYTES,
    MAX_BUNDLE_ONE_TIME_PREKEYS,
    MAX_CLOCK_SKEW,
    MAX_KEY_ID,
    MAX_SEEN_INITIAL_MESSAGES,
    MAX_SIGNED_PREKEYS,
    SIGNED_PREKEY_GRACE,
    SIGNED_PREKEY_ROTATION,
    TARGET_ONE_TIME_PREKEYS,
    OneTimePrekey,
    PrekeyBundle,
    PrekeyStore,
    verify_bundle,
)

NOW = 1_800_000_000.0
HOUR = 3600.0


def rng(seed: int) -> Callable[[int], bytes]:
    return random.Random(seed).randbytes


def identity(seed: int) -> IdentityKeys:
    rand = rng(1000 + seed)
    return IdentityKeys.from_seeds(rand(32), rand(32))


def test_bundle_round_trip_and_verify() -> None:
    bob = identity(1)
    store = PrekeyStore.create(NOW, rng(1))
    bundle = store.bundle(bob)
    raw = bundle.to_bytes()
    assert len(raw) <= MAX_BUNDLE_BYTES
    parsed = verify_bundle(raw, NOW)
    assert parsed == bundle
    assert parsed.identity == bob.public
    assert parsed.signed_prekey_id == store.current.key_id
    assert len(parsed.one_time_prekeys) == TARGET_ONE_TIME_PREKEYS


def test_largest_possible_bundle_fits_a_dht_record() -> None:
    bob = identity(2)
    rand = rng(2)
    otpks = tuple(OneTimePrekey(MAX_KEY_ID - i, rand(32)) for i in range(100))
    assert len(otpks) == MAX_BUNDLE_ONE_TIME_PREKEYS
    unsigned = PrekeyBundle(bob.public, 2**62, MAX_KEY_ID, rand(32), otpks, bytes(64))
    bundle = replace(unsigned, signature=bob.sign(Domain.PREKEY_BUNDLE, unsigned.signed_payload()))
    raw = bundle.to_bytes()
    assert len(raw) <= MAX_BUNDLE_BYTES < 8 * 1024 - 1024  # room for the record envelope
    assert PrekeyBundle.from_bytes(raw) == bundle


def test_too_many_one_time_prekeys_rejected() -> None:
    bob = identity(3)
    rand = rng(3)
    store = PrekeyStore.create(NOW, rand)
    bundle = store.bundle(bob)
    extra = (*bundle.one_time_prekeys, OneTimePrekey(999_999, rand(32)))
    body = cbor2.loads(bundle.to_bytes())
    body[6] = [[k.key_id, k.public_key] for k in extra]
    with pytest.raises(InvalidPrekeyBundle):
        PrekeyBundle.from_bytes(cbor2.dumps(body, canonical=True))


def test_store_never_publishes_more_than_the_bundle_cap() -> None:
    store = PrekeyStore.create(NOW, rng(4), one_time_target=300)
    assert len(store.one_time_prekeys) == 300
    bundle = store.bundle(identity(4))
    assert len(bundle.one_time_prekeys) == MAX_BUNDLE_ONE_TIME_PREKEYS


@pytest.mark.parametrize(
    "mutate",
    [
        lambda b: replace(b, signed_prekey=bytes(31) + b"\x01"),
        lambda b: replace(b, signed_prekey_id=b.signed_prekey_id + 1),
        lambda b: replace(b, created_at=b.created_at + 1),
        lambda b: replace(b, one_time_prekeys=b.one_time_prekeys[1:]),
        lambda b: replace(b, one_time_prekeys=b.one_time_prekeys[::-1]),
        lambda b: replace(b, identity=replace(b.identity, dh_key=bytes(31) + b"\x02")),
        lambda b: replace(b, identity=identity(9).public),
        lambda b: replace(b, signature=bytes(64)),
    ],
)
def test_any_change_breaks_the_signature(mutate: Callable[[PrekeyBundle], PrekeyBundle]) -> None:
    bundle = PrekeyStore.create(NOW, rng(5)).bundle(identity(5))
    forged = mutate(bundle)
    with pytest.raises(InvalidPrekeyBundle):
        verify_bundle(forged.to_bytes(), NOW)


def test_malformed_bundles_rejected() -> None:
    raw = PrekeyStore.create(NOW, rng(6)).bundle(identity(6)).to_bytes()
    items = cbor2.loads(raw)
    candidates = [
        b"",
        b"\xff\x00",
        raw[:-1],
        raw + b"\x00",
        b"\x00" * (MAX_BUNDLE_BYTES + 1),
        cbor2.dumps([2, *items[1:]], canonical=True),
        cbor2.dumps(items[:7], canonical=True),
        cbor2.dumps({"v": 1}, canonical=True),
        cbor2.dumps([*items[:3], -1, *items[4:]], canonical=True),
        cbor2.dumps([*items[:4], 2**32, *items[5:]], canonical=True),
        cbor2.dumps([*items[:5], b"short", *items[6:]], canonical=True),
        cbor2.dumps([*items[:6], [[1, items[6][0][1]], [1, items[6][1][1]]], items[7]]),
        cbor2.dumps([*items[:7], b"sig"], canonical=True),
    ]
    for candidate in candidates:
        with pytest.raises(InvalidPrekeyBundle):
            verify_bundle(candidate, NOW)


def test_non_canonical_encoding_rejected() -> None:
    raw = PrekeyStore.create(NOW, rng(7), one_time_target=0).bundle(identity(7)).to_bytes()
    items = cbor2.loads(raw)
    # The same values with an indefinite-length array: equal content, different bytes.
    body = b"\x9f" + b"".join(cbor2.dumps(item, canonical=True) for item in items) + b"\xff"
    assert cbor2.loads(body) == items
    with pytest.raises(InvalidPrekeyBundle):
        PrekeyBundle.from_bytes(body)


def test_bundle_freshness() -> None:
    bundle = PrekeyStore.create(NOW, rng(8)).bundle(identity(8))
    bundle.verify(NOW + MAX_BUNDLE_AGE - 1)
    with pytest.raises(InvalidPrekeyBundle):
        bundle.verify(NOW + MAX_BUNDLE_AGE + 1)
    bundle.verify(NOW - MAX_CLOCK_SKEW)  # the publisher's clock ran ahead of ours
    with pytest.raises(InvalidPrekeyBundle):
        bundle.verify(NOW - MAX_CLOCK_SKEW - 1)


def test_a_bundle_from_a_clock_a_day_ahead_is_accepted() -> None:
    """A contact whose clock is a day ahead dates its bundle tomorrow: refused (an hour
    was the limit), nobody could start a session with it from its DHT bundle."""
    bundle = PrekeyStore.create(NOW + 24 * HOUR, rng(8)).bundle(identity(8))
    assert verify_bundle(bundle.to_bytes(), NOW) == bundle


def test_a_signed_prekey_from_a_clock_that_ran_ahead_is_replaced_once_it_is_corrected() -> None:
    """Made while our clock was a year ahead (a dead CMOS battery, then NTP): the bundle
    is dated a year from now, which every peer refuses; it was not rotated for a year."""
    rand = rng(13)
    store = PrekeyStore.create(NOW + 365 * 24 * HOUR, rand)
    with pytest.raises(InvalidPrekeyBundle):
        store.bundle(identity(13)).verify(NOW)
    assert store.rotation_due(NOW)
    store = store.maintain(NOW, rand)
    assert store.current.created_at == NOW
    store.bundle(identity(13)).verify(NOW)
    assert not store.rotation_due(NOW + 1)
    # a clock a little behind the one that made the key is no reason to rotate
    assert not PrekeyStore.create(NOW + MAX_CLOCK_SKEW, rand).rotation_due(NOW)


def test_bundle_signature_is_domain_separated() -> None:
    bob = identity(10)
    bundle = PrekeyStore.create(NOW, rng(10)).bundle(bob)
    payload = bundle.signed_payload()
    verify_signature(bob.public.signing_key, Domain.PREKEY_BUNDLE, payload, bundle.signature)
    for domain in Domain:
        if domain is not Domain.PREKEY_BUNDLE:
            with pytest.raises(InvalidSignature):
                verify_signature(bob.public.signing_key, domain, payload, bundle.signature)
    # ... and a signature made for any other context does not pass as a bundle signature.
    for domain in (Domain.DHT_RECORD, Domain.INVITE, Domain.DH_KEY_BINDING):
        moved = replace(bundle, signature=bob.sign(domain, payload))
        with pytest.raises(InvalidPrekeyBundle):
            moved.verify(NOW)


def test_signed_prekey_rotation_with_grace_window() -> None:
    rand = rng(11)
    store = PrekeyStore.create(NOW, rand)
    first = store.current
    assert not store.rotation_due(NOW + SIGNED_PREKEY_ROTATION - 1)
    store = store.maintain(NOW + SIGNED_PREKEY_ROTATION - 1, rand)
    assert store.current == first
    t1 = NOW + SIGNED_PREKEY_ROTATION
    store = store.maintain(t1, rand)
    second = store.current
    assert second != first
    assert [k.key_id for k in store.signed_prekeys] == [first.key_id, second.key_id]
    # Within the grace window a message to the previous signed prekey still finds it.
    _, secret, _ = store.consume(first.key_id, None, b"t" * 16)
    assert secret == first.secret
    store = store.expire(t1 + SIGNED_PREKEY_GRACE - 1)
    assert first in store.signed_prekeys
    store = store.expire(t1 + SIGNED_PREKEY_GRACE)
    assert store.signed_prekeys == (second,)
    with pytest.raises(UnknownPrekey):
        store.consume(first.key_id, None, b"t" * 16)


def test_signed_prekeys_are_capped() -> None:
    rand = rng(12)
    store = PrekeyStore.create(NOW, rand)
    for i in range(1, 20):
        store = store.rotate(NOW + i, rand)
        assert len(store.signed_prekeys) <= MAX_SIGNED_PREKEYS
    assert store.current.created_at == NOW + 19


def test_one_time_prekeys_are_consumed_once_and_replenished() -> None:
    rand = rng(13)
    store = PrekeyStore.create(NOW, rand, one_time_target=5)
    spk = store.current.key_id
    otpk_id, otpk_secret = store.one_time_prekeys[0]
    new_store, _, secret = store.consume(spk, otpk_id, b"a" * 16)
    assert secret == otpk_secret
    assert len(new_store.one_time_prekeys) == 4
    assert len(store.one_time_prekeys) == 5  # the original is untouched
    with pytest.raises(UnknownPrekey):
        new_store.consume(spk, otpk_id, b"b" * 16)
    replenished = new_store.replenish(rand, 5)
    assert len(replenished.one_time_prekeys) == 5
    ids = [k for k, _ in replenished.one_time_prekeys]
    assert len(set(ids)) == 5 and otpk_id not in ids
    assert replenished.replenish(rand, 3) == replenished
    with pytest.raises(LocalProtocolError):
        replenished.replenish(rand, 10**6)


def test_replay_without_one_time_prekey_is_rejected() -> None:
    store = PrekeyStore.create(NOW, rng(14), one_time_target=0)
    spk = store.current.key_id
    store, _, otpk = store.consume(spk, None, b"r" * 16)
    assert otpk is None
    with pytest.raises(ReplayedInitialMessage):
        store.consume(spk, None, b"r" * 16)
    store, _, _ = store.consume(spk, None, b"s" * 16)  # a different handshake is fine


def test_replay_record_is_bounded_and_dropped_with_its_signed_prekey() -> None:
    rand = rng(15)
    store = PrekeyStore.create(NOW, rand, one_time_target=0)
    spk = store.current.key_id
    for i in range(MAX_SEEN_INITIAL_MESSAGES + 10):
        store, _, _ = store.consume(spk, None, i.to_bytes(16, "big"))
    assert len(store.seen_initial) == MAX_SEEN_INITIAL_MESSAGES
    with pytest.raises(ReplayedInitialMessage):
        store.consume(spk, None, (MAX_SEEN_INITIAL_MESSAGES + 9).to_bytes(16, "big"))
    store = store.rotate(NOW + SIGNED_PREKEY_ROTATION, rand)
    store = store.expire(NOW + SIGNED_PREKEY_ROTATION + SIGNED_PREKEY_GRACE)
    assert store.seen_initial == ()


def test_unknown_signed_prekey_and_bad_tag() -> None:
    store = PrekeyStore.create(NOW, rng(16))
    with pytest.raises(UnknownPrekey):
        store.consume(store.current.key_id + 10_000, None, b"x" * 16)
    with pytest.raises(LocalProtocolError):
        store.consume(store.current.key_id, None, b"short")


def test_store_round_trips_and_rejects_corruption() -> None:
    rand = rng(17)
    store = PrekeyStore.create(NOW, rand, one_time_target=10)
    store, _, _ = store.consume(store.current.key_id, store.one_time_prekeys[0][0], b"q" * 16)
    store = store.rotate(NOW + SIGNED_PREKEY_ROTATION, rand)
    raw = store.to_bytes()
    assert PrekeyStore.from_bytes(raw) == store
    for cut in range(0, len(raw), 37):
        with pytest.raises(CorruptState):
            PrekeyStore.from_bytes(raw[:cut])
    items = cbor2.loads(raw)
    for bad in (
        [2, *items[1:]],
        [*items[:1], [[1, b"short", 0.0]], *items[2:]],
        [*items[:1], [[1, bytes(32), "yesterday"]], *items[2:]],
        [*items[:3], -5, items[4]],
        [*items[:4], [[1, b"tag"]]],
    ):
        with pytest.raises(CorruptState):
            PrekeyStore.from_bytes(cbor2.dumps(bad))


def test_store_repr_hides_secrets() -> None:
    store = PrekeyStore.create(NOW, rng(18), one_time_target=1)
    assert store.current.secret.hex() not in repr(store)
    assert "secret" in repr(store)
