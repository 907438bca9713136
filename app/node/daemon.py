"""Starting a node: check the options, lock and unlock the profile, then run the node
composed in `app.node.node_stack` (network stack, messenger with offline mailboxes, the
control socket).

`hosted_node` is shared by the headless daemon and the GUI, so both serve the same
control socket and the CLI works beside either. This module imports little: the unlock
(Argon2id, 64 MiB for a moment) runs before the node stack's modules are loaded.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import logging.handlers
import signal
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from app.core.shaping import check_mode
from app.node.api import (
    DaemonOptions,
    InvalidArgument,
    PassphraseSource,
    ProfileNotFound,
)
from app.node.config import Config, load_config
from app.node.dht import parse_host_port
from app.node.lock import waiting_lock
from app.node.paths import ProfilePaths, make_private_dir
from app.node.profile import open_store

if TYPE_CHECKING:
    from app.node.service import NodeService
    from app.node.shaper import TraceEvent

log = logging.getLogger(__name__)


class _ProfileLogHandler(logging.handlers.RotatingFileHandler):
    """The profile's log. A record that can't be written (the disk is full) is dropped:
    the default prints a traceback to stderr for every record, and the node's own error
    for what it could not store says what to do."""

    def handleError(self, record: logging.LogRecord) -> None:
        pass


def configure_logging(paths: ProfilePaths) -> None:
    """Log to `<profile>/logs/node.log` (rotated). Nothing secret is ever logged."""
    make_private_dir(paths.logs)
    handler = _ProfileLogHandler(
        paths.logs / "node.log", maxBytes=2_000_000, backupCount=3, encoding="utf-8"
    )
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    if any(getattr(h, "baseFilename", None) == handler.baseFilename for h in root.handlers):
        handler.close()
        return
    root.addHandler(handler)
    root.setLevel(logging.INFO)


def check_options(options: DaemonOptions) -> Config:
    """The profile's settings, if the node can start with `options` (a profile, listen
    and bootstrap addresses, a shaping mode); the error `hosted_node` would raise if
    not, found without opening the profile (before a passphrase is asked for)."""
    paths = ProfilePaths(options.profile)
    if not paths.database.exists():
        raise ProfileNotFound(
            f"There is no profile in {options.profile} yet. "
            "Create one with: scrambled-eggs init --name NAME"
        )
    config = load_config(paths.config)
    parse_host_port(options.listen or config.listen, allow_port_zero=True)
    for peer in [*options.bootstrap, *config.bootstrap]:
        parse_host_port(peer)
    try:
        check_mode(options.shaping or config.shaping_mode)
    except ValueError as exc:
        raise InvalidArgument(f"Traffic shaping: {exc}.") from None
    return config


@asynccontextmanager
async def hosted_node(
    options: DaemonOptions,
    passphrase: PassphraseSource | None,
    *,
    log_to_profile: bool = True,
    frame_trace: Callable[[TraceEvent], None] | None = None,
) -> AsyncIterator[NodeService]:
    """Lock, unlock and open the profile, join the DHT, serve the control socket.

    `frame_trace` receives every frame the shaper sees (tools/shaping/capture.py)."""
    paths = ProfilePaths(options.profile)
    config = check_options(options)
    bootstrap = [parse_host_port(p) for p in [*options.bootstrap, *config.bootstrap]]
    async with waiting_lock(paths.lock):
        if log_to_profile:
            configure_logging(paths)
        store = await asyncio.to_thread(open_store, options.profile, passphrase)
        # the rest of the node is imported only now, after Argon2id's 64 MiB are freed
        # (app/node/node_stack.py)
        from app.node.node_stack import running_node

        async with running_node(store, options, config, bootstrap, frame_trace) as service:
            yield service


async def run(options: DaemonOptions, passphrase: PassphraseSource | None) -> None:
    """Run headless until SIGINT, SIGTERM or SIGHUP (its terminal closed: it died at
    once, as with SIGKILL, leaving the control socket and no note of a clean stop)."""
    async with hosted_node(options, passphrase) as service:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        stopping = [signal.SIGINT, signal.SIGTERM]
        if hasattr(signal, "SIGHUP"):  # not on Windows
            stopping.append(signal.SIGHUP)
        for sig in stopping:
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, stop.set)
        status = await service.status()
        print(f"node running: {status.address} on {', '.join(status.endpoints)}", flush=True)
        await stop.wait()
