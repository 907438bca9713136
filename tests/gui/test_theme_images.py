"""The style sheets' images: spin box and combo box arrows are drawn from files in the
themes folder, which an application style sheet can only name by absolute path."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from app.gui.resources import theme_path
from app.gui.theme import style_sheet


@pytest.mark.parametrize("name", ["light", "dark"])
def test_every_image_a_sheet_names_exists_by_absolute_path(name: str) -> None:
    sheet = style_sheet(theme_path(name))
    assert "@THEMES@" not in sheet
    images = re.findall(r"url\(([^)]+)\)", sheet)
    assert any("arrow-down" in image for image in images)
    for image in images:
        path = Path(image)
        assert path.is_absolute() and path.is_file(), image
        assert path.read_text("utf-8").startswith("<svg")


def test_a_missing_sheet_is_no_style(tmp_path: Path) -> None:
    assert style_sheet(tmp_path / "nothing.qss") == ""
