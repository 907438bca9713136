"""The screenshot script still renders the transfers screens from the real app under Xvfb
(the images land in a temporary folder; docs/screenshots is only rewritten by hand)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from PySide6.QtGui import QImage
from xvfb_helpers import ROOT, app_env, xvfb_display

pytestmark = pytest.mark.slow


@pytest.fixture
def xvfb() -> Iterator[str]:
    with xvfb_display() as display:
        yield display


def distinct_colours(image: QImage) -> int:
    return len(
        {
            image.pixel(x, y)
            for x in range(0, image.width(), 23)
            for y in range(0, image.height(), 17)
        }
    )


def test_transfers_screenshots_render(xvfb: str, tmp_path: Path) -> None:
    script = Path(__file__).with_name("make_screenshots.py")
    result = subprocess.run(
        [sys.executable, str(script), str(tmp_path), "--only", "transfers"],
        env={**app_env(xvfb), "PYTHONPATH": str(ROOT)},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    for name, width in (("transfers.png", 1120), ("transfers-list.png", 640)):
        image = QImage(str(tmp_path / name))
        assert not image.isNull(), name
        assert image.width() == width
        assert distinct_colours(image) > 12, f"{name} looks blank"
