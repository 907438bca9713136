"""`status` says when the configured TURN server does not answer (a daemon in its own
process, its TURN server a real coturn on loopback that was stopped), without the
password; and says nothing while it works."""

from __future__ import annotations

import shutil
import socket
from pathlib import Path
from typing import Any

import pytest
from cli_helpers import Daemon, cli_json, run_cli, wait_for
from test_files import PASS, configure, start

from tests.conftest import TURN_PASSWORD, start_coturn

pytestmark = [pytest.mark.usefixtures("ice_loopback_env"), pytest.mark.slow]


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def status(profile: Path) -> dict[str, Any]:
    found: dict[str, Any] = cli_json(profile, "status", passphrase=PASS)
    return found


@pytest.mark.timeout(300)
def test_status_says_the_turn_server_does_not_answer(tmp_path: Path, daemons: list[Daemon]) -> None:
    binary = shutil.which("turnserver")
    if binary is None:
        pytest.skip("coturn (turnserver) is not installed")
    port = _free_udp_port()
    entry = f"turn:u:{TURN_PASSWORD}@127.0.0.1:{port}"
    me = tmp_path / "me"
    cli_json(me, "init", "--name", "Me", passphrase=PASS)
    configure(me, tmp_path / "downloads", ice_servers=[entry])

    coturn = start_coturn(binary, port)
    try:
        daemons.append(start(me))
        assert status(me)["turn"] == ""  # it works: nothing to say
    finally:
        coturn.terminate()
        coturn.wait(5)
    assert daemons[0].stop() == 0

    daemons[0] = start(me)  # the node starts with its TURN server down
    told = wait_for(lambda: status(me)["turn"], timeout=60)
    assert "does not answer" in told and f"u:•••@127.0.0.1:{port}" in told
    assert TURN_PASSWORD not in told
    shown = run_cli(me, "status", passphrase=PASS).stdout
    assert f"Warning: {told}" in shown
