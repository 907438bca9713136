"""A node whose user set no IPFS API address (the default) never loads the IPFS client
(ipfshttpclient and requests under it: ~15 MB of resident memory)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

PROBE = """
import asyncio, json, sys
from pathlib import Path
from app.node import api

async def main(profile):
    async with api.host_node(api.DaemonOptions(profile, listen="127.0.0.1:0", lan=False), None):
        await asyncio.sleep(0.5)
        print(json.dumps({m: m in sys.modules for m in ("ipfshttpclient", "requests")}))

api.init_profile(Path(sys.argv[1]), "Probe", None)
asyncio.run(main(Path(sys.argv[1])))
"""


def test_a_node_without_an_ipfs_daemon_does_not_load_its_client(tmp_path: Path) -> None:
    env = dict(os.environ, PYTHON_KEYRING_BACKEND="keyring.backends.fail.Keyring")
    done = subprocess.run(
        [sys.executable, "-c", PROBE, str(tmp_path / "profile")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    loaded = json.loads(done.stdout.strip().splitlines()[-1])
    assert loaded == {"ipfshttpclient": False, "requests": False}
