"""Benchmark: laying out hostile message text in a bubble. Prints ONE JSON object.

For each text (a peer may send up to 32 KiB): milliseconds to lay it out at the widest
bubble's text width, before (QTextLayout on the text as it is, wrapping at a word
boundary or anywhere) and now (`painting.text_layout`: break opportunities between the
graphemes of words longer than `LONG_WORD`), alternating old and new in the same run,
median of the repetitions; and how many layouts ten repaints of the bubble cost, before
(one per paint) and now (`MessageDelegate` keeps the laid-out text per message and width);
and the milliseconds to draw a 700-pixel window of a bubble of 30,000 lines, before (every
line drawn) and now (only the lines in the painter's clip).

Usage: ``QT_QPA_PLATFORM=offscreen .venv/bin/python bench/bench_gui_long_text.py [--repeat 5]``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from PySide6.QtCore import QPointF, QRect
from PySide6.QtGui import QColor, QFont, QImage, QPainter
from PySide6.QtWidgets import QApplication

from app.gui.views.painting import lay_out, text_layout, with_line_separators

WIDTH = 536.0  # MAX_BUBBLE - 2 * PAD_X
FAMILY = "\U0001f468\u200d\U0001f469\u200d\U0001f467\u200d\U0001f466"
TEXTS = {
    "32k_no_space": "x" * 32_000,
    "32k_words": ("lorem ipsum dolor sit amet " * 1200)[:32_000],
    "8k_emoji_zwj_no_space": FAMILY * 1000,
    "16k_combining_no_space": "Z\u0337\u0321\u031ba\u0336\u0327\u035d" * 2000,
    "32k_arabic_words": ("مرحبا بالعالم " * 2300)[:32_000],
}


def timed(function: object, *args: object) -> float:
    start = time.perf_counter()
    function(*args)  # type: ignore[operator]
    return (time.perf_counter() - start) * 1000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=5)
    repeat = parser.parse_args().repeat
    app = QApplication.instance() or QApplication([])
    font = QFont(app.font())
    font.setPointSizeF(10.5)
    results = {}
    for name, text in TEXTS.items():
        old: list[float] = []
        new: list[float] = []
        for _ in range(repeat):  # alternating: the machine's load hits both alike
            old.append(timed(lay_out, with_line_separators(text), font, WIDTH))
            new.append(timed(text_layout, text, font, WIDTH))
        lines_old = lay_out(with_line_separators(text), font, WIDTH)[0].lineCount()
        lines_new = text_layout(text, font, WIDTH)[0].lineCount()
        results[name] = {
            "chars": len(text),
            "layout_ms_before": round(statistics.median(old), 1),
            "layout_ms_after": round(statistics.median(new), 1),
            "lines_before": lines_old,
            "lines_after": lines_new,
            "ten_repaints_ms_before": round(10 * statistics.median(old), 1),
            "ten_repaints_ms_after": round(statistics.median(new), 1),  # laid out once
        }
    layout, size = text_layout("line\n" * 30_000, font, WIDTH)
    drawn: dict[str, list[float]] = {"before": [], "after": []}
    for _ in range(repeat):
        for how in ("before", "after"):
            image = QImage(600, 700, QImage.Format.Format_ARGB32)
            image.fill(QColor("white"))
            painter = QPainter(image)
            painter.setClipRect(QRect(0, 0, 600, 700))
            origin = QPointF(10, -size.height() / 2)
            start = time.perf_counter()
            if how == "before":
                layout.draw(painter, origin)
            else:
                layout.draw(painter, origin, [], painter.clipBoundingRect())
            drawn[how].append((time.perf_counter() - start) * 1000)
            painter.end()
    tall = {f"draw_ms_{how}": round(statistics.median(ms), 2) for how, ms in drawn.items()}
    tall["lines"] = layout.lineCount()
    report = {"width_px": WIDTH, "repeat": repeat, "texts": results, "tall_bubble": tall}
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
