"""Noise XX over identity keys: self-consistency, spec details, tamper and identity checks."""

from __future__ import annotations

import hashlib

import pytest

from app.core.errors import RemoteProtocolError
from app.core.identity import IdentityKeys
from app.core.noise import (
    MAX_MESSAGE,
    MAX_PLAINTEXT,
    PROTOCOL_NAME,
    CipherState,
    IdentityHandshake,
    NoiseTransport,
    XXHandshake,
    hkdf,
)
from app.core.transport_errors import HandshakeError, HandshakeStateError


def _secret(tag: str) -> bytes:
    return hashlib.sha256(tag.encode()).digest()


def _keys(tag: str) -> IdentityKeys:
    return IdentityKeys.from_seeds(_secret(tag + "-sign"), _secret(tag + "-dh"))


ALICE, BOB, MALLORY = _keys("alice"), _keys("bob"), _keys("mallory")


def _pair(
    expected: bytes | None = None, initiator_keys: IdentityKeys = ALICE
) -> tuple[IdentityHandshake, IdentityHandshake]:
    init = IdentityHandshake(
        initiator_keys,
        initiator=True,
        ephemeral_secret=_secret("ie"),
        expected_peer=expected,
    )
    resp = IdentityHandshake(BOB, initiator=False, ephemeral_secret=_secret("re"))
    return init, resp


def _run(init: IdentityHandshake, resp: IdentityHandshake) -> None:
    resp.read_message(init.write_message())
    init.read_message(resp.write_message())
    resp.read_message(init.write_message())


def test_identity_handshake_round_trip() -> None:
    init, resp = _pair(expected=BOB.public.signing_key)
    _run(init, resp)
    assert init.complete and resp.complete
    assert init.peer == BOB.public
    assert resp.peer == ALICE.public
    assert init.handshake_hash == resp.handshake_hash
    a, b = init.transport(), resp.transport()
    for message in (b"hello", b"", b"x" * (MAX_PLAINTEXT + 1), b"y" * 300_000):
        chunks = a.encrypt(message)
        assert all(len(c) <= MAX_MESSAGE for c in chunks)
        assert b"".join(b.decrypt(c) for c in chunks) == message
    assert b"".join(a.decrypt(c) for c in b.encrypt(b"back")) == b"back"


def test_raw_xx_spec_properties() -> None:
    """Message sizes and cipher-state split follow the Noise spec for XX."""
    init = XXHandshake(initiator=True, static_secret=_secret("is"), ephemeral_secret=_secret("ie"))
    resp = XXHandshake(initiator=False, static_secret=_secret("rs"), ephemeral_secret=_secret("re"))
    m1 = init.write_message(b"")
    assert len(m1) == 32  # e, cleartext empty payload
    assert resp.read_message(m1) == b""
    m2 = resp.write_message(b"p2")
    assert len(m2) == 32 + 32 + 16 + 2 + 16  # e, enc(s), enc(payload)
    assert init.read_message(m2) == b"p2"
    assert init.remote_static == resp.static_public
    m3 = init.write_message(b"")
    assert len(m3) == 32 + 16 + 16
    resp.read_message(m3)
    assert resp.remote_static == init.static_public
    i_send, i_recv = init.split()
    r_send, r_recv = resp.split()
    assert r_recv.decrypt_with_ad(b"", i_send.encrypt_with_ad(b"", b"m")) == b"m"
    assert i_recv.decrypt_with_ad(b"", r_send.encrypt_with_ad(b"", b"n")) == b"n"
    # h starts as the zero-padded protocol name (it is <= 32 bytes), then MixHash(prologue)
    fresh = XXHandshake(initiator=True, static_secret=_secret("a"), ephemeral_secret=_secret("b"))
    assert fresh.handshake_hash == hashlib.sha256(PROTOCOL_NAME.ljust(32, b"\0")).digest()


def test_hkdf_matches_rfc5869_construction() -> None:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    ck, ikm = _secret("ck"), _secret("ikm")
    out = hkdf(ck, ikm, 2)
    expected = HKDF(algorithm=hashes.SHA256(), length=64, salt=ck, info=b"").derive(ikm)
    assert out[0] + out[1] == expected


def test_aesgcm_nonce_is_big_endian_counter() -> None:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    key = _secret("k")
    cs = CipherState(key)
    cs.encrypt_with_ad(b"", b"a")
    second = cs.encrypt_with_ad(b"ad", b"b")
    nonce = b"\x00" * 4 + (1).to_bytes(8, "big")
    assert AESGCM(key).decrypt(nonce, second, b"ad") == b"b"


def test_wrong_identity_refused() -> None:
    init, resp = _pair(expected=MALLORY.public.signing_key)
    resp.read_message(init.write_message())
    with pytest.raises(HandshakeError, match="not the identity"):
        init.read_message(resp.write_message())


def test_tampered_handshake_messages_refused() -> None:
    init, resp = _pair()
    resp.read_message(init.write_message())
    m2 = bytearray(resp.write_message())
    m2[-1] ^= 1
    with pytest.raises(HandshakeError):
        init.read_message(bytes(m2))

    init, resp = _pair()
    resp.read_message(init.write_message())
    init.read_message(resp.write_message())
    m3 = bytearray(init.write_message())
    m3[5] ^= 1
    with pytest.raises(HandshakeError):
        resp.read_message(bytes(m3))


def test_identity_proof_from_another_session_refused() -> None:
    """A proof signed for one handshake hash cannot be grafted onto another session."""
    init1, resp1 = _pair()
    resp1.read_message(init1.write_message())
    old_m2 = resp1.write_message()
    # A new session with a different initiator ephemeral: the old message 2 must not verify.
    init2 = IdentityHandshake(ALICE, initiator=True, ephemeral_secret=_secret("other"))
    init2.write_message()
    with pytest.raises(HandshakeError):
        init2.read_message(old_m2)


def test_transport_tamper_replay_and_reorder_refused() -> None:
    init, resp = _pair()
    _run(init, resp)
    a, b = init.transport(), resp.transport()
    c1, c2 = a.encrypt(b"one")[0], a.encrypt(b"two")[0]
    with pytest.raises(HandshakeError):
        b.decrypt(c2)  # reordered
    assert b.decrypt(c1) == b"one"
    with pytest.raises(HandshakeError):
        b.decrypt(c1)  # replayed
    bad = bytearray(c2)
    bad[0] ^= 1
    with pytest.raises(HandshakeError):
        b.decrypt(bytes(bad))
    assert b.decrypt(c2) == b"two"  # failures did not advance the nonce
    with pytest.raises(RemoteProtocolError):
        b.decrypt(b"short")


def test_out_of_order_use_is_a_local_error() -> None:
    init, resp = _pair()
    with pytest.raises(HandshakeStateError):
        resp.write_message()
    with pytest.raises(HandshakeStateError):
        init.transport()
    init.write_message()
    with pytest.raises(HandshakeStateError):
        init.write_message()


def test_first_message_with_payload_refused() -> None:
    raw = XXHandshake(initiator=True, static_secret=_secret("s"), ephemeral_secret=_secret("e"))
    _, resp = _pair()
    with pytest.raises(HandshakeError):
        resp.read_message(raw.write_message(b"unexpected"))


def test_degenerate_ephemeral_refused() -> None:
    _, resp = _pair()
    resp.read_message(b"\x00" * 32)  # zero point as e: refused at the first DH
    with pytest.raises(HandshakeError):
        resp.write_message()


def test_nonce_exhaustion() -> None:
    cs = CipherState(_secret("k"))
    cs.nonce = 2**64 - 1
    with pytest.raises(HandshakeStateError):
        cs.encrypt_with_ad(b"", b"x")
    transport = NoiseTransport(CipherState(_secret("a")), CipherState(_secret("b")))
    assert transport.encrypt(b"") == []


# Official test vector for Noise_XX_25519_AESGCM_SHA256 from the cacophony vector set
# (as shipped in mcginty/snow, tests/vectors/cacophony.txt). Messages alternate
# initiator/responder; the last three are transport messages after Split().
CACOPHONY_XX = {
    "prologue": "4a6f686e2047616c74",
    "init_static": "e61ef9919cde45dd5f82166404bd08e38bceb5dfdfded0a34c8df7ed542214d1",
    "init_ephemeral": "893e28b9dc6ca8d611ab664754b8ceb7bac5117349a4439a6b0569da977c464a",
    "resp_static": "4a3acbfdb163dec651dfa3194dece676d437029c62a408b4c5ea9114246e4893",
    "resp_ephemeral": "bbdb4cdbd309f1a1f2e1456967fe288cadd6f712d65dc7b7793d5e63da6b375b",
    "handshake_hash": "c7c118c30ea6b4b4fb8b576a2a29da04bbbb63e2b3a8430856a2a6d58f5953ad",
    "messages": [
        (
            "4c756477696720766f6e204d69736573",
            "ca35def5ae56cec33dc2036731ab14896bc4c75dbb07a61f879f8e3afa4c7944"
            "4c756477696720766f6e204d69736573",
        ),
        (
            "4d757272617920526f746862617264",
            "95ebc60d2b1fa672c1f46a8aa265ef51bfe38e7ccb39ec5be34069f144808843757117acceb05b"
            "d7a45733bc22015c97a9d0cbaf41b80446d5988ff5127235d76b79eade70f473d6a4ef521fdcbe"
            "da5340d01e028ba793fc059f2724a83af05f12dda0448a7621a926b379a92477fd",
        ),
        (
            "462e20412e20486179656b",
            "c90f1cf77eba4e50edb038991565e36c9758943a989229b6051244dc4fbecb6946744b401af2ee"
            "1a5881b65fbb87fd07cb6a328ececc9ce6ce84c399dc332d4fd521fa4bb7f467ce909395",
        ),
        ("4361726c204d656e676572", "bc3fa77f6aca3e8466d7dc6bea10013e88a6a29add5132b461806c"),
        (
            "4a65616e2d426170746973746520536179",
            "250b01074cdfe0df2ecf8ccbf1737b15a2ddb5b52fd9a396604e9c793cee3b3bb9",
        ),
        (
            "457567656e2042f6686d20766f6e2042617765726b",
            "449d4d433b3cdc3d02bf6fc881774b9df54366ebcffb9689bb13f14709822cd7ef42bcdb4d",
        ),
    ],
}


def test_cacophony_vector_xx_25519_aesgcm_sha256() -> None:
    v = CACOPHONY_XX
    prologue = bytes.fromhex(str(v["prologue"]))
    init = XXHandshake(
        initiator=True,
        static_secret=bytes.fromhex(str(v["init_static"])),
        ephemeral_secret=bytes.fromhex(str(v["init_ephemeral"])),
        prologue=prologue,
    )
    resp = XXHandshake(
        initiator=False,
        static_secret=bytes.fromhex(str(v["resp_static"])),
        ephemeral_secret=bytes.fromhex(str(v["resp_ephemeral"])),
        prologue=prologue,
    )
    messages = [(bytes.fromhex(p), bytes.fromhex(c)) for p, c in v["messages"]]
    hashes = []
    for index, (payload, ciphertext) in enumerate(messages[:3]):
        writer, reader = (init, resp) if index % 2 == 0 else (resp, init)
        assert writer.write_message(payload) == ciphertext
        assert reader.read_message(ciphertext) == payload
        assert init.handshake_hash == resp.handshake_hash
        hashes.append(init.handshake_hash)
    # This vector file's "handshake_hash" is h before the final handshake message (the same
    # holds for its NN vector); every ciphertext above already depends on h as AEAD data.
    assert hashes[1] == bytes.fromhex(str(v["handshake_hash"]))
    init_send, init_recv = init.split()
    resp_send, resp_recv = resp.split()
    for index, (payload, ciphertext) in enumerate(messages[3:], start=3):
        send, recv = (init_send, resp_recv) if index % 2 == 0 else (resp_send, init_recv)
        assert send.encrypt_with_ad(b"", payload) == ciphertext
        assert recv.decrypt_with_ad(b"", ciphertext) == payload
