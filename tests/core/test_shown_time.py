"""The time shown for a received event: its author's, within what we know for sure."""

from __future__ import annotations

from app.core.shown_time import shown_time_ms

NOW = 1_800_000_000_000
HOUR = 3_600_000
YEAR = 365 * 24 * HOUR


def test_an_author_with_a_right_clock_is_shown_as_it_wrote() -> None:
    assert shown_time_ms(NOW - 2_000, [NOW - 60_000], NOW) == NOW - 2_000


def test_a_message_from_the_future_shows_when_it_arrived() -> None:
    """An author a day (or a year) ahead: the message showed as written tomorrow."""
    assert shown_time_ms(NOW + 24 * HOUR, [], NOW) == NOW
    assert shown_time_ms(NOW + YEAR, [NOW - HOUR], NOW) == NOW


def test_a_reply_shows_no_earlier_than_the_message_it_answers() -> None:
    """An author a year behind answering our message of a minute ago: a year ago it was
    shown, in the middle of today's conversation."""
    ours = NOW - 60_000
    assert shown_time_ms(NOW - YEAR, [ours], NOW) == ours


def test_a_late_delivery_keeps_its_authors_time() -> None:
    """Written three days ago, read from a mailbox today: three days ago is the truth."""
    written = NOW - 72 * HOUR
    assert shown_time_ms(written, [written - HOUR], NOW) == written
