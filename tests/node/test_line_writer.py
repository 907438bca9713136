"""Coalesced line writes to a control-socket client (`app.node.line_writer`), over a
real Unix socket."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from app.node.line_writer import LineWriter


@pytest_asyncio.fixture
async def connected(
    tmp_path: Path,
) -> AsyncIterator[tuple[asyncio.StreamWriter, asyncio.StreamReader]]:
    """(the server's writer to the client, the client's reader)."""
    accepted: asyncio.Future[asyncio.StreamWriter] = asyncio.get_running_loop().create_future()

    async def serve(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.set_result(writer)

    server = await asyncio.start_unix_server(serve, tmp_path / "s")
    reader, client_writer = await asyncio.open_unix_connection(tmp_path / "s")
    writer = await accepted
    yield writer, reader
    writer.transport.abort()
    client_writer.close()
    server.close()


@pytest.mark.asyncio
async def test_lines_of_one_turn_go_in_one_write_in_order(
    connected: tuple[asyncio.StreamWriter, asyncio.StreamReader],
) -> None:
    writer, reader = connected
    writes: list[bytes] = []
    real_write = writer.write

    def counted(data: bytes) -> None:  # the real write, counted
        writes.append(data)
        real_write(data)

    writer.write = counted  # type: ignore[method-assign]
    lines = LineWriter(writer)
    for i in range(50):
        await lines.send(b"line %d\n" % i)  # returns at once: the socket has room
    assert writes == []  # not yet: at the end of this turn
    await asyncio.sleep(0)
    assert len(writes) == 1
    expected = b"".join(b"line %d\n" % i for i in range(50))
    assert await asyncio.wait_for(reader.readexactly(len(expected)), 5) == expected
    await lines.send(b"last\n")
    lines.flush()  # e.g. before closing: written now
    assert writes[-1] == b"last\n"


@pytest.mark.asyncio
async def test_a_client_that_reads_nothing_makes_the_writer_wait_then_time_out(
    connected: tuple[asyncio.StreamWriter, asyncio.StreamReader],
) -> None:
    writer, reader = connected
    lines = LineWriter(writer)
    chunk = b"x" * 60_000 + b"\n"
    with pytest.raises(TimeoutError):
        for _ in range(1000):  # 60 MB: far more than the socket buffers hold
            await lines.send(chunk, timeout=0.3)
    assert writer.transport.get_write_buffer_size() > 0  # it stopped once full
    # a line sent while another waits for room waits behind it, in order
    waiting = asyncio.ensure_future(lines.send(b"a\n"))
    await asyncio.sleep(0.05)
    later = asyncio.ensure_future(lines.send(b"b\n"))
    await asyncio.sleep(0.05)
    assert not waiting.done() and not later.done()
    received = b""
    while not received.endswith(b"a\nb\n"):  # the client reads at last: both arrive
        received += await asyncio.wait_for(reader.read(1 << 20), 5)
    await asyncio.wait_for(asyncio.gather(waiting, later), 5)


@pytest.mark.asyncio
async def test_sending_to_a_client_that_is_gone_raises(
    connected: tuple[asyncio.StreamWriter, asyncio.StreamReader],
) -> None:
    writer, _ = connected
    lines = LineWriter(writer)
    writer.transport.abort()
    await asyncio.sleep(0.05)
    with pytest.raises(ConnectionError):
        await lines.send(b"lost\n")
