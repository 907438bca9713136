"""API values to JSON and back (`app.node.wire_json`): what the control socket and
`--json` print."""

from __future__ import annotations

import dataclasses
import json
from enum import Enum, StrEnum
from typing import Any

from app.node import api
from app.node.api import Message, MessageAdded, MessageStatus, MessageStatusChanged
from app.node.wire_json import from_json, to_json


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
