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
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, TypeVar

from app.core.shaping import check_mode
from app.node.api import (
    DaemonOptions,
    InvalidArgument,
    PassphraseSource,
    ProfileNotFound,
    WrongPassphrase,
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

T = TypeVar("T")


class StopRequested(Exception):
    """A stop was asked for (`hosted_node`'s `stop`) before the node was running; what
    was started by then is stopped again, cleanly, before this is raised."""


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
    stop: asyncio.Event | None = None,
) -> AsyncIterator[NodeService]:
    """Lock, unlock and open the profile, join the DHT, serve the control socket.

    `frame_trace` receives every frame the shaper sees (tools/shaping/capture.py).
    `stop`, once set, ends the start-up at its next safe point with `StopRequested`:
    the wait for the profile's lock is given up at once; the unlock (Argon2id, in a
    thread) and the opening of the store are let finish, and the store is closed
    again; a node that is starting its network and messenger is let start, so that it
    stops as after start-up (the caller sees `stop` set: the node is yielded). Nothing
    is ever left half open, and the note of a clean stop is left as a stop after
    start-up leaves it (`app.node.clean_stop`)."""
    paths = ProfilePaths(options.profile)
    config = check_options(options)
    bootstrap = [parse_host_port(p) for p in [*options.bootstrap, *config.bootstrap]]
    async with contextlib.AsyncExitStack() as held:
        await _unless_stopped(held.enter_async_context(waiting_lock(paths.lock)), stop)
        _unless_stopped_now(stop)
        if log_to_profile:
            configure_logging(paths)
        try:
            store = await asyncio.to_thread(open_store, options.profile, passphrase)
        except WrongPassphrase:
            _unless_stopped_now(stop)  # not asked for again (`app.cli.asking_again`)
            raise
        if stop is not None and stop.is_set():
            await asyncio.to_thread(store.close)
            raise StopRequested
        # the rest of the node is imported only now, after Argon2id's 64 MiB are freed
        # (app/node/node_stack.py)
        from app.node.node_stack import running_node

        async with running_node(store, options, config, bootstrap, frame_trace) as service:
            yield service


def _unless_stopped_now(stop: asyncio.Event | None) -> None:
    """`StopRequested` if `stop` is set."""
    if stop is not None and stop.is_set():
        raise StopRequested


async def _unless_stopped(work: Awaitable[T], stop: asyncio.Event | None) -> T:
    """`work`'s result; if `stop` is set first, `work` is cancelled and `StopRequested`
    raised. Only for work a cancel leaves with nothing half done (a wait for a lock)."""
    if stop is None:
        return await work
    task = asyncio.ensure_future(work)
    stopping = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({task, stopping}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopping.cancel()
        if not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    if task.cancelled():
        raise StopRequested
    return task.result()


STOP_SIGNALS: tuple[signal.Signals, ...] = (
    signal.SIGINT,
    signal.SIGTERM,
    *([signal.SIGHUP] if hasattr(signal, "SIGHUP") else []),  # not on Windows
)
"""The signals that stop a headless node cleanly: Ctrl+C, `kill` or a service manager,
its terminal closed."""


def _stop_on_signals(stop: asyncio.Event) -> None:
    """Set `stop` on each of `STOP_SIGNALS` from now on (while the loop runs), but for
    those ignored by whoever started the process: under `nohup` (SIGHUP ignored) the
    node stopped when its terminal closed, which is what nohup is for preventing; a
    background job of a script (SIGINT ignored) stopped at a Ctrl+C meant for the
    script's foreground."""
    loop = asyncio.get_running_loop()

    def wake(signum: int, frame: object) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is closed: stopped already
            loop.call_soon_threadsafe(stop.set)

    for sig in STOP_SIGNALS:
        if signal.getsignal(sig) is signal.SIG_IGN:
            continue
        try:
            loop.add_signal_handler(sig, stop.set)
        except NotImplementedError:  # Windows: a plain handler (it wakes the loop)
            signal.signal(sig, wake)


async def run(
    options: DaemonOptions,
    passphrase: PassphraseSource | None,
    stop_asked: Callable[[], bool] | None = None,
) -> bool:
    """Run headless until SIGINT, SIGTERM or SIGHUP (its terminal closed: it died at
    once, as with SIGKILL, leaving the control socket and no note of a clean stop).

    The signals are taken from the first moment: one that came while the node was
    starting (waiting for the profile's lock, unlocking it, joining the network) killed
    it with the default action, the control socket left behind and the note of the
    last clean stop taken, so the next start reconciled every conversation (SIGINT:
    exit 130, and "node running" could still be printed). Such a stop now ends the
    start-up as `hosted_node` says, the same clean stop as later. Returns False if the
    node was stopped before it was running ("node running" was not printed).
    `stop_asked`: whether a stop came before the handlers were set here (`app.cli`)."""
    stop = asyncio.Event()
    _stop_on_signals(stop)
    if stop_asked is not None and stop_asked():  # before the handlers above were set
        stop.set()
    try:
        async with hosted_node(options, passphrase, stop=stop) as service:
            if stop.is_set():  # asked to stop while it started: no "node running"
                return False
            status = await service.status()
            if stop.is_set():
                return False
            print(f"node running: {status.address} on {', '.join(status.endpoints)}", flush=True)
            await stop.wait()
    except StopRequested:
        return False
    return True
