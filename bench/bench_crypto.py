"""Benchmark of the end-to-end encryption core; prints one JSON object.

Figures: encrypt+decrypt messages per second one way (same sending chain) and
alternating (every message starts a new DH ratchet step), the X3DH handshake time, and
in the same run the raw costs they are built from: AES-256-GCM encrypt+decrypt of the
same payload and one X25519 exchange. Not a test: nothing here asserts a time.

    .venv/bin/python bench/bench_crypto.py [--messages N] [--payload BYTES]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cryptography.hazmat.primitives.asymmetric.x25519 import (
    X25519PrivateKey,
    X25519PublicKey,
)
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from app.core import session
from app.core.identity import IdentityKeys
from app.core.prekeys import PrekeyStore
from app.core.ratchet import (
    decrypt,
    encrypt,
    init_initiator,
    init_responder,
    x25519_public_key,
)
from app.core.x3dh import initiate, respond

NOW = time.time()


def best_rate(run: Callable[[], int], repeats: int = 3) -> float:
    """Operations per second of the fastest of `repeats` runs (run returns its op count)."""
    best = 0.0
    for _ in range(repeats):
        start = time.perf_counter()
        count = run()
        best = max(best, count / (time.perf_counter() - start))
    return best


def ratchet_pair() -> tuple[object, object]:
    shared, signed_prekey = os.urandom(32), os.urandom(32)
    ad = os.urandom(128)
    return (
        init_initiator(shared, x25519_public_key(signed_prekey), ad),
        init_responder(shared, signed_prekey, ad),
    )


def one_way(messages: int, payload: bytes) -> Callable[[], int]:
    def run() -> int:
        alice, bob = ratchet_pair()
        alice, wire = encrypt(alice, payload, os.urandom)  # type: ignore[arg-type]
        bob, _ = decrypt(bob, wire)  # type: ignore[arg-type]
        for _ in range(messages):
            alice, wire = encrypt(alice, payload, os.urandom)
            bob, plain = decrypt(bob, wire)
        assert plain == payload
        return messages

    return run


def alternating(messages: int, payload: bytes) -> Callable[[], int]:
    def run() -> int:
        alice, bob = ratchet_pair()
        for i in range(messages):
            if i % 2 == 0:
                alice, wire = encrypt(alice, payload, os.urandom)  # type: ignore[arg-type]
                bob, plain = decrypt(bob, wire)  # type: ignore[arg-type]
            else:
                bob, wire = encrypt(bob, payload, os.urandom)  # type: ignore[arg-type]
                alice, plain = decrypt(alice, wire)  # type: ignore[arg-type]
        assert plain == payload
        return messages

    return run


def raw_aes_gcm(messages: int, payload: bytes) -> Callable[[], int]:
    key, aad = os.urandom(32), os.urandom(170)

    def run() -> int:
        for _ in range(messages):
            nonce = os.urandom(12)
            sealed = AESGCM(key).encrypt(nonce, payload, aad)
            AESGCM(key).decrypt(nonce, sealed, aad)
        return messages

    return run


def raw_x25519(count: int) -> Callable[[], int]:
    ours = X25519PrivateKey.generate()
    theirs = X25519PrivateKey.generate().public_key().public_bytes_raw()

    def run() -> int:
        for _ in range(count):
            ours.exchange(X25519PublicKey.from_public_bytes(theirs))
        return count

    return run


def handshakes(count: int) -> tuple[Callable[[], int], Callable[[], int]]:
    alice = IdentityKeys.from_seeds(os.urandom(32), os.urandom(32))
    bob = IdentityKeys.from_seeds(os.urandom(32), os.urandom(32))
    store = PrekeyStore.create(NOW, os.urandom, one_time_target=count)
    bundle = store.bundle(bob)

    def x3dh_only() -> int:
        for _ in range(count):
            ours = initiate(alice, bundle, NOW, os.urandom)
            respond(bob, store, ours.header)
        return count

    def full_session() -> int:
        for _ in range(count):
            a = session.initiate(alice, bundle, NOW, os.urandom)
            a, first = session.encrypt(a, b"hello", os.urandom)
            _, b, _ = session.accept(bob, store, first)
            b, reply = session.encrypt(b, b"hi", os.urandom)
            session.decrypt(a, reply)
        return count

    return x3dh_only, full_session


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--payload", type=int, default=256, help="plaintext bytes")
    args = parser.parse_args()
    payload = os.urandom(args.payload)
    x3dh_only, full_session = handshakes(200)
    one_way_rate = best_rate(one_way(args.messages, payload))
    alternating_rate = best_rate(alternating(args.messages, payload))
    aes_rate = best_rate(raw_aes_gcm(args.messages, payload))
    x25519_rate = best_rate(raw_x25519(5_000))
    result = {
        "benchmark": "e2e-crypto",
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "payload_bytes": args.payload,
        "messages": args.messages,
        "ratchet_one_way_msgs_per_s": round(one_way_rate),
        "ratchet_alternating_msgs_per_s": round(alternating_rate),
        "x3dh_handshake_ms": round(1000 / best_rate(x3dh_only), 3),
        "session_setup_round_trip_ms": round(1000 / best_rate(full_session), 3),
        "baseline_raw_aes256gcm_enc_dec_per_s": round(aes_rate),
        "baseline_raw_x25519_exchange_us": round(1e6 / x25519_rate, 2),
        "overhead_one_way_vs_raw_aead": round(aes_rate / one_way_rate, 1),
        "alternating_cost_in_x25519_exchanges": round(x25519_rate / alternating_rate, 2),
        "target_alternating_msgs_per_s": 5000,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
