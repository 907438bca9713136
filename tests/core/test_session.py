"""The `Session` facade: X3DH start, repeated initial headers, replay, tampering, storage."""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest

from app.core import session
from app.core.domains import Domain
from app.core.e2e_errors import (
    CorruptState,
    DuplicateMessage,
    MalformedMessage,
    ReplayedInitialMessage,
    UnknownPrekey,
)
from app.core.errors import DecryptionFailed
from app.core.identity import IdentityKeys
from app.core.prekeys import PrekeyStore
from app.core.sealing import open_sealed, seal
from app.core.session import KIND_INITIAL, KIND_MESSAGE, Session

NOW = 1_800_000_000.0


def rng(seed: int) -> Callable[[int], bytes]:
    return random.Random(seed).randbytes


def identity(seed: int) -> IdentityKeys:
    rand = rng(3000 + seed)
    return IdentityKeys.from_seeds(rand(32), rand(32))


def start(
    seed: int, one_time: int = 3
) -> tuple[IdentityKeys, IdentityKeys, PrekeyStore, Session, Callable[[int], bytes]]:
    alice, bob, rand = identity(2 * seed), identity(2 * seed + 1), rng(seed)
    store = PrekeyStore.create(NOW, rand, one_time_target=one_time)
    return alice, bob, store, session.initiate(alice, store.bundle(bob), NOW, rand), rand


def test_full_conversation() -> None:
    alice, bob, store, a, rand = start(1)
    a, first = session.encrypt(a, b"hello Bob", rand)
    assert session.is_initial_message(first) and first[0] == KIND_INITIAL
    assert session.initial_header(first).initiator == alice.public
    store, b, plain = session.accept(bob, store, first)
    assert plain == b"hello Bob"
    assert b.remote == alice.public and b.local == bob.public
    assert a.remote == bob.public
    b, reply = session.encrypt(b, b"hi Alice", rand)
    assert reply[0] == KIND_MESSAGE
    a, plain = session.decrypt(a, reply)
    assert plain == b"hi Alice"
    assert a.pending_header is None
    a, wire = session.encrypt(a, b"", rand)
    assert wire[0] == KIND_MESSAGE and not session.is_initial_message(wire)
    b, plain = session.decrypt(b, wire)
    assert plain == b""


def test_initial_header_repeats_until_a_reply_so_loss_is_survivable() -> None:
    _, bob, store, a, rand = start(2)
    a, lost = session.encrypt(a, b"one", rand)
    a, second = session.encrypt(a, b"two", rand)
    assert second[:172] == lost[:172]  # same X3DH header
    store, b, plain = session.accept(bob, store, second)
    assert plain == b"two"
    b, plain = session.decrypt(b, lost)  # the repeat of *its* header goes to the session
    assert plain == b"one"
    with pytest.raises(DuplicateMessage):
        session.decrypt(b, lost)
    with pytest.raises(ReplayedInitialMessage):
        session.accept(bob, store, lost)


def test_other_initial_messages_do_not_enter_an_existing_session() -> None:
    alice, bob, store, a, rand = start(3)
    a, first = session.encrypt(a, b"x", rand)
    store, b, _ = session.accept(bob, store, first)
    other = session.initiate(alice, store.bundle(bob), NOW, rand)
    other, new_first = session.encrypt(other, b"new session", rand)
    with pytest.raises(DecryptionFailed):
        session.decrypt(b, new_first)
    store, b2, plain = session.accept(bob, store, new_first)  # the node decides
    assert plain == b"new session" and b2.remote == alice.public
    with pytest.raises(DecryptionFailed):  # the initiator never accepts initial messages
        session.decrypt(a, new_first)


def test_one_time_prekey_used_twice_is_refused() -> None:
    alice, bob, store, _, rand = start(4, one_time=1)
    bundle = store.bundle(bob)
    first = session.encrypt(session.initiate(alice, bundle, NOW, rand), b"1", rand)[1]
    second = session.encrypt(session.initiate(identity(99), bundle, NOW, rand), b"2", rand)[1]
    store, _, _ = session.accept(bob, store, first)
    with pytest.raises(UnknownPrekey):
        session.accept(bob, store, second)


def _flip(data: bytes, bit: int) -> bytes:
    out = bytearray(data)
    out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


def test_tampered_initial_message_rejected_and_store_unchanged() -> None:
    _, bob, store, a, rand = start(5)
    a, first = session.encrypt(a, b"hello", rand)
    snapshot = store.to_bytes()
    for bit in list(range(0, 172 * 8, 3)) + list(range(172 * 8, len(first) * 8, 11)):
        with pytest.raises(DecryptionFailed):
            session.accept(bob, store, _flip(first, bit))
        assert store.to_bytes() == snapshot
    for cut in (0, 1, 171, 172, 213, len(first) - 1):
        with pytest.raises(DecryptionFailed):
            session.accept(bob, store, first[:cut])
    _, _, plain = session.accept(bob, store, first)
    assert plain == b"hello"


def test_x25519_top_bit_of_ephemeral_key_is_not_a_free_replay() -> None:
    # X25519 ignores bit 255 of a public key: the flipped header gives the same DH
    # outputs, so only binding the header into the AD stops it (found by the fuzzer).
    _, bob, store, a, rand = start(11)
    a, first = session.encrypt(a, b"hello", rand)
    top_byte = 1 + 1 + 32 + 32 + 64 + 31
    flipped = first[:top_byte] + bytes([first[top_byte] ^ 0x80]) + first[top_byte + 1 :]
    with pytest.raises(DecryptionFailed):
        session.accept(bob, store, flipped)
    store, _, _ = session.accept(bob, store, first)
    with pytest.raises(DecryptionFailed):
        session.accept(bob, store, flipped)


def test_tampered_session_message_rejected_and_session_unchanged() -> None:
    _, bob, store, a, rand = start(6)
    a, first = session.encrypt(a, b"hello", rand)
    store, b, _ = session.accept(bob, store, first)
    b, reply = session.encrypt(b, b"reply", rand)
    snapshot = a.to_bytes()
    for bit in range(0, len(reply) * 8, 5):
        with pytest.raises(DecryptionFailed):
            session.decrypt(a, _flip(reply, bit))
        assert a.to_bytes() == snapshot
    with pytest.raises(MalformedMessage):
        session.decrypt(a, b"")
    with pytest.raises(MalformedMessage):
        session.decrypt(a, b"\x07" + reply[1:])


def test_sessions_round_trip_through_bytes() -> None:
    _, bob, store, a, rand = start(7)
    a = Session.from_bytes(a.to_bytes())
    a, first = session.encrypt(a, b"one", rand)
    store, b, _ = session.accept(bob, store, first)
    b = Session.from_bytes(b.to_bytes())
    assert b == session.Session.from_bytes(b.to_bytes())
    b, reply = session.encrypt(b, b"two", rand)
    a, plain = session.decrypt(Session.from_bytes(a.to_bytes()), reply)
    assert plain == b"two"
    raw = a.to_bytes()
    for cut in range(0, len(raw), 17):
        with pytest.raises(CorruptState):
            Session.from_bytes(raw[:cut])


def test_force_ratchet_through_the_session() -> None:
    _, bob, store, a, rand = start(8)
    a, first = session.encrypt(a, b"hi", rand)
    store, b, _ = session.accept(bob, store, first)
    b, reply = session.encrypt(b, b"yo", rand)
    a, _ = session.decrypt(a, reply)
    a = session.force_ratchet(a)
    a, wire = session.encrypt(a, b"rotate", rand)
    b, _ = session.decrypt(b, wire)
    assert b.peer_requested_ratchet
    b, empty = session.encrypt(b, b"", rand)
    assert not b.peer_requested_ratchet
    a, plain = session.decrypt(a, empty)
    assert plain == b""


def test_ciphertexts_do_not_cross_contexts() -> None:
    alice, bob, store, a, rand = start(9)
    carol = identity(77)
    carol_store = PrekeyStore.create(NOW, rand)
    a, to_bob = session.encrypt(a, b"for Bob", rand)
    # An initial message for Bob does not open for Carol (other identity, other prekeys).
    with pytest.raises(DecryptionFailed):
        session.accept(carol, carol_store, to_bob)
    store, b, _ = session.accept(bob, store, to_bob)
    # A message of the Alice->Bob session is not accepted by the Alice->Carol session.
    c = session.initiate(alice, carol_store.bundle(carol), NOW, rand)
    c, to_carol = session.encrypt(c, b"for Carol", rand)
    carol_store, carol_side, _ = session.accept(carol, carol_store, to_carol)
    a, second = session.encrypt(a, b"second for Bob", rand)
    with pytest.raises(DecryptionFailed):
        session.decrypt(carol_side, second)
    # A box sealed for another context is not a session message, and vice versa.
    box = seal(bytes(32), bytes(12), Domain.MESSAGE, b"", b"hello")
    with pytest.raises(DecryptionFailed):
        session.decrypt(b, bytes([KIND_MESSAGE]) + box)
    with pytest.raises(DecryptionFailed):
        open_sealed(bytes(32), Domain.MESSAGE, b"", second[1:])


def test_repr_hides_secrets() -> None:
    _, _, _, a, _ = start(10)
    assert "secret" in repr(a)
    assert a.ratchet.root_key.hex() not in repr(a)
