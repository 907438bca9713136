"""PySide6's import hook must not keep the source of imported modules in memory, and
must still tell modules that use PySide6 from those that don't."""

from __future__ import annotations

import inspect
import linecache
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

import app.gui  # noqa: F401  (installs the check, as the app does on start)
from app.gui.pyside_sources import CHECK, HOOK_MODULE, module_uses_pyside


@pytest.fixture
def fresh_modules(tmp_path: Path) -> Iterator[tuple[ModuleType, ModuleType]]:
    (tmp_path / "se_probe_qt.py").write_text("from PySide6 import QtCore\nX = 1\n" * 200)
    (tmp_path / "se_probe_plain.py").write_text("import json\nY = 2\n" * 200)
    sys.path.insert(0, str(tmp_path))
    try:
        # `import` statements go through builtins.__import__, where the hook sits
        yield __import__("se_probe_qt"), __import__("se_probe_plain")
    finally:
        sys.path.remove(str(tmp_path))
        for name in ("se_probe_qt", "se_probe_plain"):
            sys.modules.pop(name, None)


def test_modules_imported_after_pyside_leave_no_source_in_memory(
    fresh_modules: tuple[ModuleType, ModuleType],
) -> None:
    for module in fresh_modules:
        assert getattr(module, "__file__", None) not in linecache.cache


def test_the_check_answers_as_pysides_own(fresh_modules: tuple[ModuleType, ModuleType]) -> None:
    hook = sys.modules.get(HOOK_MODULE)
    if hook is None:
        pytest.skip("this PySide6 has no __feature__ import hook")
    assert getattr(hook, CHECK) is module_uses_pyside
    uses_qt, plain = fresh_modules
    for module in fresh_modules:  # PySide6's check: the word in inspect.getsource(module)
        assert module_uses_pyside(module) == ("PySide6" in inspect.getsource(module))
    # the hook recorded them accordingly: 0 = "uses PySide, no feature", -1 = "ignore"
    selection = hook.pyside_feature_dict
    assert selection[uses_qt.__name__] == 0
    assert selection[plain.__name__] == -1
    assert module_uses_pyside(sys) is False  # built in: no source file
