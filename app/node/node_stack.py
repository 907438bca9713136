"""The running node, composed around an unlocked profile: network stack (DHT,
transports, LAN discovery), traffic shaper, messenger with offline mailboxes, the
anomaly guard and the control socket.

Imported by `app.node.daemon.hosted_node` only once the profile is unlocked: this
module's imports (WebRTC, the DHT, numpy and the ONNX models) hold ~70 MB, and the
unlock's Argon2id takes 64 MiB for a moment; one after the other, the node's peak RSS
is its running size, not the two added up (decision 0023).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from app.node.api import DaemonOptions, NetworkError, NodeError, SettingsChanged
from app.node.config import Config
from app.node.control import ControlServer
from app.node.dht import parse_host_port
from app.node.guard import NodeGuard
from app.node.mailbox import MailboxCourier
from app.node.messenger import Messenger
from app.node.network import NetworkStack
from app.node.paths import ProfilePaths
from app.node.service import NodeService
from app.node.shaper import Shaper, TraceEvent
from app.node.storage.store import ProfileStore
from app.node.wake import WakeWatcher

if TYPE_CHECKING:
    from app.node.lan import LanDiscovery

log = logging.getLogger(__name__)

MAILBOX_POLL_SECONDS = 60.0
"""How often the mailboxes left for us in the DHT are read (also once after joining)."""


@asynccontextmanager
async def running_node(
    store: ProfileStore,
    options: DaemonOptions,
    config: Config,
    bootstrap: list[tuple[str, int]],
    frame_trace: Callable[[TraceEvent], None] | None = None,
) -> AsyncIterator[NodeService]:
    """Join the DHT, serve the control socket and run until the context exits; the
    store is closed at the end. `options` were checked (`daemon.check_options`)."""
    listen = options.listen or config.listen
    host, port = parse_host_port(listen, allow_port_zero=True)
    paths = ProfilePaths(options.profile)
    shaper = Shaper(options.shaping or config.shaping_mode, trace=frame_trace)
    log.info("traffic shaping: %s", shaper.mode)
    service = NodeService(store)
    # the TURN password is in the sealed store, not in `config` (read before the unlock)
    network = NetworkStack(store.identity, ice_servers=service.config.ice_servers, hook=shaper)
    messenger = Messenger(store, network, service.publish)
    courier = MailboxCourier(store, network, messenger, poll_interval=MAILBOX_POLL_SECONDS)
    messenger.courier = courier
    messenger.epoch_sink = courier.epoch_announced
    guard = NodeGuard.install(store, network, messenger, service.publish, mailbox=courier)
    control = ControlServer(service, paths)
    lan: LanDiscovery | None = None
    follow: asyncio.Task[None] | None = None
    wake = WakeWatcher()
    try:
        picked = await _start_network(network, host, port, listen, config, options.listen)
        if picked:
            await service.keep_settings(**picked)
        contacts = await store.call(store.contacts.all)
        for record in contacts:
            for endpoint in record.endpoints:
                with contextlib.suppress(NodeError):
                    bootstrap.append(parse_host_port(endpoint))
        service.attach_network(network)
        messenger.files = service.files
        await service.files.start(network, messenger)
        await messenger.start()
        if guard is not None:
            guard.start([record.address for record in contacts])
        service.attach_delivery(messenger)
        await control.start()
        joined = network.join(bootstrap)
        messenger.after_join(joined)
        courier.start(joined)
        if options.lan and config.lan_discovery:
            from app.node.lan import LanDiscovery  # zeroconf only when LAN is wanted

            lan = LanDiscovery(host, network.dht.port, network.join_via)
            try:
                await lan.start()
            except OSError as exc:
                log.warning("LAN discovery is unavailable: %s", exc)
                lan = None
        # a wake or a new network: probe links, dial contacts, poll, publish now
        wake.subscribe(network.network_changed)
        wake.subscribe(messenger.network_changed)
        wake.subscribe(courier.network_changed)
        if lan is not None:
            wake.subscribe(lan.network_changed)
        wake.start()
        log.info("node up on %s", network.endpoints())
        if options.shaping is None:  # no override for this run: follow the setting
            follow = asyncio.create_task(_follow_shaping_setting(service, shaper))
        yield service
    finally:
        await wake.stop()
        if follow is not None:
            follow.cancel()
        await control.stop()
        if lan is not None:
            await lan.stop()
        service.close()
        await courier.stop()
        await service.files.stop()
        if guard is not None:
            await guard.stop()
        await messenger.stop()
        await network.stop()
        await asyncio.to_thread(store.close)
        log.info("node stopped")


async def _start_network(
    network: NetworkStack,
    host: str,
    port: int,
    listen: str,
    config: Config,
    explicit: str | None,
) -> dict[str, object]:
    """Start listening; port 0 ("pick a free one") is kept in the profile from then on,
    so invites handed out stay valid. Returns the settings to save for that.

    Without `--listen`, the picked port goes into the `listen` setting. With an explicit
    `--listen HOST:0`, it is kept per HOST in `kept_ports` and tried first the next
    time the same HOST:0 is given (or the `listen` setting is HOST:0, as for the window
    after a daemon ran with `--listen HOST:0`); if it is taken by then, another one is
    picked (and kept). An explicit non-zero port is used as given."""
    if port != 0:
        await network.start(host, port)
        return {}
    listen_host = listen.strip().rpartition(":")[0]
    kept = dict(entry.rpartition(":")[::2] for entry in config.kept_ports)  # host -> port
    text = kept.pop(listen_host, "")
    kept_port = int(text) if text.isdigit() else 0
    if 0 < kept_port < 65536:  # also without --listen: the port invites name already
        try:
            await network.start(host, kept_port)
            return {} if explicit is not None else {"listen": f"{listen_host}:{kept_port}"}
        except NetworkError as exc:
            log.info("the kept port %d is taken (%s); picking another", kept_port, exc)
    await network.start(host, 0)
    if explicit is None:
        return {"listen": f"{listen_host}:{network.dht.port}"}
    kept[listen_host] = str(network.dht.port)
    return {"kept_ports": [f"{h}:{p}" for h, p in kept.items()]}


async def _follow_shaping_setting(service: NodeService, shaper: Shaper) -> None:
    """Apply a changed `shaping_mode` setting to connections opened from then on."""
    async for event in service.events():
        if isinstance(event, SettingsChanged) and event.settings.shaping_mode != shaper.mode:
            shaper.set_mode(event.settings.shaping_mode)
            log.info("traffic shaping: %s (for new connections)", shaper.mode)
