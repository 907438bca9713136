"""The window opens on profiles made by older versions (the fixtures of
tests/data/profiles, made by tools/old_profiles.py; decision 0019) and shows what they
hold: the saved theme, the contacts, each conversation's messages and files."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from gui_helpers import options, wait_for
from pytestqt.qtbot import QtBot

from app.gui.app import GuiSession
from app.node import api

FIXTURES = Path(__file__).resolve().parent.parent / "data" / "profiles"
COMMITS = sorted(p.name for p in FIXTURES.iterdir() if (p / "facts.json").is_file())


@pytest.mark.parametrize("commit", COMMITS)
@pytest.mark.asyncio
async def test_the_window_opens_on_an_older_profile(
    commit: str, tmp_path: Path, qtbot: QtBot
) -> None:
    shutil.copytree(FIXTURES / commit, tmp_path / commit)
    facts = json.loads((tmp_path / commit / "facts.json").read_text("utf-8"))
    profile = tmp_path / commit / "alice"
    assert api.inspect_profile(profile).theme == facts["settings"]["alice"]["theme"]
    session = GuiSession(options(profile))
    assert await session.attempt_unlock(facts["passphrases"]["alice"]) is None
    window = await session.start_window()
    try:
        contacts = window.contacts
        names = [contacts.index(row, 0).data() for row in range(contacts.rowCount())]
        assert sorted(names) == ["Bob", "Carol"]
        window.contact_list.setCurrentIndex(contacts.index(names.index("Bob"), 0))
        sent = [s for s in facts["sent"] if {s["from"], s["to"]} == {"alice", "bob"}]
        files = 2  # one received, one offered
        await wait_for(lambda: window.messages.rowCount() >= len(sent) + files)
        assert window.messages.rowCount() == len(sent) + files
    finally:
        await session.shutdown()
