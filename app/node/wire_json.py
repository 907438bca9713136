"""Converting API values to and from JSON (for the control socket and `--json` output)."""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from enum import Enum
from typing import Any

_PLAIN = frozenset({str, int, float, bool, type(None)})
"""Types `to_json` passes through as they are (exactly these: not their subclasses,
which may be enums)."""


_FIELD_NAMES: dict[type, tuple[str, ...] | None] = {}


def _field_names(tp: type) -> tuple[str, ...] | None:
    """The field names of a dataclass type, None for any other type (once per type:
    every event sent to a control client is converted)."""
    try:
        return _FIELD_NAMES[tp]
    except KeyError:
        names = None
        if dataclasses.is_dataclass(tp):
            names = tuple(f.name for f in dataclasses.fields(tp))
        _FIELD_NAMES[tp] = names
        return names


def to_json(value: Any) -> Any:
    """Dataclasses become objects, enums their values, tuples lists."""
    tp = type(value)
    if tp in _PLAIN:
        return value
    names = _field_names(tp)
    if names is not None:
        return {name: to_json(getattr(value, name)) for name in names}
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, list | tuple):
        return [to_json(v) for v in value]
    if isinstance(value, dict):
        return {str(k): to_json(v) for k, v in value.items()}
    return value


@functools.cache
def _type_hints(tp: type) -> dict[str, Any]:
    """A dataclass's resolved field types (resolving them is slow; the API's types are
    fixed, so once per type)."""
    return typing.get_type_hints(tp)


def from_json(tp: Any, data: Any) -> Any:
    """Rebuild a value of type `tp` from `to_json` output; `ValueError` if it doesn't fit."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(tp)
        if data is None and type(None) in options:
            return None
        for option in options:
            if option is type(None):
                continue
            try:
                return from_json(option, data)
            except (ValueError, TypeError):
                continue
        raise ValueError(f"{data!r} fits none of {tp}")
    if origin in (list, tuple):
        if not isinstance(data, list):
            raise ValueError(f"expected a list, got {type(data).__name__}")
        (item,) = typing.get_args(tp)[:1]
        items = [from_json(item, v) for v in data]
        return items if origin is list else tuple(items)
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        if not isinstance(data, dict):
            raise ValueError(f"expected an object for {tp.__name__}")
        hints = _type_hints(tp)
        kwargs = {}
        for f in dataclasses.fields(tp):
            if f.name in data:
                kwargs[f.name] = from_json(hints[f.name], data[f.name])
            elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise ValueError(f"{tp.__name__} needs '{f.name}'")
        return tp(**kwargs)
    if isinstance(tp, type) and issubclass(tp, Enum):
        return tp(data)
    if tp is Any:
        return data
    if tp is float and isinstance(data, int) and not isinstance(data, bool):
        return float(data)
    if isinstance(tp, type) and (
        not isinstance(data, tp) or (tp is int and isinstance(data, bool))
    ):
        raise ValueError(f"expected {tp.__name__}, got {type(data).__name__}")
    return data
