"""The baseline the detector is measured against: a token bucket plus a GossipSub-style
peer score (libp2p gossipsub v1.1 section "Peer Scoring"), on the same per-second counts.

* Token bucket: every request-like event (payload, DHT request, DHT store) takes a
  token; `rate` tokens/s refill up to `burst`. A peer that finds the bucket empty is
  flagged (it would be throttled).
* Peer score: P4 (invalid messages: failures, replays, bad signatures, rejected
  records) as a decaying counter with a squared, negative weight; P7 (behaviour
  penalty: handshake failures and reconnections beyond a threshold) likewise. Counters
  decay by `decay` each second (gossipsub's decay interval), and a peer whose score
  falls below the graylist threshold is flagged. The threshold is calibrated in the
  benchmark on the honest population, exactly like the detector's.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from app.core.peer_features import Signal as S

INVALID = (S.DECRYPT_FAILED, S.MALFORMED, S.INVALID_SIGNATURE, S.REPLAY, S.RECORD_REJECTED)
REQUESTS = (S.FRAME, S.DHT_REQUEST, S.DHT_STORE)


@dataclass(frozen=True)
class BaselineSettings:
    """Token bucket and score parameters (gossipsub-like defaults)."""

    rate: float = 20.0
    burst: float = 100.0
    decay: float = 0.9
    w_invalid: float = -1.0
    w_behaviour: float = -1.0
    behaviour_threshold: float = 1.0


def bucket_overflow(counts: np.ndarray, rate: float, burst: float) -> np.ndarray:
    """Per second: True when the token bucket ran dry."""
    demand = counts[:, list(REQUESTS)].sum(axis=1)
    tokens = burst
    out = np.zeros(len(demand), dtype=bool)
    for t, need in enumerate(demand):
        tokens = min(burst, tokens + rate)
        if need > tokens:
            out[t] = True
            tokens = 0.0
        else:
            tokens -= need
    return out


def peer_score(counts: np.ndarray, cfg: BaselineSettings) -> np.ndarray:
    """Per second: the gossipsub-style score (<= 0; lower is worse)."""
    invalid = counts[:, list(INVALID)].sum(axis=1)
    behaviour = counts[:, [S.HANDSHAKE_FAILED, S.CONNECT]].sum(axis=1)
    c4 = c7 = 0.0
    out = np.zeros(len(invalid))
    for t in range(len(invalid)):
        c4 = c4 * cfg.decay + invalid[t]
        c7 = c7 * cfg.decay + behaviour[t]
        excess = max(0.0, c7 - cfg.behaviour_threshold)
        out[t] = cfg.w_invalid * c4 * c4 + cfg.w_behaviour * excess * excess
    return out
