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
    return SealingKey(key).seal(nonce, domain, context, plaintext)


def open_sealed(key: bytes, domain: Domain, context: bytes, box: bytes) -> bytes:
    """Decrypt a box made by `seal`; raise `DecryptionFailed` on any mismatch."""
    return SealingKey(key).open(domain, context, box)


class SealingKey:
    """A key that seals and opens many values (`seal` and `open_sealed` for one): its
    AES-GCM state is set up once, which is most of the cost of opening a short value."""

    def __init__(self, key: bytes) -> None:
        if len(key) != KEY_SIZE:
            raise LocalProtocolError("sealing needs a 32-byte key")
        self._aead = AESGCM(key)
        self._prefixes: dict[Domain, bytes] = {}

    def _aad(self, domain: Domain, context: bytes) -> bytes:
        prefix = self._prefixes.get(domain)
        if prefix is None:
            prefix = self._prefixes[domain] = bytes([SEAL_VERSION]) + domain.tag()
        return prefix + context

    def __repr__(self) -> str:
        return "SealingKey(<secret>)"

    def seal(self, nonce: bytes, domain: Domain, context: bytes, plaintext: bytes) -> bytes:
        """Encrypt `plaintext` so it only opens with the same key, domain and context."""
        if len(nonce) != NONCE_SIZE:
            raise LocalProtocolError("seal needs a 12-byte nonce")
        aad = self._aad(domain, context)
        return bytes([SEAL_VERSION]) + nonce + self._aead.encrypt(nonce, plaintext, aad)

    def open(self, domain: Domain, context: bytes, box: bytes) -> bytes:
        """Decrypt a box made by `seal`; raise `DecryptionFailed` on any mismatch."""
        if len(box) < OVERHEAD or box[0] != SEAL_VERSION:
            raise DecryptionFailed("sealed value is truncated or of an unknown version")
        nonce = box[1 : 1 + NONCE_SIZE]
        aad = self._aad(domain, context)
        try:
            return self._aead.decrypt(nonce, box[1 + NONCE_SIZE :], aad)
        except InvalidTag:
            raise DecryptionFailed("sealed value does not authenticate") from None
