"""Wires anomaly detection and key rotation into a running node (one call each way).

`NodeGuard.install` hooks the `AnomalyMonitor` into the network stack (inbound gate,
transport events, DHT observer) and the messenger (per-peer outcomes), and the
`KeyRotator` under it; `start`/`stop` run their timers. Without the shipped model the
node runs unguarded and says so in its log (the rest still works).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from app.node.anomaly import AnomalyMonitor, Detector
from app.node.api import NodeEvent
from app.node.ml import ModelError
from app.node.rotation import EpochRotator, KeyRotator

if TYPE_CHECKING:
    from app.node.messenger import Messenger
    from app.node.network import NetworkStack
    from app.node.storage.store import ProfileStore

log = logging.getLogger(__name__)


class NodeGuard:
    """The node's anomaly monitor and key rotator, installed together."""

    def __init__(self, monitor: AnomalyMonitor, rotator: KeyRotator) -> None:
        self.monitor = monitor
        self.rotator = rotator
        self._messenger: Messenger | None = None

    @classmethod
    def install(
        cls,
        store: ProfileStore,
        network: NetworkStack,
        messenger: Messenger,
        publish: Callable[[NodeEvent], None],
        *,
        mailbox: EpochRotator | None = None,
        detector: Detector | None = None,
        clock: Callable[[], float] = time.time,
    ) -> NodeGuard | None:
        """Build and hook both in; None (logged) if the detector model can't be loaded."""
        if detector is None:
            try:
                detector = Detector.load()
            except ModelError as exc:
                log.error("anomaly detection is off: %s", exc)
                return None

        security_log = _StoreLog(store)

        async def send_now(address: str) -> None:
            if network.manager.connection(address) is not None:
                await messenger.send_state(address, [], False)

        rotator = KeyRotator(
            messenger.sessions,
            send_now=send_now,
            is_contact=messenger.is_known_contact,
            mailbox=mailbox,
            record=security_log.record,
            clock=clock,
        )
        monitor = AnomalyMonitor(
            detector,
            publish,
            security_log=security_log,
            rotation=rotator,
            close_connection=_closer(network),
            is_contact=messenger.is_known_contact,
            wall_clock=clock,
        )
        network.inbound_gate = monitor
        network.manager.subscribe(monitor.on_transport)
        network.dht.set_observer(monitor.on_dht, monitor.dht_blocked)
        messenger.observer = monitor.messenger_outcome
        guard = cls(monitor, rotator)
        guard._messenger = messenger
        return guard

    def start(self, contacts: list[str]) -> None:
        """Start evaluating and the periodic rotation checks."""
        self.monitor.start()
        self.rotator.start(contacts)

    async def stop(self) -> None:
        """Stop both (state that matters is already stored)."""
        await self.monitor.stop()
        await self.rotator.stop()


class _StoreLog:
    """`SecurityLog` over the profile's sealed ``security_events`` table."""

    def __init__(self, store: ProfileStore) -> None:
        self._store = store

    async def record(self, peer: str, kind: str, detail: str, at: float) -> None:
        await self._store.call(self._store.security_events.add, peer, kind, detail, at)


def _closer(network: NetworkStack) -> Callable[[str, str], Awaitable[None]]:
    async def close(address: str, reason: str) -> None:
        conn = network.manager.connection(address)
        if conn is not None:
            await conn.close(reason)

    return close
