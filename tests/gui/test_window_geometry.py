"""The window's size and place are kept across starts (found by a tester: forgotten)."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtWidgets import QWidget
from pytestqt.qtbot import QtBot

from app.gui.app import restore_geometry, save_geometry


def test_the_window_size_comes_back_and_a_damaged_file_is_ignored(
    qtbot: QtBot, tmp_path: Path
) -> None:
    first = QWidget()
    qtbot.addWidget(first)
    first.resize(777, 555)
    first.show()
    kept = tmp_path / "window.ini"
    save_geometry(first, kept)
    assert "geometry" in kept.read_text()
    assert "eggs" not in kept.read_text()  # nothing about contacts or conversations

    second = QWidget()
    qtbot.addWidget(second)
    restore_geometry(second, kept)
    assert (second.width(), second.height()) == (777, 555)

    kept.write_text("[window]\ngeometry=@ByteArray(garbage)\n")
    third = QWidget()
    qtbot.addWidget(third)
    third.resize(300, 200)
    restore_geometry(third, kept)  # refused by Qt, no exception
    assert (third.width(), third.height()) == (300, 200)
    restore_geometry(third, tmp_path / "missing.ini")
    save_geometry(third, tmp_path / "no-such-folder" / "window.ini")  # best effort
