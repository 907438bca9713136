"""Anomaly detection on the running node: counters, the ONNX detector, responses.

`AnomalyMonitor` collects per-peer `Signal` counts from small hooks (the inbound gate
every transport payload passes, the messenger's per-peer outcomes, transport events,
the DHT protocol's observer), scores every active peer every `EVALUATION_INTERVAL`
seconds with the shipped detector (``resources/models/anomaly.onnx`` through
`app.node.ml`, in a worker thread: never on the hot path), scores a peer promptly
(batched, at most once a second per peer) after evidence only attackers produce in
numbers (`app.core.prompt_scoring`), and applies `app.core.peer_policy`:

* a rate-limited peer's payloads are delivered at the policy's rate, the rest queued;
* a quarantined (graylisted) peer's payloads are queued until the quarantine ends, then
  delivered in order; DHT requests from a quarantined DHT address are not answered,
  and a rate-limited one's are answered at the policy's rate (the rest go unanswered:
  UDP has no queue to hold them in, and an honest Kademlia client asks another node);
* nothing is dropped silently: when a peer's queue is full its connection is closed
  (counted as ``shed``); an honest contact's messenger keeps every event in its ledger
  and sends it again on the next connection (docs/protocol.md, section 7), so nothing
  is lost, while an attacker merely loses its connection.
* a stranger's queue goes with its connection (counted as ``discarded``): the messenger
  has no use for what a stranger sends, and identities cost nothing, so queues kept
  after their connections (up to `MAX_QUEUED_BYTES` each, until a quarantine ended)
  grew with every made-up identity that got itself restricted.

Every change of standing is a `SecurityAlert` of kind ``"anomaly"`` for the user and a
sealed row in the ``security_events`` table; a quarantined contact also triggers key
rotation (`app.node.rotation`). See docs/decisions/0012-anomaly-detection.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from app.core.peer_features import (
    FEATURE_NAMES,
    LONG_WINDOW,
    N_FEATURES,
    FeatureRow,
    PeerFeatures,
    Signal,
)
from app.core.peer_policy import (
    DHT_PREFIX,
    PEER_KINDS,
    Admission,
    PeerPolicy,
    PolicySettings,
    Standing,
    StandingChanged,
)
from app.core.prompt_scoring import PROMPT_SIGNALS, PromptScoring
from app.node.api import NodeEvent, SecurityAlert
from app.node.block_exchange import BLOCK, DONT_HAVE, WANT
from app.node.ml import ModelError, OnnxModel, load_model
from app.node.transport import (
    AuthenticationRefused,
    ConnectionStateChanged,
    PeerState,
    TransportEvent,
)

log = logging.getLogger(__name__)
SOLICITED_TAGS = frozenset((BLOCK, DONT_HAVE))

MODEL_NAME = "anomaly.onnx"
EVALUATION_INTERVAL = 2.0
"""Seconds between two evaluations of every active peer (the model was trained so)."""
MAX_QUEUED_PAYLOADS = 512
MAX_QUEUED_BYTES = 8 * 1024 * 1024
"""Per peer: what is held while it is rate-limited or quarantined."""

Dispatch = Callable[[str, bytes], Awaitable[None]]

_TRANSPORT_PEER: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "anomaly_transport_peer", default=None
)
"""Set while a payload that came over a connection is being handled, so outcomes the
messenger reports for it count for that peer (mailbox envelopes read from the DHT,
which may legitimately repeat, don't)."""

MESSENGER_SIGNALS: dict[str, Signal] = {
    "ok": Signal.MESSAGE_OK,
    "decrypt_failed": Signal.DECRYPT_FAILED,
    "replay": Signal.REPLAY,
    "malformed": Signal.MALFORMED,
    "invalid_signature": Signal.INVALID_SIGNATURE,
    "event_rejected": Signal.RECORD_REJECTED,
}
DHT_SIGNALS: dict[str, Signal] = {
    "request": Signal.DHT_REQUEST,
    "store": Signal.DHT_STORE,
    "rejected": Signal.RECORD_REJECTED,
    "invalid_signature": Signal.INVALID_SIGNATURE,
    "malformed": Signal.MALFORMED,
}


def dht_peer(address: tuple[str, int]) -> str:
    """How a DHT sender is named among the monitored peers (`peer_kind` reads it back)."""
    return f"{DHT_PREFIX}{address[0]}:{address[1]}"


class Detector:
    """The shipped ONNX detector: feature rows in, attack probabilities out."""

    def __init__(self, model: OnnxModel) -> None:
        if model.n_features not in (None, N_FEATURES):
            raise ModelError(
                f"the anomaly model takes {model.n_features} features, not {N_FEATURES}"
            )
        meta = model.metadata
        names = meta.get("features")
        if names is not None and names != _feature_names_json():
            raise ModelError("the anomaly model was trained on other features than this node's")
        self.model = model
        self.limit = float(meta.get("threshold_limit", "0.5"))
        self.quarantine = float(meta.get("threshold_quarantine", "0.9"))
        self.limits = {
            kind: float(meta[f"threshold_limit_{kind}"])
            for kind in PEER_KINDS
            if f"threshold_limit_{kind}" in meta
        }
        """Rate-limit thresholds calibrated per peer kind (a model without them: `limit`)."""

    @classmethod
    def load(cls) -> Detector:
        """The detector shipped in resources/models (raises `ModelError`)."""
        return cls(load_model(MODEL_NAME))

    def scores(self, rows: Any) -> np.ndarray:
        """P(attacking) of each row (a float32 matrix, `FEATURE_NAMES` columns)."""
        outputs = self.model.run(rows)
        probabilities = outputs.get("probabilities")
        if probabilities is None:
            raise ModelError("the anomaly model has no 'probabilities' output")
        return np.asarray(probabilities)[:, 1]

    def limit_for(self, kind: str) -> float:
        """The rate-limit threshold of peers of `kind` (one of `PEER_KINDS`)."""
        return self.limits.get(kind, self.limit)

    def policy_settings(self) -> PolicySettings:
        """Response thresholds taken from the model's calibration."""
        return PolicySettings(
            limit_score=self.limit,
            quarantine_score=self.quarantine,
            limit_by_kind=tuple(sorted(self.limits.items())),
        )


def _feature_names_json() -> str:
    import json

    return json.dumps(list(FEATURE_NAMES))


class SecurityLog(Protocol):
    """Where security events are kept (sealed, see `app.node.storage.security_events`)."""

    async def record(self, peer: str, kind: str, detail: str, at: float) -> None: ...


class CompromiseSink(Protocol):
    """Told when a contact's behaviour suggests its keys or ours are compromised."""

    def alert(self, peer: str) -> None: ...

    def failure(self, peer: str) -> None: ...

    def replay(self, peer: str) -> None: ...

    def message(self, peer: str, size: int) -> None: ...


@dataclass
class _Queue:
    items: deque[bytes]
    size: int = 0
    task: asyncio.Task[None] | None = None


class AnomalyMonitor:
    """Per-peer features, periodic detection and the responses (see the module docstring)."""

    def __init__(
        self,
        detector: Detector,
        publish: Callable[[NodeEvent], None],
        *,
        security_log: SecurityLog | None = None,
        rotation: CompromiseSink | None = None,
        close_connection: Callable[[str, str], Awaitable[None]] | None = None,
        is_contact: Callable[[str], bool] | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        interval: float = EVALUATION_INTERVAL,
        prompt: bool = True,
    ) -> None:
        """`clock` times the windows, limits and quarantines: monotonic, because the wall
        clock can be stepped (NTP, the user): stepped back an hour, it hid an hour of
        every peer's activity from the detector (and held rate-limited peers' payloads
        that long); stepped forward, it ended quarantines early. `wall_clock` dates the
        security log and the times shown to the user (decision 0020). `prompt`: also
        score a peer promptly after evidence of an attack (`app.core.prompt_scoring`);
        False only to measure the node without it (bench/bench_anomaly.py)."""
        self.detector = detector
        self.features = PeerFeatures()
        self.policy = PeerPolicy(detector.policy_settings())
        self._publish = publish
        self._log = security_log
        self.rotation = rotation
        self._close = close_connection
        self._is_contact = is_contact
        self._clock = clock
        self._wall_clock = wall_clock
        self._interval = interval
        self._queues: dict[str, _Queue] = {}
        self._dispatch: Dispatch | None = None
        self._task: asyncio.Task[None] | None = None
        self.prompt = PromptScoring()
        """Peers to score before the next round (evidence only attackers produce)."""
        self._prompting = prompt
        self._prompt_task: asyncio.Task[None] | None = None
        self._prompt_wake = asyncio.Event()
        """Set when a peer is scheduled due before `_prompt_until`, the time awaited."""
        self._prompt_until = 0.0
        self._tasks: set[asyncio.Task[Any]] = set()
        self.stats: Counter[str] = Counter()

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Evaluate every `interval` seconds from now on."""
        self._task = asyncio.ensure_future(self._run())

    async def stop(self) -> None:
        """Stop evaluating and draining (queued payloads of bad peers are discarded)."""
        tasks = [t for t in [self._task, self._prompt_task, *self._tasks] if t is not None]
        for queue in self._queues.values():
            if queue.task is not None:
                tasks.append(queue.task)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._task = None  # hooks called from now on schedule nothing

    # ------------------------------------------------------------------ hooks

    def observe(self, peer: str, signal: Signal, amount: float = 1.0) -> None:
        """Count `amount` of `signal` for `peer` now (evidence of the kinds that matter
        also schedules a prompt evaluation of `peer`, once started)."""
        now = self._clock()
        self.features.observe(peer, signal, now, amount)
        if (
            signal not in PROMPT_SIGNALS  # most calls: a payload, a frame, bytes
            or not self._prompting
            or self._task is None
            # a quarantined peer's score can change nothing before its quarantine ends
            or self.policy.standing(peer) is Standing.QUARANTINED
            or (due := self.prompt.note(peer, signal, now)) is None
        ):
            return
        if self._prompt_task is None or self._prompt_task.done():
            self._prompt_task = asyncio.ensure_future(self._run_prompt())
        elif due < self._prompt_until:
            self._prompt_wake.set()

    def messenger_outcome(self, address: str, outcome: str, size: int = 0) -> None:
        """The messenger's per-peer outcome of a payload (``"ok"``, ``"decrypt_failed"``,
        ``"replay"``...), or ``"sent"`` for a message we sent (volume trigger)."""
        if self.rotation is not None:
            if outcome in ("ok", "sent"):
                self.rotation.message(address, size)
            elif outcome == "decrypt_failed" and _TRANSPORT_PEER.get() == address:
                self.rotation.failure(address)
            elif outcome == "replay" and _TRANSPORT_PEER.get() == address:
                self.rotation.replay(address)
        signal = MESSENGER_SIGNALS.get(outcome)
        if signal is not None and _TRANSPORT_PEER.get() == address:
            self.observe(address, signal)

    def on_transport(self, event: TransportEvent) -> None:
        """Connection churn and refused handshakes."""
        if isinstance(event, AuthenticationRefused):
            self.observe(event.address or "unknown", Signal.HANDSHAKE_FAILED)
        elif isinstance(event, ConnectionStateChanged):
            if event.state is PeerState.CONNECTED:
                self.observe(event.address, Signal.CONNECT)
            elif event.state is PeerState.DISCONNECTED and event.path is not None:
                self.observe(event.address, Signal.DISCONNECT)
                if self._is_contact is not None and not self._is_contact(event.address):
                    self._discard(event.address)

    def _discard(self, address: str) -> None:
        """Drop what waits for `address` (a stranger whose connection closed)."""
        queue = self._queues.pop(address, None)
        if queue is None:
            return
        self.stats["discarded"] += len(queue.items)
        queue.items.clear()
        queue.size = 0
        if queue.task is not None:
            queue.task.cancel()

    def on_dht(self, address: tuple[str, int], what: str) -> None:
        """A DHT RPC or its outcome from `address` (``"request"``, ``"store"``...)."""
        signal = DHT_SIGNALS.get(what)
        if signal is not None:
            self.observe(dht_peer(address), signal)

    def dht_blocked(self, address: tuple[str, int]) -> bool:
        """Whether this DHT request from `address` goes unanswered: its sender is
        quarantined, or rate-limited and over its budget (the policy's token bucket,
        `PeerPolicy.admit`: `rate` answers a second, `burst` at once)."""
        if self.policy.admit(dht_peer(address), self._clock()) is Admission.DELIVER:
            return False
        self.stats["dht_unanswered"] += 1
        return True

    # ------------------------------------------------------------------ inbound gate

    async def deliver(self, address: str, payload: bytes, dispatch: Dispatch) -> None:
        """Every payload from a connection passes here: counted, then handled now,
        queued (rate-limited or quarantined peer) or, with a full queue, the
        connection is closed (the sender's outbox keeps what it sent)."""
        now = self._clock()
        if payload and (
            payload[0] in SOLICITED_TAGS
            or (payload[0] == WANT and self.policy.standing(address) is not Standing.QUARANTINED)
        ):
            # File blocks bound themselves (app.node.block_exchange): BLOCK/DONT_HAVE only
            # answer our own requests (unsolicited ones are discarded), so holding them
            # back would only slow our own download; a peer's WANTs are served at most
            # MAX_SERVING at a time, stalling its connection beyond. Bulk transfer is not
            # behaviour the detector was trained on: neither counted nor rate-limited;
            # a quarantined peer's WANTs wait like the rest of its traffic.
            self.stats["block_exchange"] += 1
            await self._handle(address, payload, dispatch)
            return
        self.features.observe(address, Signal.FRAME, now)
        self.features.observe(address, Signal.BYTES, now, len(payload))
        self._dispatch = dispatch
        queue = self._queues.get(address)
        if (queue is None or not queue.items) and self.policy.admit(
            address, now
        ) is Admission.DELIVER:
            await self._handle(address, payload, dispatch)
            return
        if queue is None:
            queue = self._queues[address] = _Queue(deque())
        if len(queue.items) >= MAX_QUEUED_PAYLOADS or queue.size + len(payload) > MAX_QUEUED_BYTES:
            self.stats["shed"] += 1
            if self._close is not None:
                await self._close(address, "too much traffic while restricted")
            return
        queue.items.append(payload)
        queue.size += len(payload)
        self.stats["queued"] += 1
        if queue.task is None or queue.task.done():
            queue.task = asyncio.ensure_future(self._drain(address, queue))

    def queued(self, address: str) -> int:
        """How many payloads of `address` wait for delivery."""
        queue = self._queues.get(address)
        return 0 if queue is None else len(queue.items)

    async def _handle(self, address: str, payload: bytes, dispatch: Dispatch) -> None:
        token = _TRANSPORT_PEER.set(address)
        try:
            await dispatch(address, payload)
        finally:
            _TRANSPORT_PEER.reset(token)

    async def _drain(self, address: str, queue: _Queue) -> None:
        while queue.items:
            now = self._clock()
            if self.policy.admit(address, now) is not Admission.DELIVER:
                wait = self.policy.next_admission(address, now)
                await asyncio.sleep(min(max(wait, 0.05), self._interval))
                continue
            payload = queue.items.popleft()
            queue.size -= len(payload)
            self.stats["released"] += 1
            if self._dispatch is not None:
                try:
                    await self._handle(address, payload, self._dispatch)
                except Exception:  # one bad payload must not strand the rest
                    log.exception("handling a queued payload failed")
        self._queues.pop(address, None)

    # ------------------------------------------------------------------ detection

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self.evaluate()
            except Exception:  # detection must outlive one bad round
                log.exception("anomaly evaluation failed")

    async def _run_prompt(self) -> None:
        """Score the peers due for a prompt evaluation, until none waits."""
        while (due := self.prompt.get_timer()) is not None:
            self._prompt_wake.clear()
            self._prompt_until = due
            wait = due - self._clock()
            if wait > 0:
                # a peer scheduled meanwhile may be due sooner: look again when woken
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._prompt_wake.wait(), wait)
                continue
            try:
                await self.evaluate_prompt()
            except Exception:  # detection must outlive one bad round
                log.exception("prompt anomaly evaluation failed")

    async def evaluate_prompt(self) -> list[StandingChanged]:
        """Score the peers whose prompt evaluation is due (one batch); the changes made."""
        now = self._clock()
        rows = [r for p in self.prompt.due(now) if (r := self.features.row(p, now)) is not None]
        changes = await self._assess(rows, now)
        self.stats["evaluated_prompt"] += len(rows)
        for change in changes:
            await self._apply(change, now)
        return changes

    async def _assess(self, rows: list[FeatureRow], now: float) -> list[StandingChanged]:
        """Score `rows` (in a worker thread) and apply the policy to each."""
        changes: list[StandingChanged] = []
        if rows:
            matrix = np.asarray([r.values for r in rows], dtype=np.float32)
            scores = await asyncio.to_thread(self.detector.scores, matrix)
            for row, score in zip(rows, scores, strict=True):
                changes += self.policy.assess(row.peer, float(score), now)
        return changes

    async def evaluate(self) -> list[StandingChanged]:
        """Score every active peer once and apply the policy; the changes made."""
        now = self._clock()
        rows = self.features.rows(now)
        changes = await self._assess(rows, now)
        self.stats["evaluated"] += len(rows)
        changes += self.policy.handle_timer(now)
        self.features.expire(now)
        for change in changes:
            await self._apply(change, now)
        return changes

    async def _apply(self, change: StandingChanged, now: float) -> None:
        worse = _RANK[change.new] > _RANK[change.old]
        wall = self._wall_clock()
        until = None if change.until is None else wall + (change.until - now)
        row = self.features.row(change.peer, now)
        detail = _describe(change, row, until)
        technical = _technical(change, row)
        # the detail names no peer: the log is plaintext, contacts' addresses are not
        log.warning(
            "peer standing: %s -> %s (%s): %s [%s]",
            change.old.value,
            change.new.value,
            change.reason,
            detail,
            technical,
        )
        self.stats[f"to_{change.new.value}"] += 1
        if worse and change.new is Standing.QUARANTINED:
            # only a quarantine alerts the user: its threshold is above every honest
            # peer-hour of the training populations, while up to 0.5% of honest peer-hours
            # reach the rate limit (by design; it holds traffic, loses none), e.g. a
            # node's burst of lookups as it restarts: an alarm for each cried wolf
            self._publish(SecurityAlert(change.peer, "anomaly", detail))
            if self.rotation is not None:
                self.rotation.alert(change.peer)
        if self._log is not None:
            with contextlib.suppress(Exception):
                await self._log.record(change.peer, "anomaly", f"{detail} [{technical}]", wall)


_RANK = {Standing.NORMAL: 0, Standing.RATE_LIMITED: 1, Standing.QUARANTINED: 2}
_WINDOW_COUNTS = frozenset(
    f"{s.name.lower()}_{LONG_WINDOW}s" for s in Signal if s not in (Signal.BYTES, Signal.MESSAGE_OK)
)
"""The log1p counts of the last minute worth naming to the user (not the active-second
counts, ratios or decayed counts that also end in a duration)."""


_PLAIN_COUNTS = {
    Signal.FRAME: "{} messages",
    Signal.DECRYPT_FAILED: "{} that could not be decrypted",
    Signal.MALFORMED: "{} garbled",
    Signal.INVALID_SIGNATURE: "{} with a broken signature",
    Signal.REPLAY: "{} repeated",
    Signal.DHT_REQUEST: "{} network lookups",
    Signal.DHT_STORE: "{} requests to store records",
    Signal.RECORD_REJECTED: "{} refused records",
    Signal.CONNECT: "{} connections",
    Signal.DISCONNECT: "{} disconnections",
    Signal.HANDSHAKE_FAILED: "{} failed connection attempts",
}
"""The last minute's counts in words (`_WINDOW_COUNTS`: the signals worth naming)."""


def _last_minute(row: Any) -> list[tuple[Signal, int]]:
    """The three largest last-minute counts of `row` (none for no row)."""
    if row is None:
        return []
    names = {f"{s.name.lower()}_{LONG_WINDOW}s": s for s in Signal}
    counts = [
        (names[name], round(float(np.expm1(v))))
        for name, v in zip(FEATURE_NAMES, row.values, strict=True)
        if name in _WINDOW_COUNTS and v > 0
    ]
    return sorted(counts, key=lambda item: -item[1])[:3]


def _technical(change: StandingChanged, row: Any) -> str:
    """The detector's score and the last minute's counts by signal name: for the log
    and the security events, not for the user's sentence."""
    counts = ", ".join(f"{s.name.lower()} {c}" for s, c in _last_minute(row))
    return f"detector score {change.score:.2f}" + (f"; last minute: {counts}" if counts else "")


def _describe(change: StandingChanged, row: Any, until: float | None = None) -> str:
    """A sentence for the user, in plain words: what happened and what the node does
    about it (`until`: the wall-clock end of a quarantine). The detector's score and the
    signal names are `_technical`'s."""
    if change.new is Standing.QUARANTINED:
        ends = time.strftime("%H:%M:%S", time.localtime(until or 0))
        action = f"is quarantined until {ends}; what it sends is held, not lost"
    elif change.new is Standing.RATE_LIMITED and change.old is Standing.QUARANTINED:
        action = "left quarantine and is rate-limited for a while"
    elif change.new is Standing.RATE_LIMITED:
        action = "is rate-limited; what it sends beyond the limit is held, not lost"
    else:
        action = "behaves normally again and is no longer restricted"
    if change.new is Standing.NORMAL:
        # "A peer behaves unusually (...) and behaves normally again" said both at once
        return f"A peer {action}."
    top = _last_minute(row)
    evidence = ""
    if top:
        words = ", ".join(_PLAIN_COUNTS[s].format(c) for s, c in top)
        evidence = f" (in the last minute: {words})"
    return f"A peer behaves unusually{evidence} and {action}."
