"""A contact row shows its conversation's newest message by the history's order, not by
the time shown beside it (clocks may be wrong; decision 0020)."""

from __future__ import annotations

import time

from pytestqt.qtbot import QtBot

from app.gui.models.contacts import ContactModel, ContactRole
from app.node import api

DAY = 86400.0


def _message(text: str, when: float, *, outgoing: bool = True) -> api.Message:
    return api.Message(
        id=text,
        contact="b" * 52,
        sender="me" if outgoing else "b" * 52,
        outgoing=outgoing,
        text=text,
        time=when,
        status=api.MessageStatus.SENT,
    )


def _last(model: ContactModel) -> str:
    message = model.data(model.index(0), ContactRole.LAST_MESSAGE)
    assert isinstance(message, api.Message)
    return message.text


def test_the_row_follows_the_history_order_when_a_clock_was_stepped_back(
    qtbot: QtBot,
) -> None:
    """Written while our clock ran a day ahead, then corrected: every later message has
    an earlier time, and the row kept showing the old one for a day."""
    model = ContactModel()
    model.set_contacts([api.Contact("Bob", "b" * 52, verified=False)])
    now = time.time()
    model.note_message(_message("written a day ahead", now + DAY), seen=True)
    model.note_message(_message("after the correction", now), seen=True)
    assert _last(model) == "after the correction"
    # a message the node placed before others (a late one from history sync) is not last
    model.note_message(_message("an old one synced", now - DAY), seen=True, newest=False)
    assert _last(model) == "after the correction"


def test_a_row_with_no_message_yet_shows_any(qtbot: QtBot) -> None:
    model = ContactModel()
    model.set_contacts([api.Contact("Bob", "b" * 52, verified=False)])
    model.note_message(_message("kept from before", time.time()), seen=True, newest=False)
    assert _last(model) == "kept from before"
