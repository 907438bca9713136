"""API values to JSON and back (`app.node.wire_json`): what the control socket and
`--json` print."""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from enum import Enum, StrEnum
from typing import Any

from app.node import api
from app.node.api import Message, MessageAdded, MessageStatus, MessageStatusChanged
from app.node.control import METHODS
from app.node.wire_json import _type_hints, from_json, to_json


class Colour(StrEnum):
    RED = "red"


MESSAGE = Message(
    id="ab" * 16,
    contact="contact-address",
    sender="sender-address",
    outgoing=True,
    text="héllo",
    time=1_700_000_000.25,
    status=MessageStatus.QUEUED,
)


def reference(value: Any) -> Any:
    """The conversion as first written (dataclasses.fields on every value)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: reference(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, list | tuple):
        return [reference(v) for v in value]
    if isinstance(value, dict):
        return {str(k): reference(v) for k, v in value.items()}
    return value


def test_events_convert_as_before_and_come_back() -> None:
    """The per-type field cache changes nothing in the output: nested dataclasses,
    enums (a str enum too), tuples, dicts, None, a dataclass type left as it is."""
    values: list[Any] = [
        MessageAdded(MESSAGE),
        MessageStatusChanged(MESSAGE.id, MESSAGE.contact, MessageStatus.DELIVERED),
        [MESSAGE, (1, 2.5, None, True)],
        {"a": MessageStatus.SENT, 3: [MESSAGE]},
        Colour.RED,
        "text",
        None,
    ]
    for value in values:
        assert to_json(value) == reference(value)
        json.dumps(to_json(value))  # plain JSON
    assert type(to_json(Colour.RED)) is str
    assert to_json(Message) is Message
    event = MessageAdded(MESSAGE)
    assert from_json(MessageAdded, json.loads(json.dumps(to_json(event)))) == event
    for name, cls in vars(api).items():  # every API dataclass type is cached as one
        if isinstance(cls, type) and dataclasses.is_dataclass(cls) and name[0].isupper():
            assert to_json(cls) is cls


def reference_from_json(tp: Any, data: Any) -> Any:
    """The conversion back as first written (types resolved on every call)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(tp)
        if data is None and type(None) in options:
            return None
        for option in options:
            if option is type(None):
                continue
            try:
                return reference_from_json(option, data)
            except (ValueError, TypeError):
                continue
        raise ValueError(f"{data!r} fits none of {tp}")
    if origin in (list, tuple):
        if not isinstance(data, list):
            raise ValueError(f"expected a list, got {type(data).__name__}")
        (item,) = typing.get_args(tp)[:1]
        items = [reference_from_json(item, v) for v in data]
        return items if origin is list else tuple(items)
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        if not isinstance(data, dict):
            raise ValueError(f"expected an object for {tp.__name__}")
        hints = _type_hints(tp)
        kwargs = {}
        for f in dataclasses.fields(tp):
            if f.name in data:
                kwargs[f.name] = reference_from_json(hints[f.name], data[f.name])
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


def outcome(convert: Any, tp: Any, data: Any) -> Any:
    try:
        return ("value", convert(tp, data))
    except (ValueError, TypeError) as exc:
        return (type(exc).__name__, str(exc))


def test_values_come_back_as_the_first_conversion_made_them_errors_included() -> None:
    """Converters worked out once per type accept, build and refuse exactly what the
    conversion resolving types on every call did (same values, same errors)."""
    message = to_json(MESSAGE)
    samples: list[Any] = [
        message,
        {**message, "time": 3},  # an int where a float goes
        {**message, "time": True},
        {**message, "status": "nonsense"},
        {k: v for k, v in message.items() if k != "text"},
        {"message": message},
        {"id": "x", "contact": "y", "status": "sent"},
        [message, message],
        None,
        "text",
        7,
        True,
        2.5,
        {},
    ]
    types_: set[Any] = {Message, MessageAdded, MessageStatusChanged, list[Message]}
    for method in METHODS.values():
        types_.update(t for t in (method.params, method.result) if t is not None)
    for tp in types_:
        for data in samples:
            assert outcome(from_json, tp, data) == outcome(reference_from_json, tp, data), (
                tp,
                data,
            )
