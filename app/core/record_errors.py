"""Why a signed DHT record was refused. Every one is the remote side's fault.

A storing node and a reader raise these from `app.core.records.validate` (and
`StaleRecord` from `app.core.records.check_supersedes`); the node layer drops the record
and keeps going, it never crashes on one.
"""

from __future__ import annotations

from app.core.errors import InvalidSignature, RemoteProtocolError


class InvalidRecord(RemoteProtocolError):
    """A DHT record is not acceptable (base of every record rejection)."""


class MalformedRecord(InvalidRecord):
    """The bytes are not a canonical CBOR record of a known kind and version."""


class OversizeRecord(InvalidRecord):
    """The encoded record is larger than `app.core.records.MAX_RECORD_BYTES`."""


class WrongRecordKey(InvalidRecord):
    """The record is valid but belongs under another DHT key (moved or replayed)."""


class ExpiredRecord(InvalidRecord):
    """The record's expiry time has passed."""


class FutureRecord(InvalidRecord):
    """The record claims to live longer than any record may (expiry too far ahead)."""


class BadRecordSignature(InvalidRecord, InvalidSignature):
    """The record's signature does not verify for its owner key in the DHT-record domain."""


class StaleRecord(InvalidRecord):
    """The record is older (lower sequence) than the one already held for its key."""
