"""The boundary between the node and its front ends (GUI, CLI, control socket).

`app.gui` and `app.cli` import this module and nothing else from `app.node`
(import-linter checks it). It holds:

* value types (frozen dataclasses) for results, commands and events;
* typed errors whose message is written for the user;
* `NodeApi`, the protocol both the in-process `NodeService` and the control-socket
  client implement, so a front end never cares which one it holds;
* entry points (`init_profile`, `open_node`, `run_daemon`, ...) that build the real
  thing lazily, so importing this module stays cheap.
"""

from __future__ import annotations

import os
import re
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractContextManager as ContextManager
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, ClassVar, Protocol

PROFILE_ENV = "SCRAMBLED_EGGS_PROFILE"
PASSPHRASE_ENV = "SCRAMBLED_EGGS_PASSPHRASE"
MAX_MESSAGE_BYTES = 32 * 1024
"""The most text one message holds, in UTF-8 bytes (a history event's text field,
`app.core.ledger_event.MAX_BODY_VALUE_BYTES`); longer text is shared as a file."""

MAX_DRAFT_BYTES = 8 * MAX_MESSAGE_BYTES
"""The most unsent text kept for a contact (`SaveDraft`): the composer holds more than a
message while the user splits it."""


def message_too_long(size: int) -> str:
    """What to tell the user about a message of `size` UTF-8 bytes over the limit."""
    kib = -(-size // 1024)
    return (
        f"This message is too long to send: {kib} KiB, and a message holds at most "
        f"{MAX_MESSAGE_BYTES // 1024} KiB. Split it, or share it as a file."
    )


# --------------------------------------------------------------------------- errors


class NodeError(Exception):
    """Base of every error the node reports. `str(err)` is a sentence for the user."""

    code: ClassVar[str] = "node_error"


class ProfileNotFound(NodeError):
    """There is no profile in the chosen folder yet."""

    code = "profile_not_found"


class ProfileExists(NodeError):
    """`init` was asked to create a profile where one already exists."""

    code = "profile_exists"


class ProfileLocked(NodeError):
    """Another process owns the profile."""

    code = "profile_locked"


class PassphraseRequired(NodeError):
    """The profile is passphrase-protected and no passphrase was supplied."""

    code = "passphrase_required"


class WrongPassphrase(NodeError):
    """The passphrase does not unlock the profile."""

    code = "wrong_passphrase"


class ProfileUnreadable(NodeError):
    """The profile's database or key material is missing, unreadable or corrupt."""

    code = "profile_unreadable"


class StorageFailed(NodeError):
    """The profile's database could not be written (disk full, I/O error, read-only);
    the change was not made. `reason` says why in a few words ("the disk is full")."""

    code = "storage_failed"

    def __init__(self, message: str, reason: str = "") -> None:
        super().__init__(message)
        self.reason = reason


class InvalidArgument(NodeError):
    """A value given by the user is not acceptable (bad name, bad endpoint...)."""

    code = "invalid_argument"


class BadInvite(NodeError):
    """An invite link or address could not be parsed or verified."""

    code = "bad_invite"


class NoWindow(NodeError):
    """An invite link was sent to a node that runs without the app's window (a headless
    `daemon`): there is no Add contact dialog to show it in."""

    code = "no_window"


class ContactNotFound(NodeError):
    """No contact matches the given name or address."""

    code = "contact_not_found"


class AmbiguousContact(NodeError):
    """Several contacts share the given name."""

    code = "ambiguous_contact"


class ContactExists(NodeError):
    """The contact is already in the address book."""

    code = "contact_exists"


class NameTaken(ContactExists):
    """Another contact already has that name (names are compared ignoring case); the
    front end says how to choose another (the CLI's --name, the window's Name field)."""

    code = "name_taken"


class ControlUnavailable(NodeError):
    """The control socket could not be reached or spoke nonsense."""

    code = "control_unavailable"


class NetworkError(NodeError):
    """The node could not open a network endpoint (address in use, bad address...)."""

    code = "network_error"


class TransferNotFound(NodeError):
    """No transfer has that id."""

    code = "transfer_not_found"


class HistoryInvalid(NodeError):
    """A conversation history (stored or exported) does not verify; names the event."""

    code = "history_invalid"


def error_class(code: str) -> type[NodeError]:
    """The `NodeError` subclass (defined anywhere) with this `code`, else `NodeError`."""
    pending: list[type[NodeError]] = [NodeError]
    while pending:
        cls = pending.pop()
        if cls.code == code:
            return cls
        pending.extend(cls.__subclasses__())
    return NodeError


# --------------------------------------------------------------------------- values


class Protection(Enum):
    """How the profile's data key is protected at rest."""

    PASSPHRASE = "passphrase"
    KEYRING = "keyring"
    KEY_FILE = "key-file"


@dataclass(frozen=True)
class ProfileInfo:
    """What can be known about a profile folder without unlocking it. `theme` is the
    saved theme setting (settings are not secret), so the app can look as chosen before
    the passphrase is asked for."""

    path: str
    exists: bool
    protection: Protection | None
    address: str | None
    in_use: bool
    theme: str = "system"
    holder: str = ""
    """While `in_use`: the id of the process holding the profile ("" if unknown)."""


@dataclass(frozen=True)
class Whoami:
    """The local identity."""

    name: str
    address: str
    invite: str
    fingerprint: str


@dataclass(frozen=True)
class Status:
    """The node's state as `status --json` reports it."""

    running: bool
    address: str
    endpoints: list[str]
    dht_peers: int
    storage: str = ""
    """Why what contacts send can't be stored right now ("" when it can)."""
    clock: str = ""
    """Why the computer's clock looks wrong ("" when it looks right or can't be told)."""
    not_added_back: list[str] = field(default_factory=list)
    """Names of the contacts whose nodes told ours they have not added us (what we send
    them waits until they do; see `Contact.not_added_back`)."""
    ipfs: str = ""
    """Why the configured IPFS daemon can't be used now ("" when it answers or none is
    configured): shares fail and fetches from it wait until it answers."""
    turn: str = ""
    """Why the configured TURN server can't be used now ("" when it works or none is
    configured): connections are made without a relay meanwhile."""


@dataclass(frozen=True)
class Contact:
    """One entry of the address book. `key_changed`: someone presented another key for
    this contact; nothing is exchanged until the user removes and re-adds them.
    `unread`: messages received from them and not marked read (in `list_contacts`).
    `not_added_back`: their node told ours it does not have us as a contact (they have
    not added us, or removed us): what we send waits until they add us. False when not
    known (never guessed from silence)."""

    name: str
    address: str
    verified: bool
    key_changed: bool = False
    unread: int = 0
    not_added_back: bool = False


@dataclass(frozen=True)
class AddedContact:
    """What `add_contact` did. `updated`: the contact was already there, with the same
    keys, and the invite refreshed where to reach them (its endpoints, and the X25519 key
    of a contact added by address only); the name and the rest stay as they were."""

    contact: Contact
    updated: bool = False


@dataclass(frozen=True)
class Verification:
    """The safety number shared with a contact, and whether the user confirmed it."""

    name: str
    address: str
    safety_number: str
    verified: bool


class MessageStatus(Enum):
    """Where a message is on its way (outgoing) or that it arrived (incoming)."""

    QUEUED = "queued"
    SENT = "sent"
    DELIVERED = "delivered"
    READ = "read"
    RECEIVED = "received"


@dataclass(frozen=True)
class Message:
    """One message of a conversation. `sender` is an address (ours for outgoing)."""

    id: str
    contact: str
    sender: str
    outgoing: bool
    text: str
    time: float
    status: MessageStatus
    transfer: str | None = None
    """For a shared file: the id of its `Transfer` (`text` is then the file's name)."""


class TransferState(Enum):
    """Where a file transfer is. Outgoing transfers start RUNNING (offered to the peer);
    incoming ones start OFFERED until accepted (or auto-accepted below the size set in
    the settings)."""

    OFFERED = "offered"
    RUNNING = "running"
    PAUSED = "paused"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


@dataclass(frozen=True)
class Transfer:
    """One shared file, sent or received.

    `name` is the sanitised file name (for a shared folder, its path inside the folder,
    "/"-separated); `size` its real size in bytes; `done_bytes` how much is held/sent;
    `path` the local file (outgoing: the shared file; incoming: where it was saved, once
    DONE); `speed_bps` the recent rate while RUNNING; `error` a sentence when FAILED.
    `ended_by` says who ended a CANCELLED transfer, "me" or "contact" ("" otherwise, and
    for one cancelled by an older version); `declined` that it ended as an offer the
    receiver had not accepted (Decline: it read as any other cancel). `waiting` says,
    while a received file does not move, what it waits for besides the peer when the
    node knows ("the IPFS daemon at ADDRESS does not answer"; "" otherwise).
    """

    id: str
    contact: str
    outgoing: bool
    name: str
    size: int
    done_bytes: int
    state: TransferState
    path: str | None
    mime: str
    time: float
    speed_bps: float = 0.0
    error: str | None = None
    ended_by: str = ""
    declined: bool = False
    waiting: str = ""


@dataclass(frozen=True)
class Settings:
    """User preferences, as shown in the settings dialog."""

    display_name: str
    protection: Protection
    listen: str
    bootstrap: list[str]
    lan_discovery: bool
    ice_servers: list[str]
    ipfs_api: str
    shaping_mode: str
    theme: str
    notifications: bool
    auto_accept_bytes: int
    downloads_folder: str = ""
    """Where received files are saved (absolute path)."""


@dataclass(frozen=True)
class Peer:
    """A peer the transport knows about: `contact` is its name if a contact; `path` is
    "webrtc", "websocket" or "turn" while connected, else None; `rtt_ms` the last RTT."""

    contact: str | None
    address: str
    path: str | None
    state: str
    rtt_ms: float | None
    not_added_back: bool = False
    """A contact whose node told ours it has not added us (see `Contact.not_added_back`)."""


@dataclass(frozen=True)
class HistoryReport:
    """A verified conversation history: its heads (CIDs), size and equivocations found."""

    contact: str | None
    heads: list[str]
    events: int
    equivocations: int


@dataclass(frozen=True)
class HistoryExport:
    """A conversation's signed history as an export file (base64 of the CBOR bytes)."""

    contact: str
    heads: list[str]
    events: int
    data_b64: str


@dataclass(frozen=True)
class InitResult:
    """What `init_profile` created, plus anything the user must be warned about."""

    whoami: Whoami
    protection: Protection
    warning: str | None = None


# --------------------------------------------------------------------------- commands


@dataclass(frozen=True)
class AddContact:
    """Add someone from an invite link or a bare address."""

    invite_or_address: str
    name: str | None = None


@dataclass(frozen=True)
class OpenInvite:
    """Ask the app's window to show its Add contact dialog filled with `link` (an invite
    link clicked outside the app). Nothing is added until the user presses Add."""

    link: str


@dataclass(frozen=True)
class InvitePreview:
    """What a verified invite link holds, shown before the contact is added."""

    name: str
    address: str
    fingerprint: str


@dataclass(frozen=True)
class RenameContact:
    """Give a contact another display name (names are only ever local)."""

    contact: str
    name: str


@dataclass(frozen=True)
class RemoveContact:
    """Remove a contact, named by display name or address."""

    contact: str


@dataclass(frozen=True)
class VerifyContact:
    """Show the safety number with a contact; `confirm=True` marks them verified."""

    contact: str
    confirm: bool = False


@dataclass(frozen=True)
class SendMessage:
    """Send a text message to a contact (queued at once, delivered when reachable)."""

    contact: str
    text: str


@dataclass(frozen=True)
class SetTyping:
    """Tell a connected contact we are (or stopped) typing (ephemeral: never stored)."""

    contact: str
    typing: bool


@dataclass(frozen=True)
class MarkRead:
    """Mark a contact's messages read; they get a read receipt (now, or on reconnection).
    With `up_to` (a message's id), only those that had arrived by the time it did: what
    the window showed when it asked, not a message that came while the request was on
    its way (None: every one)."""

    contact: str
    up_to: str | None = None


@dataclass(frozen=True)
class SaveDraft:
    """Keep what is typed to a contact and not sent yet, across restarts (sealed in the
    profile, like messages); empty `text`: no draft."""

    contact: str
    text: str


@dataclass(frozen=True)
class Draft:
    """What was typed to a contact and not sent (`SaveDraft`)."""

    contact: str
    text: str


@dataclass(frozen=True)
class ListMessages:
    """A page of a conversation, newest last: up to `limit` messages before `before`."""

    contact: str
    before: str | None = None
    limit: int = 200


@dataclass(frozen=True)
class SearchMessages:
    """Find messages containing `text` across all conversations."""

    text: str


@dataclass(frozen=True)
class UpdateSettings:
    """Change some settings; fields left as None keep their value."""

    display_name: str | None = None
    listen: str | None = None
    bootstrap: list[str] | None = None
    lan_discovery: bool | None = None
    ice_servers: list[str] | None = None
    ipfs_api: str | None = None
    shaping_mode: str | None = None
    theme: str | None = None
    notifications: bool | None = None
    auto_accept_bytes: int | None = None
    downloads_folder: str | None = None


@dataclass(frozen=True)
class VerifyHistory:
    """Re-verify every signed event of the conversation with a contact."""

    contact: str


@dataclass(frozen=True)
class ExportHistory:
    """Export the conversation with a contact as signed events, verifiable offline."""

    contact: str


@dataclass(frozen=True)
class ShareFiles:
    """Share files and/or folders (folders recursively) with a contact."""

    contact: str
    paths: list[str]


@dataclass(frozen=True)
class ListTransfers:
    """Every transfer, newest last; only those with `contact` if given."""

    contact: str | None = None


@dataclass(frozen=True)
class AcceptTransfer:
    """Accept an offered incoming file (start fetching it)."""

    id: str


@dataclass(frozen=True)
class CancelTransfer:
    """Cancel a transfer, either direction; the peer is told."""

    id: str


@dataclass(frozen=True)
class PauseTransfer:
    """Stop fetching an incoming file for now, keeping what was received (`RetryTransfer`
    resumes it, also after a restart)."""

    id: str


@dataclass(frozen=True)
class RetryTransfer:
    """Resume a paused transfer from what was received, or try a failed one again."""

    id: str


@dataclass(frozen=True)
class ChangePassphrase:
    """Protect the profile with a new passphrase. A profile a passphrase protects needs
    the current one too (`WrongPassphrase` otherwise); one the keyring or a key file
    protects needs none."""

    new_passphrase: str
    current_passphrase: str | None = None


# --------------------------------------------------------------------------- events


@dataclass(frozen=True)
class ContactAdded:
    """A contact was added to the address book."""

    contact: Contact


@dataclass(frozen=True)
class ContactRemoved:
    """A contact was removed from the address book."""

    contact: Contact


@dataclass(frozen=True)
class ContactRenamed:
    """A contact was given another display name."""

    contact: Contact


@dataclass(frozen=True)
class ContactVerified:
    """The user confirmed a contact's safety number."""

    contact: Contact


@dataclass(frozen=True)
class MessageAdded:
    """A message was sent or received (added to its conversation)."""

    message: Message
    before: str | None = None
    """The id of the message it comes before in the conversation's shared order, when it
    is not the newest (a message written at the same time as ours, or one that arrived
    late): a view that shows that message inserts it there. None: it goes last."""


@dataclass(frozen=True)
class MessageStatusChanged:
    """Outgoing messages progressed (sent, delivered, read): message `id` and, when one
    step moved several of the conversation's messages at once (a read receipt or an
    acknowledgement covering a backlog), the others in `more`: one event for all."""

    id: str
    contact: str
    status: MessageStatus
    more: tuple[str, ...] = ()
    """Further messages of `contact` that reached `status` with `id` (oldest first)."""

    @classmethod
    def of(cls, ids: list[str], contact: str, status: MessageStatus) -> MessageStatusChanged:
        """One event for the messages `ids` (at least one) reaching `status` together."""
        return cls(ids[0], contact, status, tuple(ids[1:]))

    @property
    def ids(self) -> tuple[str, ...]:
        """Every message this event moved: `id`, then `more`."""
        return (self.id, *self.more)


@dataclass(frozen=True)
class TypingChanged:
    """A contact started or stopped typing to us (an unrefreshed True expires in 6 s)."""

    contact: str
    typing: bool


@dataclass(frozen=True)
class AddedBackChanged:
    """A contact's node told ours it does not have us as a contact (`not_added_back`),
    or, once it did, something from it opened in our session (False: it knows us now).
    `contact` is the contact's address."""

    contact: str
    not_added_back: bool


@dataclass(frozen=True)
class SettingsChanged:
    """Settings were updated."""

    settings: Settings


@dataclass(frozen=True)
class SecurityAlert:
    """Something about a contact needs the user's attention.

    `kind` is "equivocation" (the contact signed two conflicting histories),
    "key_changed" (an invite, prekey bundle or first message carries another key than
    the stored one), "history_invalid" (the stored history no longer verifies) or
    "anomaly" (the detector rate-limited or quarantined a peer: `contact` is its address,
    or ``dht:<ip>:<port>`` for a DHT sender; see app/node/anomaly.py);
    `detail` is a sentence for the user.
    """

    contact: str
    kind: str
    detail: str


@dataclass(frozen=True)
class TransferAdded:
    """A file was shared by us or offered to us."""

    transfer: Transfer


@dataclass(frozen=True)
class TransferChanged:
    """A transfer progressed or changed state (progress at most a few times a second)."""

    transfer: Transfer


@dataclass(frozen=True)
class StorageAlert:
    """What contacts send can't be stored (the profile's disk is full or read-only): it
    waits with them and arrives by itself once the disk takes it (`resolved`: it does
    again). Repeated at most once a minute while it lasts; `detail` is a sentence for
    the user."""

    detail: str
    resolved: bool = False


@dataclass(frozen=True)
class ClockAlert:
    """The computer's clock looks wrong by our contacts' clocks (`resolved`: it looks
    right again). `detail` is a sentence for the user; `Status.clock` has the latest."""

    detail: str
    resolved: bool = False


@dataclass(frozen=True)
class NodeStopping:
    """The node is shutting down; subscribers should let go."""

    reason: str = "stopped"


NodeEvent = (
    ContactAdded
    | ContactRemoved
    | ContactRenamed
    | ContactVerified
    | MessageAdded
    | MessageStatusChanged
    | TypingChanged
    | AddedBackChanged
    | SettingsChanged
    | SecurityAlert
    | TransferAdded
    | TransferChanged
    | StorageAlert
    | ClockAlert
    | NodeStopping
)
EVENT_TYPES: dict[str, type[NodeEvent]] = {
    cls.__name__: cls
    for cls in (
        ContactAdded,
        ContactRemoved,
        ContactRenamed,
        ContactVerified,
        MessageAdded,
        MessageStatusChanged,
        TypingChanged,
        AddedBackChanged,
        SettingsChanged,
        SecurityAlert,
        TransferAdded,
        TransferChanged,
        StorageAlert,
        ClockAlert,
        NodeStopping,
    )
}

# --------------------------------------------------------------------------- the API


class NodeApi(Protocol):
    """What a front end can ask of a node, in-process or over the control socket."""

    async def whoami(self) -> Whoami: ...
    async def status(self) -> Status: ...
    async def add_contact(self, command: AddContact) -> AddedContact: ...
    async def list_contacts(self) -> list[Contact]: ...
    async def remove_contact(self, command: RemoveContact) -> Contact: ...
    async def rename_contact(self, command: RenameContact) -> Contact: ...
    async def verify_contact(self, command: VerifyContact) -> Verification: ...
    async def send_message(self, command: SendMessage) -> Message: ...
    async def list_messages(self, command: ListMessages) -> list[Message]: ...
    async def last_messages(self) -> list[Message]: ...
    async def search_messages(self, command: SearchMessages) -> list[Message]: ...
    async def set_typing(self, command: SetTyping) -> None: ...
    async def mark_read(self, command: MarkRead) -> None: ...
    async def save_draft(self, command: SaveDraft) -> None: ...
    async def drafts(self) -> list[Draft]: ...
    async def get_settings(self) -> Settings: ...
    async def update_settings(self, command: UpdateSettings) -> Settings: ...
    async def change_passphrase(self, command: ChangePassphrase) -> None: ...
    async def peers(self) -> list[Peer]: ...
    async def verify_history(self, command: VerifyHistory) -> HistoryReport: ...
    async def export_history(self, command: ExportHistory) -> HistoryExport: ...
    async def share_files(self, command: ShareFiles) -> list[Transfer]: ...
    async def list_transfers(self, command: ListTransfers) -> list[Transfer]: ...
    async def accept_transfer(self, command: AcceptTransfer) -> Transfer: ...
    async def cancel_transfer(self, command: CancelTransfer) -> Transfer: ...
    async def pause_transfer(self, command: PauseTransfer) -> Transfer: ...
    async def retry_transfer(self, command: RetryTransfer) -> Transfer: ...
    def events(self) -> AsyncIterator[NodeEvent]: ...


PassphraseSource = Callable[[], str]


@dataclass(frozen=True)
class DaemonOptions:
    """Settings of `scrambled-eggs daemon`."""

    profile: Path
    listen: str | None = None
    bootstrap: list[str] = field(default_factory=list)
    lan: bool = True
    shaping: str | None = None
    """Traffic shaping mode for this run (off|balanced|strict); None: the saved setting."""


def default_profile_dir() -> Path:
    """The per-user default profile folder (platformdirs user data dir)."""
    import platformdirs

    return Path(platformdirs.user_data_dir("scrambled-eggs", appauthor=False))


def resolve_profile(explicit: str | os.PathLike[str] | None = None) -> Path:
    """The profile folder: `--profile`, else $SCRAMBLED_EGGS_PROFILE, else the default."""
    if explicit:
        return Path(explicit).expanduser().absolute()
    from_env = os.environ.get(PROFILE_ENV)
    if from_env:
        return Path(from_env).expanduser().absolute()
    return default_profile_dir()


def passphrase_from_env() -> str | None:
    """The passphrase given through $SCRAMBLED_EGGS_PASSPHRASE, if any."""
    return os.environ.get(PASSPHRASE_ENV)


MAX_LINK_CHARS = 2048
"""The longest invite link (`app.core.identity.MAX_INVITE_CHARS`, docs/protocol.md
section 1): anything longer handed to the app is refused before it is shown."""

_LINK_CONTROLS = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
"""Characters no invite link holds (an invite percent-encodes its name): control
characters, line breaks and tabs (which URL parsing would silently drop), and
bidirectional overrides."""


def check_invite_link(text: str) -> str:
    """`text` without surrounding spaces if it has the shape of an invite link (`eggs:`,
    at most `MAX_LINK_CHARS`, no control characters); `BadInvite` saying what is wrong
    otherwise. The signature is checked by `read_invite` and `add_contact`."""
    link = text.strip()
    if len(link) > MAX_LINK_CHARS:
        raise BadInvite(
            f"That link is too long to be an invite: {len(link):,} characters, and an "
            f"invite link has at most {MAX_LINK_CHARS:,}."
        )
    if link[:5].lower() != "eggs:":
        raise BadInvite(
            "That is not an invite link: Scrambled Eggs opens only links that start with 'eggs:'."
        )
    if _LINK_CONTROLS.search(link):
        raise BadInvite(
            "That invite link holds control characters, which no invite has: ask your "
            "contact for their link again."
        )
    return link


def read_invite(text: str) -> InvitePreview:
    """The name, address and fingerprint an invite link holds, once its shape and
    signature are checked; `BadInvite` with the sentence `add_contact` would give."""
    from app.node.invite_preview import preview

    return preview(check_invite_link(text))


def check_new_passphrase(passphrase: str) -> None:
    """`InvalidArgument` if `passphrase` is too short for a new profile (say so before
    asking for it a second time)."""
    from app.node.storage.vault import check_new_passphrase as check

    check(passphrase)


def left_out_of_shares(paths: list[str]) -> list[str]:
    """What sharing `paths` leaves out of the folders among them (links, pipes, devices),
    as "/"-separated paths from each folder's name: for front ends to tell the user."""
    from app.node.folder_walk import left_out

    return left_out(paths)


def left_out_sentence(skipped: list[str]) -> str | None:
    """The sentence telling the user what `left_out_of_shares` found (None if nothing)."""
    from app.node.folder_walk import left_out_sentence as sentence

    return sentence(skipped)


def inspect_profile(profile: Path) -> ProfileInfo:
    """What the profile folder holds, read without unlocking or locking it."""
    from app.node.profile import inspect

    return inspect(profile)


def check_new_profile(profile: Path, name: str) -> None:
    """`InvalidArgument` if `name` can't be a display name, `ProfileExists` if the folder
    holds a profile: what `init_profile` would refuse before it uses the passphrase."""
    from app.node.profile import check_new_profile as check

    check(profile, name)


def init_profile(profile: Path, name: str, passphrase: str | None) -> InitResult:
    """Create a new profile with a fresh identity. `passphrase=None` uses the OS keyring."""
    from app.node.profile import create_profile

    return create_profile(profile, name, passphrase)


@asynccontextmanager
async def open_node(
    profile: Path, passphrase: PassphraseSource | None = None
) -> AsyncIterator[NodeApi]:
    """A `NodeApi` for the profile: the running node's control socket if one serves it,
    otherwise the profile opened in this process (locked for the duration)."""
    from app.node.local import open_node_api

    async with open_node_api(profile, passphrase) as node:
        yield node


@asynccontextmanager
async def host_node(
    options: DaemonOptions, passphrase: PassphraseSource | None
) -> AsyncIterator[NodeApi]:
    """Run the full node in this process (as the GUI does): lock and unlock the profile,
    join the network and serve the control socket until the context exits."""
    from app.node.daemon import hosted_node

    async with hosted_node(options, passphrase) as node:
        yield node


def opening_links(
    profile: Path,
    opener: Callable[[str], bool | None],
    come_forward: Callable[[], None] | None = None,
) -> ContextManager[None]:
    """While in this context, the node serving `profile` in this process hands each
    invite link a client sends it (`scrambled-eggs eggs:...`, the method
    `window.open_invite`) to `opener`, shape-checked, and calls `come_forward` when a
    second start of the app asks to see it (`window.show`); without one it answers
    `NoWindow`. The app's window registers itself so; `opener` must only show the link
    (returning False if it keeps it until its window is up)."""
    from app.node.control import opening_links as registered

    return registered(profile, opener, come_forward)


@asynccontextmanager
async def one_app(profile: Path, link: str | None, wait: float = 15.0) -> AsyncIterator[bool]:
    """The desktop app's hold on `profile`, from its first moment (before its first-run
    or unlock dialog) to its end: yields True while this process holds it (creating the
    profile and `host_node` then use this hold; the profile's control socket answers
    for the window, `opening_links`, until the node serves it). If another process
    holds it, `link` (None: only "come to the front") is handed to it and False is
    yielded: this start is over. `NoWindow` if that process is a headless daemon,
    `ControlUnavailable` if it does not answer within `wait` seconds (decision 0032)."""
    from app.node.app_instance import one_app as held

    async with held(profile, None if link is None else check_invite_link(link), wait) as mine:
        yield mine


async def open_invite_in_window(profile: Path, link: str, wait: float = 15.0) -> bool:
    """Hand `link` to the window of the app running on `profile`: True if the window
    shows it now, False if the app is at its first-run or unlock dialog (the window
    shows it once it is up). `NoWindow` if the node there is a headless daemon,
    `ControlUnavailable` if no node answers within `wait` seconds."""
    from app.node.control import open_invite_in_window as send

    return await send(profile, check_invite_link(link), wait)


def check_daemon_options(options: DaemonOptions) -> None:
    """What `run_daemon` refuses before it opens the profile (no profile, a bad listen or
    bootstrap address, an unknown shaping mode), checked without the passphrase."""
    from app.node.daemon import check_options

    check_options(options)


async def run_daemon(
    options: DaemonOptions,
    passphrase: PassphraseSource | None,
    stop_asked: Callable[[], bool] | None = None,
) -> bool:
    """Run the headless node until SIGINT, SIGTERM or SIGHUP (`scrambled-eggs daemon`),
    stopping cleanly; False if one came while it started (it never ran). `stop_asked`:
    whether one came before this was called (the caller's own signal handlers)."""
    from app.node.daemon import run

    return await run(options, passphrase, stop_asked)


def check_models() -> dict[str, str]:
    """Load each shipped ONNX model as the node does: name -> "" if it loads and takes
    this node's features, else why not (`--selftest`: a node without them falls back to
    a fixed shaping rule and runs no anomaly detector)."""
    from app.node.anomaly import Detector
    from app.node.ml import ModelError
    from app.node.shaper import ScheduleModel

    found: dict[str, str] = {}
    try:
        Detector.load()
        found["anomaly"] = ""
    except ModelError as exc:
        found["anomaly"] = str(exc)
    found["shaper"] = "" if ScheduleModel.load().loaded else "not loaded (see the log)"
    return found


def ice_server_shown(text: str) -> str:
    """A STUN/TURN entry as it may be shown: a TURN password replaced by "•••"
    (`settings` without `--show-secrets`, the window's field until Show passwords).
    Setting an entry with that hidden password is refused."""
    from app.node.transport.ice_urls import shown

    return shown(text)


def check_settings(change: UpdateSettings) -> list[str]:
    """Every reason `update_settings(change)` would be refused for (display name aside),
    one sentence each, checked without a node; empty when the settings can be saved."""
    from app.node.service import settings_problems

    return settings_problems(change)


def check_settings_here(change: UpdateSettings) -> dict[str, str]:
    """What this machine can't use among the settings in `change`: setting name ->
    sentence (a listen address it can't listen on, a downloads folder it can't create or
    write to, an IPFS API address where no IPFS daemon answers, a TURN server that
    refuses its user name and password). Blocking I/O, up to a few seconds for the two
    servers (run it in a thread); `update_settings` refuses the same."""
    from app.node.setting_probes import machine_problems

    return machine_problems(asdict(change))


def verify_history_file(path: Path) -> HistoryReport:
    """Verify a `history export` file offline (no profile needed); raise `HistoryInvalid`
    naming the first event that fails."""
    from app.node.history import verify_export_file

    return verify_export_file(path)


def to_wire(value: Any) -> Any:
    """A JSON-ready form of an API value (dataclasses, enums, lists)."""
    from app.node.wire_json import to_json

    return to_json(value)
