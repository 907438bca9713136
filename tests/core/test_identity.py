"""Addresses, invite links and safety numbers."""

from __future__ import annotations

import hashlib
import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.core.domains import Domain
from app.core.errors import InvalidAddress, InvalidInvite, InvalidSignature
from app.core.identity import (
    IdentityKeys,
    decode_address,
    encode_address,
    fingerprint,
    make_invite,
    parse_invite,
    safety_number,
    validate_display_name,
    validate_endpoint,
)


def keys(n: int) -> IdentityKeys:
    seed = hashlib.sha256(f"identity-{n}".encode()).digest()
    return IdentityKeys.from_seeds(seed, hashlib.sha256(seed).digest())


@given(st.binary(min_size=32, max_size=32))
def test_address_round_trips(key: bytes) -> None:
    address = encode_address(key)
    assert address.startswith("egg") and len(address) == 61
    assert decode_address(address) == key
    assert decode_address(address.upper()) == key
    spaced = " ".join(address[i : i + 5] for i in range(0, len(address), 5))
    assert decode_address(spaced) == key


def test_every_single_character_typo_is_caught() -> None:
    address = keys(1).public.address
    alphabet = "abcdefghijklmnopqrstuvwxyz234567"
    caught = 0
    for i in range(3, len(address) - 1):  # the last char carries pad bits
        for ch in alphabet:
            if ch == address[i]:
                continue
            typo = address[:i] + ch + address[i + 1 :]
            with pytest.raises(InvalidAddress):
                decode_address(typo)
            caught += 1
    assert caught == (len(address) - 4) * 31


@pytest.mark.parametrize(
    "bad", ["", "egg", "eggs:xyz", "abc" + "a" * 58, "egg" + "1" * 58, "egg" + "a" * 57]
)
def test_malformed_addresses_are_rejected(bad: str) -> None:
    with pytest.raises(InvalidAddress):
        decode_address(bad)


def test_invite_round_trip_carries_name_keys_and_endpoints() -> None:
    alice = keys(1)
    link = make_invite(alice, "Alice Ünïcode 🥚", ["127.0.0.1:4000", "[::1]:4001", "host.lan:9"])
    assert link.startswith("eggs:egg")
    invite = parse_invite(link)
    assert invite.identity == alice.public
    assert invite.name == "Alice Ünïcode 🥚"
    assert invite.endpoints == ("127.0.0.1:4000", "[::1]:4001", "host.lan:9")


def _swap(link: str, field: str, value: str) -> str:
    head, _, query = link.partition("?")
    parts = [p if not p.startswith(field + "=") else f"{field}={value}" for p in query.split("&")]
    return head + "?" + "&".join(parts)


def test_altered_invites_are_rejected() -> None:
    alice, mallory = keys(1), keys(2)
    link = make_invite(alice, "Alice", ["127.0.0.1:4000"])
    forged = [
        _swap(link, "n", "Mallory"),
        _swap(link, "e", "127.0.0.1%3A6666"),
        _swap(link, "x", make_invite(mallory, "M", []).split("x=")[1].split("&")[0]),
        link.replace(alice.public.address, mallory.public.address),
        link.replace("&e=127.0.0.1%3A4000", ""),
    ]
    for bad in forged:
        with pytest.raises(InvalidInvite):
            parse_invite(bad)


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "eggs:",
        "http://example.invalid/",
        "eggs:notanaddress?v=1",
        "eggs:" + keys(1).public.address,
        "eggs:" + keys(1).public.address + "?v=1&n=A&x=zzz&s=zzz",
        "eggs:" + keys(1).public.address + "?v=2&n=A&x=aa&s=aa",
        "eggs:" + "x" * 5000,
        "eggs:" + keys(1).public.address + "?v=1&v=1&n=A",
        "eggs:" + keys(1).public.address + "?%zz",
    ],
)
def test_malformed_invites_are_rejected(bad: str) -> None:
    with pytest.raises(InvalidInvite):
        parse_invite(bad)


def test_invite_signature_is_domain_separated() -> None:
    alice = keys(1)
    signature = alice.sign(Domain.DHT_RECORD, b"payload")
    alice.public.verify(Domain.DHT_RECORD, b"payload", signature)
    with pytest.raises(InvalidSignature):
        alice.public.verify(Domain.INVITE, b"payload", signature)


def test_safety_number_is_symmetric_and_distinct() -> None:
    a, b, c = keys(1).public, keys(2).public, keys(3).public
    number = safety_number(a, b)
    assert number == safety_number(b, a)
    assert number != safety_number(a, c)
    digits = number.replace(" ", "")
    assert len(digits) == 60 and digits.isdigit()
    assert fingerprint(a) in number and fingerprint(b) in number


@pytest.mark.parametrize(
    ("raw", "canonical"),
    [
        ("127.0.0.1:1", "127.0.0.1:1"),
        ("[::1]:80", "[::1]:80"),
        ("Host.LAN:65535", "host.lan:65535"),
    ],
)
def test_endpoints_are_canonical(raw: str, canonical: str) -> None:
    assert validate_endpoint(raw) == canonical


@pytest.mark.parametrize("bad", ["host", "host:0", "host:70000", "::1:80", "a b:1", "-x-:1"])
def test_bad_endpoints_are_rejected(bad: str) -> None:
    with pytest.raises(InvalidInvite):
        validate_endpoint(bad)


@pytest.mark.parametrize("bad", ["", "   ", "a" * 65, "evil\u202ename", "tab\there", "nl\nx"])
def test_bad_display_names_are_rejected(bad: str) -> None:
    with pytest.raises(InvalidInvite):
        validate_display_name(bad)


def test_a_refused_name_says_which_invisible_character_it_holds() -> None:
    """Found choosing a name with a joiner: "a display name cannot contain control or
    formatting characters", none of which the user could see. The character is named."""
    with pytest.raises(InvalidInvite, match=r"U\+200D, the invisible joiner of combined emoji"):
        validate_display_name("A\u200dna")
    with pytest.raises(InvalidInvite, match=r"U\+202E, right-to-left override\)"):
        validate_display_name("Ana\u202eevil")
    with pytest.raises(InvalidInvite, match=r"\(it holds U\+0009\)"):
        validate_display_name("Ana\tB")


@pytest.mark.parametrize(
    "name",
    [
        "Ana \U0001f469\u200d\U0001f4bb",  # woman technologist
        "Ana \U0001f469\U0001f3fd\u200d\U0001f4bb",  # ... with a skin tone
        "Kim \U0001f3f3\ufe0f\u200d\U0001f308",  # rainbow flag
        "\U0001f468\u200d\U0001f469\u200d\U0001f467\u200d\U0001f466",  # family
        "\u2764\ufe0f\u200d\U0001f525 Jo",  # heart on fire
        "Cat \U0001f408\u200d\u2b1b",  # black cat
        "Iain \U0001f3f4\U000e0067\U000e0062\U000e0073\U000e0063\U000e0074\U000e007f",
        "\u0dc1\u0dca\u200d\u0dbb\u0dd3 Perera",  # Sinhala "Sri": joiner after a virama
        "\u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645",  # Persian non-joiner
        "\u0915\u094d\u200c\u0937",  # Devanagari: non-joiner after a virama
    ],
)
def test_names_keep_the_invisible_characters_their_writing_needs(name: str) -> None:
    """Found naming oneself "Kim 🏳️‍🌈": refused for its zero-width joiner, like every
    combined emoji, Sinhala's "Sri" and Persian words written with a non-joiner. Those
    joiners are part of the writing and stay; the name is kept exactly."""
    assert validate_display_name(name) == unicodedata.normalize("NFC", name)
    invite = parse_invite(make_invite(keys(1), name, ["127.0.0.1:4000"]))
    assert invite.name == unicodedata.normalize("NFC", name)


@pytest.mark.parametrize(
    "name",
    [
        "B\u200dob",  # joiner between Latin letters: an invisible difference
        "Bob\u200d",  # after the last emoji-less letter
        "\u200d\U0001f4bb Ana",  # nothing before it
        "Ana \U0001f469\u200d",  # nothing after it
        "B\u200cob",  # non-joiner between cased letters
        "Ana\U000e0067\U000e007f",  # tags without a black flag
        "Iain \U0001f3f4\U000e0067\U000e0062",  # a flag's tags never closed
        "Iain \U0001f3f4\U000e007f",  # a cancel tag alone
        "Ana\u200e",  # left-to-right mark
    ],
)
def test_invisible_characters_outside_writing_are_still_refused(name: str) -> None:
    with pytest.raises(InvalidInvite, match="control or formatting characters"):
        validate_display_name(name)


def test_private_keys_never_appear_in_repr() -> None:
    alice = keys(1)
    assert alice.signing_seed.hex() not in repr(alice)
    assert IdentityKeys.from_bytes(alice.to_bytes()) == alice
