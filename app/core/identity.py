"""Identity keys, text addresses, invite links and safety numbers.

An identity is an Ed25519 signing key plus an X25519 key-agreement key whose public half
is signed by the Ed25519 key (context `Domain.DH_KEY_BINDING`).

* Address: ``"egg"`` + lowercase unpadded base32 of ``ed25519_pub || checksum`` where the
  checksum is the first 4 bytes of SHA-256(address tag || ed25519_pub). 61 characters.
* Invite link: ``eggs:<address>?v=1&n=<name>&x=<x25519 pub>&e=<host:port>...&s=<sig>``;
  the signature (context `Domain.INVITE`) covers address, name, X25519 key and endpoints,
  so nobody can swap the key or redirect the endpoints of a link in transit.
* Safety number: 60 digits, the sorted pair of each side's 30-digit fingerprint
  (iterated SHA-512 over both public keys, in the manner of Signal's).
"""

from __future__ import annotations

import base64
import functools
import hashlib
import ipaddress
import json
import re
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from urllib.parse import parse_qs, quote, urlsplit

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from nacl.exceptions import BadSignatureError
from nacl.exceptions import TypeError as NaclTypeError
from nacl.exceptions import ValueError as NaclValueError
from nacl.signing import SigningKey, VerifyKey

from app.core.domains import Domain
from app.core.errors import (
    InvalidAddress,
    InvalidInvite,
    InvalidSignature,
    LocalProtocolError,
)

ADDRESS_PREFIX = "egg"
INVITE_SCHEME = "eggs"
INVITE_VERSION = "1"
KEY_SIZE = 32
SIGNATURE_SIZE = 64
CHECKSUM_SIZE = 4
MAX_NAME_CHARS = 64
MAX_ENDPOINTS = 8
MAX_INVITE_CHARS = 2048
FINGERPRINT_ITERATIONS = 5200
_ADDRESS_TAG = b"scrambled-eggs/v1/address\x00"
_RAW = Encoding.Raw, PublicFormat.Raw


def _b32(data: bytes) -> str:
    return base64.b32encode(data).decode("ascii").rstrip("=").lower()


def _unb32(text: str) -> bytes:
    padded = text.upper() + "=" * (-len(text) % 8)
    return base64.b32decode(padded)


def _checksum(signing_key: bytes) -> bytes:
    return hashlib.sha256(_ADDRESS_TAG + signing_key).digest()[:CHECKSUM_SIZE]


def encode_address(signing_key: bytes) -> str:
    """The checksummed text address of an Ed25519 public key."""
    if len(signing_key) != KEY_SIZE:
        raise LocalProtocolError("an address encodes a 32-byte Ed25519 key")
    return ADDRESS_PREFIX + _b32(signing_key + _checksum(signing_key))


def decode_address(text: str) -> bytes:
    """Parse a text address (case, spaces and dashes tolerated); return the Ed25519 key."""
    cleaned = re.sub(r"[\s\-]", "", text).lower()
    if not cleaned.startswith(ADDRESS_PREFIX):
        raise InvalidAddress(f"an address starts with '{ADDRESS_PREFIX}'")
    body = cleaned[len(ADDRESS_PREFIX) :]
    if len(body) != 58 or not re.fullmatch(r"[a-z2-7]+", body):
        raise InvalidAddress("an address has 58 letters and digits after 'egg'")
    raw = _unb32(body)
    key, checksum = raw[:KEY_SIZE], raw[KEY_SIZE:]
    if _checksum(key) != checksum:
        raise InvalidAddress("the address has a typo (its checksum does not match)")
    return key


def normalize_address(text: str) -> str:
    """The canonical form of a text address (raises `InvalidAddress`)."""
    return encode_address(decode_address(text))


def validate_display_name(name: str) -> str:
    """A display name: NFC-normalised, trimmed, 1..64 characters, no control characters.

    Invisible formatting characters are refused (a right-to-left override turns the
    name around on screen), except where writing needs them: the zero-width joiner inside
    a combined emoji (woman + laptop, a rainbow flag) or after a virama (Sinhala
    "ශ්‍රී"), the zero-width non-joiner after a virama or between two letters of a
    script that joins them (Persian), and the tag characters of a subdivision flag
    (Scotland). Names are not unique anyway: the key tells contacts apart."""
    cleaned = unicodedata.normalize("NFC", name).strip()
    if not cleaned:
        raise InvalidInvite("a display name cannot be empty")
    if len(cleaned) > MAX_NAME_CHARS:
        raise InvalidInvite(f"a display name has at most {MAX_NAME_CHARS} characters")
    for index, ch in enumerate(cleaned):
        if unicodedata.category(ch) in {"Cc", "Cf", "Zl", "Zp"} and not _written_with(
            cleaned, index
        ):
            raise InvalidInvite(
                "a display name cannot contain control or formatting characters"
                + _unseen_character(ch)
            )
    return cleaned


ZERO_WIDTH_JOINER = "\u200d"
ZERO_WIDTH_NON_JOINER = "\u200c"
BLACK_FLAG = "\U0001f3f4"
CANCEL_TAG = "\U000e007f"
_TAGS = range(0xE0020, 0xE007F)
"""Tag letters and digits: after a black flag, up to a cancel tag, they name a
subdivision's flag (gbsct: Scotland)."""
_VIRAMA = 9
"""Canonical combining class of a virama: a joiner after one chooses a conjunct's form."""
_EMOJI_TRAILERS = {"\ufe0f", *map(chr, range(0x1F3FB, 0x1F400))}
"""What may follow an emoji before a joiner: the emoji presentation selector and the five
skin tones."""


def _written_with(text: str, index: int) -> bool:
    """Whether the formatting character at `text[index]` is part of the writing: a joiner
    or non-joiner where a script or a combined emoji needs it, or a subdivision flag's
    tag (Unicode's rules for identifiers, RFC 5892 CONTEXTJ, and UTS #51)."""
    ch = text[index]
    before = text[index - 1] if index else ""
    after = text[index + 1] if index + 1 < len(text) else ""
    if ch in (ZERO_WIDTH_JOINER, ZERO_WIDTH_NON_JOINER) and before:
        if unicodedata.combining(before) == _VIRAMA:
            return True
        if ch == ZERO_WIDTH_JOINER:
            trailer = _EMOJI_TRAILERS.__contains__
            return _is_emoji(_base_before(text, index, trailer)) and _is_emoji(after)
        return _joining_letter(_base_before(text, index, _is_mark)) and _joining_letter(after)
    if ord(ch) in _TAGS or ch == CANCEL_TAG:
        return _in_flag_tag(text, index)
    return False


def _base_before(text: str, index: int, skipped: Callable[[str], bool]) -> str:
    """The character before `text[index]`, skipping those `skipped` holds for ("" if
    none)."""
    index -= 1
    while index >= 0 and skipped(text[index]):
        index -= 1
    return text[index] if index >= 0 else ""


def _is_mark(ch: str) -> bool:
    return unicodedata.category(ch) == "Mn"


def _is_emoji(ch: str) -> bool:
    return bool(ch) and unicodedata.category(ch) == "So"


def _joining_letter(ch: str) -> bool:
    """A letter of a script without case (Arabic, Persian, the Indic scripts...), where a
    non-joiner changes the shapes; Latin or Cyrillic letters are cased and have none."""
    return bool(ch) and unicodedata.category(ch) == "Lo"


def _in_flag_tag(text: str, index: int) -> bool:
    """Whether `text[index]` lies in a tag sequence: a black flag, tag characters, and a
    cancel tag (which must close it)."""
    start = index
    while start > 0 and ord(text[start - 1]) in _TAGS:
        start -= 1
    end = index if text[index] == CANCEL_TAG else index + 1
    while end < len(text) and ord(text[end]) in _TAGS:
        end += 1
    return (
        start > 0
        and text[start - 1] == BLACK_FLAG
        and end > start
        and end < len(text)
        and text[end] == CANCEL_TAG
    )


def _unseen_character(ch: str) -> str:
    """Which invisible character a refused name holds, in words: someone who picked a
    combined emoji was told only of "control or formatting characters", which they could
    not see."""
    code = f"U+{ord(ch):04X}"
    if ch == ZERO_WIDTH_JOINER:
        return (
            f" (it holds {code}, the invisible joiner of combined emoji, here not between "
            "two emoji)"
        )
    label = unicodedata.name(ch, "").lower()
    return f" (it holds {code}{f', {label}' if label else ''})"


def validate_endpoint(text: str) -> str:
    """A ``host:port`` endpoint (IPv6 in brackets); returns it in canonical form."""
    match = re.fullmatch(r"\[([0-9a-fA-F:.]+)\]:(\d{1,5})|([A-Za-z0-9.\-]{1,253}):(\d{1,5})", text)
    if not match:
        raise InvalidInvite(f"'{text[:80]}' is not a host:port endpoint")
    host = match.group(1) or match.group(3)
    port = int(match.group(2) or match.group(4))
    if not 1 <= port <= 65535:
        raise InvalidInvite(f"port {port} is out of range")
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        if not re.fullmatch(
            r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)(\.(?!-)[A-Za-z0-9-]{1,63}(?<!-))*", host
        ):
            raise InvalidInvite(f"'{host[:80]}' is not a host name or IP address") from None
        return f"{host.lower()}:{port}"
    return f"[{ip}]:{port}" if ip.version == 6 else f"{ip}:{port}"


@dataclass(frozen=True)
class PublicIdentity:
    """Someone's public keys: Ed25519 (who they are) and X25519 (key agreement)."""

    signing_key: bytes
    dh_key: bytes

    def __post_init__(self) -> None:
        if len(self.signing_key) != KEY_SIZE or len(self.dh_key) != KEY_SIZE:
            raise LocalProtocolError("identity keys are 32 bytes each")

    @functools.cached_property
    def address(self) -> str:
        """The checksummed text address of this identity (encoded once: every message
        sent names its sender by it)."""
        return encode_address(self.signing_key)

    def verify(self, domain: Domain, message: bytes, signature: bytes) -> None:
        """Check an Ed25519 signature made in `domain`; raise `InvalidSignature` if bad."""
        verify_signature(self.signing_key, domain, message, signature)


def verify_signature(signing_key: bytes, domain: Domain, message: bytes, signature: bytes) -> None:
    """Check a domain-separated Ed25519 signature; raise `InvalidSignature` if bad.

    libsodium (PyNaCl) verifies: about 3x faster here than `cryptography`'s OpenSSL
    build (60 vs 200 µs), and stricter (it also refuses small-order keys and
    non-canonical encodings, which no honest signer produces)."""
    if len(signature) != SIGNATURE_SIZE:
        raise InvalidSignature(f"bad {domain.value} signature")
    try:
        _verify_key(signing_key).verify(domain.tag() + message, signature)
    except (BadSignatureError, NaclValueError, NaclTypeError, ValueError, TypeError):
        raise InvalidSignature(f"bad {domain.value} signature") from None


@functools.lru_cache(maxsize=256)
def _verify_key(signing_key: bytes) -> VerifyKey:
    return VerifyKey(signing_key)


@dataclass(frozen=True, repr=False)
class IdentityKeys:
    """A private identity: the two 32-byte secret seeds. Never logged (no repr)."""

    signing_seed: bytes
    dh_secret: bytes

    def __post_init__(self) -> None:
        if len(self.signing_seed) != KEY_SIZE or len(self.dh_secret) != KEY_SIZE:
            raise LocalProtocolError("identity seeds are 32 bytes each")

    def __repr__(self) -> str:
        return f"IdentityKeys(<secret>, address={self.public.address})"

    @classmethod
    def from_seeds(cls, signing_seed: bytes, dh_secret: bytes) -> IdentityKeys:
        """Build an identity from 64 fresh random bytes supplied by the caller."""
        return cls(signing_seed, dh_secret)

    @functools.cached_property
    def public(self) -> PublicIdentity:
        """The public half of this identity (derived once: every message needs it)."""
        dh_pub = X25519PrivateKey.from_private_bytes(self.dh_secret).public_key()
        return PublicIdentity(bytes(self._signer.verify_key), dh_pub.public_bytes(*_RAW))

    @functools.cached_property
    def _signer(self) -> SigningKey:
        return SigningKey(self.signing_seed)

    def sign(self, domain: Domain, message: bytes) -> bytes:
        """A domain-separated Ed25519 signature over `message`."""
        # libsodium: the same deterministic signature (RFC 8032), in ~2/3 of the time
        return bytes(self._signer.sign(domain.tag() + message).signature)

    def to_bytes(self) -> bytes:
        """64 bytes: signing seed then X25519 secret (to be sealed before storage)."""
        return self.signing_seed + self.dh_secret

    @classmethod
    def from_bytes(cls, raw: bytes) -> IdentityKeys:
        """Inverse of `to_bytes`."""
        if len(raw) != 2 * KEY_SIZE:
            raise LocalProtocolError("serialized identity keys are 64 bytes")
        return cls(raw[:KEY_SIZE], raw[KEY_SIZE:])


@dataclass(frozen=True)
class Invite:
    """A verified invite: who someone is, what they call themselves, where to reach them."""

    identity: PublicIdentity
    name: str
    endpoints: tuple[str, ...]

    @property
    def address(self) -> str:
        """The inviter's text address."""
        return self.identity.address


def _invite_payload(identity: PublicIdentity, name: str, endpoints: Sequence[str]) -> bytes:
    return json.dumps(
        [INVITE_VERSION, identity.address, name, _b32(identity.dh_key), list(endpoints)],
        ensure_ascii=False,
        separators=(",", ":"),
    ).encode("utf-8")


def make_invite(keys: IdentityKeys, name: str, endpoints: Sequence[str]) -> str:
    """A signed ``eggs:`` invite link for this identity."""
    name = validate_display_name(name)
    eps = [validate_endpoint(e) for e in endpoints][:MAX_ENDPOINTS]
    public = keys.public
    signature = keys.sign(Domain.INVITE, _invite_payload(public, name, eps))
    query = [f"v={INVITE_VERSION}", f"n={quote(name, safe='')}", f"x={_b32(public.dh_key)}"]
    query += [f"e={quote(e, safe='')}" for e in eps]
    query.append(f"s={_b32(signature)}")
    return f"{INVITE_SCHEME}:{public.address}?{'&'.join(query)}"


def _one(params: dict[str, list[str]], key: str) -> str:
    values = params.get(key, [])
    if len(values) != 1:
        raise InvalidInvite(f"the invite needs exactly one '{key}' field")
    return values[0]


def parse_invite(text: str) -> Invite:
    """Parse and verify an invite link; raise `InvalidInvite` for anything off."""
    text = text.strip()
    if len(text) > MAX_INVITE_CHARS:
        raise InvalidInvite("the invite link is too long")
    parts = urlsplit(text)
    if parts.scheme.lower() != INVITE_SCHEME or not parts.path:
        raise InvalidInvite("an invite link starts with 'eggs:' followed by an address")
    try:
        signing_key = decode_address(parts.path)
        params = parse_qs(parts.query, keep_blank_values=True, strict_parsing=bool(parts.query))
        if _one(params, "v") != INVITE_VERSION:
            raise InvalidInvite("this invite was made by a newer version of the app")
        name = validate_display_name(_one(params, "n"))
        dh_key = _unb32(_one(params, "x"))
        signature = _unb32(_one(params, "s"))
        endpoints = tuple(validate_endpoint(e) for e in params.get("e", []))
        identity = PublicIdentity(signing_key, dh_key)
    except (InvalidAddress, LocalProtocolError, ValueError) as exc:
        raise InvalidInvite(f"the invite link is malformed: {exc}") from None
    if len(endpoints) > MAX_ENDPOINTS:
        raise InvalidInvite("the invite lists too many endpoints")
    try:
        identity.verify(Domain.INVITE, _invite_payload(identity, name, endpoints), signature)
    except InvalidSignature:
        raise InvalidInvite("the invite link was altered (its signature does not match)") from None
    return Invite(identity, name, endpoints)


def fingerprint(identity: PublicIdentity) -> str:
    """30 digits identifying one identity (both public keys), grouped in fives."""
    material = identity.signing_key + identity.dh_key
    digest = hashlib.sha512(b"\x00\x01" + material + b"scrambled-eggs").digest()
    for _ in range(FINGERPRINT_ITERATIONS):
        digest = hashlib.sha512(digest + material).digest()
    groups = [int.from_bytes(digest[i : i + 5], "big") % 100000 for i in range(0, 30, 5)]
    return " ".join(f"{g:05d}" for g in groups)


def safety_number(mine: PublicIdentity, theirs: PublicIdentity) -> str:
    """60 digits both parties compute identically: compare them out of band."""
    halves = sorted([fingerprint(mine), fingerprint(theirs)])
    return " ".join(halves)
