"""Where the app's icons and themes live, and helpers that turn them into Qt objects.

Resources sit in the top-level `resources/` folder of a source checkout, or inside the
bundle of a frozen app (PyInstaller puts them under `sys._MEIPASS`).
"""

from __future__ import annotations

import sys
from functools import cache
from pathlib import Path

from PySide6.QtCore import QByteArray, Qt
from PySide6.QtGui import QIcon, QImage, QPainter, QPixmap

APP_ICON_SIZES = (16, 24, 32, 48, 64, 128, 256)


def resource_dir() -> Path:
    """The `resources/` folder, in a checkout or a frozen bundle."""
    bundle = getattr(sys, "_MEIPASS", None)
    if bundle:
        return Path(bundle) / "resources"
    return Path(__file__).resolve().parents[2] / "resources"


def icon_path(name: str) -> Path:
    """The path of an icon file in `resources/icons/`."""
    return resource_dir() / "icons" / name


def theme_path(name: str) -> Path:
    """The path of a style sheet in `resources/themes/`."""
    return resource_dir() / "themes" / f"{name}.qss"


def render_svg(path: Path, size: int) -> QImage:
    """Rasterise an SVG file to a square transparent image."""
    from PySide6.QtSvg import QSvgRenderer

    renderer = QSvgRenderer(str(path))
    image = QImage(size, size, QImage.Format.Format_ARGB32_Premultiplied)
    image.fill(Qt.GlobalColor.transparent)
    painter = QPainter(image)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    renderer.render(painter)
    painter.end()
    return image


@cache
def app_icon() -> QIcon:
    """The egg icon at every usual size (rendered from the SVG once per process)."""
    svg = icon_path("scrambled-eggs.svg")
    icon = QIcon()
    if not svg.is_file():
        return icon
    for size in APP_ICON_SIZES:
        icon.addPixmap(QPixmap.fromImage(render_svg(svg, size)))
    return icon


def write_app_png(target: Path, size: int = 256) -> Path:
    """Render the SVG icon to a PNG (used by packaging and `python -m app.gui.resources`)."""
    if not render_svg(icon_path("scrambled-eggs.svg"), size).save(str(target)):
        raise OSError(f"could not write {target}")
    return target


QUIET_ZONE = 4
"""Light modules around a QR code: the 4 ISO/IEC 18004 asks for. With 2, the code sat on
the dark theme's background with a thin white frame, which phone scanners may not find."""


def qr_pixmap(text: str, edge: int = 240, dark: str = "#111111", light: str = "#ffffff") -> QPixmap:
    """A QR code of `text` as a pixmap about `edge` pixels wide, with whole-pixel modules
    (segno renders the PNG)."""
    import io

    import segno

    code = segno.make(text, error="m")
    scale = max(2, edge // code.symbol_size(border=QUIET_ZONE)[0])
    buffer = io.BytesIO()
    code.save(buffer, kind="png", scale=scale, border=QUIET_ZONE, dark=dark, light=light)
    pixmap = QPixmap()
    pixmap.loadFromData(QByteArray(buffer.getvalue()), "PNG")
    return pixmap


if __name__ == "__main__":  # pragma: no cover - packaging helper
    from PySide6.QtGui import QGuiApplication

    _app = QGuiApplication(sys.argv)
    out = write_app_png(icon_path("scrambled-eggs.png"))
    print(out)
