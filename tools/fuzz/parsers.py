"""Random, CBOR-shaped and mutated bytes into every parser a peer or a pasted link reaches.

    python -m tools.fuzz.parsers [--cases N] [--seed S]

A parser may only refuse input with `RemoteProtocolError` (the typed error of the core
layer) or, where its docstring says so, `ValueError` (the session plaintexts). Anything
else is reported with the first input that raised it, and the exit status is 1.
No network: everything runs in this process.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import traceback
from collections import Counter
from collections.abc import Callable

import cbor2

from app.core import (
    binding,
    bulk,
    cid,
    file_crypto,
    identity,
    ledger_event,
    noise,
    prekeys,
    ratchet,
    records,
    unixfs,
    wire,
    x3dh,
)
from app.core.errors import RemoteProtocolError
from app.node import state_message
from app.node.transport import webrtc
from tools.fuzz.mutation import mutate as mutate_bytes

Parser = Callable[[bytes], object]

INTERESTING = [
    b"\x9f", b"\xbf", b"\x5f", b"\x7f", b"\xff", b"\x1b" + b"\xff" * 8, b"\xc1",
    b"\xd8\x2a", b"\xfb\x7f\xf8" + bytes(6), b"\x81" * 50,
]  # fmt: skip
"""CBOR heads that open indefinite items, huge lengths, tags, NaN and deep nesting."""


def mutate(rng: random.Random, data: bytes) -> bytes:
    """`data` mutated 1 to 3 times, splicing in `INTERESTING` CBOR heads."""
    return mutate_bytes(rng, data, splices=INTERESTING)


def cbor_value(rng: random.Random, depth: int = 0) -> object:
    """A random CBOR-encodable value: scalars, containers and tags, 3 levels deep."""
    kind = rng.randrange(10 if depth < 3 else 6)
    if kind == 0:
        return None
    if kind == 1:
        return rng.choice([True, False])
    if kind == 2:
        return rng.randint(-(2**70), 2**70)
    if kind == 3:
        return rng.random()
    if kind == 4:
        return rng.randbytes(rng.randint(0, 40))
    if kind == 5:
        return "t" * rng.randint(0, 5)
    if kind == 6:
        return [cbor_value(rng, depth + 1) for _ in range(rng.randint(0, 3))]
    if kind == 7:
        return {f"k{i}": cbor_value(rng, depth + 1) for i in range(rng.randint(0, 3))}
    if kind == 8:
        return {rng.randbytes(2): 1}
    return cbor2.CBORTag(rng.randint(0, 300), cbor_value(rng, depth + 1))


def text(parse: Callable[[str], object]) -> Parser:
    return lambda data: parse(data.decode("latin-1"))


def targets() -> dict[str, tuple[Parser, bytes | None, type[Exception] | None]]:
    """name -> (parser, a valid input to mutate or None, a documented extra error)."""
    keys = identity.IdentityKeys.from_seeds(os.urandom(32), os.urandom(32))
    manifest = file_crypto.FileManifest(
        root_cid=bytes.fromhex("01551220") + os.urandom(32),
        file_key=os.urandom(32),
        padded_size=file_crypto.padded_size(5),
        size=5,
        name="a.txt",
        mime_type="text/plain",
    )
    state = state_message.StateMessage([b"x"], [], False).encode()
    invite = identity.make_invite(keys, "Alice", ["127.0.0.1:4000"])
    return {
        "decode_manifest": (
            file_crypto.decode_manifest,
            file_crypto.encode_manifest(manifest),
            None,
        ),
        "decode_event": (ledger_event.decode_event, None, None),
        "decode_strict_cbor": (ledger_event.decode_strict_cbor, None, None),
        "StateMessage.decode": (state_message.StateMessage.decode, state, ValueError),
        "decode_plaintext": (state_message.decode_plaintext, state, ValueError),
        "IdentityProof.decode": (noise.IdentityProof.decode, None, None),
        "ConnectionBinding.decode": (binding.ConnectionBinding.decode, None, None),
        "bulk.decode_wants": (bulk.decode_wants, None, None),
        "bulk.decode_answer": (bulk.decode_answer, None, None),
        "PrekeyBundle.from_bytes": (prekeys.PrekeyBundle.from_bytes, None, None),
        "ratchet.parse_header": (ratchet.parse_header, None, None),
        "decode_record": (records.decode_record, None, None),
        "records.validate": (lambda d: records.validate(d, os.urandom(20), 1e9), None, None),
        "decode_presence": (records.decode_presence, None, None),
        "decode_file_node": (unixfs.decode_file_node, None, None),
        "decode_frame": (wire.decode_frame, None, None),
        "FrameDecoder.feed": (lambda d: wire.FrameDecoder().feed(d), None, None),
        "InitialHeader.from_bytes": (x3dh.InitialHeader.from_bytes, None, None),
        "decode_offer": (webrtc.decode_offer, None, None),
        "webrtc.decode_answer": (lambda d: webrtc.decode_answer(d, bytes(16)), None, None),
        "parse_invite": (text(identity.parse_invite), invite.encode(), None),
        "decode_address": (text(identity.decode_address), keys.public.address.encode(), None),
        "validate_endpoint": (text(identity.validate_endpoint), b"127.0.0.1:4000", None),
        "Cid.parse": (text(cid.Cid.parse), None, None),
    }


def sample(rng: random.Random, seed: bytes | None) -> bytes:
    roll = rng.random()
    if seed is not None and roll < 0.4:
        return mutate(rng, seed)
    if roll < 0.75:
        data = cbor2.dumps(cbor_value(rng))
        return mutate(rng, data) if rng.random() < 0.5 else data
    return rng.randbytes(rng.randint(0, 300))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=2000, help="inputs per parser")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    found: Counter[tuple[str, str]] = Counter()
    first: dict[tuple[str, str], str] = {}
    for name, (parse, seed, documented) in targets().items():
        allowed: tuple[type[Exception], ...] = (RemoteProtocolError,)
        if documented is not None:
            allowed += (documented,)
        for _ in range(args.cases):
            data = sample(rng, seed)
            try:
                parse(data)
            except allowed:
                pass
            except Exception as exc:  # what this tool is looking for
                key = (name, type(exc).__name__)
                found[key] += 1
                error = "".join(traceback.format_exception_only(exc)).strip()
                first.setdefault(key, f"{data[:120]!r}: {error[:200]}")
    for key, count in found.items():
        print(f"{key[0]}: {count} x {key[1]}, first on {first[key]}")
    print(
        f"{len(targets())} parsers x {args.cases} inputs (seed {args.seed}): "
        f"{sum(found.values())} untyped errors"
    )
    sys.exit(1 if found else 0)


if __name__ == "__main__":
    main()
