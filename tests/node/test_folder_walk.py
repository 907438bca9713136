"""Sharing a folder never follows a link or reads a pipe inside it, and now says what it
left out: a folder with a link and a pipe was shared without a word about them (found by
a tester sharing a folder that held a link to another folder)."""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from app import cli
from app.node import api
from app.node.folder_walk import left_out, left_out_sentence, regular_files
from app.node.profile import create_profile, open_store
from app.node.service import NodeService


def _album(tmp_path: Path) -> Path:
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
    album = _album(tmp_path)
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


@pytest_asyncio.fixture
async def node(tmp_path: Path) -> AsyncIterator[NodeService]:
    create_profile(tmp_path / "me", "Me", None)
    store = open_store(tmp_path / "me", None)
    service = NodeService(store)
    bob = create_profile(tmp_path / "bob", "Bob", None).whoami
    await service.add_contact(api.AddContact(bob.invite))
    yield service
    service.close()
    store.close()


@pytest.mark.asyncio
async def test_share_says_what_the_folder_held_that_was_not_shared(
    node: NodeService, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    album = _album(tmp_path)
    args = argparse.Namespace(contact="Bob", paths=[str(album)], json=False)
    assert await cli.cmd_share(args, node) == 0  # type: ignore[arg-type]
    said = capsys.readouterr()
    assert said.out.count("Sharing album/") == 2
    assert "Not shared: 3 items that are not regular files" in said.err
    assert "album/link.txt" in said.err and "album/sub/pipe" in said.err
    args.json = True
    assert await cli.cmd_share(args, node) == 0  # type: ignore[arg-type]
    answer = json.loads(capsys.readouterr().out)
    assert len(answer["transfers"]) == 2
    assert answer["not_shared"] == ["album/elsewhere", "album/link.txt", "album/sub/pipe"]
    (album / "link.txt").unlink()
    (album / "elsewhere").unlink()
    (album / "sub" / "pipe").unlink()
    assert await cli.cmd_share(args, node) == 0  # type: ignore[arg-type]
    assert "not_shared" not in json.loads(capsys.readouterr().out)  # as before: nothing left
