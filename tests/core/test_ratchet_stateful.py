"""Interaction fuzzer in the manner of libsignal's: two parties, a hostile network.

Hypothesis drives random sends both ways, deliveries in any order, drops, duplicates,
tampering, forced ratchet steps and restarts (state serialized to bytes and reloaded).
Invariants: every delivered message decrypts exactly once to what was sent; duplicates and
tampered messages are refused and leave the receiver's state byte-for-byte unchanged.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from app.core import session
from app.core.e2e_errors import DuplicateMessage
from app.core.errors import DecryptionFailed
from app.core.identity import IdentityKeys
from app.core.prekeys import PrekeyStore
from app.core.ratchet import MAX_SKIPPED_CHAINS, MAX_SKIPPED_KEYS, parse_header
from app.core.session import Session

NOW = 1_800_000_000.0
ALICE, BOB = "alice", "bob"
PARTIES = st.sampled_from([ALICE, BOB])
INDEX = st.integers(min_value=0, max_value=2**16)


@dataclass(frozen=True)
class InFlight:
    """A message on the wire: who gets it, its bytes and what it must decrypt to."""

    recipient: str
    wire: bytes
    plaintext: bytes


class Conversation(RuleBasedStateMachine):
    """Alice (initiator) and Bob (responder, created by Alice's first message)."""

    def __init__(self) -> None:
        super().__init__()
        # A setup stream distinct from every per-example stream seeded below.
        self.rand = random.Random("setup").randbytes
        self.alice_keys = IdentityKeys.from_seeds(b"\x01" * 32, b"\x02" * 32)
        self.bob_keys = IdentityKeys.from_seeds(b"\x03" * 32, b"\x04" * 32)
        self.store = PrekeyStore.create(NOW, self.rand, one_time_target=2)
        self.alice = session.initiate(
            self.alice_keys, self.store.bundle(self.bob_keys), NOW, self.rand
        )
        self.bob: Session | None = None
        self.in_flight: list[InFlight] = []
        self.delivered: list[InFlight] = []
        self.counter = 0

    @initialize(seed=st.integers(min_value=0, max_value=2**32))
    def seed(self, seed: int) -> None:
        self.rand = random.Random(seed).randbytes

    # --- helpers ---------------------------------------------------------------------

    def _snapshot(self, recipient: str) -> bytes:
        if recipient == ALICE:
            return self.alice.to_bytes()
        return self.bob.to_bytes() if self.bob else self.store.to_bytes()

    def _receive(self, message: InFlight, wire: bytes) -> bytes:
        """Decrypt `wire` at its recipient, committing the new state only on success."""
        if message.recipient == ALICE:
            self.alice, plaintext = session.decrypt(self.alice, wire)
        elif self.bob is None:
            self.store, self.bob, plaintext = session.accept(self.bob_keys, self.store, wire)
        else:
            self.bob, plaintext = session.decrypt(self.bob, wire)
        return plaintext

    def _key_may_have_been_evicted(self, message: InFlight) -> bool:
        """A late message may only be lost if at least MAX_SKIPPED_CHAINS newer receiving
        chains came after its chain (the eviction bound), never otherwise."""
        receiver = self.alice if message.recipient == ALICE else self.bob
        assert receiver is not None
        state = receiver.ratchet
        chains = [*state.retired_remote_keys, state.remote_dh]
        remote = parse_header(message.wire[self._prefix(message) :])[1]
        if remote not in chains:
            return False
        return len(chains) - 1 - chains.index(remote) >= MAX_SKIPPED_CHAINS

    @staticmethod
    def _prefix(message: InFlight) -> int:
        return 1 + (170 if message.wire[0] == session.KIND_INITIAL else 0)

    # --- rules -----------------------------------------------------------------------

    @rule(sender=PARTIES, count=st.integers(min_value=1, max_value=4), size=st.integers(0, 64))
    def send(self, sender: str, count: int, size: int) -> None:
        for _ in range(count):
            self.counter += 1
            plaintext = f"{sender}#{self.counter}:".encode() + b"x" * size
            if sender == ALICE:
                self.alice, wire = session.encrypt(self.alice, plaintext, self.rand)
                self.in_flight.append(InFlight(BOB, wire, plaintext))
            elif self.bob is not None:
                self.bob, wire = session.encrypt(self.bob, plaintext, self.rand)
                self.in_flight.append(InFlight(ALICE, wire, plaintext))

    @precondition(lambda self: self.in_flight)
    @rule(index=INDEX, lost=st.integers(min_value=0, max_value=7))
    def deliver(self, index: int, lost: int) -> None:
        """Deliver any queued message (reordering); one in eight is dropped instead."""
        message = self.in_flight.pop(index % len(self.in_flight))
        if lost == 0:
            return
        before = self._snapshot(message.recipient)
        try:
            plaintext = self._receive(message, message.wire)
        except DuplicateMessage:
            assert self._key_may_have_been_evicted(message)
            assert self._snapshot(message.recipient) == before
            return
        assert plaintext == message.plaintext
        self.delivered.append(message)
        self._expect_refused(message)  # an immediate duplicate

    def _expect_refused(self, message: InFlight, wire: bytes | None = None) -> None:
        before = self._snapshot(message.recipient)
        try:
            self._receive(message, message.wire if wire is None else wire)
        except DecryptionFailed:
            assert self._snapshot(message.recipient) == before
        else:
            raise AssertionError("a replayed or tampered message was accepted")

    @precondition(lambda self: self.delivered)
    @rule(index=INDEX)
    def replay(self, index: int) -> None:
        self._expect_refused(self.delivered[index % len(self.delivered)])

    @precondition(lambda self: self.in_flight)
    @rule(index=INDEX, bit=st.integers(min_value=0, max_value=2**20))
    def tamper(self, index: int, bit: int) -> None:
        message = self.in_flight[index % len(self.in_flight)]  # the original stays queued
        forged = bytearray(message.wire)
        position = bit % (len(forged) * 8)
        forged[position // 8] ^= 1 << (position % 8)
        self._expect_refused(message, bytes(forged))

    @rule(party=PARTIES, force=st.booleans())
    def restart_or_rotate(self, party: str, force: bool) -> None:
        """Reload a party from its serialized state, or ask for a DH ratchet step."""
        if party == ALICE:
            changed = Session.from_bytes(self.alice.to_bytes())
            self.alice = session.force_ratchet(changed) if force else changed
        else:
            self.store = PrekeyStore.from_bytes(self.store.to_bytes())
            if self.bob is not None:
                changed = Session.from_bytes(self.bob.to_bytes())
                self.bob = session.force_ratchet(changed) if force else changed

    # --- invariants ------------------------------------------------------------------

    @invariant()
    def bounded(self) -> None:
        for party in (self.alice, self.bob):
            if party is not None:
                assert party.ratchet.skipped_key_count <= MAX_SKIPPED_KEYS

    def teardown(self) -> None:
        # Whatever is still in flight must open now, each exactly once.
        for message in list(self.in_flight):
            self.in_flight.remove(message)
            try:
                plaintext = self._receive(message, message.wire)
            except DuplicateMessage:
                assert self._key_may_have_been_evicted(message)
                continue
            assert plaintext == message.plaintext


Conversation.TestCase.settings = settings(
    max_examples=60,
    stateful_step_count=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestConversation = Conversation.TestCase
