"""A hyphenated name in the conversation's banner and the composer's placeholder wraps at
its hyphen or a space: "Bartholomew Fitzgerald-Montgomery" was cut as "Fitzgerald-M" /
"ontgomery" (the whole 21-letter word had been made breakable between any letters)."""

from __future__ import annotations

from PySide6.QtGui import QFont, QTextLayout, QTextOption
from PySide6.QtWidgets import QApplication

from app.gui.views.peer_text import breakable, isolated

NAME = "Bartholomew Fitzgerald-Montgomery"
SENTENCE = (
    "Not verified yet: compare safety numbers with {0} in person or on a call, so nobody "
    "can be in the middle."
)


def line_ends(text: str, font: QFont, width: int) -> list[str]:
    """The last character of every line but the last, with `text` wrapped at words in
    `width` pixels, as a word-wrapping QLabel lays it out."""
    layout = QTextLayout(text, font)
    option = QTextOption()
    option.setWrapMode(QTextOption.WrapMode.WordWrap)
    layout.setTextOption(option)
    layout.beginLayout()
    ends = []
    while (line := layout.createLine()).isValid():
        line.setLineWidth(width)
        ends.append(text[line.textStart() + line.textLength() - 1])
    layout.endLayout()
    return ends[:-1]


def test_a_hyphenated_name_wraps_at_its_hyphen_or_a_space(qapp: QApplication) -> None:
    assert breakable(NAME) == NAME  # no break inside its pieces
    text = SENTENCE.format(isolated(breakable(NAME)))
    for points in (10, 13, 18):
        font = QFont(qapp.font())
        font.setPointSize(points)
        for width in range(150, 900, 3):
            ends = line_ends(text, font, width)
            assert set(ends) <= {" ", "-", ","}, (points, width, ends)


def test_a_long_piece_without_a_break_still_wraps_anywhere(qapp: QApplication) -> None:
    """A peer may choose 64 letters without a space: the banner must still wrap it."""
    word = "Averyveryverylongnamewithnospacesatall" + "x" * 26
    assert breakable(word).replace("\u200b", "") == word
    assert breakable(f"Ann-{word}").startswith("Ann-A\u200bv")
    assert breakable("Fitzgerald-Montgomery/Smith") == "Fitzgerald-Montgomery/Smith"
    font = QFont(qapp.font())
    assert len(line_ends(SENTENCE.format(breakable(word)), font, 200)) >= 3
