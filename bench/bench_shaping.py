"""Traffic shaping against trained observers (JSON on stdout).

For each mode (off = the unshaped baseline, balanced, strict) the captured sessions of
tools/shaping/data (two full nodes on loopback: idle, presence, typing, chatting, file)
are replayed through the daemon's shaping code (tools/shaping/generate.py) into many
30-second sessions, each with its own seed. Adversaries are trained on SHAPED sessions
of that mode and tested on sessions cut from *other* captured sessions (leave one
captured session out, 4 folds: train and test never share a capture or a seed):

* k-FP-style random forest on ~120 hand features (counts, bytes, size histograms,
  inter-arrival statistics, per-second volumes, bursts, first packets);
* CUMUL-style SVM (RBF) on the cumulative signed-size curve sampled at 100 points;
* a sequence model: sklearn MLP over fixed-length 0.5 s bins (bytes and frames per
  direction). torch is not installed, so no 1-D CNN: this is its stand-in;
* a byte-count baseline: a shallow tree on total bytes and frames per direction.

Also reported per mode: accuracy with a 95% Wilson interval and macro-F1 per adversary,
bandwidth overhead (all active sessions together and per activity), added message
latency p50/p95 (small messages and file blocks apart), idle bytes per day, and the
model's decision time. Python timings on a shared 2-core machine are noisy.

Usage: python bench/bench_shaping.py [--per-capture 30] [--quick]
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sklearn.ensemble import RandomForestClassifier
from sklearn.metrics import balanced_accuracy_score, confusion_matrix, f1_score
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC
from sklearn.tree import DecisionTreeClassifier

from app.node.shaper import ScheduleModel, fallback_pick
from tools.shaping.generate import DATA, generate, validate
from tools.shaping.replay import ShapedTrace, load_captures

ACTIVITIES = ("idle", "presence", "typing", "chatting", "file")
DURATION = 30.0
SMALL_MESSAGE = 2048
SIZE_BINS = (0, 128, 512, 1100, 2100, 4200, 17000, 1 << 30)


def kfp_features(t: ShapedTrace) -> list[float]:
    """k-FP-style hand features of one session."""
    p = t.packets
    f: list[float] = []
    for sign in (1, -1, 0):
        sel = [x for x in p if sign == 0 or x[1] == sign]
        times = [x[0] for x in sel]
        sizes = [x[2] for x in sel]
        f += [len(sel), math.log1p(sum(sizes))]
        hist = np.histogram(sizes, bins=SIZE_BINS)[0] if sizes else np.zeros(len(SIZE_BINS) - 1)
        f += [float(h) for h in hist]
        gaps = np.diff(times) if len(times) > 1 else np.zeros(1)
        f += [float(np.mean(gaps)), float(np.std(gaps)), float(np.max(gaps))]
        f += [float(v) for v in np.percentile(gaps, [10, 25, 50, 75, 90])]
        per_s = np.histogram(times, bins=int(DURATION), range=(0, DURATION), weights=sizes)[0]
        cnt_s = np.histogram(times, bins=int(DURATION), range=(0, DURATION))[0]
        for series in (per_s, cnt_s):
            f += [float(np.mean(series)), float(np.std(series)), float(np.max(series))]
            f += [float(np.min(series)), float(np.median(series)), float(np.sum(series > 0))]
    bursts: list[int] = []
    last, run = 0, 0
    for _, d, _ in p:
        if d == last:
            run += 1
        else:
            if run:
                bursts.append(run)
            last, run = d, 1
    if run:
        bursts.append(run)
    f += [len(bursts), float(np.mean(bursts)) if bursts else 0.0, max(bursts, default=0)]
    first = [x[1] * x[2] for x in p[:20]] + [0] * (20 - min(20, len(p)))
    f += [float(v) for v in first]
    return f


def cumul_features(t: ShapedTrace, points: int = 100) -> list[float]:
    """CUMUL: the cumulative signed-size curve at `points` evenly spaced packet indices."""
    signed = [d * n for _, d, n in t.packets]
    n_in = sum(1 for s in signed if s < 0)
    n_out = len(signed) - n_in
    b_in = -sum(s for s in signed if s < 0)
    b_out = sum(s for s in signed if s > 0)
    head = [n_in, n_out, math.log1p(b_in), math.log1p(b_out)]
    if not signed:
        return head + [0.0] * points
    cum = np.cumsum(signed).astype(float)
    abs_cum = np.cumsum(np.abs(signed)).astype(float)
    grid = np.linspace(0, abs_cum[-1], points)
    curve = np.interp(grid, abs_cum, cum)
    return head + [float(math.copysign(math.log1p(abs(v)), v)) for v in curve]


def sequence_features(t: ShapedTrace, bins: int = 60) -> list[float]:
    """Fixed-length sequence: bytes and frames per direction in 0.5 s bins (log1p)."""
    rows = []
    for sign in (1, -1):
        times = [x[0] for x in t.packets if x[1] == sign]
        sizes = [x[2] for x in t.packets if x[1] == sign]
        rows.append(np.histogram(times, bins=bins, range=(0, DURATION), weights=sizes)[0])
        rows.append(np.histogram(times, bins=bins, range=(0, DURATION))[0])
    return [float(v) for v in np.log1p(np.concatenate(rows))]


def bytecount_features(t: ShapedTrace) -> list[float]:
    """Totals only: bytes and frames per direction."""
    out = [x for x in t.packets if x[1] == 1]
    inn = [x for x in t.packets if x[1] == -1]
    return [
        math.log1p(sum(x[2] for x in out)),
        math.log1p(sum(x[2] for x in inn)),
        float(len(out)),
        float(len(inn)),
    ]


ADVERSARIES: dict[str, tuple[Any, Any]] = {
    "kfp_random_forest": (
        kfp_features,
        lambda: RandomForestClassifier(n_estimators=150, random_state=0, n_jobs=1),
    ),
    "cumul_svm": (
        cumul_features,
        lambda: make_pipeline(StandardScaler(), SVC(C=10.0, gamma="scale")),
    ),
    "sequence_mlp": (
        sequence_features,
        lambda: make_pipeline(
            StandardScaler(),
            MLPClassifier((64, 32), max_iter=400, early_stopping=True, random_state=0),
        ),
    ),
    "byte_count": (
        bytecount_features,
        lambda: DecisionTreeClassifier(max_depth=6, random_state=0),
    ),
}


def wilson(correct: int, n: int, z: float = 1.96) -> list[float]:
    """95% Wilson score interval of a proportion."""
    if n == 0:
        return [0.0, 0.0]
    p = correct / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return [round(centre - half, 4), round(centre + half, 4)]


def attack(
    sessions: list[tuple[ShapedTrace, ShapedTrace, int]],
    classes: tuple[str, ...] = ACTIVITIES,
) -> dict[str, Any]:
    """Leave-one-captured-session-out evaluation of every adversary."""
    sessions = [x for x in sessions if x[0].activity in classes]
    labels = np.asarray([classes.index(s.activity) for s, _, _ in sessions])
    groups = np.asarray([g for _, _, g in sessions])
    results: dict[str, Any] = {}
    for name, (featurize, make) in ADVERSARIES.items():
        x = np.asarray([featurize(s) for s, _, _ in sessions], dtype=float)
        predicted = np.zeros_like(labels)
        for g in sorted(set(groups.tolist())):
            train, test = groups != g, groups == g
            model = make()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                model.fit(x[train], labels[train])
            predicted[test] = model.predict(x[test])
        correct = int(np.sum(predicted == labels))
        results[name] = {
            "accuracy": round(correct / len(labels), 4),
            "accuracy_ci95": wilson(correct, len(labels)),
            "macro_f1": round(float(f1_score(labels, predicted, average="macro")), 4),
            "idle_vs_active_balanced_accuracy": round(
                float(balanced_accuracy_score(labels == 0, predicted == 0)), 4
            ),
            "confusion": confusion_matrix(labels, predicted, labels=range(len(classes))).tolist(),
        }
    best = max(results, key=lambda k: results[k]["accuracy"])
    results["best"] = best
    return results


def costs(sessions: list[tuple[ShapedTrace, ShapedTrace, int]]) -> dict[str, Any]:
    """Bandwidth overhead, added latency, idle bytes per day."""
    per_class: dict[str, Any] = {}
    active_shaped = active_plain = 0
    small: list[float] = []
    blocks: list[float] = []
    for activity in ACTIVITIES:
        mine = [(s, p) for s, p, _ in sessions if s.activity == activity]
        if not mine:
            continue
        shaped = sum(s.wire_bytes for s, _ in mine)
        plain = sum(p.wire_bytes for _, p in mine)
        mine_small = [
            lat * 1000.0 for s, _ in mine for lat, size in s.latencies if size <= SMALL_MESSAGE
        ]
        per_class[activity] = {
            "wire_bytes_per_s": round(shaped / (len(mine) * DURATION), 1),
            "unshaped_bytes_per_s": round(plain / (len(mine) * DURATION), 1),
            "overhead_pct": round(100.0 * (shaped - plain) / plain, 1) if plain else None,
            "latency_ms_small_messages": _quantiles(mine_small),
        }
        if activity != "idle":
            active_shaped += shaped
            active_plain += plain
    for s, _, _ in sessions:
        for lat, size in s.latencies:
            (small if size <= SMALL_MESSAGE else blocks).append(lat * 1000.0)
    files = [s for s, _, _ in sessions if s.activity == "file"]
    goodput = sum(size for s in files for _, size in s.latencies) / (len(files) * DURATION)
    idle = [s for s, _, _ in sessions if s.activity == "idle"]
    idle_rate = sum(s.wire_bytes for s in idle) / (len(idle) * DURATION)
    return {
        "active_overhead_pct": round(100.0 * (active_shaped - active_plain) / active_plain, 1),
        "per_activity": per_class,
        "latency_ms_small_messages": _quantiles(small),
        "latency_ms_file_blocks": _quantiles(blocks),
        "idle_bytes_per_day": int(idle_rate * 86400),
        "file_goodput_bytes_per_s": int(goodput),
    }


def _quantiles(values: list[float]) -> dict[str, Any]:
    if len(values) < 2:
        return {"n": len(values)}
    q = statistics.quantiles(values, n=100, method="inclusive")
    return {"n": len(values), "p50": round(q[49], 1), "p95": round(q[94], 1)}


def long_idle_bytes_per_day(mode: str, model: ScheduleModel) -> int:
    """Both directions of a connection left idle for an hour after 5 min of silence."""
    from app.core.shaping import DORMANT_AFTER, ShapedChannel

    total = 0
    for direction in (b"out", b"in"):
        channel = ShapedChannel(mode, direction.ljust(32, b"."), 0.0)
        now, start, end = 0.0, DORMANT_AFTER + 60.0, DORMANT_AFTER + 3660.0
        while now < end:
            now = channel.next_wakeup()
            result = channel.step(now, model.pick)
            if result is not None and result.frame is not None and now >= start:
                total += len(result.frame.payload) + 6
    return int(total / 3600.0 * 86400)


def decision_timing(model: ScheduleModel) -> dict[str, Any]:
    """µs per schedule decision through app.node.ml, and the rule-only baseline."""
    row = (12.0, 3.0, 13.0, 11.0, 9.0, 12.0, 0.2, 1.0)
    out: dict[str, Any] = {}
    for name, fn in (("onnx_model_us", model.pick), ("fallback_rule_us", fallback_pick)):
        for _ in range(300):
            fn(row)
        runs = []
        for _ in range(5):
            n = 3000
            started = time.perf_counter()
            for _ in range(n):
                fn(row)
            runs.append((time.perf_counter() - started) / n * 1e6)
        out[name] = round(min(runs), 2)
        out[name + "_median"] = round(statistics.median(runs), 2)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description="traffic shaping vs trained adversaries")
    parser.add_argument("--per-capture", type=int, default=30)
    parser.add_argument("--data", type=Path, default=DATA)
    args = parser.parse_args()
    model = ScheduleModel.load()
    captures = load_captures(args.data, "off")
    report: dict[str, Any] = {
        "bench": "shaping",
        "captures": len(captures),
        "sessions_per_mode": len(captures) * args.per_capture,
        "session_seconds": DURATION,
        "classes": list(ACTIVITIES),
        "chance": round(1 / len(ACTIVITIES), 3),
        "model_loaded": model.loaded,
        "decision": decision_timing(model),
        "modes": {},
    }
    for mode in ("off", "balanced", "strict"):
        started = time.perf_counter()
        sessions = generate(captures, mode, model.pick, per_capture=args.per_capture, seed=11)
        generated = time.perf_counter() - started
        without_file = attack(sessions, ACTIVITIES[:4])
        report["modes"][mode] = {
            "adversaries": attack(sessions),
            "four_classes_without_file": {
                "chance": 0.25,
                "best": without_file["best"],
                "best_accuracy": without_file[without_file["best"]]["accuracy"],
                "best_accuracy_ci95": without_file[without_file["best"]]["accuracy_ci95"],
            },
            "costs": costs(sessions),
            "long_idle_bytes_per_day": 0 if mode == "off" else long_idle_bytes_per_day(mode, model),
            "generate_seconds": round(generated, 1),
        }
        print(f"{mode} done", file=sys.stderr, flush=True)
    report["replay_validation"] = validate(args.data, model.pick)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
