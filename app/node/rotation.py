"""Key rotation on the running node: performs what `app.core.rotation_policy` decides.

* session: `SessionBook.force_ratchet` stores the session with a ratchet request, then a
  state message goes out at once when the contact is connected (otherwise the request
  rides on the next message, mailbox envelopes included). The peer answers (the
  messenger answers every ratchet request), and our next send uses a fresh DH key pair.
* prekeys: `SessionBook.rotate_prekeys` makes a new signed prekey and republishes the
  bundle; the old signed prekeys stay usable for their grace period, so initial messages
  already on their way still open (nothing lost).
* mailbox: the courier's `rotate_epoch` (if it has one) moves the contact's offline
  mailbox to a new epoch (docs/protocol.md, section 12).

Every rotation is kept as a sealed security event ("rotation") in the profile.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from app.core.rotation_policy import KeyKind, RotationDue, RotationPolicy, RotationSettings

log = logging.getLogger(__name__)

TICK_SECONDS = 60.0


class RotatingSessions(Protocol):
    """What rotation needs of the session book (`app.node.e2e.SessionBook`)."""

    async def force_ratchet(self, address: str) -> bool: ...

    async def rotate_prekeys(self) -> Any: ...

    async def maintain_prekeys(self) -> bool: ...

    @property
    def prekeys_created_at(self) -> float | None: ...


class EpochRotator(Protocol):
    """The offline courier's mailbox-epoch rotation (`app.node.mailbox`)."""

    async def rotate_epoch(self, address: str) -> None: ...

    def announcing(self, address: str) -> bool: ...

    async def announce(self, address: str) -> bool: ...


class KeyRotator:
    """Runs rotations (and the periodic time triggers); a `CompromiseSink` for the monitor."""

    def __init__(
        self,
        sessions: RotatingSessions,
        *,
        send_now: Callable[[str], Awaitable[None]] | None = None,
        is_contact: Callable[[str], bool] = lambda _address: True,
        mailbox: EpochRotator | None = None,
        record: Callable[[str, str, str, float], Awaitable[None]] | None = None,
        settings: RotationSettings | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.sessions = sessions
        self.policy = RotationPolicy(settings)
        self._send_now = send_now
        self._is_contact = is_contact
        self.mailbox = mailbox
        self._record = record
        self._clock = clock
        self._task: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self.done: list[RotationDue] = []
        """Rotations performed (newest last, bounded), for tests and benchmarks."""

    def start(self, contacts: list[str]) -> None:
        """Track `contacts` from now on and run the time triggers periodically."""
        now = self._clock()
        for address in contacts:
            self.policy.track(address, now)
        created = self.sessions.prekeys_created_at
        if created is not None:
            self.policy.prekeys_created(created)
        self._task = asyncio.ensure_future(self._run())

    async def stop(self) -> None:
        """Stop the periodic checks and any rotation in progress."""
        tasks = [t for t in [self._task, *self._tasks] if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(TICK_SECONDS)
            try:
                await self.tick()
            except Exception:  # rotation checks must outlive one bad round
                log.exception("key rotation check failed")

    async def tick(self) -> None:
        """Time triggers: sessions stepped daily, the signed prekey every 48 h."""
        for due in self.policy.tick(self._clock()):
            await self.perform(due)

    # ------------------------------------------------------------------ CompromiseSink

    def _spawn_all(self, dues: list[RotationDue]) -> None:
        for due in dues:
            task = asyncio.ensure_future(self.perform(due))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def alert(self, peer: str) -> None:
        """The detector quarantined `peer`: rotate everything shared with it."""
        if self._is_contact(peer):
            self._spawn_all(self.policy.alert(peer, self._clock()))

    def failure(self, peer: str) -> None:
        if self._is_contact(peer):
            self._spawn_all(self.policy.failure(peer, self._clock()))

    def replay(self, peer: str) -> None:
        if self._is_contact(peer):
            self._spawn_all(self.policy.replay(peer, self._clock()))

    def message(self, peer: str, size: int) -> None:
        if not self._is_contact(peer):
            return
        self._spawn_all(self.policy.message(peer, size, self._clock()))
        if self.mailbox is not None and self.mailbox.announcing(peer):
            # a new epoch waits for the session to step; this message may have done it
            task = asyncio.ensure_future(self.mailbox.announce(peer))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    # ------------------------------------------------------------------ rotating

    async def perform(self, due: RotationDue) -> None:
        """Rotate what `due` names; the policy is told once it is done."""
        now = self._clock()
        done: list[str] = []
        try:
            if KeyKind.PREKEYS in due.keys and await self.sessions.rotate_prekeys() is not None:
                created = self.sessions.prekeys_created_at
                self.policy.prekeys_created(created if created is not None else now)
                done.append("prekeys")
            if due.contact is not None:
                if KeyKind.MAILBOX in due.keys and self.mailbox is not None:
                    await self.mailbox.rotate_epoch(due.contact)
                    done.append("mailbox")
                if KeyKind.SESSION in due.keys and await self.sessions.force_ratchet(due.contact):
                    done.append("session")
                    if self._send_now is not None:
                        await self._send_now(due.contact)
        finally:
            if due.contact is not None:
                self.policy.rotated(due.contact, now)
        self.done = [*self.done[-255:], due]
        detail = f"Keys rotated ({', '.join(done) or 'nothing to rotate yet'}): {due.reason.value}."
        log.info("%s", detail)
        if self._record is not None:
            try:
                await self._record(due.contact or "", "rotation", detail, now)
            except Exception:  # the log of it is best effort; the rotation happened
                log.exception("recording a rotation failed")
