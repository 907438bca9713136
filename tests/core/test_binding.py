"""Connection binding (RFC 8844 style): round trip, tamper, MITM and replay rejection."""

from __future__ import annotations

import hashlib

import pytest

from app.core.binding import (
    ConnectionBinding,
    make_binding,
    normalize_fingerprint,
    verify_binding,
)
from app.core.errors import InvalidSignature, LocalProtocolError, RemoteProtocolError
from app.core.identity import IdentityKeys
from app.core.transport_errors import BindingError


def _keys(tag: str) -> IdentityKeys:
    seed = hashlib.sha256(tag.encode()).digest()
    return IdentityKeys.from_seeds(seed, hashlib.sha256(seed).digest())


def _fp(tag: str) -> str:
    digest = hashlib.sha256(tag.encode()).hexdigest()
    return normalize_fingerprint("SHA-256", ":".join(digest[i : i + 2] for i in range(0, 64, 2)))


ALICE, BOB, MALLORY = _keys("alice"), _keys("bob"), _keys("mallory")
FP_A, FP_B, FP_M = _fp("a"), _fp("b"), _fp("m")
NONCE_A, NONCE_B = b"\x01" * 32, b"\x02" * 32


def _alice_binding(**overrides: object) -> bytes:
    args: dict[str, object] = {
        "peer_key": BOB.public.signing_key,
        "local_fingerprint": FP_A,
        "remote_fingerprint": FP_B,
        "local_nonce": NONCE_A,
        "remote_nonce": NONCE_B,
    }
    args.update(overrides)
    return make_binding(ALICE, **args)  # type: ignore[arg-type]


def _bob_verifies(data: bytes, **overrides: object) -> ConnectionBinding:
    args: dict[str, object] = {
        "local_key": BOB.public.signing_key,
        "expected_peer_key": ALICE.public.signing_key,
        "local_fingerprint": FP_B,
        "remote_fingerprint": FP_A,
        "local_nonce": NONCE_B,
        "remote_nonce": NONCE_A,
    }
    args.update(overrides)
    return verify_binding(data, **args)  # type: ignore[arg-type]


def test_round_trip() -> None:
    binding = _bob_verifies(_alice_binding())
    assert binding.signer_key == ALICE.public.signing_key
    assert binding.peer_fingerprint == FP_B
    assert ConnectionBinding.decode(binding.encode()) == binding


def test_normalize_fingerprint() -> None:
    assert FP_A.startswith("sha-256 ")
    assert normalize_fingerprint("sha-256", FP_A.split()[1].lower()) == FP_A
    with pytest.raises(BindingError):
        normalize_fingerprint("md5", "AB:CD")


def test_wrong_identity_refused() -> None:
    forged = make_binding(
        MALLORY,
        peer_key=BOB.public.signing_key,
        local_fingerprint=FP_A,
        remote_fingerprint=FP_B,
        local_nonce=NONCE_A,
        remote_nonce=NONCE_B,
    )
    with pytest.raises(BindingError, match="different identity"):
        _bob_verifies(forged)
    with pytest.raises(BindingError, match="names a different identity"):
        _bob_verifies(_alice_binding(peer_key=MALLORY.public.signing_key))


def test_man_in_the_middle_fingerprints_refused() -> None:
    # Mallory terminates DTLS on both sides: Alice saw FP_M as "Bob", Bob saw FP_M as "Alice".
    alice_view = _alice_binding(remote_fingerprint=FP_M)
    with pytest.raises(BindingError, match="man in the middle"):
        _bob_verifies(alice_view, remote_fingerprint=FP_A)
    with pytest.raises(BindingError, match="differs"):
        _bob_verifies(_alice_binding(), remote_fingerprint=FP_M)


def test_replayed_nonces_refused() -> None:
    old = _alice_binding(local_nonce=b"\x09" * 32, remote_nonce=b"\x08" * 32)
    with pytest.raises(BindingError, match="replay"):
        _bob_verifies(old)
    with pytest.raises(BindingError, match="replay"):
        _bob_verifies(_alice_binding(), local_nonce=b"\x07" * 32)


def test_altered_field_breaks_signature() -> None:
    good = ConnectionBinding.decode(_alice_binding())
    tampered = ConnectionBinding(
        good.signer_key,
        good.peer_key,
        FP_M,
        good.peer_fingerprint,
        good.signer_nonce,
        good.peer_nonce,
        good.signature,
    ).encode()
    with pytest.raises(InvalidSignature):
        _bob_verifies(tampered, remote_fingerprint=FP_M)
    raw = _alice_binding()
    at = raw.index(good.signature)
    flipped = bytearray(raw)
    flipped[at + 10] ^= 1
    with pytest.raises(InvalidSignature):
        _bob_verifies(bytes(flipped))


@pytest.mark.parametrize(
    "data",
    [b"", b"\xff\xff", b"\xa0", b"x" * 2000, bytes.fromhex("a1616101")],
)
def test_garbage_refused(data: bytes) -> None:
    with pytest.raises(RemoteProtocolError):
        _bob_verifies(data)


def test_non_canonical_encoding_refused() -> None:
    import cbor2

    good = _alice_binding()
    fields = cbor2.loads(good)
    reordered = cbor2.dumps(dict(reversed(list(fields.items()))), canonical=False)
    assert reordered != good
    with pytest.raises(BindingError, match="canonical"):
        _bob_verifies(reordered)


def test_local_misuse() -> None:
    with pytest.raises(LocalProtocolError):
        _alice_binding(local_nonce=b"short")
    with pytest.raises(LocalProtocolError):
        _alice_binding(local_fingerprint="sha-256 ab:cd")
