"""Keep PySide6's import hook from holding the source of every module in memory.

shiboken6 replaces ``__import__`` to support ``from __feature__ import ...``. For every
Python module imported after PySide6 it decides whether the module "uses PySide" by
calling ``inspect.getsource(module)`` and looking for the word ``PySide6``; ``inspect``
reads the file through ``linecache``, which keeps every line of it for the rest of the
process. The node's modules and libraries are imported after the window is up, so the
app held the text of ~540 source files: ~20 MB of resident memory (bench/bench_gui.py,
idle RSS 199 -> 179 MB).

`stop_caching_module_sources` swaps that check for one that reads the file the same way
and keeps nothing; its answer is the same (True iff the source contains ``PySide6``;
False when there is no readable ``.py`` source, as ``getsource`` failing gives).
"""

from __future__ import annotations

import sys
from types import ModuleType

HOOK_MODULE = "shibokensupport.feature"
CHECK = "_mod_uses_pyside"


def module_uses_pyside(module: ModuleType) -> bool:
    """Whether `module`'s source file mentions PySide6 (read once, not cached)."""
    spec = getattr(module, "__spec__", None)
    origin = getattr(spec, "origin", None)
    if not isinstance(origin, str) or not origin.endswith(".py"):
        return False
    try:
        with open(origin, "rb") as fh:
            return b"PySide6" in fh.read()
    except OSError:
        return False


def stop_caching_module_sources() -> bool:
    """Install `module_uses_pyside` in PySide6's import hook; False if this PySide6 has no
    such check (then there is nothing to fix)."""
    import PySide6.QtCore  # noqa: F401  (installs the hook)

    hook = sys.modules.get(HOOK_MODULE)
    if hook is None or not callable(getattr(hook, CHECK, None)):
        return False
    setattr(hook, CHECK, module_uses_pyside)
    return True
