"""Save a screenshot of the whole X display this process is pointed at (DISPLAY=:N).

Usage: python tests/e2e/grab_screen.py OUT.png — prints "WxH nonblank=<0|1>".
"""

from __future__ import annotations

import sys

from PySide6.QtGui import QGuiApplication


def main(out: str) -> int:
    app = QGuiApplication([*sys.argv[:1], "-platform", "xcb"])
    screen = app.primaryScreen()
    pixmap = screen.grabWindow(0)
    image = pixmap.toImage()
    colours = {
        image.pixel(x, y) for x in range(0, image.width(), 37) for y in range(0, image.height(), 29)
    }
    ok = pixmap.save(out)
    print(f"{image.width()}x{image.height()} distinct={len(colours)} saved={int(ok)}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
