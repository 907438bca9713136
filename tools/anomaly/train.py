"""Train the anomaly detector on simulated peers and export resources/models/anomaly.onnx.

Needs the ``training`` extra (scikit-learn, skl2onnx, onnx); the app itself needs none
of them. Rows come from `tools.anomaly.simulator` through `app.core.peer_features`, the
code the node runs. The model is one gradient-boosted tree ensemble (binary: attacking
or not); its two thresholds are chosen on a validation population (other seeds) from
the highest scores honest peers reach per hour, and stored in the ONNX metadata with
the feature names, so the node reads them from the file it loads:

* ``threshold_quarantine``: above every honest peer-hour of the validation populations;
* ``threshold_limit``: at most 0.5% of their honest peer-hours ever reach it (half the
  1% budget: room for sampling noise);
* ``threshold_limit_dht``, ``threshold_limit_transport``: one rate limit per peer kind,
  flagging no more honest peer-hours of the validation populations than
  ``threshold_limit`` does, chosen to catch the most subtle attackers (10 per kind
  added to the same populations) within 10 s of their first act. Honest DHT senders
  and transport peers reach different scores (joins and restarts against chat sessions
  and bulk bursts), so the one threshold sits at the DHT senders' tail and lets slow
  transport attacks go longer; the node's policy applies each kind's own
  (`app.core.peer_policy.PolicySettings.limit_by_kind`).

Usage: ``python -m tools.anomaly.train [--out resources/models]`` (about 4 minutes on 2
cores); ``--recalibrate resources/models/anomaly.onnx`` keeps a model's trees and
recomputes only its thresholds (onnxruntime, no training).
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import skl2onnx.common.tree_ensemble as _tree_ensemble
from skl2onnx import to_onnx
from sklearn.ensemble import HistGradientBoostingClassifier

from app.core.peer_features import FEATURE_NAMES, N_FEATURES
from app.core.peer_policy import PEER_KINDS
from app.node.ml import OnnxModel
from tools.anomaly.simulator import ATTACKS, make_population, replay

EVAL_STEP = 2
"""Seconds between two evaluations of a peer (the node's `EVALUATION_INTERVAL`)."""
TRAIN_SEEDS = (11, 12, 13)
VALIDATION_SEEDS = (21, 24)
"""Honest populations (1,000 peer-hours each) the thresholds are calibrated on."""
LIMIT_QUANTILE = 0.995
"""The rate-limit threshold sits above this share of validation peer-hours: half the 1%
budget, so that a benchmark's 1,000 peer-hours stay within it despite sampling noise
(at 0.99, other populations measured up to 1.1%)."""
WARMUP = 0
"""Seconds after an attacker's first act whose rows are left out of training. Rows
after the attack's start but before the attacker's first act are always left out:
they show nothing but honest behaviour (or a stranger's arrival), and labelling them
"attacking" would only teach the model to suspect honest peers."""
BENIGN_KEEP = 0.3
"""Fraction of benign rows kept for training (they are many and alike)."""
ITERATIONS = 150
"""Boosting rounds (trees): inference cost grows with them."""
WEIGHTS = {"honest": 4.0, "subtle": 1.0, "strong": 20.0}
"""Sample weights: an honest row counts 4 attacking rows (false positives cost most);
rows of strong attacks as much, so floods score far above anything honest and the
quarantine threshold (above every honest peer-hour) catches them at once."""
EARLY = 10
"""Seconds after a subtle attacker's first act whose rows weigh `EARLY_WEIGHT` times a
subtle row (the target: detected within 10 s of the first act)."""
EARLY_WEIGHT = 1.0
VALIDATION_ATTACKERS = 10
"""Attackers per kind in each validation population (for the per-kind rate limits; the
honest peers are the same with or without them)."""
KIND_CANDIDATES = 25
"""Per-kind rate limits tried: just above each of the kind's highest honest peer-hours."""


_add_node = _tree_ensemble.add_node


def _add_node_int_flags(*args: object, **kwargs: object) -> object:
    # skl2onnx 1.20 passes numpy booleans for HistGradientBoosting's missing-value flags,
    # which onnx refuses ("Expected an int, got a boolean"): hand it ints
    if "nodes_missing_value_tracks_true" in kwargs:
        kwargs["nodes_missing_value_tracks_true"] = int(
            bool(kwargs["nodes_missing_value_tracks_true"])
        )
    return _add_node(*args, **kwargs)


_tree_ensemble.add_node = _add_node_int_flags


def dataset(
    seeds: tuple[int, ...], benign: int, duration: int, attackers: int, keep: float, rng_seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Feature rows, labels (1 = the peer is attacking), whether the attack is a strong
    one (floods, replays, invalid signatures) and whether the row is of a subtle attack's
    first `EARLY` seconds after its first act, of several populations."""
    rng = np.random.default_rng(rng_seed)
    strong = {a.name for a in ATTACKS if a.strong}
    xs: list[tuple[float, ...]] = []
    ys: list[int] = []
    ss: list[bool] = []
    early: list[bool] = []
    for seed in seeds:
        for trace in make_population(
            seed, benign=benign, duration=duration, attackers_per_kind=attackers
        ):
            for labelled in replay(trace, EVAL_STEP):
                if labelled.attack is None and rng.random() > keep:
                    continue
                prefix = labelled.attack is not None and not labelled.attacking
                if prefix and rng.random() > keep:  # a compromised peer's honest prefix
                    continue
                if labelled.attacking and labelled.since_evidence < WARMUP:
                    continue  # nothing to tell yet: such rows only blur the boundary
                xs.append(labelled.row.values)
                ys.append(int(labelled.attacking))
                ss.append(labelled.attacking and labelled.attack in strong)
                early.append(
                    labelled.attacking
                    and labelled.attack not in strong
                    and labelled.since_evidence < EARLY
                )
    return (
        np.asarray(xs, dtype=np.float32),
        np.asarray(ys, dtype=np.int64),
        np.asarray(ss),
        np.asarray(early),
    )


Scorer = Callable[[np.ndarray], np.ndarray]
"""Feature rows in, P(attacking) out."""


def peer_maxima(
    score: Scorer, seed: int, peers: int, attackers: int
) -> tuple[np.ndarray, np.ndarray, list[tuple[str, float]]]:
    """Of a validation population: the highest score each honest peer reaches in an
    hour and each one's kind (`PEER_KINDS`); and per subtle attacker that acted, its
    kind and the highest score it reaches within 10 s of its first act (from its
    attack's start; a Sybil's from its first identity's arrival), as the benchmark
    counts "within 10 s of first evidence"."""
    strong = {a.name for a in ATTACKS if a.strong}
    maxima: list[float] = []
    kinds: list[str] = []
    early: dict[str, tuple[str, float]] = {}
    traces = make_population(seed, benign=peers, duration=3600, attackers_per_kind=attackers)
    group_start: dict[str, int] = {}
    for trace in traces:
        if "." in trace.peer:  # a Sybil identity: the group starts with its first one
            group = trace.peer.rsplit(".", 1)[0]
            group_start[group] = min(group_start.get(group, trace.start), trace.start)
    for trace in traces:
        if trace.attack in strong:
            continue
        labelled = list(replay(trace, EVAL_STEP))
        rows = np.asarray([r.row.values for r in labelled], dtype=np.float32)
        scores = score(rows) if len(rows) else np.zeros(0)
        if trace.attack is None:
            maxima.append(float(scores.max()) if len(scores) else 0.0)
            kinds.append(trace.kind)
            continue
        group = trace.peer.rsplit(".", 1)[0] if "." in trace.peer else trace.peer
        if "." in trace.peer:
            evidence = group_start[group]
        elif trace.first_evidence is not None:
            evidence = trace.start + trace.first_evidence
        else:
            continue  # never acted: no first evidence to be quick about
        begin = trace.start + (trace.attack_start or 0)
        within = [
            float(s) for r, s in zip(labelled, scores, strict=True)
            if begin <= r.time <= evidence + EARLY - 1
        ]  # fmt: skip
        best = max(within, default=0.0)
        early[group] = (trace.kind, max(best, early.get(group, ("", 0.0))[1]))
    return np.asarray(maxima), np.asarray(kinds), list(early.values())


def thresholds(
    maxima: np.ndarray, kinds: np.ndarray, early: list[tuple[str, float]]
) -> dict[str, float]:
    """The metadata thresholds (see the module docstring) from validation maxima, in
    logit space (scores saturate near 1): quarantine 0.1 logit above every honest
    peer-hour (0.1% of 1,000 is one peer: no room for noise), the single rate limit half
    a logit above the `LIMIT_QUANTILE` of honest peer-hours; then one limit per peer
    kind, chosen (each just above one of its kind's highest honest peer-hours, or the
    single limit) to catch the most subtle attackers within 10 s of their first act
    while flagging no more honest peer-hours than the single limit does."""
    quarantine = _above(float(maxima.max()), 0.1)
    single = min(quarantine, _above(float(np.quantile(maxima, LIMIT_QUANTILE)), 0.5))
    allowed = int((maxima >= single).sum())
    candidates = {
        kind: sorted(
            {single, *(min(quarantine, _above(float(m), 0.02)) for m in
                       np.sort(maxima[kinds == kind])[-KIND_CANDIDATES:])}
        )
        for kind in PEER_KINDS
    }  # fmt: skip
    best: tuple[int, float, dict[str, float]] = (-1, 0.0, {})
    for pair in itertools.product(*(candidates[k] for k in PEER_KINDS)):
        limits = dict(zip(PEER_KINDS, pair, strict=True))
        flagged = sum(int((maxima[kinds == k] >= limits[k]).sum()) for k in PEER_KINDS)
        if flagged > allowed:
            continue
        caught = sum(1 for kind, top in early if top >= limits[kind])
        key = (caught, sum(pair))  # ties: the higher thresholds (fewer honest flagged)
        if key > best[:2]:
            best = (caught, sum(pair), limits)
    out = {"threshold_quarantine": quarantine, "threshold_limit": single}
    out.update({f"threshold_limit_{kind}": limit for kind, limit in best[2].items()})
    return out


def calibrate(score: Scorer) -> dict[str, float]:
    """`thresholds` on the `VALIDATION_SEEDS` populations (1,000 honest peers x 1 h and
    `VALIDATION_ATTACKERS` attackers per kind each)."""
    found = [peer_maxima(score, seed, 1000, VALIDATION_ATTACKERS) for seed in VALIDATION_SEEDS]
    return thresholds(
        np.concatenate([m for m, _, _ in found]),
        np.concatenate([k for _, k, _ in found]),
        [e for _, _, early in found for e in early],
    )


def recalibrate(path: Path) -> None:
    """Recompute the thresholds of the model at `path` (its trees unchanged), in place."""
    model = OnnxModel(path)

    def score(rows: np.ndarray) -> np.ndarray:
        return np.asarray(model.run(rows)["probabilities"])[:, 1]

    found = calibrate(score)
    print("thresholds: " + ", ".join(f"{k} {v:.6f}" for k, v in found.items()))
    onx = onnx.load(str(path))
    meta = {p.key: p.value for p in onx.metadata_props}
    meta.update({k: f"{v:.6f}" for k, v in found.items()})
    del onx.metadata_props[:]
    onnx.helper.set_model_props(onx, meta)
    path.write_bytes(onx.SerializeToString())
    print(f"wrote {path}")


EVIDENCE = (
    "failures_total",
    "decrypt_failed",
    "malformed",
    "invalid_signature",
    "replay",
    "record_rejected",
    "handshake_failed",
    "failure_ratio",
    "rejected_ratio",
    "dht_request",
)
"""Features that only misbehaviour raises: more of them never lowers the score, so a
flood far stronger than any seen in training still scores high. DHT requests too: an
honest node asks a few times per lookup, so more of them is never a sign of honesty.
Payload rates, bytes, stores, churn and age stay unconstrained (honest bulk bursts,
relays republishing dozens of records and flaky links have them in any amount;
constraining stores too lost the slow store floods: 0-25% detected instead of 80-100%
on a development population)."""


def monotonic_constraints() -> list[int]:
    """+1 for every `EVIDENCE` feature, 0 for the others."""
    return [1 if name.startswith(EVIDENCE) else 0 for name in FEATURE_NAMES]


def _above(p: float, margin: float) -> float:
    """A threshold `margin` logit units above score `p`."""
    p = min(max(p, 1e-6), 1 - 1e-7)
    logit = np.log(p / (1 - p)) + margin
    return float(1 / (1 + np.exp(-logit)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("resources/models"))
    parser.add_argument("--benign", type=int, default=600)
    parser.add_argument("--duration", type=int, default=1800)
    parser.add_argument("--attackers", type=int, default=12)
    parser.add_argument("--iterations", type=int, default=ITERATIONS)
    parser.add_argument("--early-weight", type=float, default=EARLY_WEIGHT)
    parser.add_argument("--cache", type=Path, help="reuse/keep the training rows in this .npz")
    parser.add_argument(
        "--recalibrate", type=Path, help="only recompute this model's thresholds (no training)"
    )
    args = parser.parse_args()
    if args.recalibrate is not None:
        recalibrate(args.recalibrate)
        return
    started = time.monotonic()
    if args.cache is not None and args.cache.exists():
        cached = np.load(args.cache)
        x, y, strong, early = cached["x"], cached["y"], cached["strong"], cached["early"]
    else:
        x, y, strong, early = dataset(
            TRAIN_SEEDS, args.benign, args.duration, args.attackers, BENIGN_KEEP, 0
        )
        if args.cache is not None:
            np.savez(args.cache, x=x, y=y, strong=strong, early=early)
    weight = np.where(
        y == 0, WEIGHTS["honest"], np.where(strong, WEIGHTS["strong"], WEIGHTS["subtle"])
    ) * np.where(early, args.early_weight, 1.0)
    print(f"training rows: {len(y)} ({int(y.sum())} attacking), {time.monotonic() - started:.0f} s")
    model = HistGradientBoostingClassifier(
        max_iter=args.iterations,
        max_depth=6,
        learning_rate=0.1,
        max_leaf_nodes=31,
        l2_regularization=1.0,
        monotonic_cst=monotonic_constraints(),
        early_stopping=False,
        random_state=0,
    )
    model.fit(x, y, sample_weight=weight)
    print(f"trained in {time.monotonic() - started:.0f} s")
    found = calibrate(lambda rows: model.predict_proba(rows)[:, 1])
    print("thresholds: " + ", ".join(f"{k} {v:.6f}" for k, v in found.items()))

    onx = to_onnx(
        model,
        x[:1],
        options={id(model): {"zipmap": False}},
        target_opset={"": 17, "ai.onnx.ml": 3},
    )
    meta = {
        **{k: f"{v:.6f}" for k, v in found.items()},
        "features": json.dumps(list(FEATURE_NAMES)),
        "eval_step_seconds": str(EVAL_STEP),
        "trained_on": json.dumps(
            {
                "seeds": TRAIN_SEEDS,
                "validation_seeds": VALIDATION_SEEDS,
                "benign_peers_per_seed": args.benign,
                "seconds": args.duration,
                "attackers_per_kind": args.attackers,
                "rows": len(y),
                "attacking_rows": int(y.sum()),
            }
        ),
    }
    onnx.helper.set_model_props(onx, meta)
    assert onx.graph.input[0].type.tensor_type.shape.dim[1].dim_value == N_FEATURES
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "anomaly.onnx"
    path.write_bytes(onx.SerializeToString())
    print(f"wrote {path} ({path.stat().st_size} bytes) in {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    main()
