"""Hostile file names from peers always become one safe name inside the downloads folder."""

from __future__ import annotations

import os
import unicodedata
from pathlib import Path, PureWindowsPath

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.core.errors import LocalProtocolError
from app.core.filenames import (
    FALLBACK_NAME,
    MAX_NAME_BYTES,
    sanitize_filename,
    sanitize_relative_name,
    split_extension,
    unique_destination,
)

HOSTILE = [
    "../../etc/passwd",
    "..\\..\\x",
    "C:\\Windows\\x",
    "C:x",
    "C:",
    "\\\\server\\share\\x",
    "\\\\?\\C:\\x",
    "//server/share/x",
    "/abs/path",
    "~/.bashrc",
    "CON",
    "con",
    "nul.txt",
    "NUL .txt",
    "COM1",
    "lpt9.tar.gz",
    "COM¹",
    "CONIN$",
    "a\u202egnp.exe",
    "\u2067evil\u2069.txt",
    "zero\u200bwidth\ufeff.txt",
    "line\u2028break",
    "a\x00b",
    "\x01\x02\x03\x1f\x7f",
    "tab\tnew\nline\r.txt",
    "x" * 1000,
    "y" * 1000 + ".txt",
    "é" * 1000 + ".jpeg",
    "😀" * 300,
    "",
    ".",
    "..",
    "...",
    "....",
    " ",
    "trailing.",
    "trailing dots...",
    "trailing space ",
    ". .",
    ".hidden",
    "file.txt:evil_stream",
    'a<b>c:d"e|f?g*h',
    "/",
    "\\",
    "../",
    "foo/..",
    "foo/.",
    "e\u200b\u0301",
]

WINDOWS_RESERVED = {"CON", "PRN", "AUX", "NUL"} | {
    f"{d}{n}" for d in ("COM", "LPT") for n in range(10)
}


def assert_safe(result: str) -> None:
    assert result
    assert result not in {".", ".."}
    assert "/" not in result and "\\" not in result
    assert not any(ch in result for ch in '<>:"|?*')
    assert len(result.encode("utf-8")) <= MAX_NAME_BYTES
    assert not result.startswith((".", " "))
    assert not result.endswith((".", " "))
    for ch in result:
        assert unicodedata.category(ch) not in {"Cc", "Cf", "Zl", "Zp", "Cs", "Cn"}, repr(ch)
    assert result.split(".", 1)[0].rstrip(" ").upper() not in WINDOWS_RESERVED
    # Neither POSIX nor Windows path rules see more than one plain component.
    assert Path(result).name == result
    win = PureWindowsPath(result)
    assert win.name == result and not win.drive and not win.is_absolute()
    assert sanitize_filename(result) == result


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_corpus_lands_inside_downloads(name: str, tmp_path: Path) -> None:
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    safe = sanitize_filename(name)
    assert_safe(safe)
    target = downloads / safe
    assert os.path.realpath(target).startswith(os.path.realpath(downloads) + os.sep)
    target.write_bytes(b"x")  # the OS accepts it as a plain file name
    assert [p.name for p in downloads.iterdir()] == [safe]


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("../../etc/passwd", "passwd"),
        ("C:\\Windows\\x", "x"),
        ("\\\\server\\share\\x", "x"),
        ("CON", "_CON"),
        ("nul.txt", "_nul.txt"),
        ("a\u202egnp.exe", "agnp.exe"),
        ("", FALLBACK_NAME),
        (".", FALLBACK_NAME),
        ("..", FALLBACK_NAME),
        ("report.pdf...", "report.pdf"),
        ("holiday photo.jpeg", "holiday photo.jpeg"),
        ("naïve résumé.txt", "naïve résumé.txt"),
    ],
)
def test_expected_results(name: str, expected: str) -> None:
    assert sanitize_filename(name) == expected


def test_long_name_keeps_extension() -> None:
    result = sanitize_filename("é" * 1000 + ".jpeg")
    assert result.endswith(".jpeg")
    assert len(result.encode("utf-8")) <= MAX_NAME_BYTES
    assert set(result[: -len(".jpeg")]) == {"é"}


def test_split_extension() -> None:
    assert split_extension("a.tar.gz") == ("a.tar", ".gz")
    assert split_extension("noext") == ("noext", "")
    assert split_extension("x." + "e" * 40) == ("x." + "e" * 40, "")


def test_unique_destination_with_set_and_predicate() -> None:
    taken = {"a.txt", "a (1).txt"}
    assert unique_destination(taken, "b.txt") == "b.txt"
    assert unique_destination(taken, "a.txt") == "a (2).txt"
    lowered = {n.lower() for n in taken}
    assert unique_destination(lambda n: n.lower() in lowered, "A.TXT") == "A (2).TXT"
    assert unique_destination({"file"}, "file") == "file (1)"


def test_unique_destination_stays_within_limit() -> None:
    long = sanitize_filename("z" * 500 + ".bin")
    result = unique_destination({long}, long)
    assert result.endswith(" (1).bin")
    assert len(result.encode("utf-8")) <= MAX_NAME_BYTES


def test_unique_destination_gives_up() -> None:
    with pytest.raises(LocalProtocolError):
        unique_destination(lambda _n: True, "x")


def test_max_bytes_too_small_rejected() -> None:
    with pytest.raises(LocalProtocolError):
        sanitize_filename("x", max_bytes=4)


@settings(max_examples=500)
@given(st.text(max_size=400))
def test_any_text_is_safe(name: str) -> None:
    assert_safe(sanitize_filename(name))


@settings(max_examples=200)
@given(
    st.lists(
        st.sampled_from(["..", ".", "/", "\\", "C:", "CON", "\u202e", "\x00", " ", "a", "é"]),
        max_size=30,
    ).map("".join)
)
def test_path_fragments_are_safe(name: str) -> None:
    assert_safe(sanitize_filename(name))


@settings(max_examples=100)
@given(st.text(min_size=1, max_size=50), st.integers(min_value=0, max_value=30))
def test_unique_never_returns_taken(name: str, count: int) -> None:
    safe = sanitize_filename(name)
    taken: set[str] = set()
    for _ in range(count + 1):
        chosen = unique_destination(taken, safe)
        assert chosen not in taken
        assert_safe(chosen)
        taken.add(chosen)


def test_relative_names_keep_their_folders_and_lose_what_a_name_must_not_hold() -> None:
    assert sanitize_relative_name("folder/sub/b.bin") == "folder/sub/b.bin"
    assert sanitize_relative_name("photos/invoice\u202efdp.exe") == "photos/invoicefdp.exe"
    assert sanitize_relative_name("/abs//x.txt/") == "abs/x.txt"
    assert ".." not in sanitize_relative_name("../../etc/passwd").split("/")
    assert sanitize_relative_name("") == sanitize_relative_name("///") == FALLBACK_NAME
