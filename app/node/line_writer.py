"""Lines to one control-socket client, written together once per event-loop turn.

Under load the node writes several lines to a client in one turn of the loop: a burst
of events to a subscriber (each message sent is `MessageAdded`, then `SENT`, then
`DELIVERED`), replies. Writing each at once cost a `send` system call per line on the
node and a wake-up per line on the client; `bench_messaging` spent ~10 % of the
sender's loop there. `LineWriter.send` queues a line and writes what is queued at the
end of the turn, in order, in one call, while the socket has room; once it has not,
the caller waits until it has (the same back-pressure as `StreamWriter.drain`).
"""

from __future__ import annotations

import asyncio


class LineWriter:
    """Serialised, coalesced writes to one stream (see the module docstring)."""

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self._writer = writer
        self._queued: list[bytes] = []
        self._queued_bytes = 0
        self._scheduled = False
        self._lock = asyncio.Lock()

    async def send(self, line: bytes, timeout: float | None = None) -> None:
        """Queue `line` after every earlier one. Returns at once while the socket has
        room; else waits for room, raising TimeoutError after `timeout` seconds (if
        given). Raises ConnectionError once the client is gone."""
        transport = self._writer.transport
        if transport.is_closing():
            await self._writer.drain()  # raises if the connection was lost
            return
        # at most the transport's high-water mark in its buffer and queued here; past
        # it, drain would wait for room (or this turn's lines go now, and so on)
        high = transport.get_write_buffer_limits()[1]
        busy = transport.get_write_buffer_size() + self._queued_bytes + len(line) > high
        if not busy and not self._lock.locked():
            self._queued.append(line)
            self._queued_bytes += len(line)
            if not self._scheduled:
                self._scheduled = True
                asyncio.get_running_loop().call_soon(self.flush)
            return
        if timeout is None:
            await self._write_and_wait(line)
        else:
            async with asyncio.timeout(timeout):
                await self._write_and_wait(line)

    async def _write_and_wait(self, line: bytes) -> None:
        async with self._lock:
            self._queued.append(line)
            self._queued_bytes += len(line)
            self.flush()
            await self._writer.drain()

    def flush(self) -> None:
        """Write what is queued now (before closing the stream: what is queued would
        be dropped)."""
        self._scheduled = False
        if not self._queued:
            return
        data = b"".join(self._queued)
        self._queued.clear()
        self._queued_bytes = 0
        if not self._writer.transport.is_closing():
            self._writer.write(data)
