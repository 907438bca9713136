"""Converting API values to and from JSON (for the control socket and `--json` output)."""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from collections.abc import Callable
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


Converter = Callable[[Any], Any]
_CONVERTERS: dict[Any, Converter] = {}


def from_json(tp: Any, data: Any) -> Any:
    """Rebuild a value of type `tp` from `to_json` output; `ValueError` if it doesn't fit."""
    return _converter(tp)(data)


def _converter(tp: Any) -> Converter:
    """The conversion for `tp`, worked out once per type (a control client converts
    every event it reads: resolving the same types each time was most of its work)."""
    try:
        return _CONVERTERS[tp]
    except KeyError:
        pass
    except TypeError:  # not hashable: work it out each time
        return _build(tp)
    converter = _CONVERTERS[tp] = _build(tp)
    return converter


def _build(tp: Any) -> Converter:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return _union(tp)
    if origin in (list, tuple):
        return _sequence(origin, typing.get_args(tp)[:1])
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return _dataclass(tp)
    if isinstance(tp, type) and issubclass(tp, Enum):
        return tp
    if tp is Any:
        return _as_is
    if tp is float:
        return _float
    if isinstance(tp, type):
        return _checked(tp)
    return _as_is


def _as_is(data: Any) -> Any:
    return data


def _union(tp: Any) -> Converter:
    options = typing.get_args(tp)
    optional = type(None) in options

    def convert(data: Any) -> Any:
        if data is None and optional:
            return None
        for option in options:
            if option is type(None):
                continue
            try:
                return _converter(option)(data)
            except (ValueError, TypeError):
                continue
        raise ValueError(f"{data!r} fits none of {tp}")

    return convert


def _sequence(origin: Any, args: tuple[Any, ...]) -> Converter:
    (item,) = args

    def convert(data: Any) -> Any:
        if not isinstance(data, list):
            raise ValueError(f"expected a list, got {type(data).__name__}")
        each = _converter(item)
        items = [each(v) for v in data]
        return items if origin is list else tuple(items)

    return convert


def _dataclass(tp: type) -> Converter:
    fields: list[tuple[str, Any, bool]] = []  # name, type, required; on first use

    def convert(data: Any) -> Any:
        if not isinstance(data, dict):
            raise ValueError(f"expected an object for {tp.__name__}")
        if not fields:
            hints = _type_hints(tp)
            fields.extend(
                (
                    f.name,
                    hints[f.name],
                    f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING,
                )
                for f in dataclasses.fields(tp)
            )
        kwargs = {}
        for name, hint, required in fields:
            if name in data:
                kwargs[name] = _converter(hint)(data[name])
            elif required:
                raise ValueError(f"{tp.__name__} needs '{name}'")
        return tp(**kwargs)

    return convert


def _float(data: Any) -> Any:
    if isinstance(data, int) and not isinstance(data, bool):
        return float(data)
    if not isinstance(data, float):
        raise ValueError(f"expected float, got {type(data).__name__}")
    return data


def _checked(tp: type) -> Converter:
    def convert(data: Any) -> Any:
        if not isinstance(data, tp) or (tp is int and isinstance(data, bool)):
            raise ValueError(f"expected {tp.__name__}, got {type(data).__name__}")
        return data

    return convert
