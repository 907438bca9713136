"""Names a peer chose, made safe to show on one line.

The name a file message carries is the sender's own text: nothing checks it against the
file (the transfer's name comes from the file's manifest and is sanitised by the node).
Shown as is, a right-to-left override made "invoice\\u202efdp.exe" read "invoiceexe.pdf"
in the contact list, the search results and the desktop notification, and zero-width
or line-breaking characters could hide or split it."""

from __future__ import annotations

import unicodedata

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
