"""The window's size and place are kept across starts (found by a tester: forgotten)."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QSize
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import QWidget
from pytestqt.qtbot import QtBot

from app.gui.app import restore_geometry, save_geometry
from app.gui.window_place import fit_on_screen


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


def test_a_window_taller_than_the_room_left_comes_back_whole_on_the_screen(
    qtbot: QtBot, tmp_path: Path
) -> None:
    """Found with an 18 pt font on a 1280x800 screen: the window's minimum height (792)
    and Qt's guess of a 25-pixel title bar above it made it run past the screen's bottom
    (reopened at y=25, 792 tall)."""
    room = QGuiApplication.primaryScreen().availableGeometry()
    first = QWidget()
    qtbot.addWidget(first)
    first.setGeometry(room.x(), room.y(), room.width() * 3 // 4, room.height() - 8)
    kept = tmp_path / "window.ini"
    save_geometry(first, kept)

    second = QWidget()
    qtbot.addWidget(second)
    second.setMinimumHeight(room.height() - 8)  # MainWindow.fit_to_font at 18 pt
    restore_geometry(second, kept)
    second.show()
    assert room.contains(second.geometry()), (second.geometry(), room)
    assert second.height() >= room.height() - 8


def test_a_window_saved_on_a_screen_that_is_gone_comes_back_on_one_that_exists(
    qtbot: QtBot, tmp_path: Path
) -> None:
    room = QGuiApplication.primaryScreen().availableGeometry()
    gone = QWidget()
    qtbot.addWidget(gone)
    gone.setGeometry(room.right() + 2000, room.bottom() + 900, 500, 400)  # undocked
    kept = tmp_path / "window.ini"
    save_geometry(gone, kept)
    window = QWidget()
    qtbot.addWidget(window)
    restore_geometry(window, kept)
    assert room.contains(window.geometry()), window.geometry()
    assert window.size() == QSize(500, 400)
    window.setGeometry(room.x() - 50, room.y() + 10, room.width() + 300, room.height() * 2)
    fit_on_screen(window)  # a monitor smaller than the one it was saved on
    assert window.geometry() == room
