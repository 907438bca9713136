"""The byte mutator both fuzzers use (`parsers`, `hostile_peer`)."""

from __future__ import annotations

import random
from collections.abc import Sequence


def mutate(
    rng: random.Random,
    data: bytes,
    *,
    rounds: int = 3,
    appends: Sequence[int] = (1, 8, 100),
    repeat: tuple[int, int] = (8, 20),
    splices: Sequence[bytes] = (),
) -> bytes:
    """1 to `rounds` times: flip a bit, truncate, append random bytes (one of `appends`
    long), repeat a slice (up to `repeat[0]` bytes, up to `repeat[1]` times), or splice
    in one of `splices` (random bytes, up to 200, when there are none)."""
    out = bytearray(data)
    for _ in range(rng.randint(1, rounds)):
        op = rng.randrange(5)
        if op == 0 and out:
            out[rng.randrange(len(out))] ^= 1 << rng.randrange(8)
        elif op == 1:
            del out[rng.randrange(len(out) + 1) :]
        elif op == 2:
            out += rng.randbytes(rng.choice(appends))
        elif op == 3 and out:
            i = rng.randrange(len(out))
            out[i:i] = out[i : i + rng.randint(1, repeat[0])] * rng.randint(1, repeat[1])
        else:
            i = rng.randrange(len(out) + 1)
            out[i:i] = rng.choice(splices) if splices else rng.randbytes(rng.randint(0, 200))
    return bytes(out)
