"""A configured IPFS daemon that stops while a receiver's only source is that daemon (the
sender offline): the transfer row and `status` say the daemon does not answer, and the
fetch resumes by itself when it is back, the file whole (real js-ipfs daemon, two
daemons driven through the CLI, loopback only)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from cli_helpers import Daemon, cli_json, run_cli, wait_for
from ipfs_daemon import restartable_ipfs_daemon
from test_files import PASS, MiB, in_state, make_pair, sha256, share, state_of, write_random

pytestmark = [pytest.mark.usefixtures("ice_loopback_env"), pytest.mark.slow]


def status(profile: Path) -> dict[str, Any]:
    found: dict[str, Any] = cli_json(profile, "status", passphrase=PASS)
    return found


@pytest.mark.timeout(600)
@pytest.mark.filterwarnings("ignore:The 'strict' parameter:FutureWarning")
def test_an_ipfs_daemon_that_stops_is_told_and_the_fetch_resumes_when_it_is_back(
    tmp_path: Path, daemons: list[Daemon]
) -> None:
    with restartable_ipfs_daemon(tmp_path / "ipfs") as ipfs:
        ipfs.start()
        a, b = make_pair(tmp_path, daemons, auto_accept=0, ipfs_api=ipfs.api_addr)
        src = write_random(tmp_path / "via-ipfs.bin", 2 * MiB + 7)
        [tid] = share(a, "Bob", src)
        wait_for(lambda: in_state(b, tid, "offered"), timeout=60)
        assert status(b)["ipfs"] == ""
        assert daemons[0].stop() == 0  # the sender goes offline...
        ipfs.stop()  # ...and the daemon holding its blocks stops too
        assert cli_json(b, "transfers", "accept", tid, passphrase=PASS)["state"] == "running"

        said = f"the IPFS daemon at {ipfs.api_addr} does not answer"
        row = wait_for(lambda: (t := state_of(b, tid)) and t["waiting"] == said and t, 60)
        assert row["state"] == "running" and row["error"] is None
        listed = run_cli(b, "transfers", passphrase=PASS).stdout
        assert f"waiting for the peer; {said}" in listed
        told = status(b)["ipfs"]
        assert ipfs.api_addr in told and "does not answer" in told
        shown = run_cli(b, "status", passphrase=PASS).stdout
        assert f"Warning: {told}" in shown

        ipfs.start()  # back: nobody touches the transfer
        done = wait_for(lambda: in_state(b, tid, "done"), timeout=120)
        assert sha256(Path(done["path"])) == sha256(src)
        assert done["waiting"] is None
        wait_for(lambda: status(b)["ipfs"] == "", timeout=30)
