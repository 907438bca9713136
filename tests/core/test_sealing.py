"""Context-bound AES-256-GCM sealing."""

import pytest

from app.core.domains import Domain
from app.core.errors import DecryptionFailed, LocalProtocolError
from app.core.sealing import derive_key, open_sealed, seal

KEY = bytes(range(32))
NONCE = bytes(12)


def test_round_trip() -> None:
    box = seal(KEY, NONCE, Domain.STORAGE_FIELD, b"contacts/name/1", b"Bob")
    assert b"Bob" not in box
    assert open_sealed(KEY, Domain.STORAGE_FIELD, b"contacts/name/1", box) == b"Bob"


@pytest.mark.parametrize(
    ("domain", "context"),
    [(Domain.MESSAGE, b"contacts/name/1"), (Domain.STORAGE_FIELD, b"contacts/name/2")],
)
def test_value_moved_to_another_context_fails(domain: Domain, context: bytes) -> None:
    box = seal(KEY, NONCE, Domain.STORAGE_FIELD, b"contacts/name/1", b"Bob")
    with pytest.raises(DecryptionFailed):
        open_sealed(KEY, domain, context, box)


def test_every_bit_flip_is_detected() -> None:
    box = seal(KEY, NONCE, Domain.STORAGE_FIELD, b"c", b"secret text")
    for i in range(len(box) * 8):
        flipped = bytearray(box)
        flipped[i // 8] ^= 1 << (i % 8)
        with pytest.raises(DecryptionFailed):
            open_sealed(KEY, Domain.STORAGE_FIELD, b"c", bytes(flipped))


def test_truncated_and_wrong_key() -> None:
    box = seal(KEY, NONCE, Domain.STORAGE_FIELD, b"c", b"x")
    with pytest.raises(DecryptionFailed):
        open_sealed(KEY, Domain.STORAGE_FIELD, b"c", box[:10])
    with pytest.raises(DecryptionFailed):
        open_sealed(bytes(32), Domain.STORAGE_FIELD, b"c", box)
    with pytest.raises(LocalProtocolError):
        seal(b"short", NONCE, Domain.STORAGE_FIELD, b"c", b"x")


def test_derived_keys_differ_by_domain_and_purpose() -> None:
    a = derive_key(KEY, Domain.STORAGE_FIELD, b"seal")
    assert a != derive_key(KEY, Domain.STORAGE_FIELD, b"tag")
    assert a != derive_key(KEY, Domain.MESSAGE, b"seal")
    assert len(a) == 32
