"""Whether the IPFS daemon the user configured answers, checked while the node runs.

The address is checked when it is set (decision 0031), but a daemon may stop later, or
its port be firewalled. Before, nothing said so: a receiver whose only source was the
daemon (the sender offline) showed "waiting for the peer", `status` was silent, and
every fetch round asked the daemon for every missing block again.

The watch asks the daemon for its version when the node starts (or the address is
set), every `CHECK_EVERY` seconds while it answers, and every `RETRY_EVERY` seconds
while it does not; every other call to the daemon (a share's put, a fetch's get) tells
it too (`IpfsBackend.problem`), and a caller that met a failure `nudge`s it to look at
once. `on_change` is called on the event loop each time the daemon stops or starts
answering: the node leaves the daemon out of the sources meanwhile, says why a transfer
waits, and wakes the transfers waiting for it when it is back (docs/decisions/0033).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from app.node.files_errors import IpfsRejected, IpfsUnavailable
from app.node.futures import cancel_and_wait
from app.node.ipfs import IpfsBackend

log = logging.getLogger(__name__)

CHECK_EVERY = 60.0
"""Seconds between checks while the daemon answers (one local HTTP request)."""
RETRY_EVERY = 10.0
"""Seconds between checks while it does not: a transfer waiting for it resumes within
this long of its return."""


class IpfsWatch:
    """Follows whether one `IpfsBackend`'s daemon answers (see the module docstring)."""

    def __init__(
        self,
        backend: IpfsBackend,
        on_change: Callable[[], None],
        *,
        check_every: float = CHECK_EVERY,
        retry_every: float = RETRY_EVERY,
    ) -> None:
        self.backend = backend
        self._on_change = on_change
        self._check_every = check_every
        self._retry_every = retry_every
        self._told = ""
        self._nudged = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def problem(self) -> str:
        """Why the daemon can't be used now, as last seen ("" while it answers)."""
        return self._told

    def start(self) -> None:
        """Check now, then every `CHECK_EVERY` (or `RETRY_EVERY`) seconds."""
        if self._task is None:
            self._task = asyncio.ensure_future(self._run())

    async def stop(self) -> None:
        """Stop checking."""
        task, self._task = self._task, None
        await cancel_and_wait(task)

    def nudge(self) -> None:
        """A call to the daemon may have failed just now: take note, and if it did, ask
        again at once (then every `RETRY_EVERY` seconds)."""
        self._changed()
        if self.backend.problem:
            self._nudged.set()

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(IpfsUnavailable, IpfsRejected):
                await self.backend.version()
            self._changed()
            wait = self._retry_every if self._told else self._check_every
            self._nudged.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._nudged.wait(), wait)

    def _changed(self) -> None:
        problem = self.backend.problem
        if problem == self._told:
            return
        self._told = problem
        if problem:
            log.warning(
                "the IPFS daemon does not answer; asked again every %.0f s", self._retry_every
            )
        else:
            log.info("the IPFS daemon answers again")
        self._on_change()


__all__ = ["CHECK_EVERY", "RETRY_EVERY", "IpfsWatch"]
