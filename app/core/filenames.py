"""Safe local names for files received from peers.

A manifest's file name is chosen by the sender, who may be hostile. Before anything is
written, `sanitize_filename` turns it into one plain file name that stays inside the
downloads folder on Linux, macOS and Windows alike:

* every path component is dropped: ``/`` and ``\\`` separators, drive letters
  (``C:``), UNC prefixes (``\\\\server\\share``), ``.`` and ``..``;
* control characters, Unicode format characters (bidi overrides such as U+202E that
  make ``a\\u202egnp.exe`` display as ``aexe.png``, zero-width joiners, BOM), line and
  paragraph separators, surrogates and unassigned code points are removed;
* characters Windows forbids (``<>:"|?*``) become ``_``;
* leading dots (hidden files) and leading/trailing spaces, trailing dots are stripped;
* Windows device names (``CON``, ``nul.txt``, ``COM1``, ``LPT9.tar.gz``...) get a ``_``
  prefix;
* the result fits in `MAX_NAME_BYTES` of UTF-8, keeping a short extension;
* nothing left means ``"file"``.

`unique_destination` then picks ``name (1).ext``, ``name (2).ext``... when the name is
taken. Both are pure: the caller says which names exist.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable
from collections.abc import Set as AbstractSet

from app.core.errors import LocalProtocolError

# 255 bytes is the common file-system limit; leave room for " (9999)" and ".part" suffixes.
MAX_NAME_BYTES = 200
MAX_EXTENSION_BYTES = 16
FALLBACK_NAME = "file"
MAX_COLLISION_SUFFIX = 100_000

_WINDOWS_FORBIDDEN = frozenset('<>:"|?*')
# Unicode categories that never belong in a file name: controls, format characters
# (bidi overrides and isolates, zero-width characters, BOM), line/paragraph separators,
# surrogates and unassigned code points.
_REMOVED_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs", "Cn"})
_RESERVED_BASES = frozenset(
    {"CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$", "CLOCK$"}
    | {f"{dev}{n}" for dev in ("COM", "LPT") for n in (*"0123456789", "¹", "²", "³")}
)


def sanitize_filename(name: str, max_bytes: int = MAX_NAME_BYTES) -> str:
    """A single safe file name derived from a peer-supplied `name` (never empty).

    The result contains no path separator, is not ``.``/``..``, is not a Windows device
    name, has no control or bidi characters and is at most `max_bytes` long in UTF-8.
    Applying it twice changes nothing.
    """
    if max_bytes < 32:
        raise LocalProtocolError("max_bytes must leave room for a name and an extension")
    # Removing a character can expose a new sequence (e.g. a combining mark meeting its
    # base), so repeat the pass until it changes nothing; two or three passes suffice.
    text = name
    for _ in range(8):
        cleaned = _sanitize_once(text, max_bytes)
        if cleaned == text:
            break
        text = cleaned
    return text or FALLBACK_NAME


def sanitize_relative_name(text: str) -> str:
    """A file's name with the folders it came in ("folder/sub/b.bin", as a share of a
    folder names its files), each "/"-separated part `sanitize_filename`d; empty parts
    are dropped. What a peer claims is shown this way (never empty)."""
    parts = [sanitize_filename(part) for part in text.split("/") if part]
    return "/".join(parts) or FALLBACK_NAME


def split_extension(name: str) -> tuple[str, str]:
    """Split `name` into stem and a short extension (``"a.tar.gz"`` -> ``"a.tar", ".gz"``).

    The extension is empty when there is no dot after the first character or when the
    part after the last dot is longer than `MAX_EXTENSION_BYTES`.
    """
    dot = name.rfind(".")
    if dot <= 0:
        return name, ""
    ext = name[dot:]
    if len(ext.encode("utf-8")) > MAX_EXTENSION_BYTES or ext == ".":
        return name, ""
    return name[:dot], ext


def unique_destination(
    existing: Callable[[str], bool] | AbstractSet[str],
    name: str,
    max_bytes: int = MAX_NAME_BYTES,
) -> str:
    """The first of ``name``, ``stem (1).ext``, ``stem (2).ext``... that is not taken.

    `name` should come from `sanitize_filename`; `existing` is either a set of taken
    names or a predicate (e.g. a case-insensitive check against the downloads folder).
    Every candidate fits in `max_bytes` of UTF-8.
    """
    taken: Callable[[str], bool] = (
        existing.__contains__ if isinstance(existing, AbstractSet) else existing
    )
    if not taken(name):
        return name
    stem, ext = split_extension(name)
    for n in range(1, MAX_COLLISION_SUFFIX + 1):
        suffix = f" ({n}){ext}"
        budget = max_bytes - len(suffix.encode("utf-8"))
        candidate = _truncate_utf8(stem, budget).rstrip(" .") + suffix
        if not taken(candidate):
            return candidate
    raise LocalProtocolError("too many files with the same name in the destination folder")


def _sanitize_once(name: str, max_bytes: int) -> str:
    text = unicodedata.normalize("NFC", name)
    # Only the last path component counts, whatever the separator convention.
    text = text.replace("\\", "/").rsplit("/", 1)[-1]
    text = "".join(_clean_char(ch) for ch in text)
    text = unicodedata.normalize("NFC", text)
    text = _strip_edges(text)
    text = _truncate(text, max_bytes)
    if _is_reserved(text):
        text = _truncate("_" + text, max_bytes)
    return text or FALLBACK_NAME


def _clean_char(ch: str) -> str:
    if ch in _WINDOWS_FORBIDDEN:
        return "_"
    if unicodedata.category(ch) in _REMOVED_CATEGORIES:
        return ""
    return ch


def _strip_edges(text: str) -> str:
    # Leading dots would hide the file (and "." / ".." are directory references);
    # Windows silently drops trailing dots and spaces, so two names could collide.
    return text.strip().lstrip(".").strip().rstrip(". ")


def _truncate(text: str, max_bytes: int) -> str:
    """Cut `text` to `max_bytes` of UTF-8, keeping a short extension when possible."""
    if len(text.encode("utf-8")) <= max_bytes:
        return text
    stem, ext = split_extension(text)
    ext_bytes = len(ext.encode("utf-8"))
    stem = _truncate_utf8(stem, max_bytes - ext_bytes)
    return _strip_edges(stem + ext)


def _truncate_utf8(text: str, max_bytes: int) -> str:
    """The longest prefix of `text` (whole code points) within `max_bytes` of UTF-8."""
    encoded = text.encode("utf-8")
    if len(encoded) <= max_bytes:
        return text
    return encoded[: max(max_bytes, 0)].decode("utf-8", errors="ignore")


def _is_reserved(name: str) -> bool:
    # Windows treats "nul.txt", "NUL .tar.gz" and "com1.x.y" as the device itself.
    base = name.split(".", 1)[0].rstrip(" ").upper()
    return base in _RESERVED_BASES
