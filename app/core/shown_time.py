"""When to say a received event was written, whatever its author's clock said (sans-I/O).

An event carries its author's wall clock (`Event.wall_time`), which may be minutes,
hours or years off. The history's order never depends on it (Lamport time, then CID);
only the time shown beside a message does. That time is the author's, bounded by what
we know for sure (decision 0020):

* not after we received the event: a message "from the future" (its author's clock
  runs ahead) shows when it arrived, so it neither reads as written tomorrow nor sorts
  a conversation or a contact list by a time that has not come;
* not before any event it builds on (its ancestors): its author held them when writing,
  so it was written after them; a reply from a contact whose clock runs behind shows no
  earlier than the message it answers, nor do the messages it writes after the reply.

Delay is not skew: a message delivered late (through a mailbox, or synced when a
contact comes back) keeps its author's earlier time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from app.core.cid import Cid
from app.core.ledger_event import Event


def shown_time_ms(author_ms: int, parents_ms: Iterable[int], received_ms: int) -> int:
    """The time (ms since the epoch) to show for an event its author dated `author_ms`,
    whose parents are dated `parents_ms`, and which we received at `received_ms`."""
    floor = max(parents_ms, default=author_ms)
    return min(max(author_ms, floor), received_ms)


def latest_written(cid: Cid, event_of: Callable[[Cid], Event | None], memo: dict[Cid, int]) -> int:
    """The latest author time (ms) among event `cid` and all its ancestors; 0 if it is not
    held. `memo` keeps the answers (one int per event held), so each event is looked at
    once however long the history."""
    stack = [cid]
    while stack:
        top = stack[-1]
        event = None if top in memo else event_of(top)
        if event is None:  # known already, or not held (contributes nothing)
            stack.pop()
            continue
        pending = [p for p in event.parents if p not in memo and event_of(p) is not None]
        if pending:
            stack.extend(pending)
            continue
        memo[top] = max([event.wall_time, *(memo.get(p, 0) for p in event.parents)])
        stack.pop()
    return memo.get(cid, 0)
