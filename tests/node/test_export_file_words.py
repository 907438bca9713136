"""`history verify --file F` on a file that is not a history export says so in words
(a tester got "not a history export: truncated CBOR string")."""

from __future__ import annotations

import json
import os
from pathlib import Path

import cbor2
import pytest

from app.node.api import HistoryInvalid
from app.node.history import verify_export_file

TECHNICAL = ("CBOR", "UTF-8", "fields", "canonical", "bafy")


@pytest.mark.parametrize(
    "content",
    [
        b"hello, this is a text file\n",
        os.urandom(3000),
        json.dumps({"format": "scrambled-eggs/history"}).encode(),
        b"",
        cbor2.dumps({"some": "map"}),
        cbor2.dumps([1, 2, 3]),
    ],
    ids=["text", "random", "json", "empty", "other-cbor-map", "cbor-list"],
)
def test_a_file_that_is_not_an_export_is_named_so_in_words(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "notes.txt"
    path.write_bytes(content)
    with pytest.raises(HistoryInvalid) as raised:
        verify_export_file(path)
    text = str(raised.value)
    assert text.startswith(f"{path} is not a history export")
    assert "history export" in text and not any(word in text for word in TECHNICAL)
