"""Want-list: parallel requests, tampering peers, timeouts, resume from held blocks."""

from __future__ import annotations

from collections.abc import Set as AbstractSet

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.core.errors import LocalProtocolError
from app.core.transfer import (
    BlockAccepted,
    BlockRequest,
    BlockUnavailable,
    PeerBanned,
    PeerLacksFile,
    RequestTimedOut,
    TransferComplete,
    WantEvent,
    WantList,
)
from app.core.unixfs import raw_cid

BLOCKS = {raw_cid(bytes([i]) * 100): bytes([i]) * 100 for i in range(10)}
CIDS = list(BLOCKS)


def drain(wl: WantList) -> list[WantEvent]:
    events = []
    while (event := wl.next_event()) is not None:
        events.append(event)
    return events


def serve(
    wl: WantList, requests: list[BlockRequest], now: float, bad: AbstractSet[str] = frozenset()
) -> None:
    for req in requests:
        data = BLOCKS[req.cid]
        wl.receive_block(req.peer, req.cid, b"evil" + data if req.peer in bad else data, now)


def test_several_in_flight_spread_over_peers() -> None:
    wl = WantList(max_in_flight=6, max_per_peer=3)
    wl.want(CIDS)
    for peer in ("a", "b", "c"):
        wl.add_peer(peer)
    reqs = wl.requests_to_send(now=0.0)
    assert len(reqs) == 6
    assert [r.cid for r in reqs] == CIDS[:6]  # file order
    assert {r.peer for r in reqs} == {"a", "b", "c"}
    assert all(sum(r.peer == p for r in reqs) == 2 for p in "abc")
    assert wl.requests_to_send(now=0.0) == []  # limit reached
    serve(wl, reqs, now=1.0)
    assert [type(e) for e in drain(wl)] == [BlockAccepted] * 6
    reqs = wl.requests_to_send(now=1.0)
    assert [r.cid for r in reqs] == CIDS[6:]
    serve(wl, reqs, now=2.0)
    events = drain(wl)
    assert isinstance(events[-1], TransferComplete) and wl.is_complete
    assert wl.held == set(CIDS)


def test_tampered_block_bans_peer_and_refetches_elsewhere() -> None:
    wl = WantList(max_in_flight=10, max_per_peer=10)
    wl.want(CIDS[:4])
    wl.add_peer("evil")
    wl.add_peer("good")
    reqs = wl.requests_to_send(now=0.0)
    assert {r.peer for r in reqs} == {"evil", "good"}
    serve(wl, reqs, now=0.5, bad={"evil"})
    events = drain(wl)
    banned = [e for e in events if isinstance(e, PeerBanned)]
    assert len(banned) == 1 and banned[0].peer == "evil"
    assert wl.banned_peers == {"evil"}
    accepted = [e for e in events if isinstance(e, BlockAccepted)]
    assert all(e.peer == "good" and BLOCKS[e.cid] == e.data for e in accepted)
    # Everything the banned peer held is re-asked of the good peer only.
    retry = wl.requests_to_send(now=1.0)
    assert retry and all(r.peer == "good" for r in retry)
    serve(wl, retry, now=1.5)
    assert isinstance(drain(wl)[-1], TransferComplete)
    wl.add_peer("evil")  # a banned peer cannot come back
    assert "evil" not in {r.peer for r in wl.requests_to_send(now=2.0)}


def test_late_block_from_banned_peer_ignored() -> None:
    wl = WantList()
    wl.want(CIDS[:2])
    wl.add_peer("evil")
    first, second = wl.requests_to_send(now=0.0)
    wl.receive_block("evil", first.cid, b"bad", now=0.1)
    wl.receive_block("evil", second.cid, BLOCKS[second.cid], now=0.2)
    assert second.cid not in wl.held
    assert [type(e) for e in drain(wl)] == [PeerBanned]


def test_unsolicited_block_ignored() -> None:
    wl = WantList()
    wl.want(CIDS[:1])
    wl.add_peer("a")
    wl.receive_block("b", CIDS[0], BLOCKS[CIDS[0]], now=0.0)
    assert drain(wl) == [] and CIDS[0] not in wl.held


def test_timeout_reassigns_to_another_peer() -> None:
    wl = WantList(timeout=5.0)
    wl.want(CIDS[:1])
    wl.add_peer("slow")
    (req,) = wl.requests_to_send(now=0.0)
    assert wl.get_timer() == 5.0
    wl.add_peer("fast")
    wl.handle_timer(now=4.9)
    assert drain(wl) == []
    wl.handle_timer(now=5.0)
    assert drain(wl) == [RequestTimedOut(req.peer, req.cid)]
    (again,) = wl.requests_to_send(now=5.0)
    assert again.peer != req.peer
    # The slow peer's answer still counts if it arrives first (it was asked, data verifies).
    wl.receive_block(req.peer, req.cid, BLOCKS[req.cid], now=6.0)
    assert isinstance(drain(wl)[0], BlockAccepted) and wl.is_complete
    assert wl.get_timer() is None


def test_all_peers_exhausted_then_new_peer() -> None:
    wl = WantList(timeout=1.0)
    wl.want(CIDS[:1])
    wl.add_peer("a")
    wl.requests_to_send(now=0.0)
    wl.peer_lacks("a", CIDS[0], now=0.5)
    assert wl.requests_to_send(now=0.5) == []
    assert drain(wl) == [BlockUnavailable(CIDS[0])]
    assert wl.requests_to_send(now=0.6) == [] and drain(wl) == []  # reported once
    wl.retry_unavailable()
    assert wl.requests_to_send(now=0.7) == [BlockRequest("a", CIDS[0])]
    wl.peer_lacks("a", CIDS[0], now=0.8)
    wl.add_peer("b")
    assert wl.requests_to_send(now=0.9) == [BlockRequest("b", CIDS[0])]


def test_remove_peer_requeues() -> None:
    wl = WantList()
    wl.want(CIDS[:3])
    wl.add_peer("a")
    assert len(wl.requests_to_send(now=0.0)) == 3
    wl.remove_peer("a")
    assert wl.in_flight == {} and set(wl.needed) == set(CIDS[:3])
    wl.add_peer("b")
    assert {r.peer for r in wl.requests_to_send(now=1.0)} == {"b"}


def test_resume_from_held_set() -> None:
    wl = WantList(held=set(CIDS[:7]))
    wl.want(CIDS)
    assert wl.needed == tuple(CIDS[7:])
    wl.add_peer("a")
    reqs = wl.requests_to_send(now=0.0)
    assert [r.cid for r in reqs] == CIDS[7:]
    serve(wl, reqs, now=0.1)
    assert isinstance(drain(wl)[-1], TransferComplete)


def test_limits_validated() -> None:
    with pytest.raises(LocalProtocolError):
        WantList(max_in_flight=0)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.sampled_from(["good1", "good2", "evil", "silent"]), min_size=1, max_size=4),
    st.integers(min_value=1, max_value=5),
    st.integers(min_value=1, max_value=3),
)
def test_always_completes_with_an_honest_peer(peers: list[str], in_flight: int, per: int) -> None:
    wl = WantList(max_in_flight=in_flight, max_per_peer=per, timeout=1.0)
    wl.want(CIDS)
    for peer in [*peers, "good1"]:
        wl.add_peer(peer)
    now = 0.0
    for _ in range(200):
        reqs = wl.requests_to_send(now)
        serve(wl, [r for r in reqs if r.peer != "silent"], now, bad={"evil"})
        now += 0.6
        wl.handle_timer(now)
        wl.retry_unavailable()
        if wl.is_complete:
            break
    assert wl.is_complete and wl.held == set(CIDS)
    assert "good1" not in wl.banned_peers and "good2" not in wl.banned_peers


MANY = {raw_cid(i.to_bytes(2, "big") * 50): i.to_bytes(2, "big") * 50 for i in range(200)}


def test_a_peer_that_lacks_the_file_is_not_asked_for_every_block() -> None:
    """A contact that was never sent the file declines each block; after
    `lacks_file_after` of them, with none delivered, it is not asked for the rest."""
    wl = WantList(max_in_flight=8, max_per_peer=8, lacks_file_after=5)
    wl.want(MANY)
    wl.add_peer("stranger")
    asked = 0
    now = 0.0
    while reqs := wl.requests_to_send(now):
        for req in reqs:
            asked += 1
            wl.peer_lacks(req.peer, req.cid, now)
        now += 0.1
    assert asked == 8  # the first window's answers, not one per block (200)
    assert PeerLacksFile("stranger") in drain(wl)
    assert len(wl.needed) == len(MANY) and not wl.in_flight
    wl.add_peer("stranger")  # connected again: it may hold the file now
    assert wl.requests_to_send(now)


def test_a_peer_that_delivered_is_kept_when_it_lacks_many_blocks() -> None:
    """A partial holder (it served some blocks) is still asked for every block."""
    wl = WantList(max_in_flight=1, max_per_peer=1, lacks_file_after=3)
    cids = list(MANY)
    wl.want(cids)
    wl.add_peer("partial")
    [first] = wl.requests_to_send(0.0)
    wl.receive_block("partial", first.cid, MANY[first.cid], 0.0)
    declined = 0
    while reqs := wl.requests_to_send(1.0):
        for req in reqs:
            declined += 1
            wl.peer_lacks(req.peer, req.cid, 1.0)
    assert declined == len(cids) - 1
    assert not any(isinstance(e, PeerLacksFile) for e in drain(wl))


def test_the_holder_is_asked_for_what_a_peer_without_the_file_was_asked() -> None:
    wl = WantList(max_in_flight=4, max_per_peer=2, lacks_file_after=2)
    cids = list(MANY)[:20]
    wl.want(cids)
    wl.add_peer("holder")
    wl.add_peer("stranger")
    held: set[bytes] = set()
    now = 0.0
    while not wl.is_complete:
        reqs = wl.requests_to_send(now)
        assert reqs
        for req in reqs:
            if req.peer == "stranger":
                wl.peer_lacks(req.peer, req.cid, now)
            else:
                wl.receive_block(req.peer, req.cid, MANY[req.cid], now)
                held.add(req.cid)
        now += 0.1
    assert held == set(cids)
    assert PeerLacksFile("stranger") in drain(wl)
