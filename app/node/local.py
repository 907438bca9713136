"""Reaching a profile's node: through the control socket of the process that owns it,
or, when none runs, by opening the profile in this process for the duration."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from app.node.api import NodeApi, PassphraseSource, ProfileNotFound
from app.node.control import ControlClient, connect_control
from app.node.lock import waiting_lock
from app.node.paths import ProfilePaths


@asynccontextmanager
async def open_node_api(root: Path, passphrase: PassphraseSource | None) -> AsyncIterator[NodeApi]:
    """The running node's API if one serves the profile, else a local, offline one."""
    paths = ProfilePaths(root)
    if not paths.database.exists():
        raise ProfileNotFound(
            f"There is no profile in {root} yet. Create one with: scrambled-eggs init --name NAME"
        )
    client = await connect_control(paths)
    if client is not None:
        try:
            yield client
        finally:
            await client.close()
        return
    # Imported only here: a command served by the running node (the usual case) then
    # starts without loading the node's stack (WebRTC, DHT, models: ~0.35 s).
    from app.node.profile import open_store

    served: list[ControlClient] = []

    async def node_answers() -> bool:  # a node that was starting may serve it now
        client = await connect_control(paths)
        if client is not None:
            served.append(client)
        return client is not None

    async with waiting_lock(paths.lock, meanwhile=node_answers) as lock:
        if lock is None:
            try:
                yield served[0]
            finally:
                await served[0].close()
            return
        store = await asyncio.to_thread(open_store, root, passphrase)
        # after the unlock: Argon2id's 64 MiB are freed before the ~60 MB of modules
        # under the service are loaded (decision 0023)
        from app.node.service import NodeService

        service = NodeService(store)
        try:
            yield service
        finally:
            service.close()
            await asyncio.to_thread(store.close)
