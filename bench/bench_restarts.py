"""Honest nodes restarted again and again, as each anomaly model sees them (one run).

Every peer is an honest DHT sender of the simulator (`tools/anomaly/simulator.py`,
`benign_counts`) that is also started 2-7 times, 3-20 s apart (`restart_bursts`: each
start's join burst as measured on real daemons), for one hour. Its rows go through the
node's feature code and each model given (`--models DIR`, repeatable; default the
shipped one), evaluated every 2 s and promptly after evidence of an attack, as the node
does (`app.core.prompt_scoring`; ``restarting_periodic_only``: every 2 s only, as
before). Reported per model: the share of such peer-hours that
reach the rate limit and the quarantine, and the highest score. The same peers without
the restarts are the control. And the measured case itself (`restarting_node` of
tests/node/test_anomaly.py: six starts 8 s apart): its highest score.

Prints one JSON object. Not a test: nothing here asserts.

    .venv/bin/python bench/bench_restarts.py [--peers 400] --models OLD --models NEW
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

from app.core.peer_features import PeerFeatures, Signal
from app.node.anomaly import MODEL_NAME, Detector
from app.node.ml import load_model
from tools.anomaly.simulator import PeerTrace, benign_counts, replay, restart_bursts

SEED = 41
"""Not a training, validation or benchmark seed of `tools.anomaly`."""


def traces(peers: int, restarts: bool) -> list[PeerTrace]:
    rng, restart_rng = np.random.default_rng(SEED), np.random.default_rng(SEED + 1)
    out = []
    for i in range(peers):
        counts = benign_counts(rng, "dht", 3600, restarting=0.0)  # the same in both
        if restarts:
            restart_bursts(restart_rng, counts)
        out.append(PeerTrace(f"r{i}", "dht", None, 0, None, counts))
    return out


def maxima(detector: Detector, population: list[PeerTrace], prompt: bool = True) -> np.ndarray:
    highest = []
    for trace in population:
        rows = [r.row.values for r in replay(trace, 2, prompt=prompt)]
        if not rows:
            highest.append(0.0)
            continue
        highest.append(float(detector.scores(np.asarray(rows, dtype=np.float32)).max()))
    return np.asarray(highest)


def measure(detector: Detector, population: list[PeerTrace], prompt: bool = True) -> dict[str, Any]:
    top = maxima(detector, population, prompt)
    return {
        # the peers restarting here are DHT senders: judged at that kind's limit
        "rate_limited_share": round(float((top >= detector.limit_for("dht")).mean()), 4),
        "quarantined_share": round(float((top >= detector.quarantine).mean()), 4),
        "highest_score": round(float(top.max()), 6),
    }


def measured_case(detector: Detector, starts: int = 6, gap: float = 8.0) -> float:
    """The highest score of a node started `starts` times `gap` s apart, each start as
    measured on real daemons (11 requests and 4 stores, then 2 requests a second later)."""
    features = PeerFeatures()
    for i in range(starts):
        at = 1000.0 + i * gap
        features.observe("n", Signal.DHT_REQUEST, at + 0.1, 11)
        features.observe("n", Signal.DHT_STORE, at + 0.2, 4)
        features.observe("n", Signal.DHT_REQUEST, at + 1.2, 2)
    end = 1000.0 + starts * gap + 60
    rows = [features.row("n", 1001.0 + 2 * t) for t in range(int((end - 1001.0) / 2))]
    matrix = np.asarray([r.values for r in rows if r is not None], dtype=np.float32)
    return round(float(detector.scores(matrix).max()), 6)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--peers", type=int, default=400)
    parser.add_argument("--models", type=Path, action="append")
    args = parser.parse_args()
    restarting, control = traces(args.peers, True), traces(args.peers, False)
    out: dict[str, Any] = {"benchmark": "restarts", "peers": args.peers, "models": {}}
    for folder in args.models or [None]:
        detector = Detector.load() if folder is None else Detector(load_model(MODEL_NAME, folder))
        out["models"][str(folder or "shipped")] = {
            "limit": detector.limit_for("dht"),
            "quarantine": detector.quarantine,
            "restarting": measure(detector, restarting),
            "control": measure(detector, control),
            "restarting_periodic_only": measure(detector, restarting, prompt=False),
            "measured_case_highest_score": measured_case(detector),
        }
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
