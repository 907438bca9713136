"""Render the app icon (resources/icons/scrambled-eggs.svg) for every platform.

    python packaging/render_icons.py        # or: python packaging/build.py icons

Writes:
* packaging/linux/icons/hicolor/<N>x<N>/apps/scrambled-eggs.png for N in 16..512, plus
  the SVG under scalable/apps (the freedesktop icon theme layout);
* packaging/windows/scrambled-eggs.ico: an ICO whose entries are PNG images (Windows
  Vista and later read them);
* packaging/macos/scrambled-eggs.icns: an ICNS container of PNG entries (macOS 10.7+).

Rendering uses Qt's SVG renderer (QSvgRenderer), so it needs no display: it runs under
QT_QPA_PLATFORM=offscreen too.
"""

from __future__ import annotations

import os
import shutil
import struct
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SVG = ROOT / "resources" / "icons" / "scrambled-eggs.svg"
LINUX_ICONS = ROOT / "packaging" / "linux" / "icons" / "hicolor"
ICO = ROOT / "packaging" / "windows" / "scrambled-eggs.ico"
ICNS = ROOT / "packaging" / "macos" / "scrambled-eggs.icns"
ICON_NAME = "scrambled-eggs"

LINUX_SIZES = (16, 24, 32, 48, 64, 128, 256, 512)
ICO_SIZES = (16, 24, 32, 48, 64, 128, 256)
# ICNS entry types that may hold PNG data, and the pixel size of each.
ICNS_TYPES = (
    (b"icp4", 16),
    (b"icp5", 32),
    (b"icp6", 64),
    (b"ic07", 128),
    (b"ic08", 256),
    (b"ic09", 512),
    (b"ic10", 1024),  # 512x512@2x
    (b"ic11", 32),  # 16x16@2x
    (b"ic12", 64),  # 32x32@2x
    (b"ic13", 256),  # 128x128@2x
    (b"ic14", 512),  # 256x256@2x
)


def render_png(svg: Path, size: int) -> bytes:
    """The SVG rasterised to a square PNG of `size` pixels."""
    from PySide6.QtCore import QBuffer, QByteArray, QIODevice

    from app.gui.resources import render_svg

    data = QByteArray()
    buffer = QBuffer(data)
    buffer.open(QIODevice.OpenModeFlag.WriteOnly)
    # the stubs want bytes for the format, PySide 6.12 at run time only accepts str
    if not render_svg(svg, size).save(buffer, "PNG"):  # type: ignore[call-overload]
        raise OSError(f"could not render {svg} at {size}px")
    buffer.close()
    return bytes(data.data())


def ico_bytes(pngs: dict[int, bytes]) -> bytes:
    """An ICO file whose images are the given PNGs (size -> PNG data)."""
    sizes = sorted(pngs)
    header = struct.pack("<HHH", 0, 1, len(sizes))
    offset = len(header) + 16 * len(sizes)
    entries, images = [], []
    for size in sizes:
        data = pngs[size]
        edge = 0 if size >= 256 else size  # 0 means 256 in an ICONDIRENTRY
        entries.append(struct.pack("<BBBBHHII", edge, edge, 0, 0, 1, 32, len(data), offset))
        images.append(data)
        offset += len(data)
    return header + b"".join(entries) + b"".join(images)


def icns_bytes(pngs: dict[int, bytes]) -> bytes:
    """An ICNS file with one PNG entry per type in ICNS_TYPES."""
    body = b"".join(
        kind + struct.pack(">I", 8 + len(pngs[size])) + pngs[size] for kind, size in ICNS_TYPES
    )
    return b"icns" + struct.pack(">I", 8 + len(body)) + body


def render_all(svg: Path = SVG) -> list[Path]:
    """Write every icon file; returns their paths."""
    if not svg.is_file():
        raise FileNotFoundError(f"{svg} is missing: the app icon is drawn by the GUI")
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtGui import QGuiApplication

    _app = QGuiApplication.instance() or QGuiApplication([sys.argv[0]])
    sizes = sorted({*LINUX_SIZES, *ICO_SIZES, *(size for _, size in ICNS_TYPES)})
    pngs = {size: render_png(svg, size) for size in sizes}
    written: list[Path] = []
    for size in LINUX_SIZES:
        target = LINUX_ICONS / f"{size}x{size}" / "apps" / f"{ICON_NAME}.png"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(pngs[size])
        written.append(target)
    scalable = LINUX_ICONS / "scalable" / "apps" / f"{ICON_NAME}.svg"
    scalable.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(svg, scalable)
    written.append(scalable)
    ICO.parent.mkdir(parents=True, exist_ok=True)
    ICO.write_bytes(ico_bytes({size: pngs[size] for size in ICO_SIZES}))
    ICNS.parent.mkdir(parents=True, exist_ok=True)
    ICNS.write_bytes(icns_bytes(pngs))
    written += [ICO, ICNS]
    return written


def main() -> int:
    """Render the icons and list what was written."""
    sys.path.insert(0, str(ROOT))
    for path in render_all():
        print(path.relative_to(ROOT))
    return 0


if __name__ == "__main__":
    sys.exit(main())
