"""Interop: headless Chromium opens a WebRTC data channel to a node and exchanges frames.

The node side is the node's own WebRTC configuration (`build_configuration`, explicit
empty iceServers) and frame codec (`app.core.wire`); the browser side is Chromium's
WebRTC stack, which no one here wrote. Signalling goes through a tiny HTTP server on
127.0.0.1. The identity binding needs the app's keys, so it is not part of this test:
it checks that our data channel and framing speak standard WebRTC.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiortc import RTCPeerConnection, RTCSessionDescription

from app.core.wire import Frame, FrameDecoder, FrameType
from app.node.transport.base import TransportSettings
from app.node.transport.webrtc import CHANNEL_LABEL, build_configuration

CHROMIUM = next(
    (
        p
        for p in ("/usr/lib/chromium/chromium", shutil.which("chromium") or "")
        if Path(p).is_file()
    ),
    None,
)

PAGE = """<!doctype html><meta charset=utf-8><title>eggs interop</title><script>
function frame(type, bytes) {
  const out = new Uint8Array(6 + bytes.length);
  const view = new DataView(out.buffer);
  view.setUint8(0, 1); view.setUint8(1, type); view.setUint32(2, bytes.length);
  out.set(bytes, 6); return out;
}
(async () => {
  const offer = await (await fetch('/offer')).json();
  const pc = new RTCPeerConnection({iceServers: []});
  pc.ondatachannel = (event) => {
    const channel = event.channel;
    channel.binaryType = 'arraybuffer';
    channel.onmessage = (msg) => {
      const data = new Uint8Array(msg.data);
      const view = new DataView(data.buffer);
      const version = view.getUint8(0), type = view.getUint8(1), length = view.getUint32(2);
      const payload = data.slice(6, 6 + length);
      fetch('/log', {method: 'POST', body: JSON.stringify({label: channel.label, version, type,
        length, text: new TextDecoder().decode(payload)})});
      if (type === 2) { channel.send(frame(3, payload)); return; }  // PING -> PONG
      const reply = new TextEncoder().encode('chromium got: ' + new TextDecoder().decode(payload));
      channel.send(frame(1, reply));
    };
  };
  await pc.setRemoteDescription(offer);
  await pc.setLocalDescription(await pc.createAnswer());
  await new Promise((resolve) => {
    if (pc.iceGatheringState === 'complete') return resolve();
    pc.onicegatheringstatechange = () => pc.iceGatheringState === 'complete' && resolve();
  });
  await fetch('/answer', {method: 'POST', body: pc.localDescription.sdp});
})();
</script>"""


class Signalling:
    """A minimal HTTP/1.0 server: the page, the offer, the answer, and the browser's log."""

    def __init__(self, offer_sdp: str) -> None:
        self.offer_sdp = offer_sdp
        self.answer: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self.log: list[dict[str, object]] = []
        self.server: asyncio.Server | None = None

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = await reader.readuntil(b"\r\n\r\n")
        head = request.decode("latin-1").split("\r\n")
        method, path, _ = head[0].split(" ", 2)
        length = next(
            (int(h.split(":")[1]) for h in head if h.lower().startswith("content-length:")), 0
        )
        body = await reader.readexactly(length) if length else b""
        if path == "/":
            reply, ctype = PAGE.encode(), "text/html"
        elif path == "/offer":
            reply, ctype = json.dumps({"type": "offer", "sdp": self.offer_sdp}).encode(), "json"
        elif path == "/answer" and method == "POST":
            if not self.answer.done():
                self.answer.set_result(body.decode())
            reply, ctype = b"ok", "text/plain"
        elif path == "/log" and method == "POST":
            self.log.append(json.loads(body))
            reply, ctype = b"ok", "text/plain"
        else:
            reply, ctype = b"not found", "text/plain"
        writer.write(
            f"HTTP/1.0 200 OK\r\nContent-Type: {ctype}\r\nContent-Length: {len(reply)}\r\n"
            "Cache-Control: no-store\r\n\r\n".encode()
            + reply
        )
        await writer.drain()
        writer.close()

    async def stop(self) -> None:
        if self.server:
            self.server.close()
            await self.server.wait_closed()


@contextlib.asynccontextmanager
async def chromium(url: str, profile: Path) -> AsyncIterator[subprocess.Popen[bytes]]:
    assert CHROMIUM is not None
    process = subprocess.Popen(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--allow-loopback-in-peer-connection",
            "--disable-features=WebRtcHideLocalIpsWithMdns",
            f"--user-data-dir={profile}",
            url,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.mark.slow
@pytest.mark.asyncio
@pytest.mark.skipif(
    CHROMIUM is None, reason="chromium is not installed (tools/setup.sh test installs it)"
)
async def test_chromium_exchanges_frames_with_a_node(
    tmp_path: Path,
    loopback_ice: None,
) -> None:
    config = build_configuration(TransportSettings())
    assert config.iceServers == []  # never the library's public STUN default
    pc = RTCPeerConnection(config)
    channel = pc.createDataChannel(CHANNEL_LABEL, ordered=True)
    received: asyncio.Queue[Frame] = asyncio.Queue()
    decoder = FrameDecoder()
    opened = asyncio.Event()
    channel.on("open", opened.set)
    channel.on("message", lambda data: [received.put_nowait(f) for f in decoder.feed(data)])

    await pc.setLocalDescription(await pc.createOffer())
    signalling = Signalling(pc.localDescription.sdp)
    port = await signalling.start()
    try:
        async with chromium(f"http://127.0.0.1:{port}/", tmp_path / "chromium"):
            answer = await asyncio.wait_for(signalling.answer, 60)
            await pc.setRemoteDescription(RTCSessionDescription(answer, "answer"))
            await asyncio.wait_for(opened.wait(), 30)

            channel.send(Frame(FrameType.DATA, "hello from the node 🥚".encode()).encode())
            reply = await asyncio.wait_for(received.get(), 20)
            assert reply == Frame(FrameType.DATA, "chromium got: hello from the node 🥚".encode())

            channel.send(Frame(FrameType.PING, b"\x00\x01probe").encode())
            assert await asyncio.wait_for(received.get(), 20) == Frame(
                FrameType.PONG, b"\x00\x01probe"
            )
            assert signalling.log[0] == {
                "label": CHANNEL_LABEL,
                "version": 1,
                "type": 1,
                "length": len("hello from the node 🥚".encode()),
                "text": "hello from the node 🥚",
            }
    finally:
        await pc.close()
        await signalling.stop()
