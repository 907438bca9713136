"""Padmé padding: how long a padded object is, leaking O(log log L) bits of its length.

From Nikitin et al., "Reducing Metadata Leakage from Encrypted Files and Communication
with PURBs" (PETS 2019). A length ``L`` with ``E = floor(log2 L)`` is rounded up so that
only its top ``floor(log2 E) + 1`` bits may be non-zero; the overhead is at most ~12 %
and shrinks as ``L`` grows. Lengths 0 and 1 are returned unchanged.
"""

from __future__ import annotations

from app.core.errors import LocalProtocolError


def padme(length: int) -> int:
    """The Padmé padded length of an object of `length` bytes (>= `length`)."""
    if length < 0:
        raise LocalProtocolError("a length cannot be negative")
    if length < 2:
        return length
    exponent = length.bit_length() - 1  # floor(log2 L)
    significant_bits = exponent.bit_length()  # floor(log2 E) + 1
    last_bits = exponent - significant_bits
    mask = (1 << last_bits) - 1
    return (length + mask) & ~mask


def padme_overhead(length: int) -> int:
    """How many padding bytes Padmé adds to an object of `length` bytes."""
    return padme(length) - length
