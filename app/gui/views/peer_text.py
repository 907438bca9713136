"""Names a peer chose, made safe to show on one line.

The name a file message carries is the sender's own text: nothing checks it against the
file (the transfer's name comes from the file's manifest and is sanitised by the node).
Shown as is, a right-to-left override made "invoice\\u202efdp.exe" read "invoiceexe.pdf"
in the contact list, the search results and the desktop notification, and zero-width
or line-breaking characters could hide or split it."""

from __future__ import annotations

import re
import unicodedata

from app.gui.views.painting import between_graphemes

INVISIBLE = frozenset({"Cf"})
"""Format characters (bidi overrides and isolates, zero-width characters): dropped."""
BREAKING = frozenset({"Cc", "Zl", "Zp", "Zs"})
"""Controls, line and paragraph separators, spaces: one space each, runs collapsed."""


def one_line_name(text: str) -> str:
    """`text` on one line, without the characters that reorder, hide or break it."""
    kept = []
    for char in text:
        category = unicodedata.category(char)
        if category in INVISIBLE:
            continue
        kept.append(" " if category in BREAKING else char)
    return " ".join("".join(kept).split())


FIRST_STRONG_ISOLATE = "\u2068"
POP_DIRECTIONAL_ISOLATE = "\u2069"
RIGHT_TO_LEFT = frozenset({"R", "AL"})


def isolated(name: str) -> str:
    """`name` to put into a sentence: a name with right-to-left letters is wrapped in a
    first-strong isolate, so that it keeps its own direction without pulling the words
    and numbers around it into it ("From שלום · 14:05" read "From 14:05 · שלום")."""
    if any(unicodedata.bidirectional(char) in RIGHT_TO_LEFT for char in name):
        return f"{FIRST_STRONG_ISOLATE}{name}{POP_DIRECTIONAL_ISOLATE}"
    return name


WRAPPABLE_WORD = 20
LINE_BREAKS_AFTER = "-\u2010\u2013\u2014/"
"""Hyphens, dashes and the slash: a line may already end after them (Unicode line
breaking), so a word made of such pieces needs no help to wrap."""
_LONG_NAME_PIECE = re.compile(rf"[^\s{re.escape(LINE_BREAKS_AFTER)}]{{{WRAPPABLE_WORD + 1},}}")


def breakable(name: str) -> str:
    """`name` for a wrapping label: a piece of a word longer than `WRAPPABLE_WORD`
    characters (between spaces, hyphens, dashes or slashes) may wrap between any two of
    its graphemes (it looks the same). "Fitzgerald-Montgomery" is left whole: made
    breakable as one long word, it wrapped as "Fitzgerald-M" / "ontgomery" where the
    hyphen was free to end the line."""
    return _LONG_NAME_PIECE.sub(lambda match: between_graphemes(match.group()), name)
