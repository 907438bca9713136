"""Padmé padding lengths: known values, monotonicity and the overhead bound."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.core.errors import LocalProtocolError
from app.core.padme import padme, padme_overhead


def _reference(length: int) -> int:
    """The paper's float formulation, for cross-checking the integer one."""
    if length < 2:
        return length
    e = math.floor(math.log2(length))
    s = math.floor(math.log2(e)) + 1
    last_bits = e - s
    mask = (1 << last_bits) - 1
    return (length + mask) & ~mask


@pytest.mark.parametrize(
    ("length", "padded"),
    [
        (0, 0),
        (1, 1),
        (2, 2),
        (7, 7),
        (9, 10),  # E=3, S=2: one low bit cleared
        (100, 104),
        (1000, 1024),
        (1025, 1088),
        (262144, 262144),
        (262145, 270336),
        (50 * 1024 * 1024 + 1, 53477376),
    ],
)
def test_known_values(length: int, padded: int) -> None:
    assert padme(length) == padded


@given(st.integers(min_value=0, max_value=2**48))
def test_matches_reference_and_bounds(length: int) -> None:
    padded = padme(length)
    assert padded == _reference(length)
    assert padded >= length
    # Overhead bound from the paper: at most 2**(E-S) - 1 bytes, i.e. < ~12 % for L >= 2.
    if length >= 2:
        assert padme_overhead(length) < length * 0.12 + 1
    # Padding is idempotent: a padded length is its own padded length.
    assert padme(padded) == padded


@given(st.integers(min_value=0, max_value=2**40), st.integers(min_value=0, max_value=2**40))
def test_monotonic(a: int, b: int) -> None:
    low, high = sorted((a, b))
    assert padme(low) <= padme(high)


def test_few_distinct_sizes() -> None:
    # Every length in [1 MiB, 2 MiB) collapses to 2**S steps (S = 5 for E = 20), the last
    # of which rounds up to 2 MiB itself.
    sizes = {padme(n) for n in range(2**20, 2**21, 97)}
    assert len(sizes) <= 2 ** ((20).bit_length()) + 1


def test_negative_rejected() -> None:
    with pytest.raises(LocalProtocolError):
        padme(-1)
