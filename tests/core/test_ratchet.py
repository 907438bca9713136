"""Double Ratchet: delivery orders, replay, tampering, DoS bounds, persistence, rotation."""

from __future__ import annotations

import random
import struct
from collections.abc import Callable

import pytest

from app.core import ratchet
from app.core.domains import Domain
from app.core.e2e_errors import (
    CorruptState,
    DuplicateMessage,
    MalformedMessage,
    SkipLimitExceeded,
)
from app.core.errors import DecryptionFailed, LocalProtocolError
from app.core.ratchet import (
    HEADER_SIZE,
    MAX_SKIP,
    MAX_SKIPPED_CHAINS,
    MAX_SKIPPED_KEYS,
    RatchetState,
    decrypt,
    encrypt,
    force_ratchet,
    init_initiator,
    init_responder,
    parse_header,
    x25519_public_key,
)

AD = b"A" * 64 + b"B" * 64


def rng(seed: int) -> Callable[[int], bytes]:
    return random.Random(seed).randbytes


def make_pair(
    seed: int = 0, ad: bytes = AD
) -> tuple[RatchetState, RatchetState, Callable[[int], bytes]]:
    rand = rng(seed)
    shared, signed_prekey = rand(32), rand(32)
    alice = init_initiator(shared, x25519_public_key(signed_prekey), ad)
    bob = init_responder(shared, signed_prekey, ad)
    return alice, bob, rand


def test_conversation_both_ways() -> None:
    alice, bob, rand = make_pair()
    for turn in range(6):
        for i in range(3):
            alice, wire = encrypt(alice, f"a{turn}.{i}".encode(), rand)
            bob, plain = decrypt(bob, wire)
            assert plain == f"a{turn}.{i}".encode()
        bob, wire = encrypt(bob, f"b{turn}".encode(), rand)
        alice, plain = decrypt(alice, wire)
        assert plain == f"b{turn}".encode()
    assert alice.skipped_key_count == bob.skipped_key_count == 0


def test_each_turn_uses_a_fresh_ratchet_key() -> None:
    alice, bob, rand = make_pair()
    keys = set()
    for _ in range(4):
        alice, wire = encrypt(alice, b"ping", rand)
        keys.add(parse_header(wire)[1])
        bob, _ = decrypt(bob, wire)
        bob, wire = encrypt(bob, b"pong", rand)
        keys.add(parse_header(wire)[1])
        alice, _ = decrypt(alice, wire)
    assert len(keys) == 8


def test_out_of_order_within_and_across_chains() -> None:
    alice, bob, rand = make_pair(1)
    sent = []
    for i in range(5):
        alice, wire = encrypt(alice, b"a%d" % i, rand)
        sent.append(wire)
    for i in (4, 0, 2):
        bob, plain = decrypt(bob, sent[i])
        assert plain == b"a%d" % i
    assert bob.skipped_key_count == 2
    bob, reply = encrypt(bob, b"b0", rand)
    alice, _ = decrypt(alice, reply)
    alice, fresh = encrypt(alice, b"a-new", rand)
    bob, plain = decrypt(bob, fresh)
    assert plain == b"a-new"
    for i in (3, 1):  # late messages of the old chain still open, once
        bob, plain = decrypt(bob, sent[i])
        assert plain == b"a%d" % i
    assert bob.skipped_key_count == 0


def test_late_messages_of_previous_chain_use_pn() -> None:
    alice, bob, rand = make_pair(2)
    alice, first = encrypt(alice, b"first", rand)
    bob, _ = decrypt(bob, first)
    bob, reply = encrypt(bob, b"reply", rand)
    alice, _ = decrypt(alice, reply)
    lost = []
    for i in range(3):  # Bob misses the rest of this chain ...
        alice, wire = encrypt(alice, b"lost%d" % i, rand)
        lost.append(wire)
    bob, reply = encrypt(bob, b"reply2", rand)  # same Bob chain: Alice won't step
    alice, _ = decrypt(alice, reply)
    alice, wire = encrypt(alice, b"after", rand)
    bob, _ = decrypt(bob, wire)
    bob, wire = encrypt(bob, b"b", rand)
    alice, _ = decrypt(alice, wire)
    alice, wire = encrypt(alice, b"next chain", rand)  # pn = 4 tells Bob to keep 3 keys
    bob, plain = decrypt(bob, wire)
    assert plain == b"next chain"
    for i, wire in enumerate(lost):
        bob, plain = decrypt(bob, wire)
        assert plain == b"lost%d" % i


def test_replays_rejected_without_state_change() -> None:
    alice, bob, rand = make_pair(3)
    alice, m0 = encrypt(alice, b"m0", rand)
    alice, m1 = encrypt(alice, b"m1", rand)
    alice, m2 = encrypt(alice, b"m2", rand)
    bob, _ = decrypt(bob, m2)
    bob, _ = decrypt(bob, m0)  # from the skipped store
    for replay in (m0, m2):
        snapshot = bob.to_bytes()
        with pytest.raises(DuplicateMessage):
            decrypt(bob, replay)
        assert bob.to_bytes() == snapshot
    bob, reply = encrypt(bob, b"r", rand)
    alice, _ = decrypt(alice, reply)
    alice, m3 = encrypt(alice, b"m3", rand)
    bob, _ = decrypt(bob, m3)
    bob, plain = decrypt(bob, m1)  # still in the skipped store
    assert plain == b"m1"
    for replay in (m0, m1, m2, m3):  # old chain and current chain
        before = bob
        with pytest.raises(DuplicateMessage):
            decrypt(bob, replay)
        assert bob == before


def _flip(data: bytes, bit: int) -> bytes:
    out = bytearray(data)
    out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


@pytest.mark.parametrize("new_chain", [False, True])
def test_every_header_bit_flip_and_ciphertext_flips_are_rejected(new_chain: bool) -> None:
    alice, bob, rand = make_pair(4)
    alice, first = encrypt(alice, b"hello", rand)
    if not new_chain:
        bob, _ = decrypt(bob, first)
        alice, wire = encrypt(alice, b"second message", rand)
    else:
        wire = first
    snapshot = bob.to_bytes()
    positions = list(range(HEADER_SIZE * 8)) + list(range(HEADER_SIZE * 8, len(wire) * 8, 7))
    for bit in positions:
        with pytest.raises(DecryptionFailed):
            decrypt(bob, _flip(wire, bit))
        assert bob.to_bytes() == snapshot
    for cut in (0, 1, HEADER_SIZE, len(wire) - 1):
        with pytest.raises(DecryptionFailed):
            decrypt(bob, wire[:cut])
    with pytest.raises(DecryptionFailed):
        decrypt(bob, wire + b"\x00")
    bob, plain = decrypt(bob, wire)  # the genuine message still opens afterwards
    assert plain in (b"hello", b"second message")


def _forbid_expensive_work(monkeypatch: pytest.MonkeyPatch) -> None:
    def forbidden(*args: object) -> None:
        raise AssertionError("bound check must come before any key derivation")

    monkeypatch.setattr(ratchet, "x25519_shared_secret", forbidden)
    monkeypatch.setattr(ratchet, "_advance", forbidden)
    monkeypatch.setattr(ratchet, "kdf_chain", forbidden)


def _forge(remote: bytes, pn: int, n: int, body: bytes = b"\x00" * 24) -> bytes:
    return struct.pack(">BB32sII", 1, 0, remote, pn, n) + body


def test_max_counter_header_rejected_before_any_work(monkeypatch: pytest.MonkeyPatch) -> None:
    alice, bob, rand = make_pair(5)
    alice, wire = encrypt(alice, b"hi", rand)
    bob, _ = decrypt(bob, wire)
    current = parse_header(wire)[1]
    _forbid_expensive_work(monkeypatch)
    for forged in (
        _forge(current, 0, 2**32 - 1),  # current chain
        _forge(b"\x09" * 32, 0, 2**32 - 1),  # new chain
        _forge(b"\x09" * 32, 2**32 - 1, 0),  # new chain, huge previous-chain length
    ):
        with pytest.raises(SkipLimitExceeded):
            decrypt(bob, forged)


def test_skip_bound_is_exact() -> None:
    alice, bob, rand = make_pair(6)
    wires = []
    for i in range(MAX_SKIP + 2):
        alice, wire = encrypt(alice, b"%d" % i, rand)
        wires.append(wire)
    with pytest.raises(SkipLimitExceeded):
        decrypt(bob, wires[MAX_SKIP + 1])  # would skip MAX_SKIP + 1 keys
    bob, plain = decrypt(bob, wires[MAX_SKIP])  # skips exactly MAX_SKIP keys
    assert plain == b"%d" % MAX_SKIP
    assert bob.skipped_key_count == MAX_SKIP


def test_flood_of_new_ratchet_keys_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    alice, bob, rand = make_pair(7)
    alice, wire = encrypt(alice, b"hi", rand)
    bob, _ = decrypt(bob, wire)
    for _ in range(5):  # leave some legitimately skipped keys in the store
        alice, wire = encrypt(alice, b"x", rand)
    bob, _ = decrypt(bob, wire)
    snapshot = bob.to_bytes()
    dh_calls = 0
    real_dh = ratchet.x25519_shared_secret

    def counting_dh(secret: object, public: bytes) -> bytes:
        nonlocal dh_calls
        dh_calls += 1
        return real_dh(secret, public)  # type: ignore[arg-type]

    monkeypatch.setattr(ratchet, "x25519_shared_secret", counting_dh)
    attacker = random.Random(8).randbytes
    count, rejected = 10**5, 0
    for _ in range(count):
        # A fresh ratchet key, small pn/n (within MAX_SKIP) and a random "ciphertext".
        small = attacker(2)
        forged = _forge(attacker(32), small[0] % 8, small[1] % 8, attacker(24))
        try:
            decrypt(bob, forged)
        except DecryptionFailed:
            rejected += 1
    assert rejected == count
    assert dh_calls <= count  # at most one public-key operation per forged message
    assert bob.to_bytes() == snapshot
    assert bob.skipped_key_count == 4


def test_skipped_keys_and_chains_stay_bounded_under_heavy_loss() -> None:
    alice, bob, rand = make_pair(9)
    alice, wire = encrypt(alice, b"hello", rand)
    bob, _ = decrypt(bob, wire)
    first_of_chain: list[bytes] = []
    for _round in range(12):
        bob, reply = encrypt(bob, b"r", rand)
        alice, _ = decrypt(alice, reply)
        for i in range(MAX_SKIP):
            alice, wire = encrypt(alice, b"m%d" % i, rand)
            if i == 0:
                first_of_chain.append(wire)
        bob, _ = decrypt(bob, wire)  # only the last of each chain arrives
        assert bob.skipped_key_count <= MAX_SKIPPED_KEYS
        assert len({remote for remote, _ in bob.skipped}) <= MAX_SKIPPED_CHAINS
    assert bob.skipped_key_count > MAX_SKIP  # the bound, not the loss pattern, limits it
    with pytest.raises(DuplicateMessage):  # evicted long ago: refused, never re-derived
        decrypt(bob, first_of_chain[0])
    bob, plain = decrypt(bob, first_of_chain[-1])  # recent lost messages still open
    assert plain == b"m0"


def test_eviction_keeps_the_newest_keys() -> None:
    alice, bob, rand = make_pair(10)
    alice, wire = encrypt(alice, b"hello", rand)
    bob, _ = decrypt(bob, wire)
    chains: list[list[bytes]] = []
    for _round in range(3):
        bob, reply = encrypt(bob, b"r", rand)
        alice, _ = decrypt(alice, reply)
        chain = []
        for i in range(MAX_SKIP):
            alice, wire = encrypt(alice, b"c%d" % i, rand)
            chain.append(wire)
        bob, _ = decrypt(bob, chain[-1])
        chains.append(chain)
    assert bob.skipped_key_count == MAX_SKIPPED_KEYS
    with pytest.raises(DuplicateMessage):
        decrypt(bob, chains[0][0])  # the oldest chain was evicted first
    bob, plain = decrypt(bob, chains[2][0])
    assert plain == b"c0"
    bob, plain = decrypt(bob, chains[1][MAX_SKIP - 2])
    assert plain == b"c%d" % (MAX_SKIP - 2)


def test_state_round_trips_through_bytes_mid_conversation() -> None:
    alice, bob, rand = make_pair(11)
    alice, w0 = encrypt(alice, b"0", rand)
    alice, w1 = encrypt(alice, b"1", rand)
    bob, _ = decrypt(bob, w1)
    bob = RatchetState.from_bytes(bob.to_bytes())
    alice = RatchetState.from_bytes(alice.to_bytes())
    assert bob.skipped_key_count == 1
    bob, plain = decrypt(bob, w0)
    assert plain == b"0"
    bob, wire = encrypt(bob, b"back", rand)
    alice, plain = decrypt(RatchetState.from_bytes(alice.to_bytes()), wire)
    assert plain == b"back"
    assert RatchetState.from_bytes(alice.to_bytes()) == alice


@pytest.mark.parametrize(
    "raw",
    [b"", b"\xff", b"\x80", b"\xa0", b"\x83\x01\x02\x03", b"\x9f" * 50, b"\x5b" + b"\xff" * 8],
)
def test_corrupt_state_rejected(raw: bytes) -> None:
    with pytest.raises(CorruptState):
        RatchetState.from_bytes(raw)


def test_every_truncation_of_state_is_rejected() -> None:
    alice, _, rand = make_pair(12)
    alice, _ = encrypt(alice, b"x", rand)
    raw = alice.to_bytes()
    for cut in range(0, len(raw), 5):
        with pytest.raises(CorruptState):
            RatchetState.from_bytes(raw[:cut])


def test_force_ratchet_steps_both_sides_within_a_round_trip() -> None:
    alice, bob, rand = make_pair(13)
    alice, wire = encrypt(alice, b"hi", rand)
    bob, _ = decrypt(bob, wire)
    bob, wire = encrypt(bob, b"yo", rand)
    alice, _ = decrypt(alice, wire)
    alice, wire = encrypt(alice, b"steady", rand)
    bob, _ = decrypt(bob, wire)
    alice_key, bob_key = parse_header(wire)[1], bob.dh_public
    alice = force_ratchet(alice)
    alice, wire = encrypt(alice, b"rotate please", rand)
    assert parse_header(wire)[0] & ratchet.FLAG_RATCHET_REQUEST
    bob, _ = decrypt(bob, wire)
    assert bob.peer_requested_ratchet
    bob, wire = encrypt(bob, b"", rand)  # the node answers with an empty message
    assert not bob.peer_requested_ratchet
    assert parse_header(wire)[1] != bob_key
    alice, _ = decrypt(alice, wire)
    alice, wire = encrypt(alice, b"rotated", rand)
    assert parse_header(wire)[1] != alice_key
    assert not parse_header(wire)[0] & ratchet.FLAG_RATCHET_REQUEST
    bob, plain = decrypt(bob, wire)
    assert plain == b"rotated"


def test_responder_cannot_send_first_and_bad_randomness_is_refused() -> None:
    alice, bob, rand = make_pair(14)
    with pytest.raises(LocalProtocolError):
        encrypt(bob, b"too early", rand)
    with pytest.raises(LocalProtocolError):
        encrypt(alice, b"x", lambda n: b"short")
    with pytest.raises(LocalProtocolError):
        encrypt(alice, b"x" * (ratchet.MAX_PLAINTEXT_BYTES + 1), rand)


def test_malformed_messages() -> None:
    alice, bob, rand = make_pair(15)
    alice, wire = encrypt(alice, b"x", rand)
    with pytest.raises(MalformedMessage):
        decrypt(bob, b"\x02" + wire[1:])  # unknown version
    with pytest.raises(MalformedMessage):
        decrypt(bob, wire[:1] + b"\x80" + wire[2:])  # unknown flag
    with pytest.raises(MalformedMessage):
        decrypt(bob, wire[: HEADER_SIZE + 15])


def test_reflected_message_is_rejected() -> None:
    alice, _, rand = make_pair(16)
    alice, wire = encrypt(alice, b"x", rand)
    with pytest.raises(DecryptionFailed):
        decrypt(alice, wire)


def test_ciphertext_is_bound_to_associated_data() -> None:
    alice, _, rand = make_pair(17)
    _, other_bob, _ = make_pair(17, ad=b"C" * 64 + b"B" * 64)
    alice, wire = encrypt(alice, b"x", rand)
    with pytest.raises(DecryptionFailed):
        decrypt(other_bob, wire)


def test_ciphertext_is_bound_to_the_message_domain(monkeypatch: pytest.MonkeyPatch) -> None:
    alice, bob, rand = make_pair(18)
    alice, wire = encrypt(alice, b"x", rand)
    for domain in Domain:
        if domain is Domain.MESSAGE:
            continue
        monkeypatch.setattr(ratchet, "_MESSAGE_TAG", domain.tag())
        with pytest.raises(DecryptionFailed):
            decrypt(bob, wire)
    monkeypatch.setattr(ratchet, "_MESSAGE_TAG", Domain.MESSAGE.tag())
    _, plain = decrypt(bob, wire)
    assert plain == b"x"


def test_repr_hides_secrets() -> None:
    alice, bob, _ = make_pair(19)
    assert alice.root_key.hex() not in repr(alice)
    assert "secret" in repr(bob)
