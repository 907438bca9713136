"""Benchmark: anomaly detection and key rotation. Prints ONE JSON object.

Detection: a held-out population (seeds never used in training) of >= 1,000 honest peers
living one hour each, plus attackers of every kind in `tools.anomaly.simulator.ATTACKS`,
goes through `app.core.peer_features` (the node's code) and the shipped detector
(`app.node.anomaly.Detector`, onnxruntime via `app.node.ml`), evaluated every 2 s like
the node. Per attack kind: TPR (the attacker is flagged during its attack), time to
detect, and the share detected within 10 s, each on two clocks: from the attack's start
(``within_10s``, ``median_delay_s``) and from its first evidence, the attacker's first
act (``within_10s_of_evidence``, ``median_delay_from_evidence_s``; a low-and-slow
replay's first act comes ~50 s after the start, so no detector can flag it within 10 s
of the start); per threshold: false positives per honest
peer-hour (an honest peer flagged at least once in its hour). Strong attacks (floods,
replays, invalid signatures) are judged at the quarantine threshold, subtle ones at the
rate-limit threshold. Baseline in the same run: token bucket + GossipSub-style score
(`tools.anomaly.baseline`), thresholds calibrated on the same honest peers to the same
false-positive budgets.

Rotation (real `app.core` ratchet, X3DH, prekeys and mailbox-key code): an attacker
snapshots a session state and tries to read everything that follows with it; every
rotation trigger (time, volume, detector, failure burst, replay) must rotate by the
next message with no message lost, including messages in flight.

Usage: ``.venv/bin/python bench/bench_anomaly.py [--benign 1000] [--attackers 10]
[--no-prompt] [--detection-only]`` (``--no-prompt``: periodic evaluations only, as the
node scored before its prompt evaluations; `app.core.prompt_scoring`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import random
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

from app.core import ratchet
from app.core import session as e2e
from app.core.errors import CoreError
from app.core.identity import IdentityKeys
from app.core.peer_features import Signal as S
from app.core.peer_policy import PEER_KINDS
from app.core.prekeys import PrekeyStore
from app.core.rotation_policy import RotationPolicy, RotationSettings
from app.node.anomaly import MODEL_NAME, AnomalyMonitor, Detector
from app.node.mailbox import mailbox_key
from app.node.ml import load_model
from tools.anomaly.baseline import BaselineSettings, bucket_overflow, peer_score
from tools.anomaly.simulator import (
    ATTACKS,
    PeerTrace,
    attack_counts,
    benign_counts,
    make_population,
    replay,
)

EVAL_STEP = 2
HELD_OUT_SEEDS = (31, 32)
STRONG = {a.name for a in ATTACKS if a.strong}


# ------------------------------------------------------------------ detection


def group_of(trace: PeerTrace) -> str:
    """Sybil identities of one attacker form one group (detected if any is flagged)."""
    return trace.peer.rsplit(".", 1)[0] if "." in trace.peer else trace.peer


def score_traces(
    detector: Detector, traces: list[PeerTrace], prompt: bool = True
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per trace: (the instants its rows were read, detector scores); with `prompt`, the
    node's prompt evaluations add rows (`app.core.prompt_scoring`), as on the node."""
    out = []
    for trace in traces:
        rows = list(replay(trace, EVAL_STEP, prompt=prompt))
        if not rows:
            out.append((np.zeros(0), np.zeros(0)))
            continue
        matrix = np.asarray([r.row.values for r in rows], dtype=np.float32)
        times = np.asarray([r.at for r in rows], dtype=np.float64)
        out.append((times, detector.scores(matrix)))
    return out


def baseline_signals(trace: PeerTrace, cfg: BaselineSettings) -> tuple[np.ndarray, np.ndarray]:
    """Per evaluation instant: (bucket ran dry since the last one, worst score since)."""
    dry = bucket_overflow(trace.counts, cfg.rate, cfg.burst)
    score = peer_score(trace.counts, cfg)
    n = len(score) // EVAL_STEP
    if n == 0:
        return np.zeros(0, dtype=bool), np.zeros(0)
    dry_w = dry[: n * EVAL_STEP].reshape(n, EVAL_STEP).any(axis=1)
    score_w = score[: n * EVAL_STEP].reshape(n, EVAL_STEP).min(axis=1)
    return dry_w, score_w


def detection_report(
    traces: list[PeerTrace], flagged: list[np.ndarray], times: list[np.ndarray]
) -> dict[str, Any]:
    """TPR, delays and within-10-s shares per attack kind (flag arrays per trace).

    Two clocks: from the attack's start (a compromised peer's turn, a stranger's or the
    first Sybil identity's arrival) and from its first evidence (the attacker's first
    act, the earliest instant any detector can have seen anything: a replay at 0.02/s
    comes ~50 s after the start). A flag raised after the start but before the first act
    counts as a delay of 0 on the second clock. An attacker that never acted in its
    attack (a 2x replay, 0.02/s for 120 s, stays silent with probability ~9%) has no
    first evidence: it counts in the TPR (as a miss unless flagged) but not in the share
    detected within 10 s of evidence, whose denominator is `attackers_that_acted`."""
    first: dict[str, float | None] = {}
    first_ev: dict[str, float | None] = {}
    evidence_at: dict[str, float] = {}
    acted: set[str] = set()
    kind_of: dict[str, str] = {}
    for trace, flags, at in zip(traces, flagged, times, strict=True):
        if trace.attack is None:
            continue
        group = group_of(trace)
        kind_of[group] = trace.attack
        first.setdefault(group, None)
        first_ev.setdefault(group, None)
        start = trace.start + (trace.attack_start or 0)
        sybil = "." in trace.peer
        begin = start if not sybil else _group_start(traces, group)
        if sybil or trace.first_evidence is not None:
            acted.add(group)
        first_act = trace.first_evidence if trace.first_evidence is not None else trace.attack_start
        evidence = trace.start + (first_act or 0) if not sybil else begin
        evidence_at[group] = min(evidence_at.get(group, evidence), evidence)
        hits = [float(t) for t, f in zip(at, flags, strict=True) if f and t >= start]
        if hits:
            delay = hits[0] - begin  # the instant the flagging row was read
            prev = first[group]
            first[group] = delay if prev is None else min(prev, delay)
            delay_ev = max(0.0, hits[0] - evidence)
            prev = first_ev[group]
            first_ev[group] = delay_ev if prev is None else min(prev, delay_ev)
    per_kind: dict[str, dict[str, Any]] = {}
    for kind in sorted(set(kind_of.values())):
        groups = [g for g, k in kind_of.items() if k == kind]
        hit = [d for g in groups if (d := first[g]) is not None]
        hit_ev = [d for g in groups if (d := first_ev[g]) is not None and g in acted]
        starts = [
            evidence_at[g] - (_group_start(traces, g) if _is_sybil(g) else _attack_start(traces, g))
            for g in groups
            if g in acted
        ]
        n_acted = sum(1 for g in groups if g in acted)
        per_kind[kind] = {
            "attackers": len(groups),
            "tpr": round(len(hit) / len(groups), 4),
            "within_10s": round(sum(1 for d in hit if d <= 10) / len(groups), 4),
            "attackers_that_acted": n_acted,
            "within_10s_of_evidence": round(sum(1 for d in hit_ev if d <= 10) / max(1, n_acted), 4),
            "median_delay_s": round(statistics.median(hit), 1) if hit else None,
            "median_delay_from_evidence_s": round(statistics.median(hit_ev), 1) if hit_ev else None,
            "median_first_evidence_after_start_s": round(statistics.median(starts), 1)
            if starts
            else None,
        }
    return per_kind


def _is_sybil(group: str) -> bool:
    return group.startswith("sybil")


def _attack_start(traces: list[PeerTrace], group: str) -> float:
    return min(t.start + (t.attack_start or 0) for t in traces if group_of(t) == group)


def _group_start(traces: list[PeerTrace], group: str) -> float:
    return min(t.start for t in traces if group_of(t) == group)


def fpr_per_peer_hour(traces: list[PeerTrace], flagged: list[np.ndarray]) -> float:
    benign = [(t, f) for t, f in zip(traces, flagged, strict=True) if t.attack is None]
    hours = sum(len(t.counts) for t, _ in benign) / 3600
    return sum(1 for _, f in benign if f.any()) / hours


def calibrate(values: list[np.ndarray], budget: float, hours: float) -> float:
    """The lowest threshold on per-peer maxima keeping flagged honest peer-hours <= budget."""
    maxima = np.sort(np.asarray([v.max() if len(v) else -np.inf for v in values]))[::-1]
    allowed = int(budget * hours)
    return float(maxima[allowed]) + 1e-9 if allowed < len(maxima) else float("-inf")


def run_detection(
    benign: int, attackers: int, models: Path | None = None, prompt: bool = True
) -> dict[str, Any]:
    detector = Detector.load() if models is None else Detector(load_model(MODEL_NAME, models))
    traces: list[PeerTrace] = []
    for seed in HELD_OUT_SEEDS:
        traces += make_population(
            seed, benign=benign // len(HELD_OUT_SEEDS), duration=3600,
            attackers_per_kind=attackers,
        )  # fmt: skip
    started = time.perf_counter()
    scored = score_traces(detector, traces, prompt)
    scoring_seconds = time.perf_counter() - started
    rows = sum(len(s) for _, s in scored)
    times = [t for t, _ in scored]
    scores = [s for _, s in scored]
    honest = [t for t in traces if t.attack is None]
    hours = sum(len(t.counts) for t in honest) / 3600

    # ONNX inference alone, one row at a time (the node batches; this is the worst case)
    one = np.asarray([scored_row for scored_row in [replay_first_row(traces[0])]], np.float32)
    started = time.perf_counter()
    for _ in range(2000):
        detector.scores(one)
    per_row_us = (time.perf_counter() - started) / 2000 * 1e6

    result: dict[str, Any] = {
        "population": {
            "honest_peers": len(honest),
            "honest_peer_hours": round(hours, 1),
            "attack_groups": len({group_of(t) for t in traces if t.attack}),
            "attack_kinds": len(ATTACKS),
            "rows_scored": rows,
            "held_out_seeds": HELD_OUT_SEEDS,
            "prompt_evaluations": prompt,
        },
        "detector": {
            "threshold_quarantine": detector.quarantine,
            "threshold_limit": detector.limit,
            "threshold_limit_by_kind": {k: detector.limit_for(k) for k in PEER_KINDS},
            "onnx_us_per_single_row": round(per_row_us, 1),
            "scoring_rows_per_s": round(rows / scoring_seconds),
        },
    }
    # the rate limit of each peer's kind, as the node's policy applies it (a model
    # without per-kind thresholds: its one `threshold_limit` for both)
    for name, limits, kinds in (
        ("strong@quarantine", dict.fromkeys(PEER_KINDS, detector.quarantine), STRONG),
        ("subtle@limit", {k: detector.limit_for(k) for k in PEER_KINDS},
         {a.name for a in ATTACKS} - STRONG),
    ):  # fmt: skip
        flags = [s >= limits[t.kind] for s, t in zip(scores, traces, strict=True)]
        report = detection_report(traces, flags, times)
        chosen = {k: v for k, v in report.items() if k in kinds}
        result["detector"][name] = _summary(chosen, fpr_per_peer_hour(traces, flags))

    result["count_only_bound_within_10s_of_evidence"] = count_bound(traces)

    # baseline: same traces, thresholds calibrated to the same budgets on honest peers
    cfg = BaselineSettings()
    base = [baseline_signals(t, cfg) for t in traces]
    base_times = [
        t.start + (np.arange(len(d)) + 1) * EVAL_STEP
        for t, (d, _) in zip(traces, base, strict=True)
    ]  # fmt: skip (read at the end of a step)
    result["baseline"] = {}
    strong_baseline = (0.0, 0.0)
    for name, budget, kinds in (
        ("strong@0.1%", 0.001, STRONG),
        ("subtle@1%", 0.01, {a.name for a in ATTACKS} - STRONG),
    ):
        rate = _bucket_rate(traces, budget / 2, hours)
        dry = [bucket_overflow(t.counts, rate, 5 * rate) for t in traces]
        dry_w = [_per_step(d) for d in dry]
        honest_scores = [-s for t, (_, s) in zip(traces, base, strict=True) if t.attack is None]
        limit = calibrate(honest_scores, budget / 2, hours)
        flags = [dw | (-s >= limit) for dw, (_, s) in zip(dry_w, base, strict=True)]
        report = detection_report(traces, flags, base_times)
        chosen = {k: v for k, v in report.items() if k in kinds}
        if name == "strong@0.1%":
            strong_baseline = (rate, limit)
        result["baseline"][name] = {
            "token_bucket_rate": rate,
            "graylist_score": -limit if np.isfinite(limit) else None,
            **_summary(chosen, fpr_per_peer_hour(traces, flags)),
        }

    # the strong-flood case the first model missed, in numbers: detector at quarantine,
    # baseline at its strong (0.1%) calibration
    stress = bulk_past_floods()
    scored_stress = score_traces(detector, stress, prompt)
    rate, limit = strong_baseline
    base_stress = [baseline_signals(t, cfg) for t in stress]
    base_flags = [
        _per_step(bucket_overflow(t.counts, rate, 5 * rate)) | (-score >= limit)
        for t, (_, score) in zip(stress, base_stress, strict=True)
    ]
    base_stress_times = [(np.arange(len(f)) + 1) * EVAL_STEP for f in base_flags]
    result["flood_with_bulk_past"] = {
        "attackers": len(stress),
        "detector@quarantine": detection_report(
            stress, [sc >= detector.quarantine for _, sc in scored_stress],
            [t for t, _ in scored_stress],
        )["flood"],
        "baseline@0.1%": detection_report(stress, base_flags, base_stress_times)["flood"],
    }  # fmt: skip
    return result


def bulk_past_floods(n: int = 100, seed: int = 77) -> list[PeerTrace]:
    """Compromised contacts whose honest behaviour includes a bulk burst (20-150
    payloads/s), flooding after 1-5 minutes: the case the first model missed."""
    rng = np.random.default_rng(seed)
    spec = next(a for a in ATTACKS if a.name == "flood")
    traces: list[PeerTrace] = []
    while len(traces) < n:
        prefix = int(rng.integers(60, 300))
        length = prefix + 120
        counts = benign_counts(rng, "transport", length)
        if counts[:, S.FRAME].max() < 20:  # no bulk burst: not this case
            continue
        attack = attack_counts(rng, spec, length, prefix)
        acting = np.flatnonzero(attack.any(axis=1))
        first = int(acting[0]) if len(acting) else None
        name = f"bulkflood-{len(traces)}"
        traces.append(PeerTrace(name, "transport", "flood", 0, prefix, counts + attack, first))
    return traces


_BOUND_SIGNALS = {
    "store_flood": ("dht", (S.DHT_STORE,)),
    "dht_flood": ("dht", (S.DHT_REQUEST,)),
    "sybil_churn": ("transport", (S.CONNECT, S.DISCONNECT, S.HANDSHAKE_FAILED)),
}


def _window_sums(counts: np.ndarray, signals: tuple[S, ...], width: int = 10) -> np.ndarray:
    x = counts[:, list(signals)].sum(axis=1)
    sums = np.concatenate([[0.0], np.cumsum(x)])
    return sums[width:] - sums[:-width] if len(x) >= width else sums[-1:]


def count_bound(traces: list[PeerTrace], budget: float = 0.01) -> dict[str, Any]:
    """What counting alone allows within 10 s of the first act, for the attacks whose
    acts are things honest peers also do (stores, requests, connections): the busiest
    10 s of each honest peer-hour, the level only `budget` of them exceed, and the share
    of attackers whose first 10 s (from their first act; a Sybil's from its first
    identity's arrival) exceed it. Not a bound on every detector (a model also sees
    age, spread and history), but where a count threshold would stand."""
    honest = [t for t in traces if t.attack is None]
    hours = sum(len(t.counts) for t in honest) / 3600
    out: dict[str, Any] = {}
    for family, (kind, signals) in _BOUND_SIGNALS.items():
        maxima = np.sort([_window_sums(t.counts, signals).max() for t in honest if t.kind == kind])[
            ::-1
        ]
        level = float(maxima[int(budget * hours)])
        shares = {}
        for suffix in ("", "_slow10x", "_slow5x", "_slow2x"):
            firsts = []
            for t in traces:
                if t.attack != family + suffix:
                    continue
                if family == "sybil_churn":
                    if t.peer.endswith(".0"):
                        firsts.append(float(t.counts[:10, list(signals)].sum()))
                elif t.first_evidence is not None:
                    at = t.first_evidence
                    firsts.append(float(t.counts[at : at + 10, list(signals)].sum()))
            shares[family + suffix] = round(float(np.mean(np.asarray(firsts) > level)), 2)
        out[family] = {"honest_busiest_10s_at_budget": level, "attackers_above": shares}
    return out


def replay_first_row(trace: PeerTrace) -> tuple[float, ...]:
    return next(iter(replay(trace, EVAL_STEP))).row.values


def _per_step(flags: np.ndarray) -> np.ndarray:
    n = len(flags) // EVAL_STEP
    return flags[: n * EVAL_STEP].reshape(n, EVAL_STEP).any(axis=1)


def _bucket_rate(traces: list[PeerTrace], budget: float, hours: float) -> float:
    """The smallest bucket rate (from a grid) whose honest false positives fit `budget`."""
    honest = [t for t in traces if t.attack is None]
    for rate in (2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0):
        flagged = sum(1 for t in honest if bucket_overflow(t.counts, rate, 5 * rate).any())
        if flagged <= budget * hours:
            return rate
    return 1000.0


def _summary(report: dict[str, dict[str, Any]], fpr: float) -> dict[str, Any]:
    attackers = sum(v["attackers"] for v in report.values())
    tpr = sum(v["tpr"] * v["attackers"] for v in report.values()) / attackers
    within = sum(v["within_10s"] * v["attackers"] for v in report.values()) / attackers
    acted = sum(v["attackers_that_acted"] for v in report.values())
    within_ev = (
        sum(v["within_10s_of_evidence"] * v["attackers_that_acted"] for v in report.values())
        / acted
    )
    return {
        "fp_per_honest_peer_hour": round(fpr, 5),
        "tpr": round(tpr, 4),
        "tpr_within_10s": round(within, 4),
        "attackers_that_acted": acted,
        "tpr_within_10s_of_evidence": round(within_ev, 4),
        "per_attack": report,
    }


# ------------------------------------------------------------------ scoring CPU


async def _flood_cpu(detector: Detector, prompt: bool, seconds: float) -> dict[str, float]:
    """One run of `scoring_cpu_under_flood`."""
    monitor = AnomalyMonitor(detector, lambda _event: None, prompt=prompt)
    monitor.start()
    tick = 0.02
    cpu0, wall0 = time.process_time(), time.perf_counter()
    n = 0
    while time.perf_counter() - wall0 < seconds:
        for _ in range(3):  # 150 garbled payloads/s from one peer
            monitor.observe("flooder", S.FRAME)
            monitor.observe("flooder", S.MALFORMED)
        for i in range(10):  # 500 made-up identities, one failed decryption a second each
            sybil = f"sybil-{(n * 10 + i) % 500}"
            monitor.observe(sybil, S.FRAME)
            monitor.observe(sybil, S.DECRYPT_FAILED)
        for i in range(4):  # 200 honest peers chatting (200 payloads/s in all)
            monitor.observe(f"honest-{(n * 4 + i) % 200}", S.FRAME)
        n += 1
        await asyncio.sleep(tick)
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    await monitor.stop()
    rows = monitor.stats["evaluated"] + monitor.stats["evaluated_prompt"]
    return {"cpu_s_per_s": cpu / wall, "rows_per_s": rows / wall}


def scoring_cpu_under_flood(seconds: float = 8.0, rounds: int = 2) -> dict[str, Any]:
    """The node's monitor (`AnomalyMonitor`, shipped detector, real asyncio loop and worker
    thread) under a flood: one peer sending 150 garbled payloads/s, 500 made-up
    identities each failing a decryption every second (the worst case for prompt
    evaluations: every one of them is due each second), 200 honest peers chatting. The
    whole process's CPU seconds per second, the feeding included (the same in both),
    with and without prompt evaluations, alternating `rounds` times."""
    detector = Detector.load()
    logging.getLogger("app.node.anomaly").setLevel(logging.ERROR)  # a line per flag
    runs: dict[str, list[dict[str, float]]] = {"periodic_only": [], "with_prompt": []}
    for _ in range(rounds):
        for name, prompt in (("periodic_only", False), ("with_prompt", True)):
            runs[name].append(asyncio.run(_flood_cpu(detector, prompt, seconds)))
    return {
        name: {
            "cpu_s_per_s": [round(r["cpu_s_per_s"], 3) for r in found],
            "rows_scored_per_s": [round(r["rows_per_s"]) for r in found],
        }
        for name, found in runs.items()
    } | {"seconds_each": seconds}


# ------------------------------------------------------------------ rotation


def _rng(seed: int) -> Any:
    return random.Random(seed).randbytes


def _pair(seed: int) -> tuple[e2e.Session, e2e.Session, Any]:
    """Alice and Bob after real X3DH and one exchange (both have a sending chain)."""
    rand = _rng(seed)
    alice = IdentityKeys.from_seeds(rand(32), rand(32))
    bob = IdentityKeys.from_seeds(rand(32), rand(32))
    now = 1_800_000_000.0
    store = PrekeyStore.create(now, rand, one_time_target=2)
    a = e2e.initiate(alice, store.bundle(bob), now, rand)
    a, first = e2e.encrypt(a, b"hello", rand)
    store, b, _ = e2e.accept(bob, store, first)
    b, wire = e2e.encrypt(b, b"hi", rand)
    a, _ = e2e.decrypt(a, wire)
    return a, b, rand


class Eavesdropper:
    """Holds a snapshot of Bob's ratchet state and tries every later message with it,
    through the real `ratchet.decrypt`: A->B messages with a clone of Bob's state (it
    follows Alice's new chains as long as they are made with a key Bob had), B->A
    messages with a mirror of Bob's sending chain at the snapshot."""

    def __init__(self, bob: e2e.Session) -> None:
        snap = ratchet.RatchetState.from_bytes(bob.ratchet.to_bytes())
        self.clone = snap
        self.mirror = replace(
            snap,
            dh_secret=None,
            dh_public=None,
            dh_key_cache=None,
            remote_dh=snap.dh_public,
            recv_chain=snap.send_chain,
            recv_n=snap.send_n,
            send_chain=None,
            send_step_pending=False,
            skipped={},
            retired_remote_keys=(),
        )

    def read(self, wire: bytes, from_alice: bool) -> bool:
        body = wire[1:]  # session kind byte (no initial header after the first reply)
        try:
            if from_alice:
                self.clone, _ = ratchet.decrypt(self.clone, body)
            else:
                self.mirror, _ = ratchet.decrypt(self.mirror, body)
        except CoreError:
            return False
        return True


def compromise_trial(seed: int, rotate: bool, pattern: list[str]) -> dict[str, Any]:
    """Snapshot Bob's state, optionally force a rotation at once, then run `pattern`
    ("a": Alice sends, "b": Bob sends; the receiver answers ratchet requests). Returns
    what the attacker read, counted in round trips after the compromise."""
    a, b, rand = _pair(seed)
    for turn in range(3):
        a, w = e2e.encrypt(a, b"a%d" % turn, rand)
        b, _ = e2e.decrypt(b, w)
        b, w = e2e.encrypt(b, b"b%d" % turn, rand)
        a, _ = e2e.decrypt(a, w)
    eve = Eavesdropper(b)
    if rotate:
        b = e2e.force_ratchet(b)
    read_at: list[int] = []
    round_trips = 0
    last = None
    lost = 0
    for index, who in enumerate(pattern):
        if who == "b":
            b, w = e2e.encrypt(b, b"secret from bob %d" % index, rand)
            try:
                a, _ = e2e.decrypt(a, w)
            except CoreError:
                lost += 1
            if eve.read(w, from_alice=False):
                read_at.append(round_trips)
            if a.peer_requested_ratchet:  # the node answers a ratchet request at once
                a, w = e2e.encrypt(a, b"", rand)
                b, _ = e2e.decrypt(b, w)
                if eve.read(w, from_alice=True):
                    read_at.append(round_trips)
        else:
            a, w = e2e.encrypt(a, b"secret from alice %d" % index, rand)
            try:
                b, _ = e2e.decrypt(b, w)
            except CoreError:
                lost += 1
            if eve.read(w, from_alice=True):
                read_at.append(round_trips)
        if last == "b" and who == "a":
            round_trips += 1
        last = who
    return {
        "messages": len(pattern),
        "read": len(read_at),
        "read_after_round_trips": max(read_at) if read_at else None,
        "lost": lost,
    }


def run_compromise(trials: int) -> dict[str, Any]:
    rng = random.Random(7)
    out: dict[str, Any] = {}
    for rotate in (True, False):
        results = []
        for trial in range(trials):
            pattern = [rng.choice("ab") for _ in range(40)]
            results.append(compromise_trial(100 + trial, rotate, pattern))
        beyond = sum(1 for r in results if (r["read_after_round_trips"] or 0) > 1)
        out["forced_rotation" if rotate else "no_forced_rotation"] = {
            "trials": trials,
            "messages_per_trial": 40,
            "mean_messages_read": round(statistics.mean(r["read"] for r in results), 2),
            "max_round_trips_with_reads": max((r["read_after_round_trips"] or 0) for r in results),
            "trials_with_reads_past_next_round_trip": beyond,
            "lost": sum(r["lost"] for r in results),
        }
    # one-sided traffic (Alice silent, e.g. offline): nobody can step without her
    one_sided = compromise_trial(999, True, ["b"] * 10 + ["a"] + ["b"] * 10)
    out["one_sided_then_reply"] = one_sided
    return out


def run_triggers() -> dict[str, Any]:
    """Each trigger through the real policy and ratchet: rotated by the next message?
    Messages in flight across the rotation still decrypt?"""
    settings = RotationSettings(
        session_max_age=3600, max_messages=20, failure_burst=3, min_interval=60
    )
    results: dict[str, Any] = {}
    for trigger in ("time", "volume", "detector", "failure_burst", "replay"):
        a, b, rand = _pair(hash(trigger) & 0xFFFF)
        policy = RotationPolicy(settings)
        policy.track("alice", 0.0)
        now = 100.0
        in_flight: list[bytes] = []
        dues = []
        sent = 0
        while not dues and sent < 100:
            b, w = e2e.encrypt(b, b"m%d" % sent, rand)
            in_flight.append(w)  # delivered only after the rotation, out of order
            sent += 1
            now += 10
            if trigger == "time":
                dues = policy.tick(now + 3600)
            elif trigger == "volume":
                dues = policy.message("alice", len(w), now)
            elif trigger == "detector":
                dues = policy.alert("alice", now)
            elif trigger == "failure_burst":
                dues = policy.failure("alice", now)
            else:
                dues = policy.replay("alice", now)
        [due] = dues
        old_key = ratchet.parse_header(in_flight[-1][1:])[1]
        b = e2e.force_ratchet(b)
        b, nxt = e2e.encrypt(b, b"next", rand)
        flagged = bool(ratchet.parse_header(nxt[1:])[0] & ratchet.FLAG_RATCHET_REQUEST)
        lost = 0
        for w in [nxt, *reversed(in_flight)]:  # the new one first, then the old ones
            try:
                a, _ = e2e.decrypt(a, w)
            except CoreError:
                lost += 1
        a, answer = e2e.encrypt(a, b"", rand)  # the node answers the request
        b, _ = e2e.decrypt(b, answer)
        b, after = e2e.encrypt(b, b"after", rand)
        stepped = ratchet.parse_header(after[1:])[1] != old_key
        a, _ = e2e.decrypt(a, after)
        policy.rotated("alice", now)
        results[trigger] = {
            "keys": sorted(k.value for k in due.keys),
            "next_message_requests_step": flagged,
            "fresh_dh_key_after_one_round_trip": stepped,
            "messages_in_flight": len(in_flight),
            "lost": lost,
        }
    results["prekeys"] = _prekey_rotation()
    results["mailbox_epoch"] = _mailbox_epoch()
    return results


def _prekey_rotation() -> dict[str, Any]:
    """A forced signed-prekey rotation: first messages made from the old bundle (in
    flight) still open; new sessions use the new signed prekey."""
    rand = _rng(5)
    now = 1_800_000_000.0
    alice = IdentityKeys.from_seeds(rand(32), rand(32))
    bob = IdentityKeys.from_seeds(rand(32), rand(32))
    store = PrekeyStore.create(now, rand, one_time_target=4)
    old_bundle = store.bundle(bob)
    _, in_flight = e2e.encrypt(e2e.initiate(alice, old_bundle, now, rand), b"old", rand)
    store = store.rotate(now + 5, rand).replenish(rand)
    new_bundle = store.bundle(bob)
    lost = 0
    try:
        store, _, _ = e2e.accept(bob, store, in_flight)
    except CoreError:
        lost += 1
    _, fresh = e2e.encrypt(e2e.initiate(alice, new_bundle, now + 6, rand), b"new", rand)
    store, _, _ = e2e.accept(bob, store, fresh)
    return {
        "new_signed_prekey": new_bundle.signed_prekey_id != old_bundle.signed_prekey_id,
        "lost": lost,
    }


def _mailbox_epoch() -> dict[str, Any]:
    """A new mailbox epoch: both sides derive the same new slot keys, and the reader,
    polling every epoch it issued, still finds slots written under the old one."""
    rand = _rng(6)
    alice = IdentityKeys.from_seeds(rand(32), rand(32))
    bob = IdentityKeys.from_seeds(rand(32), rand(32))
    a, b = alice.public, bob.public
    seed = rand(32)
    day = 20_000
    writer_old = mailbox_key(alice, b.dh_key, a.signing_key, b.signing_key, day, 0)
    writer_new = mailbox_key(alice, b.dh_key, a.signing_key, b.signing_key, day, 0, 1, seed)
    polled = {
        mailbox_key(bob, a.dh_key, a.signing_key, b.signing_key, day, 0, *epoch).dht_key
        for epoch in ((0, b""), (1, seed))
    }
    return {
        "new_slot_keys": writer_new.dht_key != writer_old.dht_key,
        "old_epoch_still_found": writer_old.dht_key in polled,
        "new_epoch_found": writer_new.dht_key in polled,
        "lost": int(not {writer_old.dht_key, writer_new.dht_key} <= polled),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--benign", type=int, default=1000)
    parser.add_argument("--attackers", type=int, default=10)
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument(
        "--models", type=Path, help="folder of the anomaly.onnx to measure (default: shipped)"
    )
    parser.add_argument(
        "--no-prompt",
        action="store_true",
        help="periodic evaluations only (the node before prompt evaluations), for comparison",
    )
    parser.add_argument(
        "--detection-only", action="store_true", help="skip the compromise and rotation parts"
    )
    args = parser.parse_args()
    started = time.perf_counter()
    out: dict[str, Any] = {
        "benchmark": "anomaly",
        "detection": run_detection(args.benign, args.attackers, args.models, not args.no_prompt),
    }
    out["scoring_cpu_under_flood"] = scoring_cpu_under_flood()
    if not args.detection_only:
        out["compromise"] = run_compromise(args.trials)
        out["rotation_triggers"] = run_triggers()
    out["seconds"] = round(time.perf_counter() - started, 1)
    print(json.dumps(out, indent=1, default=str))


if __name__ == "__main__":
    main()
