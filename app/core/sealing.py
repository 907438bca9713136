"""AES-256-GCM sealing bound to a context (domain + caller-chosen associated data).

Sealed box layout: ``version (1 byte) || nonce (12 bytes) || ciphertext+tag``.
The nonce is passed in by the caller (sans-I/O); it must be fresh random bytes.
"""

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from app.core.domains import Domain
from app.core.errors import DecryptionFailed, LocalProtocolError

SEAL_VERSION = 1
NONCE_SIZE = 12
KEY_SIZE = 32
OVERHEAD = 1 + NONCE_SIZE + 16


def derive_key(master: bytes, domain: Domain, purpose: bytes) -> bytes:
    """Derive a 32-byte subkey of `master` for one domain and purpose (HKDF-SHA256)."""
    if len(master) != KEY_SIZE:
        raise LocalProtocolError("master key must be 32 bytes")
    return HKDF(
        algorithm=hashes.SHA256(), length=KEY_SIZE, salt=None, info=domain.tag() + purpose
    ).derive(master)


def seal(key: bytes, nonce: bytes, domain: Domain, context: bytes, plaintext: bytes) -> bytes:
    """Encrypt `plaintext` so it only opens with the same key, domain and context."""
    if len(key) != KEY_SIZE or len(nonce) != NONCE_SIZE:
        raise LocalProtocolError("seal needs a 32-byte key and a 12-byte nonce")
    aad = bytes([SEAL_VERSION]) + domain.tag() + context
    return bytes([SEAL_VERSION]) + nonce + AESGCM(key).encrypt(nonce, plaintext, aad)


def open_sealed(key: bytes, domain: Domain, context: bytes, box: bytes) -> bytes:
    """Decrypt a box made by `seal`; raise `DecryptionFailed` on any mismatch."""
    if len(key) != KEY_SIZE:
        raise LocalProtocolError("open_sealed needs a 32-byte key")
    if len(box) < OVERHEAD or box[0] != SEAL_VERSION:
        raise DecryptionFailed("sealed value is truncated or of an unknown version")
    nonce = box[1 : 1 + NONCE_SIZE]
    aad = bytes([SEAL_VERSION]) + domain.tag() + context
    try:
        return AESGCM(key).decrypt(nonce, box[1 + NONCE_SIZE :], aad)
    except InvalidTag:
        raise DecryptionFailed("sealed value does not authenticate") from None
