"""X3DH: agreement, header encoding, key binding, low-order keys, replay, and KCI."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import replace

import pytest

from app.core import ratchet, session
from app.core.domains import Domain
from app.core.e2e_errors import (
    InvalidKeyAgreement,
    InvalidPrekeyBundle,
    MalformedMessage,
    ReplayedInitialMessage,
)
from app.core.errors import DecryptionFailed, LocalProtocolError
from app.core.identity import IdentityKeys
from app.core.prekeys import PrekeyBundle, PrekeyStore
from app.core.ratchet import x25519_public_key, x25519_shared_secret
from app.core.x3dh import (
    INITIAL_HEADER_SIZE,
    InitialHeader,
    associated_data,
    derive_shared_secret,
    initiate,
    respond,
    sign_dh_binding,
)

NOW = 1_800_000_000.0
LOW_ORDER_POINTS = [bytes(32), (1).to_bytes(32, "little")]


def rng(seed: int) -> Callable[[int], bytes]:
    return random.Random(seed).randbytes


def identity(seed: int) -> IdentityKeys:
    rand = rng(2000 + seed)
    return IdentityKeys.from_seeds(rand(32), rand(32))


def signed(bundle: PrekeyBundle, keys: IdentityKeys) -> PrekeyBundle:
    return replace(bundle, signature=keys.sign(Domain.PREKEY_BUNDLE, bundle.signed_payload()))


@pytest.mark.parametrize("one_time_prekeys", [5, 0])
def test_both_sides_agree(one_time_prekeys: int) -> None:
    alice, bob, rand = identity(1), identity(2), rng(1)
    store = PrekeyStore.create(NOW, rand, one_time_target=one_time_prekeys)
    ours = initiate(alice, store.bundle(bob), NOW, rand)
    assert (ours.header.one_time_prekey_id is None) == (one_time_prekeys == 0)
    theirs = respond(bob, store, InitialHeader.from_bytes(ours.header.to_bytes()))
    assert ours.shared_secret == theirs.shared_secret
    assert ours.associated_data == theirs.associated_data
    identities = associated_data(alice.public, bob.public)
    assert ours.associated_data == identities + ours.header.to_bytes()
    assert ours.remote_ratchet_key == x25519_public_key(theirs.signed_prekey_secret)
    assert len(theirs.store.one_time_prekeys) == max(0, one_time_prekeys - 1)
    assert len(store.one_time_prekeys) == one_time_prekeys  # input store untouched


def test_fresh_ephemeral_each_time() -> None:
    alice, bob, rand = identity(3), identity(4), rng(3)
    bundle = PrekeyStore.create(NOW, rand).bundle(bob)
    first = initiate(alice, bundle, NOW, rand)
    second = initiate(alice, bundle, NOW, rand)
    assert first.header.ephemeral_key != second.header.ephemeral_key
    assert first.shared_secret != second.shared_secret


def test_header_round_trip_and_malformed_headers() -> None:
    alice, bob, rand = identity(5), identity(6), rng(5)
    header = initiate(alice, PrekeyStore.create(NOW, rand).bundle(bob), NOW, rand).header
    raw = header.to_bytes()
    assert len(raw) == INITIAL_HEADER_SIZE
    assert InitialHeader.from_bytes(raw) == header
    no_otpk = replace(header, one_time_prekey_id=None).to_bytes()
    assert InitialHeader.from_bytes(no_otpk).one_time_prekey_id is None
    for bad in (
        raw[:-1],
        raw + b"\x00",
        b"\x02" + raw[1:],
        raw[:165] + b"\x02" + raw[166:],  # has-one-time-prekey flag must be 0 or 1
        no_otpk[:165] + b"\x00" + b"\x00\x00\x00\x07",  # no prekey, yet an id
    ):
        with pytest.raises(MalformedMessage):
            InitialHeader.from_bytes(bad)


def test_key_binding_must_verify() -> None:
    alice, bob, eve, rand = identity(7), identity(8), identity(9), rng(7)
    store = PrekeyStore.create(NOW, rand)
    header = initiate(alice, store.bundle(bob), NOW, rand).header
    forgeries = [
        replace(header, binding_signature=bytes(64)),
        replace(header, binding_signature=sign_dh_binding(eve)),
        # Alice's signing key with Eve's DH key: Eve cannot claim Alice's identity.
        replace(header, initiator=replace(alice.public, dh_key=eve.public.dh_key)),
        # The right statement signed in another context is not a binding.
        replace(
            header,
            binding_signature=alice.sign(
                Domain.INVITE, alice.public.signing_key + alice.public.dh_key
            ),
        ),
    ]
    for forged in forgeries:
        with pytest.raises(DecryptionFailed):
            respond(bob, store, forged)


def test_message_claiming_to_be_from_ourselves_rejected() -> None:
    bob, rand = identity(10), rng(10)
    store = PrekeyStore.create(NOW, rand)
    with pytest.raises(LocalProtocolError):
        initiate(bob, store.bundle(bob), NOW, rand)
    header = InitialHeader(bob.public, sign_dh_binding(bob), rand(32), store.current.key_id, None)
    with pytest.raises(DecryptionFailed):
        respond(bob, store, header)


@pytest.mark.parametrize("point", LOW_ORDER_POINTS)
def test_low_order_keys_rejected(point: bytes) -> None:
    alice, bob, rand = identity(11), identity(12), rng(11)
    store = PrekeyStore.create(NOW, rand, one_time_target=1)
    header = initiate(alice, store.bundle(bob), NOW, rand).header
    with pytest.raises(InvalidKeyAgreement):
        respond(bob, store, replace(header, ephemeral_key=point))
    bundle = store.bundle(bob)
    with pytest.raises(InvalidKeyAgreement):
        initiate(alice, signed(replace(bundle, signed_prekey=point), bob), NOW, rand)
    otpk = replace(bundle.one_time_prekeys[0], public_key=point)
    with pytest.raises(InvalidKeyAgreement):
        initiate(alice, signed(replace(bundle, one_time_prekeys=(otpk,)), bob), NOW, rand)


def test_stale_or_forged_bundle_refused_by_initiator() -> None:
    alice, bob, rand = identity(13), identity(14), rng(13)
    bundle = PrekeyStore.create(NOW, rand).bundle(bob)
    with pytest.raises(InvalidPrekeyBundle):
        initiate(alice, bundle, NOW + 365 * 86400, rand)
    with pytest.raises(InvalidPrekeyBundle):
        initiate(alice, replace(bundle, signed_prekey=rand(32)), NOW, rand)


def test_replayed_header_rejected_with_and_without_one_time_prekey() -> None:
    alice, bob, rand = identity(15), identity(16), rng(15)
    for target in (3, 0):
        store = PrekeyStore.create(NOW, rand, one_time_target=target)
        header = initiate(alice, store.bundle(bob), NOW, rand).header
        committed = respond(bob, store, header).store
        with pytest.raises(ReplayedInitialMessage):
            respond(bob, committed, header)


def test_derive_shared_secret_checks_its_inputs() -> None:
    with pytest.raises(LocalProtocolError):
        derive_shared_secret([bytes(32)] * 2)
    with pytest.raises(LocalProtocolError):
        derive_shared_secret([bytes(32), bytes(32), bytes(31)])
    three = derive_shared_secret([b"\x01" * 32] * 3)
    assert three != derive_shared_secret([b"\x01" * 32] * 4)
    assert len(three) == 32


# --- key-compromise impersonation --------------------------------------------------------


def _forged_initial_message(
    claimed: IdentityKeys,
    target: IdentityKeys,
    store: PrekeyStore,
    dh1: Callable[[bytes], bytes],
    rand: Callable[[int], bytes],
) -> bytes:
    """An initial message claiming to come from `claimed`, built with a caller-chosen DH1.

    Only `claimed`'s *public* material is used (its binding signature is public: it travels
    in the clear in every initial message it sends); DH2..DH4 need only the ephemeral key.
    """
    bundle = store.bundle(target)
    ephemeral = rand(32)
    otpk = bundle.one_time_prekeys[0]
    outputs = [
        dh1(ephemeral),
        x25519_shared_secret(ephemeral, target.public.dh_key),
        x25519_shared_secret(ephemeral, bundle.signed_prekey),
        x25519_shared_secret(ephemeral, otpk.public_key),
    ]
    header = InitialHeader(
        claimed.public,
        sign_dh_binding(claimed),
        x25519_public_key(ephemeral),
        bundle.signed_prekey_id,
        otpk.key_id,
    )
    state = ratchet.init_initiator(
        derive_shared_secret(outputs),
        bundle.signed_prekey,
        associated_data(claimed.public, target.public) + header.to_bytes(),
    )
    _, body = ratchet.encrypt(state, b"hi Alice, it's Bob", rand)
    return bytes([session.KIND_INITIAL]) + header.to_bytes() + body


def test_kci_stolen_identity_key_cannot_impersonate_bob_to_alice() -> None:
    alice, bob, rand = identity(17), identity(18), rng(17)
    store = PrekeyStore.create(NOW, rand, one_time_target=3)
    spk_public = store.bundle(alice).signed_prekey
    # Control: with Bob's real DH1 (only Bob can compute it) the construction works.
    genuine = _forged_initial_message(
        bob, alice, store, lambda _: x25519_shared_secret(bob.dh_secret, spk_public), rand
    )
    _, _, plaintext = session.accept(alice, store, genuine)
    assert plaintext == b"hi Alice, it's Bob"
    # The attacker holds Alice's long-term private keys, nothing of Bob's or Alice's prekeys.
    attacker_guesses = [
        lambda _: x25519_shared_secret(alice.dh_secret, bob.public.dh_key),  # static-static
        lambda _: x25519_shared_secret(alice.dh_secret, spk_public),
        lambda eph: x25519_shared_secret(eph, bob.public.dh_key),
        lambda eph: x25519_shared_secret(eph, alice.public.dh_key),
    ]
    snapshot = store.to_bytes()
    for guess in attacker_guesses:
        forged = _forged_initial_message(bob, alice, store, guess, rand)
        with pytest.raises(DecryptionFailed):
            session.accept(alice, store, forged)
        assert store.to_bytes() == snapshot


def test_kci_stolen_identity_key_cannot_forge_bobs_bundle() -> None:
    alice, bob, rand = identity(19), identity(20), rng(19)
    eve_store = PrekeyStore.create(NOW, rand)
    # Eve publishes a bundle under Bob's identity with her own prekeys, signed with the
    # only signing key she has (Alice's).
    unsigned = eve_store.bundle(alice)
    forged = signed(replace(unsigned, identity=bob.public), alice)
    with pytest.raises(InvalidPrekeyBundle):
        initiate(alice, forged, NOW, rand)
    # Bob's genuine bundle with Eve's prekeys swapped in fails too.
    genuine = PrekeyStore.create(NOW, rand).bundle(bob)
    swapped = replace(genuine, signed_prekey=unsigned.signed_prekey)
    with pytest.raises(InvalidPrekeyBundle):
        initiate(alice, swapped, NOW, rand)
