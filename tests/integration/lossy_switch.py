"""Hosts in network namespaces joined by a lossy, slow Ethernet switch run in user space.

This kernel has no `sch_netem` (`tc qdisc add ... netem` fails with "Specified qdisc kind
is unknown"), and nftables can drop packets at random but cannot delay them. So each host
gets a TAP device instead of a veth: the test process opens the TAP, moves the interface
into the host's namespace (the open file stays attached to it), and a thread forwards
Ethernet frames between the TAPs like a learning switch, dropping each frame with
probability `loss`, delaying it by `delay` plus up to `jitter` seconds (so frames may be
reordered, as with netem's jitter), and dropping everything between partitioned hosts.
With a `rate` (bits/s), each direction between two hosts is also a link of that speed:
a frame waits for the ones before it (up to `queue` frames, then it is dropped, as
netem's default `limit 1000`). `shape` changes loss, delay and rate live.

Traffic never leaves the namespaces the test created.
"""

from __future__ import annotations

import contextlib
import fcntl
import heapq
import os
import random
import select
import shutil
import struct
import subprocess
import threading
import time
from dataclasses import dataclass, field

import pytest

TUNSETIFF = 0x400454CA
IFF_TAP = 0x0002
IFF_NO_PI = 0x1000
BROADCAST_BIT = 0x01


CAN_BUILD_HOSTS = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("ip") is None or not os.path.exists("/dev/net/tun"),
    reason="needs root, iproute2 and /dev/net/tun to build the hosts",
)
"""Marks a test that builds hosts on a `LossySwitch` (namespaces and a TAP device)."""


def sh(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True, timeout=30)


@dataclass(frozen=True)
class Host:
    """One namespace with one interface on the switch."""

    name: str
    namespace: str
    ip: str

    @property
    def prefix(self) -> tuple[str, ...]:
        """Runs a command inside the host (`Daemon(prefix=...)`)."""
        return ("ip", "netns", "exec", self.namespace)


@dataclass
class SwitchStats:
    forwarded: int = 0
    lost: int = 0
    partitioned: int = 0


@dataclass
class LossySwitch:
    """See the module docstring. `partition(a, b)` / `heal()` change the topology live."""

    loss: float
    delay: float
    jitter: float
    seed: int
    hosts: list[Host] = field(default_factory=list)
    stats: SwitchStats = field(default_factory=SwitchStats)
    rate: float | None = None
    queue: int = 1000

    def __post_init__(self) -> None:
        self._random = random.Random(self.seed)
        self._fds: dict[str, int] = {}
        self._macs: dict[bytes, str] = {}
        self._cut: set[frozenset[str]] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._queue: list[tuple[float, int, str, bytes]] = []
        self._serial = 0
        self._busy_until: dict[tuple[str, str], float] = {}
        self._waiting: dict[tuple[str, str], list[float]] = {}

    # ------------------------------------------------------------------ topology

    def add_host(self, name: str, namespace: str, ip: str) -> Host:
        """Create namespace `namespace` with a TAP interface at `ip`/24 on this switch."""
        device = f"sw{os.getpid() % 100000}{len(self._fds)}"[:15]
        sh("ip", "netns", "add", namespace)
        fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
        fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", device.encode(), IFF_TAP | IFF_NO_PI))
        sh("ip", "link", "set", device, "netns", namespace)
        sh("ip", "-n", namespace, "addr", "add", f"{ip}/24", "dev", device)
        sh("ip", "-n", namespace, "link", "set", device, "up")
        sh("ip", "-n", namespace, "link", "set", "lo", "up")
        host = Host(name, namespace, ip)
        self._fds[name] = fd
        self.hosts.append(host)
        return host

    def partition(self, a: str, b: str) -> None:
        with self._lock:
            self._cut.add(frozenset((a, b)))

    def shape(self, *, loss: float, delay: float, jitter: float, rate: float | None) -> None:
        with self._lock:
            self.loss, self.delay, self.jitter, self.rate = loss, delay, jitter, rate

    def heal(self) -> None:
        with self._lock:
            self._cut.clear()

    def partitioned(self) -> list[tuple[str, str]]:
        with self._lock:
            return [tuple(sorted(pair)) for pair in self._cut]  # type: ignore[misc]

    # ------------------------------------------------------------------ running

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="lossy-switch", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        for host in self.hosts:
            subprocess.run(["ip", "netns", "del", host.namespace], capture_output=True, timeout=30)
        for fd in self._fds.values():
            with contextlib.suppress(OSError):
                os.close(fd)

    def _run(self) -> None:
        by_fd = {fd: name for name, fd in self._fds.items()}
        while not self._stop.is_set():
            now = time.monotonic()
            while self._queue and self._queue[0][0] <= now:
                _, _, port, frame = heapq.heappop(self._queue)
                with contextlib.suppress(OSError):  # a full TAP queue drops, like a wire
                    os.write(self._fds[port], frame)
            timeout = 0.05 if not self._queue else max(0.0, self._queue[0][0] - now)
            readable, _, _ = select.select(list(by_fd), [], [], min(timeout, 0.05))
            for fd in readable:
                for _ in range(64):
                    try:
                        frame = os.read(fd, 65536)
                    except (BlockingIOError, OSError):
                        break
                    self._forward(by_fd[fd], frame)

    def _forward(self, source: str, frame: bytes) -> None:
        if len(frame) < 14:
            return
        destination, origin = frame[0:6], frame[6:12]
        self._macs[origin] = source
        if destination[0] & BROADCAST_BIT or destination not in self._macs:
            ports = [name for name in self._fds if name != source]
        else:
            ports = [self._macs[destination]]
        now = time.monotonic()
        for port in ports:
            if port == source:
                continue
            with self._lock:
                cut = frozenset((source, port)) in self._cut
            if cut:
                self.stats.partitioned += 1
                continue
            if self._random.random() < self.loss:
                self.stats.lost += 1
                continue
            sent = now
            if self.rate is not None:  # serialised behind the frames queued before it
                waiting = self._waiting.setdefault((source, port), [])
                waiting[:] = [t for t in waiting if t > now]
                if len(waiting) >= self.queue:
                    self.stats.lost += 1
                    continue
                start = max(now, self._busy_until.get((source, port), now))
                sent = start + len(frame) * 8 / self.rate
                self._busy_until[(source, port)] = sent
                waiting.append(sent)
            self.stats.forwarded += 1
            due = sent + self.delay + self._random.random() * self.jitter
            self._serial += 1
            heapq.heappush(self._queue, (due, self._serial, port, frame))
