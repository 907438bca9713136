"""`settings --ipfs-api` on a running node, with the real (js-ipfs) daemon: an address
where no daemon answers is refused with a sentence that says what to do (it was saved,
and every share failed from then on); the daemon's address is taken at once and the
next share is pinned there; the CLI's output carries no library warning."""

from __future__ import annotations

import signal
import socket
from pathlib import Path

import ipfshttpclient
import pytest
from cli_helpers import Daemon, run_cli
from ipfs_daemon import running_ipfs_daemon
from test_files import PASS, make_pair, share, write_random


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.slow
@pytest.mark.timeout(600)
@pytest.mark.filterwarnings("ignore:The 'strict' parameter:FutureWarning")  # the test's client
def test_the_cli_sets_the_ipfs_address_of_a_running_node(
    tmp_path: Path, daemons: list[Daemon]
) -> None:
    a, _ = make_pair(tmp_path, daemons)
    nowhere = f"/ip4/127.0.0.1/tcp/{closed_port()}/http"
    refused = run_cli(a, "settings", "--ipfs-api", nowhere, passphrase=PASS)
    assert refused.returncode == 1
    assert refused.stderr.startswith(f"error: The IPFS API address {nowhere} can't be used")
    assert "Start the daemon" in refused.stderr
    with running_ipfs_daemon(tmp_path / "ipfs") as ipfs:
        taken = run_cli(a, "settings", "--ipfs-api", ipfs.api_addr, passphrase=PASS)
        assert taken.returncode == 0, taken.stderr
        assert f"ipfs_api: {ipfs.api_addr}" in taken.stdout
        assert taken.stderr == ""
        src = write_random(tmp_path / "kept.bin", 300_000)
        share(a, "Bob", src)
        client = ipfshttpclient.Client(ipfs.api_addr)
        try:
            assert client.pin.ls(type="recursive")["Keys"]  # pinned on the daemon at once
        finally:
            client.close()
    # a removed setting needs no daemon
    cleared = run_cli(a, "settings", "--ipfs-api", "", passphrase=PASS)
    assert cleared.returncode == 0 and "ipfs_api: \n" in cleared.stdout
    alice = daemons[0].process
    alice.send_signal(signal.SIGTERM)
    _, stderr = alice.communicate(timeout=30)
    assert "Warning" not in stderr, stderr
