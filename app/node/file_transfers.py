"""File transfers: sharing files with contacts and receiving theirs (issue "Files").

One transfer is one file. Its life, each step persisted before the next:

* **Share** (`share`): the file is encrypted block by block into the profile's
  blockstore (and the IPFS daemon, when configured) by `app.node.file_io`; a transfer
  row (RUNNING, outgoing) and a QUEUED message with the same id are stored. The
  messenger turns that message into a ``file`` history event carrying the manifest
  (`body_for`), so the offer inherits the conversation's ordering, exactly-once
  delivery, offline mailboxes and receipts. Without a running node the share is only
  recorded; the node sends it when it starts (like `send`).
  A large file shared by a running node is offered *before* it is encrypted
  (`offer_early`, docs/protocol.md section 10.6): a ``file_soon`` event without the
  root goes at once, the file is encrypted meanwhile (`StreamingShare`) and served by
  chunk index as it is, and the ``file`` message with the root follows.
* **Offer** (`file_event` with a ``file`` or ``file_soon`` event): an incoming row,
  OFFERED, or RUNNING at once when the file is at most `Settings.auto_accept_bytes`.
* **Fetch** (`_fetch`): while RUNNING, blocks not yet held are fetched with the
  want-list from the sender, every other connected contact and the IPFS daemon (when
  configured), each verified against its CID; then the file is decrypted into a
  ``.part`` file and published atomically in the downloads folder under a sanitised,
  unique name. Blocks are kept in the blockstore as they arrive, so a transfer
  interrupted by a crash or a kill of either side resumes from what is held. While no
  source has the missing blocks (sender offline) the transfer stays RUNNING and waits
  for a connection. The receiver then appends a ``file_done`` event (the sender's row
  becomes DONE), stored in the same transaction as its own DONE state.
* **Cancel** (either side): state CANCELLED and a ``file_cancel`` event (one
  transaction, too); the other side stops fetching or serving.

Progress (`TransferChanged`) is published at most `PROGRESS_HZ` times a second.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import itertools
import logging
import os
import shutil
import time
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any, Protocol, TypeGuard

from app.core.errors import CoreError
from app.core.file_crypto import (
    FileManifest,
    InvalidManifest,
    ciphertext_size,
    decode_manifest,
    encode_manifest,
    padded_size,
)
from app.core.filenames import sanitize_filename
from app.core.ledger_event import Event, EventBody
from app.core.unixfs import InvalidBlock, iter_leaves
from app.node.api import (
    InvalidArgument,
    Message,
    NodeError,
    NodeEvent,
    StorageFailed,
    Transfer,
    TransferAdded,
    TransferChanged,
    TransferNotFound,
    TransferState,
)
from app.node.block_exchange import NO_BULK_MODE, BlockExchange
from app.node.blockstore import Blockstore, blockstore_dir
from app.node.bulk_fetch import BulkStream
from app.node.bulk_server import BulkServer, LeafByIndex, ServedIndex
from app.node.config import Config, downloads_folder
from app.node.early_fetch import EarlySink, check_tree
from app.node.file_fetch import BlockSource, fetch_into, run_stream
from app.node.file_io import guess_type, portable, random_file_key, release_shared, share_paths
from app.node.file_serving import FileServing
from app.node.files_errors import (
    BlocksUnavailable,
    DiskFull,
    FilesError,
    IpfsUnavailable,
    TransferFailed,
)
from app.node.folder_syncs import FolderSyncs
from app.node.futures import retrieve
from app.node.group_commit import GroupCommit
from app.node.history import FILE, FILE_CANCEL, FILE_DONE, FILE_SOON
from app.node.ipfs import IpfsBackend
from app.node.ipfs_watch import IpfsWatch
from app.node.network import NetworkStack
from app.node.part_file import PartFile, part_path
from app.node.state_message import (
    MAX_TOLD,
    TransferStatus,
    TransferStatuses,
    encode_statuses,
)
from app.node.storage.store import ProfileStore
from app.node.storage.transfers import TransferRecord
from app.node.streaming_share import ShareStopped, StreamingShare
from app.node.transfer_progress import PROGRESS_HZ, Progress, public
from app.node.transfer_status import ended_reason, reason_code, sender_view, status_of
from app.node.transport import ConnectionStateChanged, PeerState, TransportEvent

log = logging.getLogger(__name__)

WAIT_FOR_SOURCE = 10.0
"""A transfer no source can serve tries again after this long (or a new connection)."""
BLOCK_TIMEOUT = 20.0
"""A block request unanswered this long is asked of another source."""
MAX_IN_FLIGHT = 16
"""Blocks requested at once per transfer (16 x 256 KiB = 4 MiB in flight at most)."""
MAX_FETCHES_PER_CONTACT = 32
"""Incoming transfers of one contact fetched at once; the others wait their turn. Each
fetch holds an open, preallocated part file: a contact offering thousands of small files
(each under the auto-accept size) must not open thousands of them."""
DIRECT_DIAL = 5.0
"""How long moving a WebRTC connection to the direct path may take before giving up."""
DIRECT_RETRY = 60.0
"""After a failed attempt, the direct path to a peer is not tried again for this long."""
TELL_RETRY_SECONDS = 10.0
"""While our profile's disk is full, how often a transfer's state is offered again to
its sender (the session state that encrypts the signal has to be stored first)."""
_ENDED = (TransferState.DONE, TransferState.CANCELLED)
EARLY_MIN_BYTES = 16 * 1024 * 1024
"""A file shared alone by a running node is offered before it is encrypted from this
size on (docs/protocol.md section 10.6): below it, encrypting takes a few tens of
milliseconds and the offer waits for its root as before."""


class Conversation(Protocol):
    """What the transfers need of the messenger."""

    async def append_event(
        self, address: str, body: EventBody, *with_steps: Callable[[], object]
    ) -> None: ...

    async def send_signal(self, address: str, plaintext: bytes) -> bool: ...


EncodedShares = list[tuple[Path, list[FileManifest]]]
"""The files of a share, encrypted into the blockstore and not yet offered: each path the
user named with the manifests of the files it holds."""


def logged(exc: FilesError) -> str:
    """`exc` as the log shows it: its kind, not its text, which names the file or the
    folder for the user (docs/threat-model.md: logs hold no names)."""
    return type(exc).__name__


def display_name(manifest: FileManifest) -> str:
    """The transfer's name: sanitised folder parts and file name, "/"-separated."""
    return "/".join(sanitize_filename(part) for part in (*manifest.folder, manifest.name))


class FileTransfers:
    """Every transfer of one profile (see the module docstring)."""

    def __init__(
        self,
        store: ProfileStore,
        config: Callable[[], Config],
        publish: Callable[[NodeEvent], None],
        *,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.blockstore = Blockstore(blockstore_dir(store.paths.root))
        self._config = config
        self._publish = publish
        self._clock = clock
        self._monotonic = monotonic
        self._network: NetworkStack | None = None
        self._conversation: Conversation | None = None
        self.exchange: BlockExchange | None = None
        self.bulk: BulkServer | None = None
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._background: set[asyncio.Future[object]] = set()
        self._stopped = False
        self._events: asyncio.Queue[tuple[str, Event]] = asyncio.Queue()
        self._worker: asyncio.Task[None] | None = None
        self._watches: set[_SourceWatch] = set()
        """One per fetch: what it hears of connections (`_on_transport`)."""
        self._shares: set[str] = set()
        """Ids of our outgoing transfers (so text messages need no lookup in `body_for`)."""
        self._direct_failed: dict[str, float] = {}
        self._progress: dict[str, Progress] = {}
        self._parts: dict[str, PartFile] = {}
        """The part files of incoming transfers being fetched."""
        self._to_tell: dict[str, dict[str, TransferRecord]] = {}
        """Per sender, the newest state of each of its transfers not told yet (`_tell`)."""
        self._telling: set[str] = set()
        """Senders whose states are being told (one task each)."""
        self._fetch_slots: dict[str, asyncio.Semaphore] = {}
        """Per contact: `MAX_FETCHES_PER_CONTACT` fetches of its files at once."""
        self._received_writes: GroupCommit[tuple[str, int, bytes | None]] = GroupCommit(
            self._store_received
        )
        self._folder_syncs = FolderSyncs()
        """Received files' folders are synced once for the files linked meanwhile."""
        self.serving = FileServing(
            store, self.blockstore, publish, self._progress, self._spawn, monotonic
        )
        self._ipfs: IpfsBackend | None = None
        self._ipfs_addr = ""
        self._ipfs_watch: IpfsWatch | None = None
        """While the node runs with an IPFS address: whether its daemon answers."""
        self.blocks_fetched = 0
        self._streaming: dict[str, StreamingShare] = {}
        """Our files offered before their root was known, by transfer id, until the
        transfer ends (their leaves are served by index from the share's pack)."""
        self._early_cids: dict[str, dict[int, bytes]] = {}
        """Per incoming early offer, the CIDs of the leaves received in this run."""
        self._root_came: dict[str, asyncio.Event] = {}
        """Per incoming early offer being fetched: set when its root arrives."""
        self.on_offer: Callable[[Message], None] | None = None
        """Told of the message offering a file once its root is known (the service
        announces and sends it, as for any share)."""

    # ------------------------------------------------------------------ lifecycle

    async def start(self, network: NetworkStack, conversation: Conversation) -> None:
        """Serve and fetch blocks over `network`; resume every RUNNING incoming transfer."""
        self._stopped = False
        self._network = network
        self._conversation = conversation
        self.bulk = BulkServer(self.blockstore, self.serving.served)
        try:
            await self.bulk.start(network.listen_host)
        except OSError as exc:  # no port: every transfer goes block by block
            log.warning("no bulk stream port (%s); files go block by block", exc)
            self.bulk = None
        self.exchange = BlockExchange(network, self.blockstore, self.serving, self.bulk)
        self.exchange.early_policy = self._early_serving
        self.exchange.start()
        network.manager.subscribe(self._on_transport)
        self._worker = asyncio.ensure_future(self._event_loop())
        self._watch_ipfs()
        ended: set[bytes] = set()
        named: set[bytes] = set()
        with_parts = await self.store.call(self.store.transfers.with_received)
        for record in await self.store.call(self.store.transfers.all):
            if record.outgoing:
                self._shares.add(record.id)
                if not record.root and record.state not in _ENDED:
                    self._resume_early(record)  # offered, then killed while encrypting
            elif record.state is TransferState.RUNNING:
                log.info("resuming transfer %s from the blocks already held", record.id)
                self._start_fetch(record)
            elif record.state in _ENDED and record.id in with_parts:
                self._spawn(self._forget_part(record))  # killed as it ended
            if not record.root:
                continue  # offered before its root was known: its pack is unindexed
            if record.state in _ENDED:
                ended.add(record.root)
            named.add(record.root)
        # blocks of transfers that ended before this version deleted them
        held = await self.blockstore.held(ended)
        for root in held:
            self._spawn(self._release(root))
        # blocks of shares never recorded (failed part-way, or a crash before recording):
        # pins are only made by shares, and none can be running before `start` returns
        orphans = await self.blockstore.pins() - named
        if orphans:
            self._spawn(self._release_orphans(orphans))

    async def stop(self) -> None:
        """Stop fetching (progress is persisted; RUNNING transfers resume next start)."""
        self._stopped = True  # what the network still says as it closes changes nothing
        tasks: list[asyncio.Future[Any]] = [*self._tasks.values(), *self._background]
        if self._worker is not None:
            tasks.append(self._worker)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self.exchange is not None:
            await self.exchange.stop()
        if self.bulk is not None:
            await self.bulk.stop()
        if self._ipfs_watch is not None:
            await self._ipfs_watch.stop()
            self._ipfs_watch = None
        if self._ipfs is not None:
            self._ipfs.close()

    def _spawn(self, coro: Coroutine[Any, Any, object]) -> None:
        if self._stopped:  # e.g. a connection closing after `stop`: the store may be gone
            coro.close()
            return
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _on_transport(self, event: TransportEvent) -> None:
        if not isinstance(event, ConnectionStateChanged):
            return
        for watch in self._watches:
            watch.heard(event.address, event.state)
        if event.state is PeerState.CONNECTED or event.state is PeerState.CONNECTING:
            return
        if self.exchange is not None:
            self.exchange.peer_gone(event.address)
            # only a transfer in progress shows a speed, and one already showing 0 is
            # told nothing again: with thousands stalled, every redial of the gone
            # sender read and re-published all of them
            if any(not progress.stalled for progress in self._progress.values()):
                self._spawn(self._stalled(event.address))

    async def _stalled(self, address: str) -> None:
        """The contact `address` went away: its running transfers show no speed (the
        last one shown would stay on screen, with an ETA, until the next progress)."""
        for record in await self.store.call(self.store.transfers.unfinished, address):
            progress = self._progress.get(record.id)
            if record.state is TransferState.RUNNING and progress and not progress.stalled:
                progress.stall()  # 0 until bytes move again
                view = self._view(record)
                self._publish(TransferChanged(dataclasses.replace(view, speed_bps=0.0)))

    def sources_changed(self) -> None:
        """A source may have come without a connection (the IPFS address was set, or
        its daemon answers again): every transfer waiting for one tries again now."""
        self._watch_ipfs()
        for watch in self._watches:
            watch.connected.set()

    @property
    def _ipfs_down(self) -> bool:
        """The configured daemon did not answer when last asked (the node runs)."""
        return self._ipfs_watch is not None and bool(self._ipfs_watch.problem)

    @property
    def ipfs_problem(self) -> str:
        """Why the configured IPFS daemon can't be used now, for `status` ("" if it
        answers, if none is configured, or if the node is not running)."""
        if not self._ipfs_down or self._ipfs is None:
            return ""
        return (
            f"The IPFS daemon at {self._ipfs.api_addr} does not answer: sharing fails "
            "until it does (or the IPFS address is cleared), and files waiting for it "
            "resume by themselves when it answers."
        )

    def _ipfs_backend(self) -> IpfsBackend | None:
        addr = self._config().ipfs_api
        if addr != self._ipfs_addr:
            if self._ipfs_watch is not None:
                self._spawn(self._ipfs_watch.stop())
                self._ipfs_watch = None
            if self._ipfs is not None:
                self._ipfs.close()
            self._ipfs = IpfsBackend(addr) if addr else None
            self._ipfs_addr = addr
        return self._ipfs

    def _watch_ipfs(self) -> None:
        """While the node runs, follow whether the configured daemon answers."""
        if self._network is None or self._stopped:
            return
        try:
            backend = self._ipfs_backend()
        except NodeError as exc:  # a hand-edited address that is no multiaddr
            log.info("the IPFS daemon is not usable: %s", type(exc).__name__)
            return
        if backend is not None and self._ipfs_watch is None:
            self._ipfs_watch = IpfsWatch(backend, self._ipfs_changed)
            self._ipfs_watch.start()

    def _ipfs_noticed(self) -> None:
        """A call to the daemon just failed: the watch takes note and checks again."""
        if self._ipfs_watch is not None:
            self._ipfs_watch.nudge()

    def _ipfs_changed(self) -> None:
        """The daemon stopped or started answering: the transfers waiting say so, and
        when it is back they ask it at once."""
        if not self._ipfs_down:
            self.sources_changed()
        self._spawn(self._show_waiting())

    async def _show_waiting(self) -> None:
        """Publish the rows of the incoming transfers being fetched that do not move
        (their `waiting` text follows the IPFS daemon)."""
        fetching = list(self._parts)
        if not fetching:
            return
        get = self.store.transfers.get
        records = await self.store.call(lambda: [get(tid) for tid in fetching])
        for record in records:
            if record is None or record.state is not TransferState.RUNNING:
                continue
            view = self._view(record)
            if view.speed_bps == 0:
                self._publish(TransferChanged(view))

    # ------------------------------------------------------------------ API

    async def encode_shares(self, paths: list[str]) -> EncodedShares:
        """Encrypt the files under `paths` into the blockstore (the long part of a share;
        cancelled, it deletes what it made), for `record_shares`."""
        if not paths:
            raise InvalidArgument("Name at least one file or folder to share.")
        try:
            chosen = [self._chosen_path(raw) for raw in paths]
        except OSError as exc:  # a name too long, a folder we may not enter...
            raise InvalidArgument(
                f"Can't share {exc.filename or 'that'}: {exc.strerror}."
            ) from None
        return await self._encode_chosen(chosen)

    def _chosen_path(self, raw: str) -> Path:
        """The path the user named, checked (`InvalidArgument` if it can't be shared)."""
        path = Path(raw).expanduser()
        if not path.is_absolute():  # relative to the node's folder is never what was meant
            raise InvalidArgument(
                f"Give the full path of {raw}: the node does not know your current folder."
            )
        # a link named by the user: what it points to is shared, as cp does, under the
        # link's name (`_encode_chosen`)
        if not path.exists():
            raise InvalidArgument(f"{raw} does not exist.")
        if not (path.is_file() or path.is_dir()):
            raise InvalidArgument(f"{raw} is neither a file nor a folder.")
        return path

    async def _encode_chosen(self, chosen: list[Path]) -> EncodedShares:
        # Every path is encoded before any share is recorded: if one fails, nothing is
        # offered and the blocks made for the others are deleted (no orphans).
        made: EncodedShares = []
        try:
            for path in chosen:
                target = path.resolve() if path.is_symlink() else path
                manifests = await share_paths(
                    [target], self.blockstore, ipfs=self._ipfs_backend(), names=[path.name]
                )
                made.append((path, manifests))
                if path.is_dir() and not manifests:
                    raise InvalidArgument(f"The folder {path} holds no files to share.")
        except BaseException as exc:
            await release_shared(self.blockstore, [m for _, ms in made for m in ms])
            if isinstance(exc, OSError):  # walking a folder: one we may not enter...
                raise InvalidArgument(
                    f"Can't share {exc.filename or 'that'}: {exc.strerror}. Nothing was shared."
                ) from None
            if isinstance(exc, DiskFull):  # say how much is needed
                raise DiskFull(_no_room(chosen, self.blockstore.root)) from None
            if isinstance(exc, IpfsUnavailable):  # the user chose IPFS: say how to go on
                self._ipfs_noticed()
                raise IpfsUnavailable(
                    f"{exc} Nothing was shared. Start the IPFS daemon, or clear the IPFS "
                    "address in the settings to share directly (your contact then fetches "
                    "the file from you while you are online)."
                ) from exc
            raise
        return made

    async def record_shares(
        self, contact: str, made: EncodedShares
    ) -> list[tuple[Transfer, Message]]:
        """Record the offers to `contact` of the files `encode_shares` made: each transfer
        with its message (ids equal) in one transaction; the caller announces and
        enqueues the messages. If that fails, nothing is recorded and the blocks made
        are deleted."""
        offers = [
            self._offer(contact, manifest, _local_path(path, manifest))
            for path, manifests in made
            for manifest in manifests
        ]
        store = self.store
        steps = [
            step
            for record, message in offers
            for step in (
                functools.partial(store.transfers.add, record),
                functools.partial(store.messages.add, message),
            )
        ]
        try:  # every offer with its message, or none (a full disk): no half-offered file
            await store.call(store.atomically, *steps)
        except Exception:  # not a cancellation: the commit may still be running then
            await release_shared(self.blockstore, [m for _, ms in made for m in ms])
            raise
        shared: list[tuple[Transfer, Message]] = []
        for record, message in offers:
            self._shares.add(record.id)
            self.serving.forget(record)
            transfer = public(record)
            self._publish(TransferAdded(transfer))
            shared.append((transfer, message))
        return shared

    def _offer(
        self, contact: str, manifest: FileManifest, local: str
    ) -> tuple[TransferRecord, Message]:
        """The transfer record of a file shared with `contact` and the message that
        offers it (same id); stored together by `record_shares`."""
        from app.node.api import MessageStatus

        now = self._clock()
        record = TransferRecord(
            id=os.urandom(16).hex(),
            contact=contact,
            outgoing=True,
            state=TransferState.OFFERED,  # until the receiver starts it (`transfer_status`)
            size=manifest.size,
            done_bytes=0,
            time=now,
            name="/".join((*manifest.folder, manifest.name)),
            mime=manifest.mime_type,
            manifest=encode_manifest(manifest),
            root=manifest.root_cid,
            path=local,
        )
        message = Message(
            id=record.id,
            contact=contact,
            sender=self.store.identity.public.address,
            outgoing=True,
            text=record.name,
            time=now,
            status=MessageStatus.QUEUED,
            transfer=record.id,
        )
        return record, message

    async def list(self, contact: str | None) -> list[Transfer]:
        records = await self.store.read(lambda r: r.transfers.all(contact))
        return [self._view(record) for record in records]

    async def ids(self, contact: str) -> set[str]:
        """Ids of the contact's transfers (= ids of the messages that carry them)."""
        return await self.store.read(lambda r: r.transfers.ids(contact))

    def _view(self, record: TransferRecord) -> Transfer:
        progress = self._progress.get(record.id)
        if record.state is TransferState.RUNNING and progress is not None:
            record = dataclasses.replace(record, done_bytes=max(record.done_bytes, progress.done))
            speed = progress.speed()
            return public(record, speed, self._waiting_for(record, speed))
        return public(record)

    def _waiting_for(self, record: TransferRecord, speed: float) -> str:
        """What an incoming transfer that does not move waits for, when the node knows
        more than "the peer": the IPFS daemon it would fetch from does not answer."""
        if record.outgoing or speed > 0 or not self._ipfs_down or self._ipfs is None:
            return ""
        return f"the IPFS daemon at {self._ipfs.api_addr} does not answer"

    async def _get(self, transfer_id: str) -> TransferRecord:
        record = await self.store.call(self.store.transfers.get, transfer_id.strip())
        if record is None:
            raise TransferNotFound(f"No transfer has the id {transfer_id!r}.")
        return record

    def _need_network(self, what: str) -> Conversation:
        if self._conversation is None:
            raise InvalidArgument(
                f"{what} needs the running node: start it with `scrambled-eggs daemon` "
                "(or open the app) and try again."
            )
        return self._conversation

    async def accept(self, transfer_id: str) -> Transfer:
        record = await self._get(transfer_id)
        if record.outgoing:
            raise InvalidArgument("Only a file offered to you can be accepted.")
        if record.state is not TransferState.OFFERED:
            raise InvalidArgument(f"This transfer is {record.state.value}, not offered.")
        self._need_network("Accepting a file")
        return await self._begin(record)

    async def pause(self, transfer_id: str) -> Transfer:
        """Stop fetching an incoming file, keeping what was received (`retry` resumes)."""
        record = await self._get(transfer_id)
        if record.outgoing:
            raise InvalidArgument("Only a file you receive can be paused; cancel stops sharing.")
        if record.state is not TransferState.RUNNING:
            raise InvalidArgument(
                f"This transfer is {record.state.value}; only a running one can be paused."
            )
        self._refuse_if_being_saved(transfer_id)
        task = self._tasks.pop(transfer_id, None)
        if task is not None:
            await _stop(task)  # it checkpoints what was written
        record = dataclasses.replace(await self._get(transfer_id), state=TransferState.PAUSED)
        if not await self._save(record):  # it ended meanwhile: that state stays
            ended = await self._get(transfer_id)
            raise InvalidArgument(f"This transfer is {ended.state.value}; it cannot be paused.")
        self._progress.pop(transfer_id, None)
        log.info("transfer %s: paused at %d bytes", transfer_id, record.done_bytes)
        self._tell(record)
        return public(record)

    async def retry(self, transfer_id: str) -> Transfer:
        record = await self._get(transfer_id)
        if record.state not in (TransferState.FAILED, TransferState.PAUSED):
            raise InvalidArgument(
                f"This transfer is {record.state.value}; only a failed or "
                "paused transfer can be retried."
            )
        if record.outgoing:  # only the receiver's side pauses or fails (`transfer_status`)
            happened = "was paused" if record.state is TransferState.PAUSED else "failed"
            raise InvalidArgument(
                f"This transfer {happened} on the receiver's side; only they can resume "
                "it. You can still cancel it."
            )
        self._need_network("Retrying a transfer")
        return await self._begin(record)

    async def _begin(self, record: TransferRecord) -> Transfer:
        record = dataclasses.replace(record, state=TransferState.RUNNING, error=None, reason="")
        await self._save(record)
        self._start_fetch(record)
        self._tell(record)
        return public(record)

    def _tell(self, record: TransferRecord) -> None:
        """Tell the sender of the incoming `record` its state (`app.node.transfer_status`),
        in the background; dropped if the sender is not connected.

        One message at a time per sender, the newest state of each transfer: a folder of
        600 files accepted at once sent 600 signals at once, and those in flight when the
        connection moved to the direct path were dropped, more than the Double Ratchet
        skips; the sender's session then diverged, its failures burst, and its anomaly
        detector quarantined us with every transfer stalled. Each message carries every
        state waiting (up to `MAX_TOLD`): one signal per transfer, each waiting for its
        shaped slot, left the sender showing most of 90 files accepted at once as
        offered for seconds."""
        if status_of(record) is None or self._conversation is None:
            return
        waiting = self._to_tell.setdefault(record.contact, {})
        waiting.pop(record.id, None)  # the newer state replaces one not sent yet
        waiting[record.id] = record
        if record.contact not in self._telling:
            self._telling.add(record.contact)
            self._spawn(self._tell_in_turn(record.contact))

    async def _tell_in_turn(self, contact: str) -> None:
        """Send the states waiting for `contact`, oldest first, `MAX_TOLD` per message,
        one message after the other."""
        try:
            while waiting := self._to_tell.get(contact):
                taken = list(itertools.islice(waiting, MAX_TOLD))
                records = [waiting.pop(transfer_id) for transfer_id in taken]
                told = [s for r in records if (s := status_of(r)) is not None]
                if told:
                    await self._tell_sender(contact, told)
        finally:
            self._telling.discard(contact)
            if not self._to_tell.get(contact):
                self._to_tell.pop(contact, None)

    async def _tell_sender(self, contact: str, told: Sequence[TransferStatus]) -> None:
        """Send the `told` states to `contact`, the sender of their transfers, in one
        message. While it can't be sent because our disk is full, try again every
        `TELL_RETRY_SECONDS` with those still the transfers' states: the sender would
        show the transfers as before until the next reconnection."""
        assert self._conversation is not None
        while True:
            try:
                await self._conversation.send_signal(contact, encode_statuses(list(told)))
                return
            except StorageFailed as exc:
                log.warning("could not tell a sender its transfers' states, again later: %s", exc)
            await asyncio.sleep(TELL_RETRY_SECONDS)
            try:
                told = await self._still_told(told)
            except NodeError as exc:
                log.warning("could not read a transfer's state: %s", exc)
                continue
            if not told:
                return  # newer states were (or will be) told instead

    async def _still_told(self, told: Sequence[TransferStatus]) -> Sequence[TransferStatus]:
        """Those of `told` that are still their transfers' states, as they are now."""
        get = self.store.transfers.get

        def read() -> list[TransferRecord | None]:
            return [get(status.transfer_id) for status in told]

        still: list[TransferStatus] = []
        for status, current in zip(told, await self.store.call(read), strict=True):
            now = None if current is None else status_of(current)
            if now is not None and (now.state, now.reason) == (status.state, status.reason):
                still.append(now)
        return still

    async def greeted(self, address: str) -> None:
        """The contact `address` (re)connected: tell it the state of each unfinished
        transfer it sent us (a signal sent while it was away was dropped)."""
        for record in await self.store.call(self.store.transfers.unfinished, address):
            self._tell(record)

    async def transfer_status(
        self, address: str, message: TransferStatus | TransferStatuses
    ) -> None:
        """The receiver of files we sent says what became of them on its side (one
        state, or several in one message): the rows that change are stored in one
        transaction, each then published as it would be alone. A state naming a
        transfer we don't know, or one with another contact, is ignored."""
        statuses = message.statuses if isinstance(message, TransferStatuses) else (message,)
        get = self.store.transfers.get

        def read() -> list[TransferRecord | None]:
            return [get(status.transfer_id) for status in statuses]

        shown: list[TransferRecord] = []
        for status, record in zip(statuses, await self.store.call(read), strict=True):
            if record is None or record.contact != address:
                continue
            new = sender_view(record, status)
            if new is not None:
                log.info("transfer %s: %s on the receiver's side", record.id, status.state)
                shown.append(new)
        if not shown:
            return
        for record in shown:
            self.serving.forget(record)  # no progress shown from the row cached before
            if record.state is not TransferState.RUNNING:
                # it holds `done_bytes` now (nothing after a failure): the progress counts
                # again from there, and blocks served before count again when re-asked
                self._progress.pop(record.id, None)
                self.serving.served_count(record.id)
        update = self.store.transfers.update
        steps = [functools.partial(update, record) for record in shown]
        stored = await self.store.call(self.store.atomically, *steps)
        for record, changed in zip(shown, stored, strict=True):
            if changed:  # else it ended meanwhile: that state stays
                self._publish(TransferChanged(public(record)))

    def _refuse_if_being_saved(self, transfer_id: str) -> None:
        """`InvalidArgument` if every block of the incoming file is in and it is being
        saved (published and its DONE state stored): too late to pause or cancel."""
        part = self._parts.get(transfer_id)
        if part is not None and part.is_complete:
            raise InvalidArgument("This file is received already and being saved.")

    async def cancel(self, transfer_id: str) -> Transfer:
        record = await self._get(transfer_id)
        if record.state in _ENDED:
            raise InvalidArgument(f"This transfer is already {record.state.value}.")
        self._refuse_if_being_saved(transfer_id)
        self._need_network("Cancelling a transfer")
        cancel = EventBody.of(FILE_CANCEL, id=record.id)
        reason = ended_reason(record, by_contact=False)
        record = dataclasses.replace(record, error=None, reason=reason)  # not a failure now
        return public(await self._end(record, TransferState.CANCELLED, announce=cancel))

    async def contact_removed(self, address: str) -> None:
        """The contact `address` is being removed: its unfinished transfers are cancelled
        (fetching stops, the part is removed, our blocks of a file we sent go), each
        with its ``file_cancel`` event, which reaches the contact if it is connected
        now; a file it still tries to fetch is no longer served either way."""
        for record in await self.store.call(self.store.transfers.unfinished, address):
            log.info("transfer %s: cancelled, the contact is removed", record.id)
            cancel = EventBody.of(FILE_CANCEL, id=record.id)
            announce = cancel if self._conversation is not None else None
            reason = ended_reason(record, by_contact=False)
            record = dataclasses.replace(record, error=None, reason=reason)
            await self._end(record, TransferState.CANCELLED, announce=announce)

    async def _end(
        self, record: TransferRecord, state: TransferState, announce: EventBody | None = None
    ) -> TransferRecord:
        """Give the transfer its final `state`; `announce` is our event telling the
        contact, stored in the same transaction as the state (a crash between the two
        would leave the other side waiting forever)."""
        task = self._tasks.pop(record.id, None)
        if task is not None and task is not asyncio.current_task():
            await _stop(task)  # its last checkpoint is written before the part goes
        if state in _ENDED:
            self._early_ended(record.id)
        progress = self._progress.get(record.id)
        if record.outgoing and progress is not None:  # served since the last persisted count
            record = dataclasses.replace(record, done_bytes=max(record.done_bytes, progress.done))
        record = dataclasses.replace(record, state=state)
        if not record.outgoing and state in _ENDED:
            # its event tells the sender: a state still waiting to be told is stale (a
            # folder of small files queues one per file, each a shaped slot)
            self._to_tell.get(record.contact, {}).pop(record.id, None)
        if announce is not None and self._conversation is not None:
            store, saved = self.store, record
            await self._conversation.append_event(
                record.contact, announce, lambda: store.transfers.update(saved)
            )
            self._publish(TransferChanged(public(record)))
        else:
            await self._save(record)
        self.serving.forget(record)
        self._progress.pop(record.id, None)
        if not record.outgoing:
            if state in _ENDED:  # done: the saved file keeps its own name (`PartFile`)
                await self._forget_part(record)
            else:
                await self._set_received(record.id, record.done_bytes, None)
        if state in _ENDED:
            await self._release(record.root)
        return record

    async def _release(self, root: bytes) -> None:
        """Delete the blocks of a file once every transfer of it has ended: the sender's
        encrypted copy (its pack) after the receiver saved the file or either side
        cancelled, the receiver's tree nodes after it saved the file. Failing to delete
        is logged, not raised: the transfer has ended either way."""
        if not root:  # offered before its root was known: nothing was kept under it
            return
        records = await self.store.call(self.store.transfers.with_root, root)
        if any(r.state not in _ENDED for r in records):
            return
        if self.bulk is not None:
            self.bulk.revoke(root)
        try:
            removed = await self.blockstore.release(root)
        except (FilesError, OSError) as exc:
            log.warning("could not delete the blocks of a finished transfer: %s", exc)
            return
        if removed:
            log.info("deleted the %d blocks of a finished transfer", removed)

    async def _release_orphans(self, roots: set[bytes]) -> None:
        """Delete the blocks of shared files no transfer names (see `start`)."""
        removed = 0
        for root in roots:
            try:
                removed += await self.blockstore.release(root)
            except (FilesError, OSError) as exc:
                log.warning("could not delete the blocks of an unrecorded share: %s", exc)
        log.info("deleted the %d blocks of %d unrecorded shares", removed, len(roots))

    async def _forget_part(self, record: TransferRecord) -> None:
        """Remove the part of a transfer that ended and forget its bitmap (only then: a
        bitmap left beside a DONE transfer tells the next start to remove the part's
        name, should the process die before it is gone)."""
        await asyncio.to_thread(self._remove_part, record)
        await self._set_received(record.id, record.done_bytes, None)

    async def _set_received(
        self, transfer_id: str, done_bytes: int, received: bytes | None
    ) -> None:
        """`TransferRepository.set_received`, committed together with those of other
        fetches waiting meanwhile (a folder of small files saves dozens at once; a commit
        each kept the store thread from their other steps)."""
        await self._received_writes.add((transfer_id, done_bytes, received))

    async def _store_received(self, rows: Sequence[tuple[str, int, bytes | None]]) -> None:
        set_received = self.store.transfers.set_received
        steps = [functools.partial(set_received, *row) for row in rows]
        await self.store.call(self.store.atomically, *steps)

    def _remove_part(self, record: TransferRecord) -> None:
        """Delete the part file of an ended incoming transfer, if there is one."""
        try:
            path = part_path(
                decode_manifest(record.manifest, rooted=None),
                downloads_folder(self._config()),
                record.id,
            )
        except (InvalidManifest, FilesError):
            return
        with contextlib.suppress(OSError):
            path.unlink()

    async def _save(self, record: TransferRecord, speed: float = 0.0) -> bool:
        """Store the record; False (nothing changed) if the transfer had ended already."""
        if not await self.store.call(self.store.transfers.update, record):
            return False
        self._publish(TransferChanged(public(record, speed)))
        return True

    # ------------------------------------------------------------------ messenger hooks

    async def body_for(self, message: Message) -> EventBody | None:
        """The ``file`` event body for a queued message that shares a file."""
        if message.id not in self._shares:
            return None
        record = await self.store.call(self.store.transfers.get, message.id)
        if record is None or not record.outgoing or record.contact != message.contact:
            return None
        return EventBody.of(FILE, id=record.id, text=record.name, m=record.manifest)

    def file_event(self, address: str, event: Event) -> None:
        """A contact's file event was accepted into the conversation (queued here)."""
        self._events.put_nowait((address, event))

    async def _event_loop(self) -> None:
        while True:
            waiting = [await self._events.get()]
            while not self._events.empty():
                waiting.append(self._events.get_nowait())
            for offers, other in _runs_of_offers(waiting):
                try:
                    if offers:
                        await self._offered_run(offers)
                    else:
                        await self._apply(*other)
                except NodeError as exc:
                    log.warning("a file event could not be applied: %s", exc)
                except Exception:  # a peer's odd event or our bug must not stop the loop
                    log.exception("applying a file event failed")

    async def _apply(self, address: str, event: Event) -> None:
        body = event.body
        transfer_id = body.get("id")
        if not _valid_id(transfer_id):
            return
        if body.kind in (FILE, FILE_SOON):
            await self._offered_run([(address, event)])
            return
        record = await self.store.call(self.store.transfers.get, transfer_id)
        if record is None or record.contact != address or record.state in _ENDED:
            return
        if body.kind == FILE_CANCEL:
            log.info("the contact cancelled a transfer")
            reason = ended_reason(record, by_contact=True)
            record = dataclasses.replace(record, error=None, reason=reason)
            await self._end(record, TransferState.CANCELLED)
        elif body.kind == FILE_DONE and record.outgoing:
            record = dataclasses.replace(record, done_bytes=record.size)
            self._progress.pop(record.id, None)
            log.info(
                "transfer %s: received by the contact; %d of its blocks served in this run",
                record.id,
                self.serving.served_count(record.id),
            )
            await self._end(record, TransferState.DONE)

    async def _offered_run(self, offers: Sequence[tuple[str, Event]]) -> None:
        """Record the files contacts offered, in one transaction (a folder of small files
        is offered as a run of events: one commit each held the next offer back)."""
        records = [r for r in (self._offer_record(*offer) for offer in offers) if r is not None]
        if not records:
            return
        add = self.store.transfers.add
        steps = [functools.partial(add, record) for record in records]
        added = await self.store.call(self.store.atomically, *steps)
        rooted = [r for r, new in zip(records, added, strict=True) if not new and r.root]
        if rooted:  # the root of a file offered before it was known, or a replay
            await self._roots_came(rooted)
        for record, new in zip(records, added, strict=True):
            if not new:
                continue  # seen before (a replayed or re-synced event)
            self._publish(TransferAdded(public(record)))
            if record.state is TransferState.RUNNING:
                self._start_fetch(record)
                self._tell(record)

    def _offer_record(self, address: str, event: Event) -> TransferRecord | None:
        """The incoming transfer a ``file`` event offers; None if it is malformed."""
        raw = event.body.get("m")
        transfer_id = event.body.get("id")
        if not isinstance(raw, bytes) or not _valid_id(transfer_id):
            return None
        try:
            manifest = decode_manifest(raw, rooted=event.body.kind == FILE)
        except InvalidManifest as exc:
            log.warning("a contact offered a file with a malformed manifest: %s", exc)
            return None
        auto = manifest.size <= self._config().auto_accept_bytes
        return TransferRecord(
            id=transfer_id,
            contact=address,
            outgoing=False,
            state=TransferState.RUNNING if auto else TransferState.OFFERED,
            size=manifest.size,
            done_bytes=0,
            time=min(event.wall_time / 1000.0, self._clock()),  # not "from the future"
            name=display_name(manifest),
            mime=manifest.mime_type,
            manifest=raw,
            root=manifest.root_cid,
        )

    # ------------------------------------------------------------------ fetching

    def _start_fetch(self, record: TransferRecord) -> None:
        transfer_id = record.id
        running = self._tasks.get(transfer_id)
        if running is not None and not running.done():
            return
        task = asyncio.ensure_future(self._fetch(transfer_id, record.contact))
        self._tasks[transfer_id] = task
        task.add_done_callback(
            lambda t: (
                self._tasks.pop(transfer_id, None) if self._tasks.get(transfer_id) is t else None
            )
        )

    def _sources(self, record: TransferRecord) -> dict[str, BlockSource]:
        sources: dict[str, BlockSource] = {}
        assert self._network is not None and self.exchange is not None
        manager = self._network.manager
        if manager.connection(record.contact) is not None:
            sources[f"peer:{record.contact}"] = self.exchange.source(record.contact, record.root)
        for address in manager.connected_peers:
            if address != record.contact:
                sources[f"peer:{address}"] = self.exchange.source(address, record.root)
        try:
            ipfs = self._ipfs_backend()
        except NodeError as exc:
            log.info("the IPFS daemon is not usable: %s", exc)
            ipfs = None
        # a daemon known not to answer is asked again by its watch, which wakes the
        # transfers when it is back: asking it for every block each round cost a
        # worker thread per block (held up to the connect timeout when firewalled)
        if ipfs is not None and not self._ipfs_down:
            sources["ipfs"] = ipfs
        return sources

    async def _fastest_paths(self, record: TransferRecord) -> None:
        """Bulk data takes the direct path when the sender is reachable there (see
        `ConnectionManager.prefer_direct`; docs/decisions/0009-file-transfer.md)."""
        assert self._network is not None
        manager = self._network.manager
        conn = manager.connection(record.contact)
        if conn is None or conn.path == "websocket":
            return
        failed = self._direct_failed.get(record.contact)
        if failed is not None and self._monotonic() - failed < DIRECT_RETRY:
            return
        try:
            direct = await asyncio.wait_for(manager.prefer_direct(record.contact), DIRECT_DIAL)
        except TimeoutError:
            direct = False
        if not direct:
            self._direct_failed[record.contact] = self._monotonic()
        log.info("bulk path to the sender: %s", "websocket" if direct else conn.path)

    async def _fetch(self, transfer_id: str, contact: str) -> None:
        slots = self._fetch_slots.setdefault(contact, asyncio.Semaphore(MAX_FETCHES_PER_CONTACT))
        async with slots:
            await self._fetch_now(transfer_id)

    async def _fetch_now(self, transfer_id: str) -> None:
        record = await self._get(transfer_id)
        manifest = decode_manifest(record.manifest, rooted=None)
        try:
            received = await self.store.call(self.store.transfers.received, transfer_id)
            downloads = downloads_folder(self._config())
            part = await asyncio.to_thread(PartFile, manifest, downloads, transfer_id, received)
        except FilesError as exc:
            await self._fail(record, exc)
            return
        except (OSError, ValueError) as exc:  # a downloads folder it can't use (a NUL...)
            await self._fail(record, FilesError(f"the downloads folder can't be used: {exc}"))
            return
        self._parts[transfer_id] = part
        progress = Progress(part.held_bytes, record.size, self._monotonic)
        if record.done_bytes != progress.done:  # the part holds more or less than stored
            record = dataclasses.replace(record, done_bytes=progress.done)
            await self._save(record)
        else:  # nothing to store (a new transfer): one write per small file fewer
            self._publish(TransferChanged(public(record, 0.0, self._waiting_for(record, 0.0))))
        self._progress[transfer_id] = progress
        log.info(
            "transfer %s: %d of %d blocks already held",
            transfer_id,
            part.held_count,
            manifest.chunk_count,
        )
        fetched = 0

        def on_leaf() -> None:
            nonlocal fetched
            fetched += 1
            self.blocks_fetched += 1

        saved = _Saved(part.held_bytes)  # what the stored bitmap says (it opened the part)
        checkpoints = asyncio.ensure_future(self._checkpoints(record, part, progress, saved))
        started_at = self._monotonic()
        try:
            try:
                if not manifest.is_rooted:  # offered before its root was known
                    manifest = await self._fetch_early(
                        record, manifest, part, progress, on_leaf, saved
                    )
                    record = await self._get(transfer_id)
                if part.is_complete:
                    pass  # checked against its root (`_fetch_early`)
                elif not await self._copy_held(record, manifest, part, progress, saved):
                    await self._fetch_from_sources(record, manifest, part, on_leaf, saved)
                await _stop(checkpoints)
                fetched_at = self._monotonic()
                # the complete bitmap marks a part that may be published already: a
                # restart finds the saved file, or removes the part's name once done
                await self._checkpoint(record, part, progress, saved)
                path = await self._save_file(part)
            except FilesError as exc:
                await _stop(checkpoints)
                await asyncio.to_thread(part.discard)  # a retry starts again: nothing saved
                await self._fail(record, exc)
                return
            except asyncio.CancelledError:
                # stopping, pausing or cancelled: make what was written count for the resume
                # (a transfer that waited for a source wrote nothing since: no sync and no
                # commit each, which made stopping with thousands of them take minutes)
                await _stop(checkpoints)
                if part.held_bytes != saved.done:
                    with contextlib.suppress(FilesError, OSError, ValueError):  # closed
                        await self._checkpoint(record, part, progress, saved)
                part.close()
                raise
            record = dataclasses.replace(record, done_bytes=record.size, path=str(path))
            done = EventBody.of(FILE_DONE, id=record.id)
            await self._end(record, TransferState.DONE, announce=done)
        finally:
            # only now: until DONE is stored, the complete part in `_parts` tells `pause`
            # and `cancel` that the file is being saved
            self._parts.pop(transfer_id, None)
        log.info(
            "transfer %s: saved; %d blocks fetched in this run (fetch %.1f s, save %.1f s)",
            transfer_id,
            fetched,
            fetched_at - started_at,
            self._monotonic() - fetched_at,
        )

    async def _save_file(self, part: PartFile) -> Path:
        """`PartFile.publish`, then the fsync of its folder, shared with the files named
        in it meanwhile (a folder of small files: dozens at once); the file's data and
        name are durable when this returns."""

        def save() -> Path:
            path = part.publish()
            part.sync_folder(self._folder_syncs)
            return path

        return await asyncio.to_thread(save)

    async def _copy_held(
        self,
        record: TransferRecord,
        manifest: FileManifest,
        part: PartFile,
        progress: Progress,
        saved: _Saved,
    ) -> bool:
        """Fill a part that holds nothing yet from this profile's own blockstore, with
        or without a source; True if that completed it.

        A version before part files (schema 9) kept every received block there,
        counted them in `done_bytes` and stored no bitmap; so does a share of the same
        file from this profile. Without this the transfer read "0 B, waiting for the
        peer" (and stored 0) until the sender came back, and one whose blocks were all
        held waited for a sender it did not need. A new transfer's root is not held:
        this costs one lookup and touches neither the network nor the disk."""
        if part.held_count:
            return False
        fetching = asyncio.ensure_future(fetch_into(manifest, self.blockstore, part, {}))
        try:
            await asyncio.shield(fetching)
        except BlocksUnavailable:
            pass
        except asyncio.CancelledError:
            await _stop(fetching)  # ends before the part is touched again
            raise
        if part.held_count:
            log.info("transfer %s: %d blocks found in this profile", record.id, part.held_count)
            await self._checkpoint(record, part, progress, saved)
        return part.is_complete

    async def _fetch_from_sources(
        self,
        record: TransferRecord,
        manifest: FileManifest,
        part: PartFile,
        on_leaf: Callable[[], None],
        saved: _Saved,
    ) -> None:
        """Fetch into `part` from whoever has the blocks, waiting while nobody does.

        A round (`fetch_into`) asks the sources connected when it starts. When the
        sender connects while a round runs without it (it was away when the round
        began, or went away since), that round is stopped and a new one starts with
        the sender at once: otherwise the round goes on until every missing block has
        been asked of every other contact, one answer per block (tens of seconds over a
        shaped link), before the sender is asked. While no source can serve, the
        transfer waits for a connection (any contact: it may hold the file) or
        `WAIT_FOR_SOURCE`; redialling an absent sender is the connection manager's,
        with its backoff. With no source at all (no contact connected, no IPFS daemon
        configured) it waits for a connection or `sources_changed` only: thousands of
        stalled transfers then hold no timer."""
        banned: set[str] = set()
        watch = _SourceWatch(record.contact)
        self._watches.add(watch)
        try:
            while True:
                watch.connected.clear()
                await self._fastest_paths(record)
                sources = self._sources(record)
                watch.begin_round(sender_present=f"peer:{record.contact}" in sources)
                if sources:
                    try:
                        saved.fetching.set()  # blocks may arrive: checkpoint them
                        try:
                            done = await self._fetch_round(
                                record, manifest, part, on_leaf, sources, banned, watch
                            )
                        finally:
                            saved.fetching.clear()
                        if done:
                            return
                        log.info("transfer %s: the sender is back; asking it now", record.id)
                        continue
                    except BlocksUnavailable as exc:
                        log.info("transfer %s: waiting for a source (%s)", record.id, logged(exc))
                        if "ipfs" in sources:
                            self._ipfs_noticed()  # it lacked them, or stopped answering
                        self._waiting(record)
                if not sources:  # only a connection (or an IPFS address) can bring one
                    await watch.connected.wait()
                    continue
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(watch.connected.wait(), WAIT_FOR_SOURCE)
        finally:
            self._watches.discard(watch)

    async def _fetch_round(
        self,
        record: TransferRecord,
        manifest: FileManifest,
        part: PartFile,
        on_leaf: Callable[[], None],
        sources: dict[str, BlockSource],
        banned: set[str],
        watch: _SourceWatch,
    ) -> bool:
        """One `fetch_into` over `sources`: True when the part is complete, False when
        it was stopped because the sender came back (`_SourceWatch.sender_back`)."""
        network = self._network
        with (
            network.fetching_from(record.contact)
            if network is not None
            else contextlib.nullcontext()
        ):
            fetching = asyncio.ensure_future(
                fetch_into(
                    manifest,
                    self.blockstore,
                    part,
                    sources,
                    max_in_flight=MAX_IN_FLIGHT,
                    max_per_peer=MAX_IN_FLIGHT,
                    timeout=BLOCK_TIMEOUT,
                    on_leaf=on_leaf,
                    banned=banned,
                )
            )
            back = asyncio.ensure_future(watch.sender_back.wait())
            try:
                await asyncio.wait({fetching, back}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                back.cancel()
                # stopped (pause, cancel, node stopping) or the sender is back: the round
                # ends before the part is touched again (a bulk stream waits for its
                # writers; see `fetch_into`)
                await _stop(fetching)
        if fetching.cancelled():
            return False
        fetching.result()  # BlocksUnavailable or FilesError: the caller's to handle
        return True

    def _waiting(self, record: TransferRecord) -> None:
        """No source has what is missing: the transfer shows no speed (the GUI says it
        waits for the peer) until blocks move again."""
        progress = self._progress.get(record.id)
        if progress is not None and not progress.stalled:  # else it reads 0 already
            progress.stall()
            view = dataclasses.replace(record, done_bytes=progress.done)
            self._publish(TransferChanged(public(view, 0.0, self._waiting_for(view, 0.0))))

    async def _checkpoints(
        self, record: TransferRecord, part: PartFile, progress: Progress, saved: _Saved
    ) -> None:
        """Flush the part and persist what it holds a few times a second while a round
        fetches (the progress shown is what a restart would resume from). A transfer
        waiting for a source has no timer: thousands of them cost nothing while idle."""
        try:
            while True:
                await saved.fetching.wait()
                await asyncio.sleep(1.0 / PROGRESS_HZ)
                if part.held_bytes != saved.done:
                    await self._checkpoint(record, part, progress, saved)
        except FilesError as exc:  # the final flush reports it to the user
            log.warning("could not flush a file being received: %s", logged(exc))

    async def _checkpoint(
        self, record: TransferRecord, part: PartFile, progress: Progress, saved: _Saved
    ) -> None:
        point = await asyncio.to_thread(part.checkpoint)
        await self._set_received(record.id, point.done_bytes, point.received)
        saved.done = point.done_bytes
        progress.done = point.done_bytes
        shown = dataclasses.replace(record, done_bytes=point.done_bytes)
        self._publish(TransferChanged(public(shown, progress.speed())))

    # ------------------------------------------------------------------ early offers

    def early_candidate(self, paths: Sequence[str]) -> Path | None:
        """The file to offer before it is encrypted (docs/protocol.md section 10.6), or
        None to share `paths` as before: one regular file of at least `EARLY_MIN_BYTES`,
        a running node that may open bulk streams, and no IPFS daemon (whose copy must
        be complete before the offer, so the sender may go offline)."""
        network = self._network
        if len(paths) != 1 or network is None or self._conversation is None:
            return None
        if self.bulk is None or network.shaping_mode == NO_BULK_MODE:
            return None
        try:
            if self._ipfs_backend() is not None:
                return None
            path = self._chosen_path(paths[0])
            target = path.resolve() if path.is_symlink() else path
            if not target.is_file() or target.stat().st_size < EARLY_MIN_BYTES:
                return None
        except (NodeError, OSError):
            return None  # the usual share says what is wrong
        return path

    async def offer_early(self, contact: str, path: Path) -> Transfer:
        """Offer the file at `path` (see `early_candidate`) to `contact` now and encrypt
        it meanwhile; the ``file`` message with its root follows (`on_offer`)."""
        conversation = self._need_network("Sharing a file")
        target = path.resolve() if path.is_symlink() else path
        try:
            size = target.stat().st_size
            free = shutil.disk_usage(self.blockstore.root).free
        except OSError as exc:
            raise InvalidArgument(f"Can't share {path}: {exc.strerror}.") from None
        if free < ciphertext_size(padded_size(size)) + 2 * (1 << 20):
            raise DiskFull(_no_room([target], self.blockstore.root))
        name = portable(path.name)
        manifest = FileManifest(
            root_cid=b"",
            file_key=random_file_key(),
            padded_size=padded_size(size),
            size=size,
            name=name,
            mime_type=guess_type(target, name),
        )
        record = TransferRecord(
            id=os.urandom(16).hex(),
            contact=contact,
            outgoing=True,
            state=TransferState.OFFERED,
            size=size,
            done_bytes=0,
            time=self._clock(),
            name=name,
            mime=manifest.mime_type,
            manifest=encode_manifest(manifest),
            root=b"",
            path=str(path),
        )
        share = StreamingShare(record.id, target, manifest)
        self._streaming[record.id] = share
        self._shares.add(record.id)
        soon = EventBody.of(FILE_SOON, id=record.id, text=record.name, m=record.manifest)
        try:  # the row with its event, or neither
            await conversation.append_event(
                contact, soon, functools.partial(self.store.transfers.add, record)
            )
        except BaseException:
            self._streaming.pop(record.id, None)
            raise
        self._publish(TransferAdded(public(record)))
        self._spawn(self._encode_early(record, share))
        log.info("transfer %s: offered before it is encrypted (%d bytes)", record.id, size)
        return public(record)

    def _resume_early(self, record: TransferRecord) -> None:
        """Encrypt again a file offered before its root was known, whose share was
        killed (the pack of an interrupted share is deleted when the store opens; the
        same key gives the same blocks, which the receiver checks against the root)."""
        try:
            manifest = decode_manifest(record.manifest, rooted=False)
        except InvalidManifest:
            return
        share = StreamingShare(record.id, Path(record.path or ""), manifest)
        self._streaming[record.id] = share
        log.info("transfer %s: encrypting again the file offered before its root", record.id)
        self._spawn(self._encode_early(record, share))

    async def _encode_early(self, record: TransferRecord, share: StreamingShare) -> None:
        encoding = asyncio.ensure_future(asyncio.to_thread(share.run_sync, self.blockstore))
        encoding.add_done_callback(retrieve)  # also when we stop waiting for it
        try:
            made = await asyncio.shield(encoding)
        except asyncio.CancelledError:
            share.stop()  # the node stops: the thread ends at its next leaf
            raise
        except ShareStopped:
            return  # the transfer ended (`_early_ended`)
        except FilesError as exc:
            await self._early_failed(record.id, exc)
            return
        try:
            await self._early_rooted(record.id, made)
        except StorageFailed as exc:  # retried at the next start (encrypted again)
            log.warning("transfer %s: could not store its root: %s", record.id, exc)

    async def _early_failed(self, transfer_id: str, exc: FilesError) -> None:
        """The file offered before it was encrypted could not be: the transfer is
        cancelled (the receiver is told), with the reason shown to the user."""
        log.warning("transfer %s: could not encrypt the offered file: %s", transfer_id, exc)
        record = await self.store.call(self.store.transfers.get, transfer_id)
        if record is None or record.state in _ENDED:
            return
        cancel = EventBody.of(FILE_CANCEL, id=record.id)
        record = dataclasses.replace(
            record,
            error=f"Could not share it: {exc}",
            reason=ended_reason(record, by_contact=False),
        )
        await self._end(record, TransferState.CANCELLED, announce=cancel)

    async def _early_rooted(self, transfer_id: str, made: FileManifest) -> None:
        """The file offered before it was encrypted is in the blockstore: store its
        root and the message that offers it with the root (the ``file`` event)."""
        from app.node.api import MessageStatus

        record = await self.store.call(self.store.transfers.get, transfer_id)
        if record is None or record.state in _ENDED:  # cancelled as it finished
            self._early_ended(transfer_id)
            await self._release(made.root_cid)
            return
        record = dataclasses.replace(record, manifest=encode_manifest(made), root=made.root_cid)
        message = Message(
            id=record.id,
            contact=record.contact,
            sender=self.store.identity.public.address,
            outgoing=True,
            text=record.name,
            time=record.time,
            status=MessageStatus.QUEUED,
            transfer=record.id,
        )
        store = self.store
        await store.call(
            store.atomically,
            functools.partial(store.transfers.set_manifest, record),
            functools.partial(store.messages.add, message),
        )
        self.serving.forget(record)
        log.info("transfer %s: encrypted; its root goes to the contact", transfer_id)
        if self.on_offer is not None:
            self.on_offer(message)

    def _early_ended(self, transfer_id: str) -> None:
        """A transfer ended: stop encrypting or serving it by index, forget its CIDs."""
        share = self._streaming.pop(transfer_id, None)
        if share is not None:
            share.stop()
        if self.exchange is not None:
            with contextlib.suppress(ValueError):
                self.exchange.revoke_early(transfer_id)
        self._early_cids.pop(transfer_id, None)
        self._root_came.pop(transfer_id, None)

    async def _early_serving(
        self, address: str, transfer_id: str
    ) -> tuple[LeafByIndex, ServedIndex] | None:
        """How to serve `address` the leaves of our file offered to it as
        `transfer_id` by chunk index (`BlockExchange.early_policy`), or None."""
        record = await self.store.call(self.store.transfers.get, transfer_id)
        if (
            record is None
            or not record.outgoing
            or record.contact != address
            or record.state in _ENDED
        ):
            return None
        share = self._streaming.get(transfer_id)
        leaf: LeafByIndex
        if share is not None:
            leaf = share.block_sync
        elif record.root:  # encrypted in an earlier run: its leaves in file order
            leaves = await asyncio.to_thread(self._leaves_of, record)
            if leaves is None:
                return None
            leaf = functools.partial(self._leaf_at, leaves)
        else:
            return None

        def served(indices: list[int]) -> None:
            self.serving.served_index(address, transfer_id, indices)

        return leaf, served

    def _leaves_of(self, record: TransferRecord) -> tuple[bytes, ...] | None:
        """The leaf CIDs of our shared file, in file order (worker thread)."""
        try:
            manifest = decode_manifest(record.manifest)
            return tuple(
                cid
                for cid, _ in iter_leaves(
                    manifest.root_cid,
                    self.blockstore.get_sync,
                    manifest.ciphertext_size,
                    manifest.chunk_count,
                )
            )
        except (InvalidManifest, InvalidBlock, FilesError):
            return None

    def _leaf_at(self, leaves: tuple[bytes, ...], index: int) -> bytes | None:
        if not 0 <= index < len(leaves):
            return None
        try:
            return self.blockstore.serve_sync(leaves[index])
        except FilesError:
            return None

    async def _roots_came(self, offered: Sequence[TransferRecord]) -> None:
        """``file`` events for transfers already known: the roots of files offered
        before them (stored; their fetches told), or replays (nothing to do). One
        indexed read of the rows still without a root, however many events every start
        replays."""
        rootless = await self.store.call(self.store.transfers.with_root, b"")
        waiting = {r.id: r for r in rootless if not r.outgoing and r.state not in _ENDED}
        for record in offered:
            row = waiting.get(record.id)
            if row is None or row.contact != record.contact:
                continue
            early = decode_manifest(row.manifest, rooted=None)
            full = decode_manifest(record.manifest)
            if not early.same_file(full):
                log.warning("transfer %s: its root came for another file; ignored", row.id)
                continue
            await self.store.call(
                self.store.transfers.set_manifest, dataclasses.replace(row, root=full.root_cid)
            )
            log.info("transfer %s: the root of the file offered early came", row.id)
            came = self._root_came.get(row.id)
            if came is not None:
                came.set()

    async def _fetch_early(
        self,
        record: TransferRecord,
        manifest: FileManifest,
        part: PartFile,
        progress: Progress,
        on_leaf: Callable[[], None],
        saved: _Saved,
    ) -> FileManifest:
        """Fetch a file offered before its root was known by chunk index from its
        sender, then check it against the root once that came; the manifest with its
        root. If the sender is there but gives no stream (strict shaping, no direct
        path) once the root is known, the chunks received are dropped and the file is
        fetched block by block as any other (the caller goes on with the returned
        manifest)."""
        cids = self._early_cids.setdefault(record.id, {})
        came = self._root_came.setdefault(record.id, asyncio.Event())
        watch = _SourceWatch(record.contact)
        self._watches.add(watch)
        try:
            while True:
                came.clear()
                watch.connected.clear()
                got = (
                    None
                    if part.is_complete
                    else await self._early_round(record, part, cids, on_leaf, saved)
                )
                current = await self._get(record.id)
                if current.root:
                    full = manifest.with_root(current.root)
                    if part.is_complete:
                        await asyncio.to_thread(check_tree, full, part, cids)
                        rooted = dataclasses.replace(current, manifest=encode_manifest(full))
                        await self.store.call(self.store.transfers.set_manifest, rooted)
                        return full
                    if (
                        got is None
                        and self._network is not None
                        and (self._network.manager.connection(record.contact) is not None)
                    ):
                        log.info("transfer %s: no stream by index; block by block", record.id)
                        part.forget_all()
                        cids.clear()
                        await self._checkpoint(current, part, progress, saved)
                        rooted = dataclasses.replace(current, manifest=encode_manifest(full))
                        await self.store.call(self.store.transfers.set_manifest, rooted)
                        return full
                if got:
                    continue  # leaves came: ask again for what is left at once
                if not part.is_complete:
                    self._waiting(record)
                waits = [asyncio.ensure_future(came.wait())]
                waits.append(asyncio.ensure_future(watch.connected.wait()))
                try:
                    await asyncio.wait(
                        waits, timeout=WAIT_FOR_SOURCE, return_when=asyncio.FIRST_COMPLETED
                    )
                finally:
                    for waiting in waits:
                        waiting.cancel()
        finally:
            self._watches.discard(watch)

    async def _early_round(
        self,
        record: TransferRecord,
        part: PartFile,
        cids: dict[int, bytes],
        on_leaf: Callable[[], None],
        saved: _Saved,
    ) -> int | None:
        """One stream by index from the sender: the leaves it brought, or None if it
        gave no stream (absent, or no ticket). `TransferFailed` if a leaf did not
        authenticate."""
        network, exchange = self._network, self.exchange
        if network is None or exchange is None:
            return None
        if network.manager.connection(record.contact) is None:
            return None
        await self._fastest_paths(record)
        ticket = await exchange.early_ticket(record.contact, record.id)
        if ticket is None:
            return None
        saved.fetching.set()  # leaves arrive: checkpoint them
        try:
            with network.fetching_from(record.contact):
                outcome = await run_stream(BulkStream(ticket), EarlySink(part, cids, on_leaf))
        except (OSError, CoreError) as exc:
            log.info("transfer %s: stream by index ended (%s)", record.id, exc)
            return 0
        finally:
            saved.fetching.clear()
        if outcome.tampered:
            raise TransferFailed(
                f"{part.manifest.name!r} failed verification: a block from its sender "
                "does not authenticate"
            )
        log.info("transfer %s: %d leaves by index", record.id, outcome.leaves)
        return outcome.leaves

    async def _fail(self, record: TransferRecord, exc: FilesError) -> None:
        log.warning("transfer %s failed: %s", record.id, logged(exc))
        record = dataclasses.replace(record, done_bytes=0, error=str(exc), reason=reason_code(exc))
        await self._end(record, TransferState.FAILED)
        self._tell(dataclasses.replace(record, state=TransferState.FAILED))


class _Saved:
    """One fetch's part file: the bytes its last stored checkpoint holds, and whether
    a round is fetching (blocks may arrive) or it waits for a source."""

    def __init__(self, done: int) -> None:
        self.done = done
        self.fetching = asyncio.Event()


class _SourceWatch:
    """What one fetch hears of connections (each fetch has its own: one event shared by
    every fetch, cleared by one of them, could swallow another's wake-up)."""

    def __init__(self, sender: str) -> None:
        self._sender = sender
        self._sender_away = False
        self.connected = asyncio.Event()
        """Some peer connected (a source may have come)."""
        self.sender_back = asyncio.Event()
        """The sender connected after it was away during the current round."""

    def begin_round(self, *, sender_present: bool) -> None:
        self._sender_away = not sender_present
        self.sender_back.clear()

    def heard(self, address: str, state: PeerState) -> None:
        if state is PeerState.CONNECTED:
            self.connected.set()
            if address == self._sender and self._sender_away:
                self._sender_away = False
                self.sender_back.set()
        elif state is not PeerState.CONNECTING and address == self._sender:
            self._sender_away = True


def _valid_id(transfer_id: object) -> TypeGuard[str]:
    return isinstance(transfer_id, str) and 0 < len(transfer_id) <= 64


def _runs_of_offers(
    events: list[tuple[str, Event]],
) -> list[tuple[list[tuple[str, Event]], tuple[str, Event]]]:
    """`events` in order, each run of consecutive ``file`` offers as one item
    ``(offers, _)`` and every other event alone as ``([], event)``."""
    items: list[tuple[list[tuple[str, Event]], tuple[str, Event]]] = []
    for item in events:
        if item[1].body.kind not in (FILE, FILE_SOON):
            items.append(([], item))
        elif items and items[-1][0]:
            items[-1][0].append(item)
        else:
            items.append(([item], item))
    return items


async def _stop(task: asyncio.Future[Any]) -> None:
    """Cancel `task` and wait until it has ended (without raising its cancellation)."""
    task.cancel()
    await asyncio.wait([task])


def _local_path(chosen: Path, manifest: FileManifest) -> str:
    """Where the user's copy of a shared file is: the chosen file, or the file inside
    the chosen folder that `manifest` describes."""
    if chosen.is_file():
        return str(chosen)
    return str(chosen.parent.joinpath(*manifest.folder) / manifest.name)


def _no_room(chosen: list[Path], blocks: Path) -> str:
    """What to tell a user whose share did not fit in the profile (its blocks are an
    encrypted copy of the files, a little larger)."""
    need = 0
    for path in chosen:
        files = (
            [path] if path.is_file() else [Path(d) / f for d, _, fs in os.walk(path) for f in fs]
        )
        for file in files:
            with contextlib.suppress(OSError):
                need += file.stat().st_size
    try:
        free = f"{_amount(shutil.disk_usage(blocks).free)} are free"
    except OSError:
        free = "the disk is full"
    what = chosen[0].name if len(chosen) == 1 else f"these {len(chosen)} items"
    return (
        f"Not enough disk space in the profile to share {what}: its encrypted copy needs "
        f"about {_amount(need)} and {free} ({blocks}). Nothing was shared; free some "
        "space and try again."
    )


def _amount(size: int) -> str:
    """A number of bytes for a sentence: MB from 0.1 MB, else kB or bytes (a note of a
    few bytes needed "0.0 MB", and "0.0 MB are free" hid whether anything was)."""
    if size >= 100_000:
        return f"{size / 1e6:.1f} MB"
    if size >= 1000:
        return f"{size // 1000} kB"
    return f"{size} bytes"
