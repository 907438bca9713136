"""When to say a received event was written, whatever its author's clock said (sans-I/O).

An event carries its author's wall clock (`Event.wall_time`), which may be minutes,
hours or years off. The history's order never depends on it (Lamport time, then CID);
only the time shown beside a message does. That time is the author's, bounded by what
we know for sure (decision 0019):

* not after we received the event: a message "from the future" (its author's clock
  runs ahead) shows when it arrived, so it neither reads as written tomorrow nor sorts
  a conversation or a contact list by a time that has not come;
* not before any event it builds on (its parents): its author held them when writing,
  so it was written after them; a reply from a contact whose clock runs behind shows no
  earlier than the message it answers.

Delay is not skew: a message delivered late (through a mailbox, or synced when a
contact comes back) keeps its author's earlier time.
"""

from __future__ import annotations

from collections.abc import Iterable


def shown_time_ms(author_ms: int, parents_ms: Iterable[int], received_ms: int) -> int:
    """The time (ms since the epoch) to show for an event its author dated `author_ms`,
    whose parents are dated `parents_ms`, and which we received at `received_ms`."""
    floor = max(parents_ms, default=author_ms)
    return min(max(author_ms, floor), received_ms)
