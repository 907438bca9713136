"""Search result rows: who ("You to Bob" for ours), a localized date, a snippet around the match,
painted with padding."""

from __future__ import annotations

import datetime as dt

from PySide6.QtGui import QColor, QFont, QFontMetricsF, QImage
from PySide6.QtWidgets import QListWidget, QListWidgetItem
from pytestqt.qtbot import QtBot

from app.gui.theme import colors
from app.gui.views.painting import short_time
from app.gui.views.search_results import (
    SearchResultDelegate,
    SearchRole,
    fit_lines,
    match_format,
    result_when,
    search_result_item,
    sender_label,
    snippet_around,
)
from app.node.api import Message, MessageStatus

NOON = dt.datetime(2026, 12, 6, 12, 0)


def _message(text: str, outgoing: bool, when: dt.datetime = NOON) -> Message:
    return Message(
        id="m1",
        contact="egg-bob",
        sender="egg-me" if outgoing else "egg-bob",
        outgoing=outgoing,
        text=text,
        time=when.timestamp(),
        status=MessageStatus.READ if outgoing else MessageStatus.RECEIVED,
    )


def test_snippet_shows_a_match_far_into_the_text() -> None:
    text = "lorem ipsum " * 40 + "the Needle is here\nand then " + "dolor sit " * 40
    snippet = snippet_around(text, "needle")
    assert snippet.text.startswith("…") and snippet.text.endswith("…")
    assert snippet.text[snippet.start : snippet.start + snippet.length] == "Needle"
    assert 10 <= snippet.start <= 30  # some words before it, and the first line shows it
    assert snippet.text[1:].startswith("ipsum lorem ipsum")  # cut at a word
    assert "\n" not in snippet.text and "here and then" in snippet.text


def test_snippet_of_a_short_text_is_the_whole_text() -> None:
    snippet = snippet_around("first line\nsecond line", "SECOND")
    assert snippet.text == "first line second line"
    assert snippet.text[snippet.start : snippet.start + snippet.length] == "second"


def test_snippet_without_a_match_is_the_start() -> None:
    snippet = snippet_around("x" * 300, "zzz")
    assert snippet.length == 0
    assert snippet.text == "x" * 140 + "…"


def test_our_messages_are_labelled_you_to_the_contact() -> None:
    """Found by a tester: our results said only "You", not which conversation they are in."""
    assert sender_label(_message("hi", outgoing=True), "Bob") == "You to Bob"
    assert sender_label(_message("hi", outgoing=False), "Bob") == "Bob"
    item = search_result_item(_message("hi there", outgoing=True), "Bob", "hi")
    assert item.data(SearchRole.SENDER) == "You to Bob"
    assert isinstance(item.data(SearchRole.MESSAGE), Message)


def test_dates_are_local_words_not_iso() -> None:
    today = NOON.date()
    assert result_when(NOON.timestamp(), today) == short_time(NOON.timestamp())
    yesterday = (NOON - dt.timedelta(days=1)).timestamp()
    assert result_when(yesterday, today) == "Yesterday"
    earlier = dt.datetime(2026, 3, 2, 9, 30).timestamp()
    assert "2026-03-02" not in result_when(earlier, today)
    assert "2026-03-02" not in result_when(dt.datetime(2025, 3, 2).timestamp(), today)


def test_fit_lines_cuts_to_two_lines(qtbot: QtBot) -> None:
    font = QFont()
    fitted = fit_lines("word " * 200, font, 200.0)
    assert fitted.endswith("…")
    assert len(fitted) < 200


def test_results_are_painted_with_padding(qtbot: QtBot) -> None:
    results = QListWidget()
    qtbot.addWidget(results)
    results.setItemDelegate(SearchResultDelegate(results))
    results.resize(300, 200)
    item = search_result_item(_message("x" * 40 + " second " + "y" * 200, False), "Bob", "second")
    results.addItem(item)
    results.show()
    qtbot.waitExposed(results)
    row = results.visualItemRect(item)
    assert row.height() >= 3 * results.fontMetrics().height()  # name and two snippet lines
    image = results.viewport().grab().toImage()
    background = image.pixelColor(2, row.center().y())
    ink = [
        (x, y)
        for x in range(image.width())
        for y in range(row.top(), row.bottom())
        if image.pixelColor(x, y) != background
    ]
    assert ink, "nothing painted"
    assert min(x for x, _ in ink) >= 12  # not flush against the left edge
    name_bottom = row.top() + 8 + QFontMetricsF(QFont(results.font())).height()
    assert any(y > name_bottom + 4 for _, y in ink)  # the snippet under the name
    darkest = min(image.pixelColor(x, y).lightness() for x, y in ink)
    assert darkest <= QColor(colors().text).lightness() + 40  # the name in the text colour


def _first_line(item: QListWidgetItem, qtbot: QtBot) -> QImage:
    """The painted line that says who wrote a result (name and time)."""
    results = QListWidget()
    qtbot.addWidget(results)
    results.setItemDelegate(SearchResultDelegate(results))
    results.resize(400, 200)
    results.addItem(item)
    results.show()
    qtbot.waitExposed(results)
    row = results.visualItemRect(item)
    height = int(QFontMetricsF(QFont(results.font())).height() * 1.2)
    return results.viewport().grab().toImage().copy(0, row.top() + 8, row.width(), height)


def test_a_contact_named_like_our_label_does_not_pass_for_our_message(qtbot: QtBot) -> None:
    """A contact chooses their name: one named "You to Bob" had their results drawn
    exactly like our messages to Bob. The app's words are drawn apart from the name."""
    ours = search_result_item(_message("pay me", outgoing=True), "Bob", "pay")
    theirs = search_result_item(_message("pay me", outgoing=False), "You to Bob", "pay")
    assert ours.data(SearchRole.SENDER) == theirs.data(SearchRole.SENDER) == "You to Bob"
    assert (ours.data(SearchRole.SENDER_WORDS), theirs.data(SearchRole.SENDER_WORDS)) == (
        "You to ",
        "",
    )
    assert _first_line(ours, qtbot) != _first_line(theirs, qtbot)


def test_a_snippet_is_not_cut_inside_an_emoji(qtbot: QtBot) -> None:
    """The snippet was cut at 140 characters, splitting a family emoji (four people
    joined by zero-width joiners) into a smaller family."""
    family = "\U0001f468\u200d\U0001f469\u200d\U0001f467\u200d\U0001f466"
    snippet = snippet_around("ab" + family * 30, "zzz")
    assert snippet.text == "ab" + family * 19 + "…"  # 2 + 19 * 7 = 135 of 140


def test_the_match_is_drawn_bold_where_it_is_after_emoji(qtbot: QtBot) -> None:
    """Qt places a format in UTF-16 units; given in characters, the bold match after
    "😀😀 " began two units early, on the space and the "n" of "needle"."""
    text = "\U0001f600\U0001f600 needle here"
    snippet = snippet_around(text, "needle")
    [bold] = match_format(snippet, snippet.text)
    assert (bold.start, bold.length) == (5, 6)  # 😀😀 and the space are 5 units
    assert match_format(snippet, snippet.text[:3]) == []  # cut before the match
