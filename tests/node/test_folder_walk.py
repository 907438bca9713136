"""Sharing a folder never follows a link or reads a pipe inside it, and now says what it
left out: a folder with a link and a pipe was shared without a word about them (found by
a tester sharing a folder that held a link to another folder)."""

from __future__ import annotations

import os
from pathlib import Path

from app.node.folder_walk import left_out, left_out_sentence, regular_files


def album_with_links(tmp_path: Path) -> Path:
    """A folder with two files, a link to one, a link to a folder and a pipe."""
    album = tmp_path / "album"
    (album / "sub").mkdir(parents=True)
    (album / "a.txt").write_text("a")
    (album / "sub" / "b.txt").write_text("b")
    (album / "link.txt").symlink_to(album / "a.txt")
    (album / "elsewhere").symlink_to(tmp_path)
    os.mkfifo(album / "sub" / "pipe")
    return album


def test_a_folder_shares_its_regular_files_and_names_what_it_leaves_out(tmp_path: Path) -> None:
    album = album_with_links(tmp_path)
    assert [(p.name, parts) for p, parts in regular_files(album)] == [
        ("a.txt", ("album",)),
        ("b.txt", ("album", "sub")),
    ]
    skipped = left_out([str(album), str(album / "a.txt")])  # a file given alone: not walked
    assert skipped == ["album/elsewhere", "album/link.txt", "album/sub/pipe"]
    assert left_out_sentence(skipped) == (
        "Not shared: 3 items that are not regular files (links, pipes or devices are never "
        "shared from a folder): album/elsewhere, album/link.txt, album/sub/pipe."
    )
    assert left_out_sentence(skipped, shown=1) is not None
    assert "and 2 more" in str(left_out_sentence(skipped, shown=1))
    assert left_out_sentence([]) is None
