"""The local control socket: JSON-RPC 2.0, one JSON object per line.

POSIX: a Unix socket (0600, in the 0700 profile folder) so only the profile's owner can
connect. Windows: 127.0.0.1 TCP plus a random token in `control.json` (0600) that the
client must present first. Methods mirror `NodeApi`; `events.subscribe` turns the
connection into a stream of `{"method": "event", "params": {"type", "event"}}`
notifications. See docs/protocol.md, "Control socket".
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.node.api import (
    EVENT_TYPES,
    AcceptTransfer,
    AddContact,
    AddedContact,
    CancelTransfer,
    ChangePassphrase,
    Contact,
    ControlUnavailable,
    Draft,
    ExportHistory,
    HistoryExport,
    HistoryReport,
    ListMessages,
    ListTransfers,
    MarkRead,
    Message,
    NodeApi,
    NodeError,
    NodeEvent,
    NodeStopping,
    NoWindow,
    OpenInvite,
    PauseTransfer,
    Peer,
    ProfileLocked,
    RemoveContact,
    RenameContact,
    RetryTransfer,
    SaveDraft,
    SearchMessages,
    SendMessage,
    Settings,
    SetTyping,
    ShareFiles,
    Status,
    Transfer,
    UpdateSettings,
    Verification,
    VerifyContact,
    VerifyHistory,
    Whoami,
    check_invite_link,
    error_class,
)
from app.node.fsutil import atomic_write
from app.node.line_writer import LineWriter
from app.node.paths import ProfilePaths
from app.node.wire_json import from_json, to_json

log = logging.getLogger(__name__)

MAX_LINE = 1024 * 1024
"""Longest request the node reads."""
MAX_REPLY = 256 * 1024 * 1024
"""Longest reply a client reads (an export of a long conversation, a page of 1,000
messages: over 1 MiB, they failed as "the node closed the control socket")."""
MAX_CLIENTS = 256
"""Control connections served at once; more are closed at once (20,000 idle ones used
up the node's file handles, found by a tester)."""
EVENT_SEND_TIMEOUT = 30.0
"""Seconds an events subscriber may leave a write unread before it is cut off."""
CLOSE_TIMEOUT = 2.0
"""Seconds a closing connection may take to hand over what is left to send."""
GONE_POLL = 0.2
"""Seconds between checks that the client of a `Method.stops_when_client_leaves` call
is still connected."""
PARSE_ERROR, INVALID_REQUEST, METHOD_NOT_FOUND, INVALID_PARAMS, INTERNAL_ERROR = (
    -32700,
    -32600,
    -32601,
    -32602,
    -32603,
)
NODE_ERROR = -32000


@dataclass(frozen=True)
class Method:
    """One RPC: the `NodeApi` attribute it calls, its parameter and result types."""

    attribute: str
    params: type | None
    result: Any
    stops_when_client_leaves: bool = False
    """Cancel the call if the client disconnects before the reply (Ctrl+C on `share`:
    the node went on sharing every file)."""


METHODS: dict[str, Method] = {
    "whoami": Method("whoami", None, Whoami),
    "status": Method("status", None, Status),
    "contacts.add": Method("add_contact", AddContact, AddedContact),
    "contacts.list": Method("list_contacts", None, list[Contact]),
    "contacts.remove": Method("remove_contact", RemoveContact, Contact),
    "contacts.rename": Method("rename_contact", RenameContact, Contact),
    "contacts.verify": Method("verify_contact", VerifyContact, Verification),
    "messages.send": Method("send_message", SendMessage, Message),
    "messages.list": Method("list_messages", ListMessages, list[Message]),
    "messages.last": Method("last_messages", None, list[Message]),
    "messages.search": Method("search_messages", SearchMessages, list[Message]),
    "messages.typing": Method("set_typing", SetTyping, type(None)),
    "messages.read": Method("mark_read", MarkRead, type(None)),
    "drafts.save": Method("save_draft", SaveDraft, type(None)),
    "drafts.list": Method("drafts", None, list[Draft]),
    "settings.get": Method("get_settings", None, Settings),
    "settings.update": Method("update_settings", UpdateSettings, Settings),
    "profile.change_passphrase": Method("change_passphrase", ChangePassphrase, type(None)),
    "peers.list": Method("peers", None, list[Peer]),
    "history.verify": Method("verify_history", VerifyHistory, HistoryReport),
    "history.export": Method("export_history", ExportHistory, HistoryExport),
    "files.share": Method("share_files", ShareFiles, list[Transfer], stops_when_client_leaves=True),
    "transfers.list": Method("list_transfers", ListTransfers, list[Transfer]),
    "transfers.accept": Method("accept_transfer", AcceptTransfer, Transfer),
    "transfers.cancel": Method("cancel_transfer", CancelTransfer, Transfer),
    "transfers.pause": Method("pause_transfer", PauseTransfer, Transfer),
    "transfers.retry": Method("retry_transfer", RetryTransfer, Transfer),
}


OPEN_INVITE = "window.open_invite"
"""The one method not on `NodeApi`: hand an invite link to the app's window, which shows
it in its Add contact dialog (`params: {"link": str}`; result `true`, or `false` when the
app is still at its first-run or unlock dialog: it shows the link once its window is up)."""

NO_WINDOW = (
    "Scrambled Eggs runs on this profile without its window (a 'scrambled-eggs daemon'), "
    "so there is no window to show the invite in."
)

SHOW_WINDOW = "window.show"
"""Bring the app's window (or its first-run or unlock dialog) to the front: a second
start of the app on the profile asks this and exits (no params, result `true`)."""

OPENING = (
    "Scrambled Eggs has the profile in {0} open at its first-run or unlock dialog, or is "
    "still starting it: unlock it there, or wait until its window is up, then try again."
)
"""What the app's control socket answers to every call but the window's before its node
runs (`ControlServer` without an api)."""


@dataclass(frozen=True)
class _Window:
    open_link: Callable[[str], bool | None]
    come_forward: Callable[[], None] | None


_WINDOWS: dict[Path, _Window] = {}
"""The window of each profile hosted in this process, by profile folder."""


def _profile_key(profile: Path) -> Path:
    return Path(os.path.realpath(profile))


@contextlib.contextmanager
def opening_links(
    profile: Path,
    opener: Callable[[str], bool | None],
    come_forward: Callable[[], None] | None = None,
) -> Iterator[None]:
    """`OPEN_INVITE` on `profile`'s control socket calls `opener`, and `SHOW_WINDOW`
    calls `come_forward`, while in this context (see `app.node.api.opening_links`)."""
    key = _profile_key(profile)
    window = _Window(opener, come_forward)
    _WINDOWS[key] = window
    try:
        yield
    finally:
        if _WINDOWS.get(key) is window:
            del _WINDOWS[key]


# --------------------------------------------------------------------------- server


class ControlServer:
    """Serves a `NodeApi` on the profile's control endpoint. Without one (`api=None`),
    the desktop app's endpoint while it holds the profile at its first-run or unlock
    dialog: only the window's methods are served, every other call is told `OPENING`
    (decision 0032)."""

    def __init__(self, api: NodeApi | None, paths: ProfilePaths) -> None:
        self._api = api
        self._paths = paths
        self._server: asyncio.Server | None = None
        self._token = secrets.token_hex(32)
        self._clients: set[asyncio.Task[None]] = set()
        self._socket_id: tuple[int, int] | None = None

    async def start(self) -> None:
        if sys.platform == "win32":
            self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0, limit=MAX_LINE)
            port = self._server.sockets[0].getsockname()[1]
            data = {"port": port, "token": self._token}
            atomic_write(self._paths.control_token, json.dumps(data).encode())
            return
        path = self._paths.control_socket
        with contextlib.suppress(FileNotFoundError):
            path.unlink()  # stale socket of a crashed process; we hold the profile lock
        old_umask = os.umask(0o177)
        try:
            self._server = await asyncio.start_unix_server(self._serve, path, limit=MAX_LINE)
        finally:
            os.umask(old_umask)
        os.chmod(path, 0o600)
        self._socket_id = _file_id(path)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for task in list(self._clients):
                task.cancel()
            await asyncio.gather(*self._clients, return_exceptions=True)
            await self._server.wait_closed()
            self._server = None
        for path in (self._paths.control_socket, self._paths.control_token):
            if not self._owns(path):
                continue  # the node the app started meanwhile serves there now
            try:
                path.unlink()
            except FileNotFoundError:
                pass
            except OSError as exc:  # a read-only disk: the next start replaces it
                log.warning("could not remove %s: %s", path.name, exc.strerror)

    def _owns(self, path: Path) -> bool:
        """Whether the endpoint file at `path` is still this server's (a server stopped
        after another one of the same process replaced it, or that never served,
        leaves it be)."""
        if path == self._paths.control_socket:
            return self._socket_id is not None and _file_id(path) in (self._socket_id, None)
        try:
            return bool(json.loads(path.read_text()).get("token") == self._token)
        except (OSError, ValueError, AttributeError):
            return True  # gone, or not a server's: removing it harms nobody

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        if len(self._clients) >= MAX_CLIENTS:
            writer.close()
            return
        self._clients.add(task)
        lines = LineWriter(writer)

        async def send(obj: dict[str, Any], timeout: float | None = None) -> None:
            """Write one line (see `LineWriter.send`)."""
            await lines.send(json.dumps(obj).encode() + b"\n", timeout)

        def cut_off() -> None:
            lines.flush()  # the last word (`NodeStopping`), if the socket takes it
            writer.transport.abort()  # the reading loop below sees the end and cleans up

        forwarders: list[asyncio.Task[None]] = []
        try:
            if sys.platform == "win32" and not await self._check_token(reader):
                return
            while True:
                try:
                    line = await reader.readline()
                except ValueError:  # line longer than MAX_LINE
                    await send(_error(None, INVALID_REQUEST, "request too large"))
                    return
                if not line:
                    return
                reply = await self._handle(line, send, forwarders, cut_off, reader.at_eof)
                if reply is not None:
                    await send(reply)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:
            # `stop`: end quietly (asyncio's stream callback logged a cancelled client
            # task as an ERROR with a traceback at every stop with a client attached)
            pass
        finally:
            for forwarder in forwarders:
                forwarder.cancel()
            self._clients.discard(task)
            lines.flush()  # e.g. the error that ends the connection
            writer.close()
            try:  # a client that reads nothing leaves unsent data: closing waited for it
                await asyncio.wait_for(writer.wait_closed(), CLOSE_TIMEOUT)
            except TimeoutError:
                writer.transport.abort()
            except Exception:  # already closing; nothing left to tell anyone
                pass

    async def _check_token(self, reader: asyncio.StreamReader) -> bool:
        line = await reader.readline()
        try:
            return secrets.compare_digest(json.loads(line).get("token", ""), self._token)
        except (ValueError, AttributeError, TypeError):
            return False

    async def _handle(
        self,
        line: bytes,
        send: Callable[..., Awaitable[None]],
        forwarders: list[asyncio.Task[None]],
        cut_off: Callable[[], None],
        gone: Callable[[], bool],
    ) -> dict[str, Any] | None:
        try:
            request = json.loads(line)
        except (ValueError, RecursionError):  # nested too deep: not a request either
            return _error(None, PARSE_ERROR, "not JSON")
        if not isinstance(request, dict) or request.get("jsonrpc") != "2.0":
            return _error(None, INVALID_REQUEST, "not a JSON-RPC 2.0 request")
        rid, name = request.get("id"), request.get("method")
        if not _valid_id(rid):  # NaN was echoed back as non-standard JSON
            return _error(None, INVALID_REQUEST, "the id is a string, an integer or null")
        if not isinstance(name, str):
            return _error(rid, INVALID_REQUEST, "a request names its method")
        reply = await self._call(request, rid, name, send, forwarders, cut_off, gone)
        # a notification (no id) is carried out but not answered (JSON-RPC 2.0, 4.1)
        return reply if "id" in request else None

    async def _call(
        self,
        request: dict[str, Any],
        rid: Any,
        name: str,
        send: Callable[..., Awaitable[None]],
        forwarders: list[asyncio.Task[None]],
        cut_off: Callable[[], None],
        gone: Callable[[], bool],
    ) -> dict[str, Any]:
        if name == OPEN_INVITE:
            return self._open_invite(request, rid)
        if name == SHOW_WINDOW:
            return self._show_window(rid)
        if self._api is None:
            if name != "events.subscribe" and name not in METHODS:
                return _error(rid, METHOD_NOT_FOUND, f"unknown method {_clip(name)!r}")
            opening = OPENING.format(self._paths.root)
            return _error(rid, NODE_ERROR, opening, {"type": ProfileLocked.code})
        if name == "events.subscribe":
            forwarders.append(asyncio.create_task(self._forward_events(send, cut_off)))
            return {"jsonrpc": "2.0", "id": rid, "result": True}
        method = METHODS.get(name)
        if method is None:
            return _error(rid, METHOD_NOT_FOUND, f"unknown method {_clip(name)!r}")
        args = []
        if method.params is not None:
            try:
                args.append(from_json(method.params, request.get("params") or {}))
            except (ValueError, TypeError) as exc:
                return _error(rid, INVALID_PARAMS, str(exc))
        try:
            call = getattr(self._api, method.attribute)(*args)
            result = await (_unless_gone(call, gone) if method.stops_when_client_leaves else call)
        except NodeError as exc:  # clipped: a 1 MB name was echoed whole
            return _error(rid, NODE_ERROR, _clip(str(exc)), {"type": exc.code})
        except UnicodeEncodeError:  # "\ud800" is valid JSON but not text; nothing changed
            return _error(rid, INVALID_PARAMS, "a text parameter holds a lone surrogate")
        except Exception:
            log.exception("control method %s failed", name)
            return _error(rid, INTERNAL_ERROR, "internal error; see the node's log")
        return {"jsonrpc": "2.0", "id": rid, "result": to_json(result)}

    def _open_invite(self, request: dict[str, Any], rid: Any) -> dict[str, Any]:
        """Hand a shape-checked invite link to this profile's window; nothing else (the
        window asks the user before anything is added)."""
        try:
            command = from_json(OpenInvite, request.get("params") or {})
        except (ValueError, TypeError) as exc:
            return _error(rid, INVALID_PARAMS, _clip(str(exc)))
        if not isinstance(command.link, str):
            return _error(rid, INVALID_PARAMS, "the link is a string")
        try:
            link = check_invite_link(command.link)
        except NodeError as exc:
            return _error(rid, NODE_ERROR, str(exc), {"type": exc.code})
        window = _WINDOWS.get(_profile_key(self._paths.root))
        if window is None:
            return _error(rid, NODE_ERROR, NO_WINDOW, {"type": NoWindow.code})
        try:
            shown = window.open_link(link) is not False
        except Exception:
            log.exception("the window could not take an invite link")
            return _error(rid, INTERNAL_ERROR, "internal error; see the node's log")
        return {"jsonrpc": "2.0", "id": rid, "result": shown}

    def _show_window(self, rid: Any) -> dict[str, Any]:
        """Bring this profile's window (or its dialog) to the front."""
        window = _WINDOWS.get(_profile_key(self._paths.root))
        if window is None or window.come_forward is None:
            return _error(rid, NODE_ERROR, NO_WINDOW, {"type": NoWindow.code})
        try:
            window.come_forward()
        except Exception:
            log.exception("the window could not come to the front")
            return _error(rid, INTERNAL_ERROR, "internal error; see the node's log")
        return {"jsonrpc": "2.0", "id": rid, "result": True}

    async def _forward_events(
        self, send: Callable[..., Awaitable[None]], cut_off: Callable[[], None]
    ) -> None:
        """Send every node event to a subscriber. One that stops reading is cut off: when
        a write waits `EVENT_SEND_TIMEOUT`, or once it is told `NodeStopping("overflow")`
        (see `app.node.events`); it kept its connection, and one of the
        `MAX_CLIENTS` places, for as long as it lived."""
        assert self._api is not None, "answered by `_call` without a node"
        try:
            async for event in self._api.events():
                params = {"type": type(event).__name__, "event": to_json(event)}
                message = {"jsonrpc": "2.0", "method": "event", "params": params}
                await send(message, EVENT_SEND_TIMEOUT)
                if isinstance(event, NodeStopping) and event.reason == "overflow":
                    cut_off()
        except TimeoutError:
            cut_off()
        except ConnectionError:
            pass


def _file_id(path: Path) -> tuple[int, int] | None:
    """Which file is at `path` (device and inode), None if none is."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


MAX_ERROR_CHARS = 1000


def _clip(text: str) -> str:
    """`text`, cut to `MAX_ERROR_CHARS` (an error must not echo a huge argument)."""
    return text if len(text) <= MAX_ERROR_CHARS else text[: MAX_ERROR_CHARS - 1] + "…"


def _valid_id(rid: Any) -> bool:
    """JSON-RPC ids are strings, integers or null (not floats, NaN, lists...)."""
    return rid is None or isinstance(rid, str) or (type(rid) is int)


async def _unless_gone(call: Awaitable[Any], gone: Callable[[], bool]) -> Any:
    """Await `call`, cancelling it when `gone()` says the client disconnected (polled: a
    connection is read only between requests). Cancelled, it raises CancelledError,
    which ends the connection."""
    task = asyncio.ensure_future(call)
    try:
        while not task.done():
            await asyncio.wait({task}, timeout=GONE_POLL)
            if not task.done() and gone():
                task.cancel()
                await asyncio.wait({task})
        return task.result()
    finally:
        task.cancel()  # our own connection was cancelled (the node stops)


def _error(rid: Any, code: int, message: str, data: Any = None) -> dict[str, Any]:
    err: dict[str, Any] = {"code": code, "message": message}
    if data is not None:
        err["data"] = data
    return {"jsonrpc": "2.0", "id": rid, "error": err}


# --------------------------------------------------------------------------- client


NODE_WENT_AWAY = (
    "The node stopped before it answered, so whether this was done is not known: "
    "check (e.g. messages, transfers), then try again."
)
"""A call whose node went away meanwhile (stopped with Ctrl+C or SIGTERM, or failed).
"The node closed the control socket" named a mechanism and left the user guessing
whether the share or message had gone through (found stopping a daemon mid-share)."""


class ControlClient:
    """A `NodeApi` that forwards every call to a running node's control socket."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self._next_id = 0
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._events: asyncio.Queue[NodeEvent] = asyncio.Queue()
        self._pump = asyncio.create_task(self._read_loop())

    async def close(self) -> None:
        self._pump.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._pump
        self._writer.close()
        with contextlib.suppress(Exception):
            await self._writer.wait_closed()

    async def _read_loop(self) -> None:
        try:
            while line := await self._reader.readline():
                message = json.loads(line)
                if message.get("method") == "event":
                    params = message["params"]
                    cls = EVENT_TYPES.get(params.get("type"))
                    if cls is not None:
                        self._events.put_nowait(from_json(cls, params["event"]))
                    continue
                future = self._pending.pop(message.get("id"), None)
                if future is not None and not future.done():
                    future.set_result(message)
        except (ConnectionError, ValueError):
            pass
        finally:
            for future in self._pending.values():
                if not future.done():
                    future.set_exception(ControlUnavailable(NODE_WENT_AWAY))
            self._events.put_nowait(NodeStopping("disconnected"))

    async def call(self, name: str, params: Any = None) -> Any:
        """Send one request; return its raw result or raise the node's typed error."""
        if self._pump.done():
            raise ControlUnavailable(NODE_WENT_AWAY)
        self._next_id += 1
        rid = self._next_id
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[rid] = future
        request: dict[str, Any] = {"jsonrpc": "2.0", "id": rid, "method": name}
        if params is not None:
            request["params"] = to_json(params)
        self._writer.write(json.dumps(request).encode() + b"\n")
        await self._writer.drain()
        reply = await future
        if "error" in reply:
            error = reply["error"]
            code = (error.get("data") or {}).get("type", "node_error")
            raise error_class(code)(error.get("message", "unknown error"))
        return reply.get("result")

    async def _typed(self, name: str, params: Any = None) -> Any:
        try:
            return from_json(METHODS[name].result, await self.call(name, params))
        except ValueError as exc:
            raise ControlUnavailable(f"The node sent a malformed reply ({exc}).") from None

    async def whoami(self) -> Whoami:
        result: Whoami = await self._typed("whoami")
        return result

    async def status(self) -> Status:
        result: Status = await self._typed("status")
        return result

    async def add_contact(self, command: AddContact) -> AddedContact:
        result: AddedContact = await self._typed("contacts.add", command)
        return result

    async def list_contacts(self) -> list[Contact]:
        result: list[Contact] = await self._typed("contacts.list")
        return result

    async def remove_contact(self, command: RemoveContact) -> Contact:
        result: Contact = await self._typed("contacts.remove", command)
        return result

    async def rename_contact(self, command: RenameContact) -> Contact:
        result: Contact = await self._typed("contacts.rename", command)
        return result

    async def verify_contact(self, command: VerifyContact) -> Verification:
        result: Verification = await self._typed("contacts.verify", command)
        return result

    async def send_message(self, command: SendMessage) -> Message:
        result: Message = await self._typed("messages.send", command)
        return result

    async def list_messages(self, command: ListMessages) -> list[Message]:
        result: list[Message] = await self._typed("messages.list", command)
        return result

    async def last_messages(self) -> list[Message]:
        result: list[Message] = await self._typed("messages.last")
        return result

    async def search_messages(self, command: SearchMessages) -> list[Message]:
        result: list[Message] = await self._typed("messages.search", command)
        return result

    async def set_typing(self, command: SetTyping) -> None:
        await self.call("messages.typing", command)

    async def mark_read(self, command: MarkRead) -> None:
        await self.call("messages.read", command)

    async def save_draft(self, command: SaveDraft) -> None:
        await self.call("drafts.save", command)

    async def drafts(self) -> list[Draft]:
        result: list[Draft] = await self._typed("drafts.list")
        return result

    async def get_settings(self) -> Settings:
        result: Settings = await self._typed("settings.get")
        return result

    async def update_settings(self, command: UpdateSettings) -> Settings:
        result: Settings = await self._typed("settings.update", command)
        return result

    async def change_passphrase(self, command: ChangePassphrase) -> None:
        await self.call("profile.change_passphrase", command)

    async def peers(self) -> list[Peer]:
        result: list[Peer] = await self._typed("peers.list")
        return result

    async def verify_history(self, command: VerifyHistory) -> HistoryReport:
        result: HistoryReport = await self._typed("history.verify", command)
        return result

    async def export_history(self, command: ExportHistory) -> HistoryExport:
        result: HistoryExport = await self._typed("history.export", command)
        return result

    async def share_files(self, command: ShareFiles) -> list[Transfer]:
        result: list[Transfer] = await self._typed("files.share", command)
        return result

    async def list_transfers(self, command: ListTransfers) -> list[Transfer]:
        result: list[Transfer] = await self._typed("transfers.list", command)
        return result

    async def accept_transfer(self, command: AcceptTransfer) -> Transfer:
        result: Transfer = await self._typed("transfers.accept", command)
        return result

    async def cancel_transfer(self, command: CancelTransfer) -> Transfer:
        result: Transfer = await self._typed("transfers.cancel", command)
        return result

    async def pause_transfer(self, command: PauseTransfer) -> Transfer:
        result: Transfer = await self._typed("transfers.pause", command)
        return result

    async def retry_transfer(self, command: RetryTransfer) -> Transfer:
        result: Transfer = await self._typed("transfers.retry", command)
        return result

    async def events(self) -> AsyncIterator[NodeEvent]:
        await self.call("events.subscribe")
        while True:
            event = await self._events.get()
            yield event
            if isinstance(event, NodeStopping):
                return


CONNECT_RETRY = 0.2
"""Seconds between attempts to reach a node that holds its profile but does not answer
yet (it opens its control socket once it has joined the network)."""


async def open_invite_in_window(profile: Path, link: str, wait: float) -> bool:
    """Send `OPEN_INVITE` with `link` to the node serving `profile` (see
    `app.node.api.open_invite_in_window`): whether the window shows it now."""
    paths = ProfilePaths(profile)
    deadline = asyncio.get_running_loop().time() + wait
    client = await connect_control(paths)
    while client is None:
        if asyncio.get_running_loop().time() >= deadline:
            raise ControlUnavailable(
                f"Scrambled Eggs holds the profile in {profile} but does not answer: it "
                "may still be starting, or be stopped (Ctrl+Z). Try again in a moment."
            )
        await asyncio.sleep(CONNECT_RETRY)
        client = await connect_control(paths)
    try:
        return await client.call(OPEN_INVITE, OpenInvite(link)) is not False
    finally:
        await client.close()


async def connect_control(paths: ProfilePaths, timeout: float = 5.0) -> ControlClient | None:
    """A client for the node serving this profile, or None if no node answers."""
    try:
        if sys.platform == "win32":
            info = json.loads(paths.control_token.read_text())
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection("127.0.0.1", int(info["port"]), limit=MAX_REPLY), timeout
            )
            writer.write(json.dumps({"token": info["token"]}).encode() + b"\n")
        else:
            reader, writer = await asyncio.wait_for(
                asyncio.open_unix_connection(paths.control_socket, limit=MAX_REPLY), timeout
            )
    except (OSError, ValueError, KeyError, TimeoutError):
        return None
    return ControlClient(reader, writer)
