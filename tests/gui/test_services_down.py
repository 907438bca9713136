"""The window says when the user's IPFS daemon or TURN server does not answer: the
status line names it (the node's sentence on hover), and a received file that waits for
the daemon says so in its row instead of only "waiting for the peer"."""

from __future__ import annotations

import dataclasses

import pytest
from gui_helpers import wait_for
from PySide6.QtCore import QLocale
from pytestqt.qtbot import QtBot

from app.gui.app import GuiSession
from app.gui.views.transfer_text import accessible_text, progress_text
from app.node.api import Transfer, TransferState

EN = QLocale(QLocale.Language.English, QLocale.Country.UnitedStates)
IPFS = "The IPFS daemon at /ip4/127.0.0.1/tcp/5001/http does not answer: sharing fails ..."
TURN = "The TURN server 'turn:u:•••@127.0.0.1:3478' does not answer: connections are ..."


def _receiving(waiting: str) -> Transfer:
    return Transfer(
        id="t1",
        contact="bob-address",
        outgoing=False,
        name="holiday.jpg",
        size=4_000_000,
        done_bytes=1_000_000,
        state=TransferState.RUNNING,
        path=None,
        mime="image/jpeg",
        time=1_700_000_000.0,
        waiting=waiting,
    )


def test_a_row_waiting_for_the_ipfs_daemon_says_so() -> None:
    said = "the IPFS daemon at /ip4/127.0.0.1/tcp/5001/http does not answer"
    row = _receiving(said)
    assert progress_text(row, EN) == f"1.00 MB of 4.00 MB · waiting for the peer; {said}"
    assert said in accessible_text(row, EN)
    assert progress_text(_receiving(""), EN) == "1.00 MB of 4.00 MB · waiting for the peer"


@pytest.mark.asyncio
async def test_status_line_says_while_the_ipfs_daemon_or_turn_server_is_down(
    qtbot: QtBot, session: GuiSession
) -> None:
    window = session.window
    assert window is not None and session.node is not None
    await wait_for(lambda: "127.0.0.1:" in window.endpoints_label.text())
    status = await session.node.status()
    assert status.ipfs == status.turn == ""
    window._on_node_status(dataclasses.replace(status, ipfs=IPFS, turn=TURN))
    assert "IPFS daemon not answering" in window.peers_label.text()
    assert "TURN server not answering" in window.peers_label.text()
    assert window.peers_label.toolTip() == f"{IPFS}\n{TURN}"
    window._on_node_status(status)  # both answer again
    assert "answering" not in window.peers_label.text()
    assert window.peers_label.toolTip() == ""
