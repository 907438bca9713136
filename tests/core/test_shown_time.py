"""The time shown for a received event: its author's, within what we know for sure."""

from __future__ import annotations

from app.core.cid import Cid
from app.core.identity import IdentityKeys
from app.core.ledger import Ledger
from app.core.ledger_event import EventBody
from app.core.shown_time import latest_written, shown_time_ms

NOW = 1_800_000_000_000
HOUR = 3_600_000
YEAR = 365 * 24 * HOUR
ALICE = IdentityKeys.from_seeds(b"\x01" * 32, b"\x11" * 32)
BOB = IdentityKeys.from_seeds(b"\x02" * 32, b"\x12" * 32)


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


def test_what_a_reply_leads_to_shows_no_earlier_than_the_question() -> None:
    """Alice's clock is an hour behind: her answer was lifted to Bob's question, but the
    message she wrote after it (whose parent is her answer, dated by her clock) was shown
    an hour before both."""
    ledger = Ledger(ALICE.public.signing_key, BOB.public.signing_key)
    question = ledger.append(BOB, EventBody.of("text", text="are you there?"), NOW)
    ledger.append(ALICE, EventBody.of("text", text="yes"), NOW - HOUR + 10_000)
    more = ledger.append(ALICE, EventBody.of("text", text="and more"), NOW - HOUR + 20_000)
    memo: dict[Cid, int] = {}
    parents = [latest_written(p, ledger.get, memo) for p in more.parents]
    assert shown_time_ms(more.wall_time, parents, NOW + 60_000) == NOW
    assert memo[question.cid] == NOW
    assert latest_written(Cid.for_block(b"not held"), ledger.get, memo) == 0


def test_a_long_history_is_walked_once_without_recursion() -> None:
    ledger = Ledger(ALICE.public.signing_key, BOB.public.signing_key)
    for i in range(3000):
        last = ledger.append(ALICE, EventBody.of("text", text=str(i)), NOW + i)
    memo: dict[Cid, int] = {}
    assert latest_written(last.cid, ledger.get, memo) == NOW + 2999
    assert len(memo) == 3000
