"""A population of simulated peers (benign and attacking) seen by one node.

Every peer produces, second by second, counts of the `app.core.peer_features.Signal`
values a real node would record for it. The counts go through the SAME
`PeerFeatures` code the node runs, so the rows used for training and benchmarking are
the rows the node computes.

Benign peers are heavy-tailed (log-normal rates, on/off activity, rare bulk transfers,
flaky links that reconnect often, rare honest failures: a session reset after a restored
backup, a stale DHT record, a timed-out handshake). Two kinds, as the node keys them:
``transport`` peers (contacts and strangers on connections) and ``dht`` peers
(senders of DHT RPCs, keyed by address).

Attacks (`ATTACKS`): floods, replays, invalid signatures, decryption-failure bursts,
DHT store floods, Sybil churn, and low-and-slow variants of each at 2x, 5x and 10x the
benign reference rate of their signal (`REFERENCE`, roughly the 99th percentile of an
active honest peer). A compromised contact behaves honestly first and turns at a random
instant; a stranger or Sybil attacks from its first second.

Usage: ``python -m tools.anomaly.simulator`` prints a summary of one small population.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from app.core.peer_features import N_SIGNALS, FeatureRow, PeerFeatures, Signal
from app.core.prompt_scoring import PromptScoring

S = Signal

REFERENCE: dict[Signal, float] = {
    S.FRAME: 2.0,
    S.DECRYPT_FAILED: 0.02,
    S.MALFORMED: 0.02,
    S.INVALID_SIGNATURE: 0.01,
    S.REPLAY: 0.01,
    S.DHT_REQUEST: 0.5,
    S.DHT_STORE: 0.05,
    S.CONNECT: 0.02,
}
"""Benign reference rates (events/s): a busy honest peer's level; low-and-slow attacks
run at 2x, 5x and 10x these."""


Event = tuple[Signal, ...]
"""What one attacking act makes the node count: a replayed payload is a FRAME *and* a
REPLAY, an invalid record a DHT_STORE, an INVALID_SIGNATURE and a RECORD_REJECTED."""


@dataclass(frozen=True)
class AttackSpec:
    """One attack: which peer kind, which acts (`events`) at which rates (acts/s)."""

    name: str
    kind: str
    events: dict[Event, float]
    strong: bool
    """Strong attacks (floods, replays, invalid signatures) have stricter targets."""
    sybil: bool = False

    @property
    def rates(self) -> dict[Signal, float]:
        """Each signal's rate (events/s) over all acts."""
        out: dict[Signal, float] = {}
        for event, rate in self.events.items():
            for signal in event:
                out[signal] = out.get(signal, 0.0) + rate
        return out


def _scaled(base: dict[Event, float], factor: float) -> dict[Event, float]:
    return {e: r * factor for e, r in base.items()}


# Every failure an attacker causes arrives as a payload or a store, as on the node (a
# replayed ciphertext is counted as a FRAME and, once the messenger rejects it, a REPLAY)
_FLOOD = {(S.FRAME, S.MALFORMED): 150.0, (S.FRAME, S.DECRYPT_FAILED): 40.0, (S.FRAME,): 10.0}
_DHT_FLOOD = {(S.DHT_REQUEST,): 150.0}
_REPLAY = {(S.FRAME, S.REPLAY): 5.0}
_INVALID_SIG = {(S.DHT_STORE, S.INVALID_SIGNATURE, S.RECORD_REJECTED): 2.0}
_DECRYPT_BURST = {(S.FRAME, S.DECRYPT_FAILED): 10.0}
_STORE_FLOOD = {(S.DHT_STORE, S.RECORD_REJECTED): 10.0, (S.DHT_STORE,): 30.0}
_SYBIL = {(S.CONNECT,): 0.5, (S.DISCONNECT,): 0.5, (S.HANDSHAKE_FAILED,): 0.3, (S.FRAME,): 1.0}

ATTACKS: list[AttackSpec] = [
    AttackSpec("flood", "transport", _FLOOD, True),
    AttackSpec("dht_flood", "dht", _DHT_FLOOD, True),
    AttackSpec("replay", "transport", _REPLAY, True),
    AttackSpec("invalid_signature", "dht", _INVALID_SIG, True),
    AttackSpec("decrypt_burst", "transport", _DECRYPT_BURST, False),
    AttackSpec("store_flood", "dht", _STORE_FLOOD, False),
    AttackSpec("sybil_churn", "transport", _SYBIL, False, sybil=True),
]
_REF = REFERENCE
_LOW_AND_SLOW: dict[str, tuple[str, dict[Event, float]]] = {
    "flood": (
        "transport",
        {(S.FRAME, S.MALFORMED): _REF[S.FRAME] * 0.75, (S.FRAME,): _REF[S.FRAME] * 0.25},
    ),
    "dht_flood": ("dht", {(S.DHT_REQUEST,): _REF[S.DHT_REQUEST]}),
    "replay": ("transport", {(S.FRAME, S.REPLAY): _REF[S.REPLAY]}),
    "invalid_signature": (
        "dht",
        {(S.DHT_STORE, S.INVALID_SIGNATURE, S.RECORD_REJECTED): _REF[S.INVALID_SIGNATURE]},
    ),
    "decrypt_burst": ("transport", {(S.FRAME, S.DECRYPT_FAILED): _REF[S.DECRYPT_FAILED]}),
    "store_flood": ("dht", {(S.DHT_STORE,): _REF[S.DHT_STORE]}),
    "sybil_churn": (
        "transport",
        {
            (S.CONNECT,): _REF[S.CONNECT],
            (S.DISCONNECT,): _REF[S.CONNECT],
            (S.HANDSHAKE_FAILED,): _REF[S.CONNECT] / 2,
        },
    ),
}
for _name, (_kind, _base) in _LOW_AND_SLOW.items():
    for _factor in (2, 5, 10):
        ATTACKS.append(
            AttackSpec(
                f"{_name}_slow{_factor}x",
                _kind,
                _scaled(_base, _factor),
                False,
                sybil=_name == "sybil_churn",
            )
        )
ATTACK_NAMES = [a.name for a in ATTACKS]


@dataclass
class PeerTrace:
    """A peer's per-second signal counts over the simulation (`counts[t, signal]`)."""

    peer: str
    kind: str
    attack: str | None
    start: int
    """First second the peer exists."""
    attack_start: int | None
    counts: np.ndarray
    first_evidence: int | None = None
    """First second (from `start`) with an attacking act in it: the earliest instant any
    detector can have seen the attack (None: as `attack_start`)."""


JOINING = 0.5
"""Share of honest DHT senders first seen as they join the network."""
RESTARTING = 0.1
"""Share of honest DHT senders whose node is started again and again within a minute or
two (a user retrying, a laptop put to sleep and woken): each start is a join burst."""


def restart_bursts(rng: np.random.Generator, c: np.ndarray) -> None:
    """Add 2-7 starts of one node, 3-20 s apart, at a random instant of `c`'s span.

    Each start as measured on real daemons (a contact's node restarted five times in
    45 s, LAN discovery on): it looks itself up and publishes its records through us
    (about 11 requests and 4 stores within its first second), and its LAN discovery
    joins through us again a second later (2 requests)."""
    duration = c.shape[0]
    at = int(rng.integers(0, duration))
    for _ in range(int(rng.integers(2, 8))):
        if at >= duration:
            return
        c[at, S.DHT_REQUEST] += 8 + rng.poisson(3)
        c[at, S.DHT_STORE] += 2 + rng.poisson(2)
        if at + 1 < duration and rng.random() < 0.7:
            c[at + 1, S.DHT_REQUEST] += 2
        at += int(rng.integers(3, 21))


def benign_counts(
    rng: np.random.Generator, kind: str, duration: int, restarting: float = RESTARTING
) -> np.ndarray:
    """Heavy-tailed honest behaviour of one peer for `duration` seconds (a DHT sender is
    restarted again and again with probability `restarting`)."""
    c = np.zeros((duration, N_SIGNALS), dtype=np.float64)
    t = np.arange(duration)
    if kind == "transport":
        rate = float(np.clip(rng.lognormal(math.log(0.03), 1.3), 0.0005, 3.0))
        # on/off activity: sessions of chatting
        active = np.zeros(duration, dtype=bool)
        cursor = int(rng.exponential(300))
        while cursor < duration:
            length = int(rng.lognormal(math.log(120), 1.0)) + 1
            active[cursor : cursor + length] = True
            cursor += length + int(rng.exponential(600))
        lam = np.where(active, rate * 4, rate * 0.1)
        msgs = rng.poisson(lam)
        frames = msgs + rng.poisson(lam * 0.5)  # typing and receipts ride along
        # rare bulk file transfer: 20-150 frames/s of ~64 KiB for 5-60 s
        bulk_bytes = np.zeros(duration)
        if rng.random() < 0.15:
            for _ in range(rng.integers(1, 4)):
                at, length = int(rng.integers(0, duration)), int(rng.integers(5, 60))
                burst = rng.poisson(rng.uniform(20, 150), size=len(t[at : at + length]))
                frames[at : at + length] += burst
                msgs[at : at + length] += burst
                bulk_bytes[at : at + length] += burst * 65536
        size = rng.lognormal(math.log(600), 0.8, size=duration)
        c[:, S.FRAME] = frames
        c[:, S.MESSAGE_OK] = frames
        c[:, S.BYTES] = frames * size + bulk_bytes
        # honest failures: a diverged session (restored backup) or a stray duplicate
        if rng.random() < 0.02:
            at = int(rng.integers(0, duration))
            n = int(rng.integers(1, 6))
            c[at : at + n, S.DECRYPT_FAILED] += 1
            c[at : at + n, S.FRAME] += 1
        c[:, S.REPLAY] += rng.poisson(1e-6, size=duration)
        c[:, S.MALFORMED] += rng.poisson(2e-6, size=duration)
        # connection churn: a few reconnects an hour, flaky links many more
        churn = rng.lognormal(math.log(1 / 1800), 1.2)
        churn = min(churn, 1 / 45)
        events = rng.poisson(churn, size=duration)
        c[:, S.DISCONNECT] = events
        c[:, S.CONNECT] = np.roll(events, int(rng.integers(1, 10)))
        c[:, S.HANDSHAKE_FAILED] = rng.binomial(c[:, S.CONNECT].astype(int), 0.03)
        c[0, S.CONNECT] += 1
    else:
        # a lookup asks each node it meets once or twice, so one remote node's requests
        # come in small bursts; a busy node (or a relay) looks up every few seconds
        rate = float(np.clip(rng.lognormal(math.log(0.005), 1.3), 0.0002, 0.15))
        lookups = np.zeros(duration)
        cursor = int(rng.exponential(60))
        while cursor < duration:
            lookups[cursor] += 1 + rng.poisson(0.7)
            cursor += int(rng.exponential(1 / rate)) + 1
        c[:, S.DHT_REQUEST] = lookups + rng.poisson(1 / 300, size=duration)  # pings
        # republishing: a handful of records every 10 minutes (a relay: dozens)
        records = 1 + rng.poisson(1.5) + (rng.poisson(30) if rng.random() < 0.03 else 0)
        if rng.random() < JOINING:
            # first seen as it joins: it looks itself up through us (a few requests)
            # and publishes its records at once, and again when the join brought it new
            # neighbours (`NetworkStack.join_via`): seen on the node as 7 requests and
            # 4 stores within a second of a new contact's first contact
            span = min(duration, 3)
            for _ in range(2 + rng.poisson(4)):
                c[rng.integers(0, span), S.DHT_REQUEST] += 1
            for _ in range(records * (1 + int(rng.random() < 0.6))):
                c[rng.integers(0, span), S.DHT_STORE] += 1
        if rng.random() < restarting:
            restart_bursts(rng, c)
        phase = int(rng.integers(0, 600))
        for at in range(phase, duration, 600):
            spread = rng.integers(0, 20, size=records)
            for dt in spread:
                if at + dt < duration:
                    c[at + dt, S.DHT_STORE] += 1
        stale = rng.binomial(c[:, S.DHT_STORE].astype(int), 0.02)
        c[:, S.RECORD_REJECTED] = stale
        c[:, S.INVALID_SIGNATURE] = rng.poisson(2e-6, size=duration)
        c[:, S.RECORD_REJECTED] += c[:, S.INVALID_SIGNATURE]
        c[:, S.MALFORMED] = rng.poisson(5e-6, size=duration)
    return c


def attack_counts(
    rng: np.random.Generator, spec: AttackSpec, duration: int, start: int
) -> np.ndarray:
    """The attack's counts from `start` on, with bursty (gamma-mixed) Poisson rates of
    each act (an act adds one to each of its signals)."""
    c = np.zeros((duration, N_SIGNALS), dtype=np.float64)
    n = duration - start
    if n <= 0:
        return c
    intensity = rng.gamma(4.0, 0.25, size=n)  # mean 1, varies second to second
    for event, rate in spec.events.items():
        acts = rng.poisson(rate * intensity)
        for signal in event:
            c[start:, signal] += acts
    if spec.rates.get(S.FRAME):
        c[start:, S.BYTES] = c[start:, S.FRAME] * rng.lognormal(math.log(400), 1.0, size=n)
    return c


def make_population(
    seed: int,
    *,
    benign: int,
    duration: int,
    attackers_per_kind: int,
    attack_duration: int = 120,
) -> list[PeerTrace]:
    """Benign peers living `duration` s and attackers of every kind in `ATTACKS`.

    Half the attackers of a kind are compromised peers that behave honestly first
    (`attack_duration` s of attack after a benign prefix); the rest attack from the start.
    Sybils churn through identities: each identity lives 20-120 s.
    """
    rng = np.random.default_rng(seed)
    traces: list[PeerTrace] = []
    for i in range(benign):
        kind = "transport" if i % 2 == 0 else "dht"
        traces.append(
            PeerTrace(f"b{seed}-{i}", kind, None, 0, None, benign_counts(rng, kind, duration))
        )
    for spec in ATTACKS:
        for j in range(attackers_per_kind):
            compromised = j % 2 == 0 and not spec.sybil
            prefix = int(rng.integers(60, 300)) if compromised else 0
            length = prefix + attack_duration
            if spec.sybil:
                # one attacker, many short-lived identities; each is a peer to the node
                cursor = 0
                k = 0
                while cursor < attack_duration:
                    life = int(rng.integers(20, 120))
                    counts = attack_counts(rng, spec, life, 0)
                    counts[0, S.CONNECT] += 1  # the identity's connection is the attack
                    traces.append(
                        PeerTrace(
                            f"{spec.name}{seed}-{j}.{k}", spec.kind, spec.name, cursor, 0, counts, 0
                        )
                    )
                    cursor += life
                    k += 1
                continue
            counts = (
                benign_counts(rng, spec.kind, length)
                if compromised
                else np.zeros((length, N_SIGNALS))
            )
            if not compromised:
                counts[0, S.CONNECT if spec.kind == "transport" else S.DHT_REQUEST] += 1
            attack = attack_counts(rng, spec, length, prefix)
            acting = np.flatnonzero(attack.any(axis=1))
            evidence = int(acting[0]) if len(acting) else None
            counts += attack
            name = f"{spec.name}{seed}-{j}"
            traces.append(PeerTrace(name, spec.kind, spec.name, 0, prefix, counts, evidence))
    return traces


@dataclass(frozen=True)
class LabelledRow:
    """A feature row with its ground truth (`attack` None for benign)."""

    row: FeatureRow
    time: int
    attack: str | None
    attacking: bool
    """True once the peer's attack has started (at this row's time)."""
    since_attack: int = -1
    """Seconds since the attack started (-1 before it or for honest peers)."""
    since_evidence: int = -1
    """Seconds since the attacker's first act (-1 before it or for honest peers)."""
    at: float = -1.0
    """The instant the row was read (end of a periodic step, or a prompt evaluation)."""


def replay(
    trace: PeerTrace, step: int, features: PeerFeatures | None = None, prompt: bool = False
) -> Iterator[LabelledRow]:
    """Feed `trace` second by second through `PeerFeatures` and yield a row every `step` s.

    Counts land at random instants within each second (as they would on a node), and a
    row is read at the end of every `step`-th second while the peer is active (an event
    in the last minute), as the node evaluates; a peer idle for `EXPIRE_IDLE` seconds
    is forgotten, as on the node. With `prompt`, the node's prompt evaluations
    (`app.core.prompt_scoring.PromptScoring`, the node's own scheduler) add a row at
    each instant one falls due. The shipped model was trained without them.
    """
    feats = features or PeerFeatures(max_peers=4)
    scheduler = PromptScoring() if prompt else None
    peer = trace.peer
    observe = feats.observe
    counts = trace.counts
    nonzero = counts.any(axis=1)

    def labelled(second: int, now: int, at: float) -> LabelledRow | None:
        row = feats.row(peer, at)
        if row is None:
            return None
        attacking = trace.attack_start is not None and second >= trace.attack_start
        since = second - trace.attack_start if attacking and trace.attack_start is not None else -1
        evidence = trace.first_evidence
        if evidence is None:
            evidence = trace.attack_start
        acted = attacking and evidence is not None and second >= evidence
        since_evidence = second - evidence if acted and evidence is not None else -1
        return LabelledRow(row, now, trace.attack, attacking, since, since_evidence, at)

    def prompt_rows(second: int, now: int, until: float) -> Iterator[LabelledRow]:
        while scheduler is not None and (due := scheduler.get_timer()) is not None:
            if due > until:
                return
            if scheduler.due(due) and peer in feats:
                found = labelled(second, now, due)
                if found is not None:
                    yield found

    for second in range(counts.shape[0]):
        now = trace.start + second
        arrival = now + 0.5
        yield from prompt_rows(second - 1, now - 1, arrival)
        if nonzero[second]:
            row_counts = counts[second]
            for signal in np.flatnonzero(row_counts):
                observe(peer, Signal(int(signal)), arrival, float(row_counts[signal]))
                if scheduler is not None:
                    scheduler.note(peer, Signal(int(signal)), arrival)
        yield from prompt_rows(second, now, now + 0.999)
        if (second + 1) % step == 0:
            at = now + 0.999
            # as the node: only peers active in the last minute are scored, and a peer
            # idle for EXPIRE_IDLE is forgotten (it comes back as a new peer)
            feats.expire(at)
            if not feats.is_active(peer, at):
                continue
            found = labelled(second, now, at)
            if found is not None:
                yield found
    feats.forget(peer)


def main() -> None:
    traces = make_population(1, benign=40, duration=600, attackers_per_kind=2)
    rows = [r for t in traces for r in replay(t, 2)]
    benign = sum(1 for r in rows if r.attack is None)
    print(f"{len(traces)} peers, {len(rows)} rows ({benign} benign), {len(ATTACKS)} attack kinds")


if __name__ == "__main__":
    main()
