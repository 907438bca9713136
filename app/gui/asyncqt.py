"""Small typed glue between Qt and asyncio (qasync).

* `async_slot` is `qasync.asyncSlot` with types mypy understands; use it on QObject
  methods only (on free functions it fails under PySide 6.12).
* `signal_future` resolves on the next emission of a signal, e.g. a dialog's `finished`, so
  coroutines never need a nested `exec()` loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, ParamSpec, cast

import qasync
from PySide6.QtCore import SignalInstance
from PySide6.QtWidgets import QDialog

P = ParamSpec("P")
AsyncMethod = Callable[P, Coroutine[Any, Any, None]]


def async_slot(*types: type) -> Callable[[AsyncMethod[P]], Callable[P, None]]:
    """Decorate a coroutine method so Qt signals can call it (it runs as a task)."""
    return cast(Callable[[AsyncMethod[P]], Callable[P, None]], qasync.asyncSlot(*types))


def signal_future(signal: SignalInstance) -> asyncio.Future[tuple[object, ...]]:
    """A future resolved with the arguments of the next emission of `signal`.

    The connection is made at once, so an emission right after this call is not missed.
    """
    future: asyncio.Future[tuple[object, ...]] = asyncio.get_event_loop().create_future()

    def fire(*args: object) -> None:
        if not future.done():
            future.set_result(args)

    def done(_: asyncio.Future[tuple[object, ...]]) -> None:
        signal.disconnect(fire)

    signal.connect(fire)
    future.add_done_callback(done)
    return future


async def run_dialog(dialog: QDialog) -> int:
    """Show `dialog` window-modal without blocking the event loop; return its result code."""
    finished = signal_future(dialog.finished)
    dialog.open()
    args = await finished
    return int(cast(int, args[0])) if args else dialog.result()
