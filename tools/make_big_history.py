"""Make a pair of profiles with a year of history: Alice and Bob, plus Alice's other contacts.

    .venv/bin/python tools/make_big_history.py OUT_DIR [--big 100000] [--small 30]
        [--small-min 1000] [--small-max 3000] [--seed 1]

Makes ``OUT_DIR/alice`` and ``OUT_DIR/bob`` (no passphrase: the data key sits in the
profile's key file, as ``init --no-passphrase`` leaves it), each the other's contact, with
``--big`` messages between them, both ways, and ``--small`` more contacts of Alice's with
``--small-min``..``--small-max`` messages each (those contacts have no profile: they are
never online). Everything goes through the node's own code: `create_profile`, the core
`Ledger` (every event really signed by its author, in a DAG shaped as real use shapes it:
runs of messages by one side, and now and then both sides writing at once, which forks
the history until the next message merges it), and the storage repositories the messenger
stores with (`history.add_many`, `messages.add_many_if_absent` with the history order).
Outgoing messages are stored read by the contact, incoming ones received and read, as
a year of real use leaves them. ``scrambled-eggs history verify CONTACT`` verifies the result.

The text, the shape of every conversation and the times depend only on ``--seed``; the
identities are fresh each run (`create_profile` draws them). Prints one JSON summary.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.core.identity import IdentityKeys  # noqa: E402
from app.core.ledger import Ledger  # noqa: E402
from app.core.ledger_event import Event, EventBody  # noqa: E402
from app.node.api import Message, MessageStatus  # noqa: E402
from app.node.profile import create_profile, open_store  # noqa: E402
from app.node.storage.repositories import ContactRecord  # noqa: E402
from app.node.storage.store import ProfileStore  # noqa: E402

_WORDS_TEXT = (
    "the a to and of you it is that in we for on this be are have was not with what "
    "can just so but at do they will if me my your get all about like from there now "
    "one up out when time how know think see good go well yes no okay tomorrow today "
    "tonight dinner meeting train coffee lunch weekend photo file call later soon "
    "back home work late early thanks sorry great sounds perfect maybe sure love miss "
    "busy free again"
)
WORDS = _WORDS_TEXT.split()
NEEDLE = "zebracrossing"
"""A word in about one message in a thousand: something to search for."""
YEAR_MS = 365 * 24 * 3600 * 1000
CHUNK = 5000
"""Rows per transaction while storing."""


def text_of(rng: random.Random, index: int) -> str:
    """A message of 1 to ~40 words (mostly short, as chat is)."""
    count = min(40, 1 + int(rng.expovariate(1 / 7)))
    words = [rng.choice(WORDS) for _ in range(count)]
    if rng.random() < 0.001:
        words.insert(rng.randrange(len(words) + 1), NEEDLE)
    if index % 97 == 0:
        words.append(f"#{index}")
    return " ".join(words)


def conversation(
    ours: IdentityKeys, theirs: IdentityKeys, count: int, rng: random.Random, start_ms: int
) -> Iterator[tuple[Event, bytes, bool]]:
    """`count` text events between two members, each as (event, signed bytes, ours?).

    Both sides keep their own ledger and receive each other's events, as two nodes do:
    runs of 1-6 messages by one side, and in 3% of the turns both write at once."""
    mine = Ledger(ours.public.signing_key, theirs.public.signing_key)
    other = Ledger(theirs.public.signing_key, ours.public.signing_key)
    step = max(1, YEAR_MS * 9 // 10 // max(1, count))  # on average: all in the past
    now, made = start_ms, 0

    def write(ledger: Ledger, keys: IdentityKeys) -> Event:
        nonlocal now, made
        now += rng.randrange(1, 2 * step)
        msg_id = rng.randbytes(16).hex()
        body = EventBody.of("text", id=msg_id, text=text_of(rng, made))
        made += 1
        return ledger.append(keys, body, now)

    while made < count:
        if rng.random() < 0.03 and made + 2 <= count:  # both write before seeing the other
            a, b = write(mine, ours), write(other, theirs)
            other.receive(a.to_bytes())
            mine.receive(b.to_bytes())
            yield a, a.to_bytes(), True
            yield b, b.to_bytes(), False
            continue
        we_write = rng.random() < 0.5
        for _ in range(min(count - made, rng.randint(1, 6))):
            if we_write:
                event = write(mine, ours)
                other.receive(event.to_bytes())
            else:
                event = write(other, theirs)
                mine.receive(event.to_bytes())
            yield event, event.to_bytes(), we_write


def order_key(event: Event) -> tuple[int, str]:
    """A message's place in the history order, as the messenger stores it."""
    return event.lamport, event.cid.raw.hex()


def store_conversation(
    stores: list[tuple[ProfileStore, str, bool]],
    events: Iterator[tuple[Event, bytes, bool]],
) -> int:
    """Store the events and their messages in each (store, contact address, mirrored?)
    profile; `mirrored` stores the conversation from the other member's side."""
    total = 0
    batch: list[tuple[Event, bytes, bool]] = []

    def flush() -> None:
        for store, address, mirrored in stores:
            rows = [(str(e.cid), raw) for e, raw, _ in batch]
            messages = []
            for event, _, ours in batch:
                outgoing = ours != mirrored
                messages.append(
                    Message(
                        id=str(event.body.get("id")),
                        contact=address,
                        sender=store.identity.public.address if outgoing else address,
                        outgoing=outgoing,
                        text=str(event.body.get("text")),
                        time=event.wall_time / 1000.0,
                        status=MessageStatus.READ if outgoing else MessageStatus.RECEIVED,
                    )
                )
            order = {m.id: order_key(e) for m, (e, _, _) in zip(messages, batch, strict=True)}
            store.atomically(
                lambda s=store, a=address, r=rows: s.history.add_many(a, r),
                lambda s=store, m=messages, o=order: s.messages.add_many_if_absent(m, o),
            )
        batch.clear()

    for item in events:
        batch.append(item)
        total += 1
        if len(batch) >= CHUNK:
            flush()
    if batch:
        flush()
    for store, address, _ in stores:
        store.messages.mark_seen(address)
    return total


def record_of(keys: IdentityKeys, name: str) -> ContactRecord:
    public = keys.public
    return ContactRecord(public.address, name, public.signing_key, public.dh_key, (), False)


def make(out: Path, big: int, small: int, small_min: int, small_max: int, seed: int) -> dict:
    """Make both profiles under `out`; return a summary."""
    rng = random.Random(seed)
    t0 = time.perf_counter()
    create_profile(out / "alice", "Alice", None)
    create_profile(out / "bob", "Bob", None)
    alice = open_store(out / "alice", None)
    bob = open_store(out / "bob", None)
    try:
        now = int(time.time())
        start_ms = now * 1000 - YEAR_MS
        alice.contacts.add(record_of(bob.identity, "Bob"), now)
        bob.contacts.add(record_of(alice.identity, "Alice"), now)
        bob_address = bob.identity.public.address
        alice_address = alice.identity.public.address
        counts = {
            "Bob": store_conversation(
                [(alice, bob_address, False), (bob, alice_address, True)],
                conversation(alice.identity, bob.identity, big, rng, start_ms),
            )
        }
        for index in range(small):
            keys = IdentityKeys.from_seeds(rng.randbytes(32), rng.randbytes(32))
            name = f"Friend {index + 1:02d}"
            alice.contacts.add(record_of(keys, name), now)
            count = rng.randint(small_min, small_max)
            counts[name] = store_conversation(
                [(alice, keys.public.address, False)],
                conversation(alice.identity, keys, count, rng, start_ms),
            )
    finally:
        alice.close()
        bob.close()
    return {
        "alice": str(out / "alice"),
        "bob": str(out / "bob"),
        "messages": counts,
        "total_messages_alice": sum(counts.values()),
        "needle": NEEDLE,
        "seconds": round(time.perf_counter() - t0, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--big", type=int, default=100_000)
    parser.add_argument("--small", type=int, default=30)
    parser.add_argument("--small-min", type=int, default=1000)
    parser.add_argument("--small-max", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    summary = make(args.out, args.big, args.small, args.small_min, args.small_max, args.seed)
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
