"""`window.open_invite` on the control socket: an invite link clicked outside the app
reaches the profile's window, shape-checked, and nothing else happens."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from app.node import api
from app.node.control import OPEN_INVITE, ControlServer
from app.node.paths import ProfilePaths
from app.node.profile import create_profile, open_store
from app.node.service import NodeService


@pytest_asyncio.fixture
async def served(tmp_path: Path) -> AsyncIterator[tuple[NodeService, Path]]:
    """A profile's node serving its control socket (no window registered)."""
    root = tmp_path / "me"
    create_profile(root, "Me", None)
    store = open_store(root, None)
    service = NodeService(store)
    server = ControlServer(service, ProfilePaths(root))
    await server.start()
    yield service, root
    await server.stop()
    service.close()
    store.close()


@pytest.fixture
def invite(tmp_path: Path) -> str:
    """A real, signed invite of someone else."""
    return api.init_profile(tmp_path / "bob", "Bob Smith", None).whoami.invite


async def raw_call(root: Path, params: object) -> dict[str, object]:
    """One `OPEN_INVITE` request as any local client could send it; its reply."""
    path = ProfilePaths(root).control_socket
    reader, writer = await asyncio.open_unix_connection(path, limit=1 << 20)
    request = {"jsonrpc": "2.0", "id": 1, "method": OPEN_INVITE, "params": params}
    writer.write(json.dumps(request).encode() + b"\n")
    await writer.drain()
    reply: dict[str, object] = json.loads(await reader.readline())
    writer.close()
    await writer.wait_closed()
    return reply


@pytest.mark.asyncio
async def test_a_node_without_a_window_says_so(
    served: tuple[NodeService, Path], invite: str
) -> None:
    service, root = served
    with pytest.raises(api.NoWindow, match="without its window"):
        await api.open_invite_in_window(root, invite)
    assert await service.list_contacts() == []


@pytest.mark.asyncio
async def test_the_profiles_window_gets_the_link_and_nothing_is_added(
    served: tuple[NodeService, Path], invite: str, tmp_path: Path
) -> None:
    service, root = served
    got: list[str] = []
    elsewhere: list[str] = []
    with (
        api.opening_links(tmp_path / "other", elsewhere.append),
        api.opening_links(root, got.append),
    ):
        await api.open_invite_in_window(root, f"  {invite}\n")
    assert got == [invite]  # trimmed, as it was written otherwise
    assert elsewhere == []
    assert await service.list_contacts() == []  # the window asks the user first
    with pytest.raises(api.NoWindow):  # the window closed: nobody takes links any more
        await api.open_invite_in_window(root, invite)


@pytest.mark.asyncio
async def test_links_that_cant_be_invites_never_reach_the_window(
    served: tuple[NodeService, Path], invite: str
) -> None:
    _, root = served
    got: list[str] = []
    with api.opening_links(root, got.append):
        for params in (
            {"link": "eggs:" + "a" * 100_000},
            {"link": "https://example.invalid/eggs:"},
            {"link": invite[:40] + "\x1b[2J" + invite[40:]},
            {"link": invite.replace("&x=", "&\u202ex=")},
        ):
            reply = await raw_call(root, params)
            error = reply["error"]
            assert isinstance(error, dict) and error["data"] == {"type": "bad_invite"}
            assert len(str(error["message"])) < 200  # the link is not echoed back
        for params in ({"link": 42}, {"other": "x"}, ["eggs:x"]):
            reply = await raw_call(root, params)
            error = reply["error"]
            assert isinstance(error, dict) and error["code"] == -32602
        # the server still answers, and a good link still goes through
        assert (await raw_call(root, {"link": invite}))["result"] is True
    assert got == [invite]


@pytest.mark.asyncio
async def test_no_node_answering_is_said_without_waiting_forever(tmp_path: Path) -> None:
    root = tmp_path / "nobody"
    create_profile(root, "Nobody", None)
    with pytest.raises(api.ControlUnavailable, match="does not answer"):
        await api.open_invite_in_window(root, "eggs:x", wait=0.3)


def test_the_shape_check_matches_the_invite_format() -> None:
    from app.core.identity import MAX_INVITE_CHARS

    assert api.MAX_LINK_CHARS == MAX_INVITE_CHARS
    assert api.check_invite_link(" EGGS:egg?v=1 ") == "EGGS:egg?v=1"
    for bad in ("", "eggs", "mailto:x", "eggs:a\tb", "eggs:a\u2066b", "eggs:" + "a" * 2044):
        with pytest.raises(api.BadInvite):
            api.check_invite_link(bad)


def test_the_link_a_desktop_passes_is_told_from_commands_and_options() -> None:
    from app.cli import link_argument

    link = "eggs:egg?v=1"
    assert link_argument([link]) == ([], link)
    assert link_argument(["--profile", "eggs:dir", link]) == (["--profile", "eggs:dir"], link)
    assert link_argument(["--profile=/p", "EGGS:x"]) == (["--profile=/p"], "EGGS:x")
    assert link_argument(["https://x/y"]) == ([], "https://x/y")  # refused as no invite later
    for argv in (
        [],
        ["--selftest"],
        ["contacts", "add", link],  # an argument of a command stays one
        ["C:\\Users\\me"],  # a Windows path is not a URL
    ):
        assert link_argument(argv) == (argv, None)
