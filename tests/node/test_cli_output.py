"""The CLI's human-readable output shows a peer's words; it must not let them drive the
user's terminal (escape sequences, carriage returns, bidirectional overrides)."""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import stat
from pathlib import Path

import pytest

from app import cli
from app.node import api

HOSTILE = "hi\x1b[31mred\x1b]0;pwned\x07\rfake line\u202eexe.txt\x9b"


def _message(text: str) -> api.Message:
    return api.Message("m1", "eggabc", "eggabc", False, text, 0.0, api.MessageStatus.DELIVERED)


class AddressBook:
    """The one node call `_print_messages` makes besides the messages it is given."""

    async def list_contacts(self) -> list[api.Contact]:
        return [api.Contact("Mallory", "eggabc", verified=False)]


@pytest.mark.asyncio
async def test_message_text_from_a_peer_reaches_the_terminal_as_visible_escapes(
    capsys: pytest.CaptureFixture[str],
) -> None:
    message = _message(HOSTILE + "\n\tsecond line")
    await cli._print_messages(argparse.Namespace(json=False), AddressBook(), [message])  # type: ignore[arg-type]
    out = capsys.readouterr().out
    assert "] Mallory: hi" in out  # the contact's name, not its address
    for raw in ("\x1b", "\x07", "\r", "\u202e", "\x9b"):
        assert raw not in out
    assert "hi\\x1b[31mred\\x1b]0;pwned\\x07\\rfake line\\u202eexe.txt\\x9b" in out
    assert "\n\tsecond line" in out  # newlines and tabs are text, kept as they are


def test_json_output_keeps_the_exact_text() -> None:
    wire = json.dumps(cli._message_json(_message(HOSTILE)), ensure_ascii=False)
    assert "\x1b" not in wire and json.loads(wire)["text"] == HOSTILE


def test_errors_are_made_visible_too(capsys: pytest.CaptureFixture[str]) -> None:
    cli._say("error: bad \x1b[2Jname", error=True)
    assert capsys.readouterr().err == "error: bad \\x1b[2Jname\n"


@pytest.mark.asyncio
async def test_search_results_name_the_conversation_of_our_own_messages(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Found by a tester: a search hit of ours read "me: to-robert", with no contact."""
    ours = api.Message("m2", "eggabc", "eggme", True, "the plan", 0.0, api.MessageStatus.READ)
    args = argparse.Namespace(json=False)
    await cli._print_messages(args, AddressBook(), [ours, _message("hi")], where=True)  # type: ignore[arg-type]
    first, second = capsys.readouterr().out.splitlines()
    assert "] me to Mallory: the plan  (read)" in first and "] Mallory: hi" in second


@pytest.mark.asyncio
async def test_a_shared_file_is_shown_as_a_file_not_as_text(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Found by a tester: `messages` showed a shared file as "me: report.pdf", the same
    as a message whose text is "report.pdf"."""
    shared = api.Message(
        "t1", "eggabc", "eggme", True, "report.pdf", 0.0, api.MessageStatus.SENT, transfer="t1"
    )
    typed = api.Message("m3", "eggabc", "eggme", True, "report.pdf", 0.0, api.MessageStatus.SENT)
    await cli._print_messages(argparse.Namespace(json=False), AddressBook(), [shared, typed])  # type: ignore[arg-type]
    file_line, text_line = capsys.readouterr().out.splitlines()
    assert file_line.endswith("] me: file report.pdf (transfer t1)  (sent)")
    assert text_line.endswith("] me: report.pdf  (sent)")


def test_json_messages_name_their_conversation() -> None:
    """Found by a tester: `search --json` gave no way to tell which conversation a hit
    of ours was in ("from" is our own address)."""
    ours = api.Message("m2", "eggabc", "eggme", True, "the plan", 0.0, api.MessageStatus.READ)
    row = cli._message_json(ours)
    assert row["contact"] == "eggabc" and row["from"] == "eggme"


def test_init_on_a_terminal_refuses_a_short_passphrase_before_asking_again(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Found by a tester: a short passphrase was typed twice, then refused. Found by
    another: a refused or mistyped passphrase ended `init`, and the user started over.
    It is refused at once and asked for again, up to three times."""
    asked: list[str] = []

    def typed(prompt: str) -> str:
        asked.append(prompt)
        return "short"

    monkeypatch.delenv(api.PASSPHRASE_ENV, raising=False)
    monkeypatch.setattr(cli.sys.stdin, "isatty", lambda: True)
    monkeypatch.setattr(cli.getpass, "getpass", typed)
    with pytest.raises(api.InvalidArgument, match="at least"):
        cli.new_passphrase()
    assert asked == ["New passphrase: "] * cli.NEW_PASSPHRASE_TRIES
    assert capsys.readouterr().err.count("Try again.") == cli.NEW_PASSPHRASE_TRIES - 1

    answers = iter(["short", "long enough one", "long enough 1", "a good one!", "a good one!"])
    monkeypatch.setattr(cli.getpass, "getpass", lambda prompt: next(answers))
    assert cli.new_passphrase() == "a good one!"  # too short, then mistyped, then right
    err = capsys.readouterr().err
    assert "at least" in err and "differ. Try again." in err


def test_init_on_a_terminal_refuses_a_taken_folder_or_a_bad_name_before_the_passphrase(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Found by a tester: `init` on a folder holding a profile, or with an empty name,
    had the passphrase typed twice and then refused."""
    asked: list[str] = []
    monkeypatch.delenv(api.PASSPHRASE_ENV, raising=False)
    monkeypatch.setattr(cli.sys.stdin, "isatty", lambda: True)
    monkeypatch.setattr(cli.getpass, "getpass", lambda prompt: asked.append(prompt) or "")
    api.init_profile(tmp_path / "taken", "Alice", None)
    taken = argparse.Namespace(name="Mallory", no_passphrase=False, json=False)
    with pytest.raises(api.ProfileExists, match="already exists"):
        cli.cmd_init(taken, tmp_path / "taken")
    unnamed = argparse.Namespace(name=" ", no_passphrase=False, json=False)
    with pytest.raises(api.InvalidArgument, match="empty"):
        cli.cmd_init(unnamed, tmp_path / "new")
    assert asked == [] and not (tmp_path / "new").exists()


def test_a_history_export_is_readable_by_the_user_alone(tmp_path: Path) -> None:
    """Found by a tester: the export (every message's text, in the clear) was created
    0644 under the usual umask, readable by every user of the machine."""
    previous = os.umask(0o022)
    try:
        cli._write_new_file(tmp_path / "bob.hist", b"events")
    finally:
        os.umask(previous)
    assert (tmp_path / "bob.hist").read_bytes() == b"events"
    assert stat.S_IMODE((tmp_path / "bob.hist").stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["bob.hist"]  # no temporary left
    with pytest.raises(api.InvalidArgument, match="already exists"):
        cli._write_new_file(tmp_path / "bob.hist", b"other")
    assert (tmp_path / "bob.hist").read_bytes() == b"events"


@pytest.mark.parametrize(
    ("argv", "why"),
    [
        (["transfers", "list", "Bob"], "transfers list takes no id ('Bob')"),
        (["history", "verify", "Bob", "--file", "bob.hist"], "not both"),
    ],
)
def test_an_argument_that_would_be_ignored_is_refused(
    argv: list[str], why: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Found by a tester: `transfers list Bob` listed everyone's transfers, and `history
    verify Bob --file F` checked the file only; neither said the name was not used."""
    assert cli.main(["--profile", str(tmp_path / "me"), *argv]) == 1
    assert why in capsys.readouterr().err


def test_send_without_text_reads_the_message_from_standard_input(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Found by a tester: a message could only be an argument (a script could not pipe
    one in, and `send Bob` was a usage error)."""
    me = tmp_path / "me"
    api.init_profile(me, "Me", None)
    bob = api.init_profile(tmp_path / "bob", "Bob", None).whoami.invite
    assert cli.main(["--profile", str(me), "contacts", "add", bob]) == 0
    piped = b"first line\nsecond \xff line\r\n"
    monkeypatch.setattr(cli.sys, "stdin", io.TextIOWrapper(io.BytesIO(piped)))
    assert cli.main(["--profile", str(me), "send", "Bob", "--json"]) == 0
    capsys.readouterr()
    assert cli.main(["--profile", str(me), "messages", "Bob", "--json"]) == 0
    [sent] = json.loads(capsys.readouterr().out)
    assert sent["text"] == "first line\nsecond \ufffd line"
    too_long = b"x" * (api.MAX_MESSAGE_BYTES + 1) + b"\n" + b"y" * 10**6
    monkeypatch.setattr(cli.sys, "stdin", io.TextIOWrapper(io.BytesIO(too_long)))
    assert cli.main(["--profile", str(me), "send", "Bob"]) == 1
    assert "longer than a message holds" in capsys.readouterr().err
    with pytest.raises(api.InvalidArgument):  # not cut at a line break: refused
        cli.read_message_text(io.BytesIO(b"x" * api.MAX_MESSAGE_BYTES + b"\r\nmore"), False)


class Terminal(io.TextIOWrapper):
    """Standard input as a terminal: what the user types."""

    def isatty(self) -> bool:
        return True


def test_a_message_typed_on_a_terminal_is_asked_for_once_the_contact_is_known(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Found following README on a terminal: `send Bbo` (a typo) asked for the message
    first, and once it was typed (Ctrl+D) said "No contact is named 'Bbo'": the message
    was gone. The contact is checked first; nothing is read from the terminal for it."""
    me = tmp_path / "me"
    api.init_profile(me, "Me", None)
    bob = api.init_profile(tmp_path / "bob", "Bob", None).whoami.invite
    assert cli.main(["--profile", str(me), "contacts", "add", bob]) == 0
    typed = io.BytesIO(b"a long message\n")
    monkeypatch.setattr(cli.sys, "stdin", Terminal(typed))
    assert cli.main(["--profile", str(me), "send", "Bbo"]) == 1
    said = capsys.readouterr().err
    assert "No contact is named 'Bbo'" in said and "Type the message" not in said
    assert typed.tell() == 0  # nothing typed was taken
    assert cli.main(["--profile", str(me), "send", "Bob", "--json"]) == 0
    assert "Type the message" in capsys.readouterr().err
    assert cli.main(["--profile", str(me), "messages", "Bob", "--json"]) == 0
    [sent] = json.loads(capsys.readouterr().out)
    assert sent["text"] == "a long message"


@pytest.mark.asyncio
async def test_a_node_that_does_not_answer_is_named_not_waited_for_in_silence(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Found by a tester: with the daemon suspended (Ctrl+Z in its terminal), every
    command hung without a word."""
    assert await cli.telling_if_slow(asyncio.sleep(0, 7), after=30) == 7
    assert capsys.readouterr().err == ""
    answered = asyncio.Event()
    slow = cli.telling_if_slow(_when(answered, 3), after=0.01)
    waiting = asyncio.create_task(slow)
    while "Still waiting" not in (said := capsys.readouterr().err):
        await asyncio.sleep(0.01)
    assert "Ctrl+C" in said and "fg" in said
    answered.set()
    assert await waiting == 3


async def _when(event: asyncio.Event, value: int) -> int:
    await event.wait()
    return value


@pytest.mark.asyncio
async def test_send_turns_bytes_the_terminal_could_not_decode_into_replacement_characters(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Found by a tester: `send Bob $'\\xff'` ended in "internal error" (the argument's
    undecodable byte is a lone surrogate, which is not text)."""
    sent: list[str] = []

    class Node:
        async def send_message(self, command: api.SendMessage) -> api.Message:
            sent.append(command.text)
            return _message(command.text)

        async def status(self) -> api.Status:
            return api.Status(running=False, address="eggme", endpoints=[], dht_peers=0)

    args = argparse.Namespace(contact="Bob", text="bad \udcff byte", json=False)
    assert await cli.cmd_send(args, Node()) == 0  # type: ignore[arg-type]
    assert sent == ["bad \ufffd byte"]
    assert "goes when one starts" in capsys.readouterr().out


class StatusOnly:
    """The one node call `_print_status` makes."""

    def __init__(self, storage: str, clock: str = "") -> None:
        self.storage = storage
        self.clock = clock

    async def status(self) -> api.Status:
        return api.Status(
            True, "eggabc", ["127.0.0.1:1"], 1, storage=self.storage, clock=self.clock
        )


@pytest.mark.asyncio
async def test_status_warns_when_what_contacts_send_cannot_be_stored(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """With the profile disk full, `status` said "Running" and nothing else while
    messages from contacts waited with them."""
    args = argparse.Namespace(json=False)
    await cli._print_status(args, StatusOnly(""))  # type: ignore[arg-type]
    assert "Warning" not in capsys.readouterr().out
    problem = "What your contacts send can't be stored: the disk is full (/p)."
    await cli._print_status(args, StatusOnly(problem))  # type: ignore[arg-type]
    assert capsys.readouterr().out.splitlines()[-1] == f"Warning: {problem}"
    await cli._print_status(argparse.Namespace(json=True), StatusOnly(problem))  # type: ignore[arg-type]
    assert json.loads(capsys.readouterr().out)["storage"] == problem


@pytest.mark.asyncio
async def test_status_warns_while_the_clock_looks_wrong(capsys: pytest.CaptureFixture[str]) -> None:
    problem = "Your computer's clock seems to be about 2 days ahead (2 of the 2 ...)."
    await cli._print_status(argparse.Namespace(json=False), StatusOnly("", problem))  # type: ignore[arg-type]
    assert capsys.readouterr().out.splitlines()[-1] == f"Warning: {problem}"
    await cli._print_status(argparse.Namespace(json=True), StatusOnly("", problem))  # type: ignore[arg-type]
    assert json.loads(capsys.readouterr().out)["clock"] == problem


def test_a_taken_name_is_refused_with_the_option_that_chooses_another(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The node says the name is taken (`NameTaken`); the command line says how to
    choose another, the window points at its Name field (the node's own sentence named
    --name, and the window rewrote it by matching the sentence's end)."""
    me = tmp_path / "me"
    api.init_profile(me, "Me", None)
    bob = api.init_profile(tmp_path / "bob", "Bob", None).whoami.invite
    other = api.init_profile(tmp_path / "other", "bob", None).whoami.invite
    assert cli.main(["--profile", str(me), "contacts", "add", bob]) == 0
    capsys.readouterr()
    assert cli.main(["--profile", str(me), "contacts", "add", other]) == 1
    assert capsys.readouterr().err.strip() == (
        "error: You already have a contact named Bob. Choose another with --name."
    )
    assert cli.main(["--profile", str(me), "contacts", "add", other, "--name", "Bob 2"]) == 0


def _running(speed: float) -> api.Transfer:
    return api.Transfer(
        id="t1",
        contact="eggabc",
        outgoing=False,
        name="big.bin",
        size=1000,
        done_bytes=400,
        state=api.TransferState.RUNNING,
        path=None,
        mime="application/octet-stream",
        time=0.0,
        speed_bps=speed,
    )


class Transfers:
    """The node calls `transfers` makes: the list, and whether a node runs."""

    def __init__(self, found: list[api.Transfer], running: bool) -> None:
        self.found, self.running = found, running

    async def list_transfers(self, command: api.ListTransfers) -> list[api.Transfer]:
        return self.found

    async def status(self) -> api.Status:
        return api.Status(self.running, "eggme", [], 0)


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("speed", "running", "said"),
    [
        (2_500_000.0, True, "running  2.5 MB/s"),
        (0.0, True, "running  (nothing moving: waiting for the peer)"),
        (0.0, False, "running  (resumes when a node runs: the app, or scrambled-eggs daemon)"),
    ],
)
async def test_a_running_transfer_says_whether_anything_moves(
    speed: float, running: bool, said: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Found killing the sender mid-transfer: `transfers` went on saying "running" for a
    file nothing had moved for in minutes, as it did in a profile no node runs."""
    args = argparse.Namespace(action="list", contact=None, json=False, id=None)
    node = Transfers([_running(speed)], running)
    assert await cli.cmd_transfers(args, node) == 0  # type: ignore[arg-type]
    assert capsys.readouterr().out.rstrip("\n").endswith(f"400/1000 bytes  {said}")
