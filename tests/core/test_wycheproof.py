"""Project Wycheproof vectors for every primitive the E2E core uses.

Each case runs through the helper our modules call (`x25519_shared_secret`,
`hkdf_sha256`, `aead_encrypt`/`aead_decrypt`) wherever the helper covers its parameters:

* X25519: "valid" must give the expected secret. "acceptable" cases (twist points,
  non-canonical encodings, low-order keys) follow RFC 7748: we compute them, except that
  an all-zero shared secret is always refused (`InvalidKeyAgreement`, RFC 7748 §6.1).
* Ed25519: Ed25519 signatures in the app always carry a domain tag, so the vectors run
  against the same `cryptography` verifier `identity.verify_signature` wraps.
* AES-GCM: our helper takes only 256-bit keys and 96-bit nonces; those groups run through
  it. Every other group runs against `cryptography`'s AESGCM directly, where parameters it
  does not support (nonces outside 8..128 bytes) must be refused, never mis-computed.
* HKDF-SHA256: every case through our own `hkdf_sha256`, cross-checked with `cryptography`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from app.core.e2e_errors import InvalidKeyAgreement
from app.core.errors import DecryptionFailed, LocalProtocolError
from app.core.ratchet import aead_decrypt, aead_encrypt, hkdf_sha256, x25519_shared_secret

DATA = Path(__file__).resolve().parent.parent / "data" / "wycheproof"


def _load(name: str) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    document = json.loads((DATA / name).read_text())
    cases = [(group, test) for group in document["testGroups"] for test in group["tests"]]
    assert len(cases) == document["numberOfTests"]
    return cases


def _ids(cases: list[tuple[dict[str, Any], dict[str, Any]]]) -> list[str]:
    return [f"tc{test['tcId']}-{test['result']}" for _, test in cases]


X25519_CASES = _load("x25519_test.json")
ED25519_CASES = _load("ed25519_test.json")
AES_GCM_CASES = _load("aes_gcm_test.json")
HKDF_CASES = _load("hkdf_sha256_test.json")


@pytest.mark.parametrize(("group", "case"), X25519_CASES, ids=_ids(X25519_CASES))
def test_x25519(group: dict[str, Any], case: dict[str, Any]) -> None:
    assert group["curve"] == "curve25519"
    private = bytes.fromhex(case["private"])
    public = bytes.fromhex(case["public"])
    expected = bytes.fromhex(case["shared"])
    if expected == bytes(32):
        assert case["result"] == "acceptable"
        with pytest.raises(InvalidKeyAgreement):
            x25519_shared_secret(private, public)
    else:
        assert case["result"] in ("valid", "acceptable")
        assert x25519_shared_secret(private, public) == expected


def test_x25519_vectors_cover_the_zero_secret_policy() -> None:
    zero = [c for _, c in X25519_CASES if c["shared"] == "00" * 32]
    assert len(zero) >= 20
    assert all("ZeroSharedSecret" in c["flags"] for c in zero)


@pytest.mark.parametrize(("group", "case"), ED25519_CASES, ids=_ids(ED25519_CASES))
def test_ed25519(group: dict[str, Any], case: dict[str, Any]) -> None:
    key = Ed25519PublicKey.from_public_bytes(bytes.fromhex(group["publicKey"]["pk"]))
    message, signature = bytes.fromhex(case["msg"]), bytes.fromhex(case["sig"])
    if case["result"] == "valid":
        key.verify(signature, message)
    else:
        assert case["result"] == "invalid"
        with pytest.raises(InvalidSignature):
            key.verify(signature, message)


def _aes_gcm_through_helper(case: dict[str, Any]) -> None:
    key, nonce = bytes.fromhex(case["key"]), bytes.fromhex(case["iv"])
    aad, message = bytes.fromhex(case["aad"]), bytes.fromhex(case["msg"])
    sealed = bytes.fromhex(case["ct"]) + bytes.fromhex(case["tag"])
    if case["result"] == "valid":
        assert aead_encrypt(key, nonce, message, aad) == sealed
        assert aead_decrypt(key, nonce, sealed, aad) == message
    else:
        with pytest.raises(DecryptionFailed):
            aead_decrypt(key, nonce, sealed, aad)


def _aes_gcm_raw(case: dict[str, Any]) -> None:
    key, nonce = bytes.fromhex(case["key"]), bytes.fromhex(case["iv"])
    aad, message = bytes.fromhex(case["aad"]), bytes.fromhex(case["msg"])
    sealed = bytes.fromhex(case["ct"]) + bytes.fromhex(case["tag"])
    # Our helper refuses every parameter set other than 256-bit key / 96-bit nonce.
    with pytest.raises(LocalProtocolError):
        aead_decrypt(key, nonce, sealed, aad)
    if not 8 <= len(nonce) <= 128:
        # Outside what `cryptography` implements: it must refuse, not mis-compute.
        with pytest.raises(ValueError):
            AESGCM(key).decrypt(nonce, sealed, aad)
        return
    if case["result"] == "valid":
        assert AESGCM(key).encrypt(nonce, message, aad) == sealed
        assert AESGCM(key).decrypt(nonce, sealed, aad) == message
    else:
        with pytest.raises(InvalidTag):
            AESGCM(key).decrypt(nonce, sealed, aad)


@pytest.mark.parametrize(("group", "case"), AES_GCM_CASES, ids=_ids(AES_GCM_CASES))
def test_aes_gcm(group: dict[str, Any], case: dict[str, Any]) -> None:
    assert group["tagSize"] == 128
    if group["keySize"] == 256 and group["ivSize"] == 96:
        _aes_gcm_through_helper(case)
    else:
        _aes_gcm_raw(case)


def test_aes_gcm_helper_groups_are_exercised() -> None:
    ours = [c for g, c in AES_GCM_CASES if g["keySize"] == 256 and g["ivSize"] == 96]
    assert {c["result"] for c in ours} == {"valid", "invalid"}
    assert len(ours) >= 30


@pytest.mark.parametrize(("group", "case"), HKDF_CASES, ids=_ids(HKDF_CASES))
def test_hkdf_sha256(group: dict[str, Any], case: dict[str, Any]) -> None:
    ikm, salt = bytes.fromhex(case["ikm"]), bytes.fromhex(case["salt"])
    info, size = bytes.fromhex(case["info"]), case["size"]
    if case["result"] == "valid":
        expected = bytes.fromhex(case["okm"])
        assert hkdf_sha256(ikm, salt, info, size) == expected
        reference = HKDF(algorithm=hashes.SHA256(), length=size, salt=salt or None, info=info)
        assert reference.derive(ikm) == expected
    else:
        assert case["result"] == "invalid"
        with pytest.raises(LocalProtocolError):
            hkdf_sha256(ikm, salt, info, size)
