"""Starting a node unlocks the profile (Argon2id: 64 MiB for ~0.2 s) before it loads the
node stack (WebRTC, DHT, numpy, ONNX runtime: ~70 MB), so the two do not add up in the
node's peak RSS (decision 0023). Loopback only."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from app.node.profile import create_profile

ROOT = Path(__file__).resolve().parents[2]
PASS = "a passphrase 123"
HEAVY = ("aiortc", "numpy", "onnxruntime", "app.node.network", "app.node.anomaly")

PROBE = """
import asyncio, json, sys
from pathlib import Path
from app.node import api
from app.node.storage import vault

heavy = sys.argv[2].split(",")
seen = {}
derive = vault._kek

def watched(*args):
    seen["at_unlock"] = sorted(m for m in heavy if m in sys.modules)
    return derive(*args)

vault._kek = watched

async def main(profile):
    options = api.DaemonOptions(profile, listen="127.0.0.1:0", lan=False)
    async with api.host_node(options, lambda: sys.argv[3]):
        seen["running"] = sorted(m for m in heavy if m in sys.modules)
    print(json.dumps(seen))

asyncio.run(main(Path(sys.argv[1])))
"""


def test_the_profile_is_unlocked_before_the_node_stack_is_loaded(tmp_path: Path) -> None:
    create_profile(tmp_path / "p", "P", PASS)
    env = dict(os.environ, PYTHON_KEYRING_BACKEND="keyring.backends.fail.Keyring")
    done = subprocess.run(
        [sys.executable, "-c", PROBE, str(tmp_path / "p"), ",".join(HEAVY), PASS],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["at_unlock"] == []
    assert "app.node.network" in seen["running"]  # the node did start, after the unlock
