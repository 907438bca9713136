"""Opening a profile unlocks it (Argon2id: 64 MiB for ~0.2 s) before the modules of the
node stack (WebRTC, DHT, numpy, ONNX runtime: ~70 MB) are loaded, so the two do not add
up in the process's peak RSS (decision 0023): the running node (daemon or window) and a
command that opens the profile itself because no node runs. Loopback only."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from app.node.profile import create_profile

ROOT = Path(__file__).resolve().parents[2]
PASS = "a passphrase 123"
HEAVY = ("aiortc", "numpy", "onnxruntime", "app.node.service", "app.node.network")

PROBE = """
import asyncio, json, sys
from pathlib import Path
from app.node import api
from app.node.storage import vault

profile, heavy, passphrase, how = Path(sys.argv[1]), sys.argv[2].split(","), *sys.argv[3:]
seen = {}
derive = vault._kek

def watched(*args):
    seen["at_unlock"] = sorted(m for m in heavy if m in sys.modules)
    return derive(*args)

vault._kek = watched

def opened(options):
    if how == "node":
        return api.host_node(options, lambda: passphrase)
    return api.open_node(profile, lambda: passphrase)

async def main():
    options = api.DaemonOptions(profile, listen="127.0.0.1:0", lan=False)
    async with opened(options) as node:
        await node.status()
        seen["open"] = sorted(m for m in heavy if m in sys.modules)
    print(json.dumps(seen))

asyncio.run(main())
"""


@pytest.mark.parametrize(
    ("how", "loaded"),
    [("node", "app.node.network"), ("command", "app.node.service")],
)
def test_the_profile_is_unlocked_before_the_node_stack_is_loaded(
    tmp_path: Path, how: str, loaded: str
) -> None:
    create_profile(tmp_path / "p", "P", PASS)
    env = dict(os.environ, PYTHON_KEYRING_BACKEND="keyring.backends.fail.Keyring")
    done = subprocess.run(
        [sys.executable, "-c", PROBE, str(tmp_path / "p"), ",".join(HEAVY), PASS, how],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["at_unlock"] == []
    assert loaded in seen["open"]  # the profile was opened and served, after the unlock
