"""Contact names that read the same on screen.

A contact's name comes from their invite: the peer chooses it. The node refuses a second
contact whose name equals another's ignoring case, but "Воb" with a Cyrillic В and о, or
"Bob Builder" with a no-break space, passes and is drawn exactly like "Bob Builder". Two
names are lookalikes when the window's font draws them with the same outline (whatever the
code points: no confusables table to keep up to date, and it catches what this font shows
the same), or when they are equal after compatibility folding ("ＢＯＢ" and "BOB").
"""

from __future__ import annotations

import functools
import hashlib
import unicodedata
from collections import defaultdict
from collections.abc import Iterable

from PySide6.QtCore import QByteArray, QDataStream, QIODevice
from PySide6.QtGui import QFont, QGuiApplication, QPainterPath

SHAPE_PIXELS = 48
"""The size names are drawn at to compare them (large: fine differences show)."""


def name_shape(name: str, font: QFont | None = None) -> str:
    """A digest of the outline `font` (the application's by default) draws `name` with."""
    drawn = QFont(font or QGuiApplication.font())
    drawn.setPixelSize(SHAPE_PIXELS)
    return _shape(drawn.toString(), name)


@functools.lru_cache(maxsize=4096)
def _shape(font_text: str, name: str) -> str:
    # each name is drawn once per font: a contact added to a thousand costs one outline
    # (the outline serialised by Qt: 0.2 ms a name; walked in Python it took 2.4 ms)
    font = QFont()
    font.fromString(font_text)
    font.setPixelSize(SHAPE_PIXELS)
    path = QPainterPath()
    path.addText(0, 0, font, name)
    data = QByteArray()
    stream = QDataStream(data, QIODevice.OpenModeFlag.WriteOnly)
    stream << path
    return hashlib.sha256(bytes(data.data())).hexdigest()


def folded(name: str) -> str:
    """`name` as it reads: compatibility-folded, case-folded, spaces collapsed."""
    return " ".join(unicodedata.normalize("NFKC", name).casefold().split())


def lookalikes(names: Iterable[tuple[str, str]], font: QFont | None = None) -> set[str]:
    """The keys of (key, name) pairs whose name reads like another pair's name."""
    groups: defaultdict[tuple[str, str], set[str]] = defaultdict(set)
    for key, name in names:
        groups[("shape", name_shape(name, font))].add(key)
        groups[("text", folded(name))].add(key)
    return {key for members in groups.values() if len(members) > 1 for key in members}
