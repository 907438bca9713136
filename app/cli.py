"""Command-line client. Every subcommand goes through `app.node.api`: the control socket
of the running node when there is one, otherwise the profile opened in this process.

Errors print one line (`error: ...`) on stderr and exit 1; usage errors exit 2.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import dataclasses
import errno
import getpass
import json
import os
import re
import shlex
import signal
import sys
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO

from app import __version__
from app.node import api


def _positive(text: str) -> int:
    """An argparse type: a whole number of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError("give 1 or more")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The full `scrambled-eggs` command line (no subcommand = open the window)."""
    parser = argparse.ArgumentParser(
        prog="scrambled-eggs",
        description="Serverless, end-to-end encrypted messenger. Without a command, "
        "opens the app window.",
    )
    parser.add_argument("--version", action="version", version=f"scrambled-eggs {__version__}")
    parser.add_argument(
        "--selftest",
        action="store_true",
        help="start a node on a temporary profile, open the window, exit 0 if both work",
    )
    parser.add_argument(
        "--profile",
        metavar="DIR",
        help=f"profile folder (default: ${api.PROFILE_ENV} or {api.default_profile_dir()})",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    init = sub.add_parser("init", help="create a new identity in the profile")
    init.add_argument("--name", required=True, help="your display name")
    init.add_argument(
        "--no-passphrase",
        action="store_true",
        help="keep the profile key in the OS keyring instead of behind a passphrase",
    )
    _json_flag(init)

    _json_flag(sub.add_parser("whoami", help="show your address, invite link and fingerprint"))

    daemon = sub.add_parser("daemon", help="run the node headless until interrupted")
    daemon.add_argument("--listen", metavar="HOST:PORT", help="UDP address for the DHT")
    daemon.add_argument(
        "--bootstrap", metavar="HOST:PORT", action="append", default=[], help="a peer to join"
    )
    daemon.add_argument("--no-lan", action="store_true", help="don't look for peers on the LAN")
    daemon.add_argument(
        "--shaping",
        choices=("off", "balanced", "strict"),
        help="traffic shaping for this run (default: the saved setting, balanced)",
    )

    _json_flag(sub.add_parser("status", help="is the node running, and where"))

    sub.add_parser(
        "passphrase",
        help="set or change the passphrase that protects the profile",
        description="Set a passphrase for a profile whose key is in the OS keyring or a "
        "key file, or change it. On a terminal it asks for the current one (if any) and "
        f"the new one twice; otherwise the current one comes from ${api.PASSPHRASE_ENV} "
        f"and the new one from ${NEW_PASSPHRASE_ENV}. Your messages and files stay as "
        "they are.",
    )

    contacts = sub.add_parser("contacts", help="manage your contacts")
    csub = contacts.add_subparsers(dest="contacts_command", metavar="ACTION", required=True)
    add = csub.add_parser("add", help="add a contact from an invite link or address")
    add.add_argument("invite", metavar="INVITE_OR_ADDRESS")
    add.add_argument("--name", help="what to call them (default: the name in the invite)")
    _json_flag(add)
    _json_flag(csub.add_parser("list", help="list your contacts"))
    remove = csub.add_parser(
        "remove", help="remove a contact (the conversation is kept: adding them again shows it)"
    )
    remove.add_argument("contact", metavar="CONTACT", help="a name or an address")
    _json_flag(remove)
    rename = csub.add_parser("rename", help="give a contact another name (only you see it)")
    rename.add_argument("contact", metavar="CONTACT", help="a name or an address")
    rename.add_argument("name", metavar="NAME", help="the new name")
    _json_flag(rename)
    verify = csub.add_parser("verify", help="compare safety numbers with a contact")
    verify.add_argument("contact", metavar="CONTACT", help="a name or an address")
    verify.add_argument("--confirm", action="store_true", help="mark the contact verified")
    _json_flag(verify)

    send = sub.add_parser("send", help="send a text message")
    send.add_argument("contact", metavar="CONTACT", help="a name or an address")
    send.add_argument(
        "text",
        metavar="TEXT",
        nargs="?",
        help="the message (left out: read from standard input, e.g. send Bob < notes.txt)",
    )
    _json_flag(send)
    messages = sub.add_parser("messages", help="show a conversation")
    messages.add_argument("contact", metavar="CONTACT", help="a name or an address")
    messages.add_argument(
        "--limit", type=_positive, default=200, help="show this many of the newest (default 200)"
    )
    _json_flag(messages)
    read = sub.add_parser(
        "read", help="mark a conversation read (the contact sees it when connected)"
    )
    read.add_argument("contact", metavar="CONTACT", help="a name or an address")
    _json_flag(read)
    search = sub.add_parser("search", help="search all conversations")
    search.add_argument("text", metavar="TEXT")
    _json_flag(search)

    share = sub.add_parser(
        "share", help="share files or folders with a contact (end-to-end encrypted)"
    )
    share.add_argument("contact", metavar="CONTACT", help="a name or an address")
    share.add_argument("paths", metavar="PATH", nargs="+", help="files and/or folders")
    _json_flag(share)
    transfers = sub.add_parser(
        "transfers",
        help="list file transfers, or accept/pause/retry/cancel one by its id",
        description="Without an action, list file transfers. cancel on a file offered to "
        "you declines it.",
    )
    transfers.add_argument(
        "action",
        nargs="?",
        choices=("list", "accept", "pause", "retry", "cancel"),
        default="list",
        help="what to do (default: list)",
    )
    transfers.add_argument(
        "id", metavar="ID", nargs="?", help="the transfer (accept/pause/retry/cancel)"
    )
    transfers.add_argument("--contact", metavar="CONTACT", help="list only this contact's")
    _json_flag(transfers)

    _json_flag(sub.add_parser("peers", help="show connections to peers (path, state, RTT)"))

    settings = sub.add_parser(
        "settings",
        help="show the settings, or change the ones given (a value the node can't use "
        "is refused, and nothing is changed)",
    )
    settings.add_argument("--name", dest="display_name", help="your display name")
    settings.add_argument(
        "--listen", metavar="HOST:PORT", help="where the node listens from its next start"
    )
    settings.add_argument(
        "--bootstrap",
        metavar="HOST:PORT",
        action="append",
        help="a peer to join through (repeatable; replaces the list, '' empties it)",
    )
    settings.add_argument(
        "--lan", action=argparse.BooleanOptionalAction, help="find peers on the local network"
    )
    settings.add_argument(
        "--ice-server",
        metavar="URL",
        action="append",
        dest="ice_servers",
        help="a stun: or turn: server (repeatable; replaces the list, '' empties it)",
    )
    settings.add_argument("--ipfs-api", metavar="MULTIADDR", help="an IPFS daemon's API ('' none)")
    settings.add_argument("--shaping", metavar="MODE", help="traffic shaping: off|balanced|strict")
    settings.add_argument("--theme", metavar="THEME", help="the window's: system|light|dark")
    settings.add_argument(
        "--notifications", action=argparse.BooleanOptionalAction, help="notify new messages"
    )
    settings.add_argument(
        "--auto-accept-bytes", metavar="BYTES", type=int, help="accept smaller files at once"
    )
    settings.add_argument(
        "--downloads-folder", metavar="DIR", help="where received files go ('' the default)"
    )
    settings.add_argument(
        "--show-secrets",
        action="store_true",
        help="print the TURN server's password (shown as ••• otherwise, also with --json)",
    )
    _json_flag(settings)

    history = sub.add_parser("history", help="verify or export a conversation's signed history")
    hsub = history.add_subparsers(dest="history_command", metavar="ACTION", required=True)
    hverify = hsub.add_parser(
        "verify", help="re-verify a conversation (exit 0 iff it verifies); prints the head"
    )
    hverify.add_argument("contact", metavar="CONTACT", nargs="?", help="a name or an address")
    hverify.add_argument("--file", metavar="FILE", help="verify an export file instead (offline)")
    _json_flag(hverify)
    hexport = hsub.add_parser("export", help="write a conversation's signed events to a file")
    hexport.add_argument("contact", metavar="CONTACT", help="a name or an address")
    hexport.add_argument("file", metavar="FILE")
    _json_flag(hexport)
    return parser


def _json_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON")


# --------------------------------------------------------------------------- passphrases


def unlock_passphrase() -> str:
    """The passphrase to open a profile: $SCRAMBLED_EGGS_PASSPHRASE or a prompt."""
    from_env = api.passphrase_from_env()
    if from_env is not None:
        return from_env
    if not sys.stdin.isatty():
        raise api.PassphraseRequired(
            f"This profile needs its passphrase: set {api.PASSPHRASE_ENV} or run in a terminal."
        )
    return getpass.getpass("Passphrase: ")


def passphrase_source(profile: Path, info: api.ProfileInfo | None = None) -> api.PassphraseSource:
    """Where the passphrase to open `profile` comes from. On a terminal it is asked for
    here, in the main thread, when opening the profile will need it: asked for later, by
    the worker thread that opens the profile, Ctrl+C could not end the prompt (the
    command hung until Enter was pressed, found by a tester). `info`: the profile as the
    caller inspected it already."""
    if api.passphrase_from_env() is not None or not sys.stdin.isatty():
        return unlock_passphrase
    info = info or api.inspect_profile(profile)
    if info.protection is not api.Protection.PASSPHRASE or info.in_use:
        return unlock_passphrase  # not needed, or a running node answers instead
    typed = getpass.getpass("Passphrase: ")
    return lambda: typed


UNLOCK_TRIES = 3
"""Times a passphrase typed on a terminal to open a profile is asked for before the
command gives up."""


def asking_again(profile: Path, run: Callable[[api.PassphraseSource], int]) -> int:
    """`run` with the passphrase to open `profile`; one typed on a terminal that does
    not unlock it is asked for again, up to `UNLOCK_TRIES` times. A typo ended the
    command (`daemon` and its options, a typed message's command) and the user started
    over, as `init` did before it asked again."""
    for attempt in range(1, UNLOCK_TRIES + 1):
        source = passphrase_source(profile)
        try:
            return run(source)
        except api.WrongPassphrase:
            typed = api.passphrase_from_env() is None and sys.stdin.isatty()
            if attempt == UNLOCK_TRIES or not typed:
                raise
            _say("That passphrase does not unlock this profile. Try again.", error=True)
    raise AssertionError("unreachable")


NEW_PASSPHRASE_TRIES = 3
"""Times `new_passphrase` asks on a terminal before it gives up."""

NEW_PASSPHRASE_ENV = "SCRAMBLED_EGGS_NEW_PASSPHRASE"
"""The new passphrase of `passphrase` when it is not run on a terminal."""


def new_passphrase(from_env: str | None = None, missing: str | None = None) -> str:
    """A passphrase for a new profile: from the environment or typed twice. `from_env`
    and `missing` (what to say when there is none and no terminal) for another use:
    a changed passphrase."""
    if missing is None:
        from_env = api.passphrase_from_env()
        missing = (
            f"Choose a passphrase: set {api.PASSPHRASE_ENV}, run in a terminal, "
            "or use --no-passphrase to keep the key in the OS keyring."
        )
    if from_env is not None:
        api.check_new_passphrase(from_env)
        return from_env
    if not sys.stdin.isatty():
        raise api.PassphraseRequired(missing)
    for attempt in range(1, NEW_PASSPHRASE_TRIES + 1):
        # a refused or mistyped passphrase is asked for again (it ended the command,
        # and the user started over), up to a few times
        last = attempt == NEW_PASSPHRASE_TRIES
        first = getpass.getpass("New passphrase: ")
        try:
            api.check_new_passphrase(first)
        except api.InvalidArgument as exc:
            if last:
                raise
            _say(f"{exc} Try again.", error=True)
            continue
        if getpass.getpass("Repeat it: ") == first:
            return first
        if last:
            raise api.InvalidArgument("The two passphrases differ; nothing was done.")
        _say("The two passphrases differ. Try again.", error=True)
    raise AssertionError("unreachable")


# --------------------------------------------------------------------------- commands


_CONTROLS = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
"""Characters a terminal acts on rather than shows (escape sequences, carriage return,
bidirectional overrides), apart from newline and tab."""


def terminal_safe(text: str) -> str:
    """`text` as visible characters: each control character becomes an escape such as
    ``\\x1b``, so words from a peer (message text, file names) can't recolour, retitle
    or rewrite the user's terminal."""
    return _CONTROLS.sub(lambda m: ascii(m.group())[1:-1], text)


def _say(text: str, *, error: bool = False) -> None:
    """Print human-readable output (JSON output is escaped by the encoder)."""
    print(terminal_safe(text), file=sys.stderr if error else sys.stdout)


def _emit(args: argparse.Namespace, value: Any, text: str) -> None:
    if args.json:
        print(json.dumps(api.to_wire(value), ensure_ascii=False))
    else:
        _say(text)


def cmd_init(args: argparse.Namespace, profile: Path) -> int:
    try:
        args.name.encode("utf-8")
    except UnicodeEncodeError:  # bytes the terminal's encoding could not decode
        raise api.InvalidArgument("The name holds bytes that are not text.") from None
    api.check_new_profile(profile, args.name)  # before the passphrase is typed twice
    passphrase = None if args.no_passphrase else new_passphrase()
    result = api.init_profile(profile, args.name, passphrase)
    if result.warning:
        _say(f"warning: {result.warning}", error=True)
    me = result.whoami
    _emit(args, me, f"Created {me.name} ({me.address}) in {profile}")
    return 0


NO_NODE_INVITE = (
    "note: no node runs for this profile, so this invite holds no address to reach you: "
    "a contact who adds it finds you only through the DHT or your local network. Start "
    "the node (scrambled-eggs daemon, or the app) and run whoami again for an invite "
    "with your addresses."
)


async def cmd_whoami(args: argparse.Namespace, node: api.NodeApi) -> int:
    me = await node.whoami()
    _emit(
        args,
        me,
        f"Name:        {me.name}\nAddress:     {me.address}\n"
        f"Fingerprint: {me.fingerprint}\nInvite:      {me.invite}",
    )
    if not (await node.status()).running:  # an invite made before the first start
        _say(NO_NODE_INVITE, error=True)
    return 0


async def cmd_contacts(args: argparse.Namespace, node: api.NodeApi) -> int:
    if args.contacts_command == "add":
        try:
            result = await node.add_contact(api.AddContact(args.invite, args.name))
        except api.NameTaken as exc:
            raise api.NameTaken(f"{exc} Choose another with --name.") from None
        added = result.contact
        if result.updated:
            text = f"{added.name} is already in your contacts; updated from this invite."
        else:
            text = f"Added {added.name} ({added.address})"
        _emit(args, {**api.to_wire(added), "updated": result.updated}, text)
    elif args.contacts_command == "list":
        contacts = await node.list_contacts()
        lines = [f"{c.name}\t{c.address}\t{_contact_state(c)}" for c in contacts]
        _emit(args, contacts, "\n".join(lines) if lines else "No contacts yet.")
    elif args.contacts_command == "verify":
        v = await node.verify_contact(api.VerifyContact(args.contact, confirm=args.confirm))
        state = "verified" if v.verified else "not verified yet"
        text = f"Safety number with {v.name} ({state}):\n{v.safety_number}"
        if args.json:
            print(json.dumps({"safety_number": v.safety_number, "verified": v.verified}))
        else:
            _say(text)
    elif args.contacts_command == "rename":
        renamed = await node.rename_contact(api.RenameContact(args.contact, args.name))
        _emit(args, renamed, f"Renamed to {renamed.name}")
    else:
        removed = await node.remove_contact(api.RemoveContact(args.contact))
        _emit(args, removed, f"Removed {removed.name}. {REMOVED_KEEPS}")
    return 0


REMOVED_KEEPS = (
    "Your conversation stays on this computer and comes back if you add them again; "
    "files still moving to or from them were cancelled."
)
"""What removing a contact leaves (the window's confirmation says the same): "Removed
Bob" alone read as if the conversation were deleted."""

NOT_ADDED_BACK = "has not added you yet: messages wait until they do (share your invite)"


def _contact_state(contact: api.Contact) -> str:
    if contact.key_changed:
        return "KEY CHANGED: remove and re-add from a new invite after checking with them"
    state = "verified" if contact.verified else ""
    if contact.not_added_back:
        state = f"{state}, {NOT_ADDED_BACK}" if state else NOT_ADDED_BACK
    return state


def _message_json(m: api.Message) -> dict[str, Any]:
    return {
        "id": m.id,
        "contact": m.contact,  # the conversation (search spans them all)
        "from": m.sender,
        "text": m.text,
        "time": m.time,
        "status": m.status.value,
        "transfer": m.transfer,
    }


def _message_text(m: api.Message, names: dict[str, str], where: bool = False) -> str:
    """One line per message; `where`: name the conversation (search spans them all)."""
    stamp = datetime.fromtimestamp(m.time).strftime("%Y-%m-%d %H:%M")
    contact = names.get(m.contact, m.contact[:10])
    who = "me" if m.outgoing else contact
    if where and m.outgoing:
        who = f"me to {contact}"
    # a shared file's message holds its name: said, or it reads as typed text
    text = f"file {m.text} (transfer {m.transfer})" if m.transfer else m.text
    return f"[{stamp}] {who}: {text}" + (f"  ({m.status.value})" if m.outgoing else "")


def read_message_text(stream: BinaryIO, on_terminal: bool) -> str:
    """The text of `send CONTACT` without TEXT: standard input up to its end (Ctrl+D on
    a terminal), without the final line break; refused at once if longer than a message
    holds (a large file is not read whole)."""
    if on_terminal:
        _say("Type the message; end it with Ctrl+D on a line of its own.", error=True)
    data = stream.read(api.MAX_MESSAGE_BYTES + 3)  # the most text, a line break, and 1
    text = data.decode("utf-8", "replace").removesuffix("\n").removesuffix("\r")
    if len(data) > api.MAX_MESSAGE_BYTES + 2 or len(text.encode()) > api.MAX_MESSAGE_BYTES:
        raise api.InvalidArgument(
            f"The text on standard input is longer than a message holds "
            f"({api.MAX_MESSAGE_BYTES // 1024} KiB). Split it, or share it as a file."
        )
    return text


async def cmd_send(args: argparse.Namespace, node: api.NodeApi) -> int:
    # bytes the terminal's encoding could not decode arrive as lone surrogates: they
    # become U+FFFD, as undecodable file names do
    text = args.text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    message = await node.send_message(api.SendMessage(args.contact, text))
    if args.json:
        print(json.dumps({"id": message.id}))
    elif (await node.status()).running:
        print(f"Queued {message.id}")
    else:
        print(
            f"Queued {message.id}; no node runs for this profile, so it goes when one starts "
            "(the app, or scrambled-eggs daemon)."
        )
    return 0


async def cmd_messages(args: argparse.Namespace, node: api.NodeApi) -> int:
    found = await newest_messages(node, args.contact, args.limit)
    await _print_messages(args, node, found)
    return 0


async def newest_messages(node: api.NodeApi, contact: str, limit: int) -> list[api.Message]:
    """The newest `limit` messages of a conversation, oldest first, asked for page by
    page: the node answers at most a page (1,000) at a time, and `--limit 5000` showed
    1,000 without a word."""
    found: list[api.Message] = []
    before: str | None = None
    while len(found) < limit:
        page = await node.list_messages(api.ListMessages(contact, before, limit - len(found)))
        found[:0] = page
        if not page or len(found) >= limit:
            break
        before = page[0].id
    return found


async def cmd_read(args: argparse.Namespace, node: api.NodeApi) -> int:
    await node.mark_read(api.MarkRead(args.contact))
    print(json.dumps({"read": True}) if args.json else "Marked read.")
    return 0


async def cmd_search(args: argparse.Namespace, node: api.NodeApi) -> int:
    found = await node.search_messages(api.SearchMessages(args.text))
    await _print_messages(args, node, found, where=True)
    return 0


async def _print_messages(
    args: argparse.Namespace, node: api.NodeApi, found: list[api.Message], where: bool = False
) -> None:
    if args.json:
        print(json.dumps([_message_json(m) for m in found], ensure_ascii=False))
        return
    names = {c.address: c.name for c in await node.list_contacts()} if found else {}
    _say("\n".join(_message_text(m, names, where) for m in found) or "No messages.")


async def cmd_share(args: argparse.Namespace, node: api.NodeApi) -> int:
    # a running node has its own working folder: name files the way the user did
    paths = [os.path.abspath(os.path.expanduser(p)) for p in args.paths]
    shared = await node.share_files(api.ShareFiles(args.contact, paths))
    skipped = api.left_out_of_shares(paths)  # links, pipes... in the folders: say so
    if args.json:
        answer: dict[str, Any] = {"transfers": [t.id for t in shared]}
        if skipped:
            answer["not_shared"] = skipped
        print(json.dumps(answer, ensure_ascii=False))
    else:
        _say("\n".join(f"Sharing {t.name} ({t.size} bytes): {t.id}" for t in shared))
        sentence = api.left_out_sentence(skipped)
        if sentence is not None:
            _say(sentence, error=True)
    return 0


def _transfer_json(t: api.Transfer) -> dict[str, Any]:
    return {
        "id": t.id,
        "name": t.name,
        "size": t.size,
        "done_bytes": t.done_bytes,
        "state": t.state.value,
        "path": t.path,
        "contact": t.contact,
        "outgoing": t.outgoing,
        "speed_bps": t.speed_bps,
        "error": t.error,
        "ended_by": t.ended_by or None,
        "declined": t.declined,
        "waiting": t.waiting or None,
    }


def _transfer_text(t: api.Transfer, node_running: bool | None = None) -> str:
    """One line per transfer. In a list (`node_running` given) a running one says whether
    anything moves: "running" alone read the same for a file arriving at 200 MB/s, one
    whose sender had gone away, and one in a profile no node runs (it moves when one
    starts)."""
    arrow = "->" if t.outgoing else "<-"
    line = f"{t.id}  {arrow} {t.name}  {t.done_bytes}/{t.size} bytes  {t.state.value}"
    if t.state is api.TransferState.RUNNING and not t.error and node_running is not None:
        if not node_running:
            line += "  (resumes when a node runs: the app, or scrambled-eggs daemon)"
        elif t.speed_bps > 0:
            line += f"  {t.speed_bps / 1e6:.1f} MB/s"
        else:
            also = f"; {t.waiting}" if t.waiting else ""
            line += f"  (nothing moving: waiting for the peer{also})"
    elif t.error:
        line += f"  ({t.error})"
    elif t.ended_by:
        how = "declined" if t.declined else "cancelled"
        line += f"  ({how} by {'you' if t.ended_by == 'me' else 'them'})"
    elif t.path and t.state is api.TransferState.DONE:
        line += f"  {t.path}"
    return line


async def cmd_transfers(args: argparse.Namespace, node: api.NodeApi) -> int:
    if args.action == "list":
        found = await node.list_transfers(api.ListTransfers(args.contact))
        if args.json:
            print(json.dumps([_transfer_json(t) for t in found], ensure_ascii=False))
        else:
            running = (await node.status()).running
            _say("\n".join(_transfer_text(t, running) for t in found) or "No transfers.")
        return 0
    if not args.id:
        raise api.InvalidArgument(f"Give the id of the transfer to {args.action}.")
    actions = {
        "accept": lambda: node.accept_transfer(api.AcceptTransfer(args.id)),
        "cancel": lambda: node.cancel_transfer(api.CancelTransfer(args.id)),
        "pause": lambda: node.pause_transfer(api.PauseTransfer(args.id)),
        "retry": lambda: node.retry_transfer(api.RetryTransfer(args.id)),
    }
    transfer = await actions[args.action]()
    if args.json:
        print(json.dumps(_transfer_json(transfer), ensure_ascii=False))
    else:
        _say(_transfer_text(transfer))
    return 0


async def cmd_settings(args: argparse.Namespace, node: api.NodeApi) -> int:
    folder = args.downloads_folder
    if folder:  # a running node has its own working folder: name it the way the user did
        folder = os.path.abspath(os.path.expanduser(folder))
    change = api.UpdateSettings(
        display_name=args.display_name,
        listen=args.listen,
        bootstrap=_listed(args.bootstrap),
        lan_discovery=args.lan,
        ice_servers=_listed(args.ice_servers),
        ipfs_api=args.ipfs_api,
        shaping_mode=args.shaping,
        theme=args.theme,
        notifications=args.notifications,
        auto_accept_bytes=args.auto_accept_bytes,
        downloads_folder=folder,
    )
    if change == api.UpdateSettings():
        settings = await node.get_settings()
    else:
        settings = await node.update_settings(change)
    if not args.show_secrets:  # a terminal or a log is no place for a password
        hidden = [api.ice_server_shown(text) for text in settings.ice_servers]
        settings = dataclasses.replace(settings, ice_servers=hidden)
    wire = api.to_wire(settings)
    lines = [
        f"{key}: {', '.join(value) if isinstance(value, list) else value}"
        for key, value in wire.items()
    ]
    _emit(args, settings, "\n".join(lines))
    return 0


def _listed(values: list[str] | None) -> list[str] | None:
    """A repeatable option's values, '' dropped (so `--bootstrap ''` empties the list)."""
    return None if values is None else [v for v in values if v]


async def cmd_peers(args: argparse.Namespace, node: api.NodeApi) -> int:
    peers = await node.peers()
    lines = [
        f"{p.contact or '-'}\t{p.address}\t{p.state}\t{p.path or '-'}\t"
        + (f"{p.rtt_ms:.1f} ms" if p.rtt_ms is not None else "-")
        + (f"\t{NOT_ADDED_BACK}" if p.not_added_back else "")
        for p in peers
    ]
    _emit(args, peers, "\n".join(lines) if lines else "No peers.")
    return 0


def _report_text(report: api.HistoryReport) -> str:
    heads = ", ".join(report.heads) or "(empty history)"
    text = f"History verifies: {report.events} events. Head: {heads}"
    if report.equivocations:
        text += f"\nwarning: {report.equivocations} equivocation(s): conflicting events exist"
    return text


async def cmd_history(args: argparse.Namespace, node: api.NodeApi) -> int:
    if args.history_command == "verify":
        report = await node.verify_history(api.VerifyHistory(args.contact))
        _emit(args, report, _report_text(report))
        return 0
    target = Path(args.file)
    _check_export_target(target, args.profile)
    export = await node.export_history(api.ExportHistory(args.contact))
    _write_new_file(target, base64.b64decode(export.data_b64))
    summary = {"file": str(target), "events": export.events, "heads": export.heads}
    text = f"Exported {export.events} events to {target}"
    if args.json:
        print(json.dumps(summary))
    else:
        _say(text)
    return 0


def _check_export_target(target: Path, profile: Path | None) -> None:
    """Refuse a target that exists (an export never overwrites: a mistyped name
    destroyed the profile's database under the running node, found by a tester) or
    lies inside the profile folder."""
    if target.exists() or target.is_symlink():
        raise api.InvalidArgument(f"{target} already exists; name a new file.")
    folder = api.resolve_profile(profile).resolve()
    if target.resolve().is_relative_to(folder):
        raise api.InvalidArgument(f"{target} is inside the profile folder; name a file elsewhere.")


def _write_new_file(target: Path, data: bytes) -> None:
    """Write `data` to `target`, which must not exist yet: written under a temporary
    name beside it, then linked into place (no half-written file under its name).
    Readable by the user alone, as the profile is: an export holds the messages' text
    (it was created readable by every user of the machine)."""
    temporary = target.with_name(f".{target.name}.{os.getpid()}.part")
    try:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
        with os.fdopen(os.open(temporary, flags, 0o600), "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        try:
            os.link(temporary, target)  # fails if the name was taken meanwhile
        except OSError as exc:  # no hard links here (FAT, some shares): rename
            if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV):
                raise
            if target.exists():
                raise FileExistsError from None
            os.rename(temporary, target)
    except FileExistsError:
        raise api.InvalidArgument(f"{target} already exists; name a new file.") from None
    except OSError as exc:
        raise api.InvalidArgument(f"Can't write {target}: {exc.strerror}.") from None
    finally:
        with contextlib.suppress(OSError):
            temporary.unlink()


def cmd_history_file(args: argparse.Namespace) -> int:
    report = api.verify_history_file(Path(args.file))
    _emit(args, report, _report_text(report))
    return 0


def cmd_status(args: argparse.Namespace, profile: Path) -> int:
    info = api.inspect_profile(profile)
    if not info.exists:
        raise api.ProfileNotFound(
            f"There is no profile in {profile} yet. "
            "Create one with: scrambled-eggs init --name NAME"
        )
    if info.in_use:
        return _run_with_node(profile, lambda node: _print_status(args, node))
    assert info.address is not None
    status = api.Status(running=False, address=info.address, endpoints=[], dht_peers=0)
    _emit(args, status, f"Not running. Address: {status.address}")
    return 0


async def _print_status(args: argparse.Namespace, node: api.NodeApi) -> int:
    s = await node.status()
    text = (
        f"{'Running' if s.running else 'Not running'}. Address: {s.address}\n"
        f"Endpoints: {', '.join(s.endpoints) or '-'}\nDHT peers: {s.dht_peers}"
    )
    if s.storage:
        text += f"\nWarning: {s.storage}"
    if s.clock:
        text += f"\nWarning: {s.clock}"
    for name in s.not_added_back:
        text += f"\n{name} {NOT_ADDED_BACK}"
    if s.ipfs:
        text += f"\nWarning: {s.ipfs}"
    if s.turn:
        text += f"\nWarning: {s.turn}"
    _emit(args, s, text)
    return 0


def cmd_passphrase(profile: Path) -> int:
    """Set or change the profile's passphrase (through the running node, if any). The
    CLI's own warning about a key file said "set a passphrase to prevent that", and
    only the window could."""
    info = api.inspect_profile(profile)
    if not info.exists:
        raise api.ProfileNotFound(
            f"There is no profile in {profile} yet. "
            "Create one with: scrambled-eggs init --name NAME"
        )
    current = None
    if info.protection is api.Protection.PASSPHRASE:
        current = api.passphrase_from_env()
        if current is None and not sys.stdin.isatty():
            raise api.PassphraseRequired(
                f"Give the current passphrase in {api.PASSPHRASE_ENV} (or run in a terminal)."
            )
        if current is None:
            current = getpass.getpass("Current passphrase: ")
    new = new_passphrase(
        os.environ.get(NEW_PASSPHRASE_ENV),
        f"Give the new passphrase in {NEW_PASSPHRASE_ENV} (or run in a terminal).",
    )

    async def change(node: api.NodeApi) -> int:
        await node.change_passphrase(api.ChangePassphrase(new, current))
        _say("The passphrase now protects this profile; you will be asked for it to open it.")
        return 0

    opened = unlock_passphrase if current is None else (lambda: current)
    return _run_with_node(profile, change, opened)


def cmd_daemon(args: argparse.Namespace, profile: Path) -> int:
    options = api.DaemonOptions(
        profile=profile,
        listen=args.listen,
        bootstrap=args.bootstrap,
        lan=not args.no_lan,
        shaping=args.shaping,
    )

    stop_signals = _StopSignals()

    def run(passphrase: api.PassphraseSource) -> int:
        stop_signals.interrupting = False  # from here on the node's start-up stops cleanly
        try:
            running = asyncio.run(api.run_daemon(options, passphrase, lambda: stop_signals.asked))
        except api.WrongPassphrase:
            stop_signals.install()  # asked again; the node's loop put the defaults back
            raise
        if not running:
            _say(STOPPED_WHILE_STARTING, error=True)
        return 0

    stop_signals.install()
    try:
        api.check_daemon_options(options)  # before a passphrase is typed
        return asking_again(profile, run)
    except KeyboardInterrupt:
        # at the passphrase prompt (the terminal's cursor is after it) or before it:
        # nothing was started
        on_terminal = sys.stdin is not None and sys.stdin.isatty()
        _say(("\n" if on_terminal else "") + STOPPED_WHILE_STARTING, error=True)
        return 0


STOPPED_WHILE_STARTING = "Stopped before the node was running."
"""What `daemon` says when told to stop (Ctrl+C, SIGTERM, SIGHUP) while it started."""


class _StopSignals:
    """SIGINT, SIGTERM and SIGHUP for `daemon` until its node's event loop takes them
    over (`api.run_daemon`): while `interrupting` (the passphrase prompt, the checks
    before it) they end the command as Ctrl+C does; after, they are noted (`asked`)
    for the node, which stops once it can, cleanly. SIGTERM and SIGHUP killed it there
    (exit 143, nothing said; at the prompt the terminal was left not echoing what is
    typed), and a KeyboardInterrupt as the event loop was made printed its traceback."""

    def __init__(self) -> None:
        self.asked = False
        self.interrupting = True

    def install(self) -> None:
        """Take the signals not ignored by whoever started us (`nohup`, a background
        job of a script): the node leaves those ignored too."""
        self.interrupting = True
        for name in ("SIGINT", "SIGTERM", "SIGHUP"):
            number = getattr(signal, name, None)
            if number is not None and signal.getsignal(number) is not signal.SIG_IGN:
                signal.signal(number, self._on_signal)  # (no SIGHUP on Windows)

    def _on_signal(self, signum: int, frame: object) -> None:
        self.asked = True
        if self.interrupting:
            raise KeyboardInterrupt


SLOW_NODE_AFTER = 10.0
"""Seconds a running node may take to answer before the CLI says what it waits for."""


async def telling_if_slow(work: Awaitable[int], after: float = SLOW_NODE_AFTER) -> int:
    """`work`'s result, saying on stderr what is waited for once it takes `after` seconds:
    a node suspended with Ctrl+Z left every command hanging without a word."""
    task = asyncio.ensure_future(work)
    done, _ = await asyncio.wait({task}, timeout=after)
    if not done:
        _say(
            "Still waiting for the node that runs this profile to answer (Ctrl+C stops "
            "waiting). If its terminal shows it stopped (Ctrl+Z), resume it there with fg.",
            error=True,
        )
    return await task


def _run_with_node(
    profile: Path,
    action: Callable[[api.NodeApi], Awaitable[int]],
    passphrase: api.PassphraseSource | None = None,
) -> int:
    """Run `action` on the profile's node (its control socket, or the profile opened
    here); `passphrase`: where it comes from, when the caller asked for it already."""
    info = api.inspect_profile(profile)
    if passphrase is None:
        return asking_again(profile, lambda typed: _run_with_node(profile, action, typed))
    running = info.in_use  # else the command opens it itself

    async def go() -> int:
        async with api.open_node(profile, passphrase) as node:
            return await (telling_if_slow(action(node)) if running else action(node))

    return asyncio.run(go())


def _send_typed(args: argparse.Namespace, profile: Path) -> int:
    """`send CONTACT` typed on a terminal: the passphrase and the contact are checked
    before the message is asked for. Asked for first, a message typed to a mistyped
    name ("No contact is named 'Bbo'") or under a wrong passphrase was thrown away."""
    known: list[api.PassphraseSource] = []

    async def check(node: api.NodeApi) -> int:
        await node.list_messages(api.ListMessages(args.contact, limit=1))
        return 0

    def checked(typed: api.PassphraseSource) -> int:
        known.append(typed)
        return _run_with_node(profile, check, typed)

    asking_again(profile, checked)
    passphrase = known[-1]
    args.text = read_message_text(sys.stdin.buffer, True)
    return _run_with_node(profile, lambda node: cmd_send(args, node), passphrase)


def run(args: argparse.Namespace) -> int:
    """Execute a parsed command line; user-facing errors become one line on stderr."""
    profile = api.resolve_profile(args.profile)
    try:
        if args.command == "init":
            return cmd_init(args, profile)
        if args.command == "daemon":
            return cmd_daemon(args, profile)
        if args.command == "status":
            return cmd_status(args, profile)
        if args.command == "passphrase":
            return cmd_passphrase(profile)
        if args.command == "whoami":
            return _run_with_node(profile, lambda node: cmd_whoami(args, node))
        if args.command == "history" and args.history_command == "verify":
            if args.file and args.contact:
                raise api.InvalidArgument("Name a contact or give --file FILE, not both.")
            if args.file:
                return cmd_history_file(args)
            if not args.contact:
                raise api.InvalidArgument("Name a contact, or give an export with --file FILE.")
        if args.command == "send" and args.text is None:  # before a passphrase prompt
            if sys.stdin is None:
                raise api.InvalidArgument("Give the message as TEXT (there is no input).")
            if sys.stdin.isatty():
                return _send_typed(args, profile)
            args.text = read_message_text(sys.stdin.buffer, False)
        if args.command == "transfers" and args.action == "list" and args.id:
            raise api.InvalidArgument(
                f"transfers list takes no id ({args.id!r}); to list one contact's: "
                "transfers --contact CONTACT."
            )
        handlers = {
            "contacts": cmd_contacts,
            "send": cmd_send,
            "messages": cmd_messages,
            "read": cmd_read,
            "search": cmd_search,
            "peers": cmd_peers,
            "settings": cmd_settings,
            "history": cmd_history,
            "share": cmd_share,
            "transfers": cmd_transfers,
        }
        if args.command in handlers:
            handler = handlers[args.command]
            return _run_with_node(profile, lambda node: handler(args, node))
    except api.NodeError as exc:
        _say(f"error: {exc}", error=True)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `... | head` stopped reading: not an error of ours
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as exc:  # the profile path is a file, a folder we can't write...
        where = f" ({exc.filename})" if exc.filename else ""
        _say(f"error: {exc.strerror or exc}{where}", error=True)
        return 1
    raise AssertionError(f"unhandled command {args.command}")


# --------------------------------------------------------------------------- invite links

_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]+:")
"""The start of a URL (a scheme of 2 characters or more: `C:\\...` is a Windows path)."""


def link_argument(argv: list[str]) -> tuple[list[str], str | None]:
    """`argv` without the link a desktop hands over when an `eggs:` link is clicked
    (`scrambled-eggs %u`, `scrambled-eggs.exe "%1"`), and that link; `None` when the
    first argument that is not an option is not a URL (a command, or nothing)."""
    index = 0
    while index < len(argv):
        arg = argv[index]
        if arg == "--profile":
            index += 2
        elif arg.startswith("-"):
            index += 1
        elif _URL.match(arg):
            return argv[:index] + argv[index + 1 :], arg
        else:
            return argv, None
    return argv, None


WINDOW_GOT_LINK = "The invite is open in the Scrambled Eggs window: check it there and press Add."
WINDOW_KEEPS_LINK = (
    "Scrambled Eggs is at its first-run or unlock dialog: finish it there, and its window "
    "then shows the invite (check it and press Add)."
)


def _let_come_forward(holder: str) -> None:
    """Windows lets only the process the user just started (this one) bring a window to
    the front: hand that right to the running app, or its window only flashes in the
    taskbar (AllowSetForegroundWindow)."""
    if sys.platform == "win32" and holder.isdigit():
        import ctypes

        ctypes.windll.user32.AllowSetForegroundWindow(int(holder))


def open_link(args: argparse.Namespace, link: str) -> int | None:
    """`scrambled-eggs [--profile DIR] LINK`: an invite link the app was asked to open.
    The running window of the profile gets it (exit 0); `None`: nothing runs the
    profile, so the caller opens the window with it. A link that can't be an invite,
    or a headless daemon holding the profile, is said on stderr (exit 1)."""
    profile = api.resolve_profile(args.profile)
    holder = ""
    try:
        link = api.check_invite_link(link)
        info = api.inspect_profile(profile)
        if not info.in_use:
            return None
        holder = info.holder
        _let_come_forward(holder)
        shown = asyncio.run(api.open_invite_in_window(profile, link))
    except api.NoWindow:
        process = f" (process {holder})" if holder else ""
        _say(
            f"error: Scrambled Eggs runs on the profile in {profile} as a headless daemon"
            f"{process}, without a window to show the invite in. Add the contact with: "
            f"scrambled-eggs contacts add {shlex.quote(link)}",
            error=True,
        )
        return 1
    except api.NodeError as exc:
        _say(f"error: {exc}", error=True)
        return 1
    except KeyboardInterrupt:
        return 130
    _say(WINDOW_GOT_LINK if shown else WINDOW_KEEPS_LINK)
    return 0


def main(argv: list[str] | None = None) -> int:
    """`scrambled-eggs COMMAND ...` without the GUI."""
    args = build_parser().parse_args(argv)
    if args.command is None:
        build_parser().print_help()
        return 2
    return run(args)
