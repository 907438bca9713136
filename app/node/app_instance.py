"""One app per profile: the desktop app claims its profile the moment it starts, before
its first-run or unlock dialog, and a second start hands what it was asked for (an
invite link, or only to be seen) to the first one and exits (decision 0032)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path

from app.node.api import ControlUnavailable, OpenInvite, ProfileLocked, StorageFailed
from app.node.control import (
    CONNECT_RETRY,
    OPEN_INVITE,
    SHOW_WINDOW,
    ControlServer,
    connect_control,
)
from app.node.lock import ProfileClaim, lock_holder
from app.node.paths import ProfilePaths, make_private_dir

log = logging.getLogger(__name__)

MAX_TURNS = 20
"""How often a start that found its profile held tries again after the holder let go
without answering (a command holds a profile for a moment): then it gives up."""


@contextlib.asynccontextmanager
async def holding_profile(profile: Path) -> AsyncIterator[bool]:
    """Hold `profile` in this process for the duration (`ProfileClaim`) and answer on its
    control socket for the window (an invite link, "come to the front") until this
    process's node serves there. Yields True; False if the folder can't be made or
    locked (a read-only disk: what the user does next says why). `ProfileLocked` if
    another process holds the profile."""
    paths = ProfilePaths(profile)
    claim = ProfileClaim(paths.lock)
    try:
        if not profile.is_dir():  # a new profile's: its lock file is kept in it
            make_private_dir(profile)
        claim.acquire()
    except (OSError, StorageFailed):
        claimed = False
    else:
        claimed = True
    if not claimed:
        yield False
        return
    server = ControlServer(None, paths)
    try:
        await server.start()
    except OSError as exc:  # a second start then waits for the node's socket instead
        log.warning("the app's control socket could not be opened: %s", exc.strerror)
    try:
        yield True
    finally:
        try:
            await server.stop()
        finally:
            claim.release()


async def reach_running_app(profile: Path, link: str | None, wait: float) -> bool:
    """Hand `link` (None: only come to the front) to the app holding `profile`, through
    its control socket. True once it took it; False if nobody holds the profile any
    more and nobody answered (it can be claimed now). `NoWindow` if a headless daemon
    holds it, `ControlUnavailable` if the holder does not answer within `wait` seconds."""
    paths = ProfilePaths(profile)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    while True:
        client = await connect_control(paths)
        if client is not None:
            try:
                if link is None:
                    await client.call(SHOW_WINDOW)
                else:
                    await client.call(OPEN_INVITE, OpenInvite(link))
                return True
            except ControlUnavailable:
                pass  # it stopped meanwhile: whoever holds the profile next is asked
            finally:
                await client.close()
        if lock_holder(paths.lock) is None:
            return False
        if loop.time() >= deadline:
            raise ControlUnavailable(
                f"Scrambled Eggs holds the profile in {profile} but does not answer: it "
                "may still be starting, or be stopped (Ctrl+Z). Try again in a moment."
            )
        await asyncio.sleep(CONNECT_RETRY)


@contextlib.asynccontextmanager
async def one_app(profile: Path, link: str | None, wait: float) -> AsyncIterator[bool]:
    """`holding_profile`, or, when another process holds `profile`, `reach_running_app`
    with `link`: yields False then (this start is over), True while this app holds the
    profile (or could not claim its folder: see `holding_profile`)."""
    for _ in range(MAX_TURNS):
        held = False
        try:
            async with holding_profile(profile):  # unclaimed: the dialogs, node say why
                held = True
                yield True
                return
        except ProfileLocked:
            if held:
                raise  # the app's own doing, not the claim's
        if await reach_running_app(profile, link, wait):
            yield False
            return
    raise ProfileLocked(
        f"The profile at {profile} is taken and let go again by other Scrambled Eggs "
        "processes. Try again once they have finished."
    )
