"""A daemon told to stop while it starts (Ctrl+C, SIGTERM, SIGHUP): it stops cleanly
whatever it was doing (asking for the passphrase, waiting for the profile's lock,
unlocking it, starting its network), exits 0 and leaves the profile as a stop after
start-up does. It died of the signal instead (exit 143, the control socket left
behind, the note of the last clean stop taken, so the next start reconciled every
conversation), or printed "node running" after a Ctrl+C and exited 130."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import termios
from collections.abc import Iterator
from pathlib import Path

import pytest
from cli_helpers import Daemon, Terminal, cli_json, wait_for

from app.node.clean_stop import NOTE_NAME
from app.node.lock import ProfileLock
from app.node.paths import ProfilePaths

PASS = "a passphrase for tests"
LOOPBACK = ("--listen", "127.0.0.1:0", "--no-lan")
STOPPED = "Stopped before the node was running."
SIGNALS = [signal.SIGTERM, signal.SIGINT, signal.SIGHUP]


@pytest.fixture(scope="module")
def stopped_once(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A passphrase-protected profile whose node ran once and stopped cleanly."""
    profile = tmp_path_factory.mktemp("template") / "alice"
    cli_json(profile, "init", "--name", "Alice", passphrase=PASS)
    daemon = Daemon(profile, *LOOPBACK, passphrase=PASS)
    daemon.wait_ready()
    assert daemon.stop() == 0
    assert (profile / NOTE_NAME).exists()
    return profile


@pytest.fixture
def profile(stopped_once: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "alice"
    shutil.copytree(stopped_once, copy)
    shutil.rmtree(ProfilePaths(copy).logs)  # its node.log appears as the lock is taken
    return copy


@pytest.fixture
def terminals() -> Iterator[list[Terminal]]:
    """Daemons a test runs on a terminal: killed at its end if still there (a failed
    test), as `daemons` stops the others."""
    started: list[Terminal] = []
    yield started
    for terminal in started:
        with contextlib.suppress(ChildProcessError):  # reaped: it ended in the test
            if os.waitpid(terminal.pid, os.WNOHANG) == (0, 0):
                os.kill(terminal.pid, signal.SIGKILL)
                os.waitpid(terminal.pid, 0)


def left_as_after_a_clean_stop(profile: Path) -> bool:
    """No control socket, the note of a clean stop, and the lock free: the next start
    skips the reconciling a crash calls for."""
    paths = ProfilePaths(profile)
    if paths.control_socket.exists() or not (profile / NOTE_NAME).exists():
        return False
    lock = ProfileLock(paths.lock)
    lock.acquire()  # ProfileLocked if the stopped daemon still held it
    lock.release()
    return True


def starts_again(profile: Path) -> None:
    daemon = Daemon(profile, *LOOPBACK, passphrase=PASS)
    try:
        assert daemon.wait_ready()["running"]
    finally:
        assert daemon.stop() == 0
    assert left_as_after_a_clean_stop(profile)


def finished(daemon: Daemon) -> tuple[int, str, str]:
    out, err = daemon.process.communicate(timeout=60)
    return daemon.process.returncode, out, err


@pytest.mark.parametrize("sig", SIGNALS, ids=lambda s: s.name)
def test_a_stop_while_the_profile_is_unlocked(
    profile: Path, sig: signal.Signals, daemons: list[Daemon]
) -> None:
    """Sent as the lock is taken (the log opened, Argon2id next): the unlock and the
    store's opening finish, the store is closed again, nothing else is started."""
    daemon = Daemon(profile, *LOOPBACK, passphrase=PASS)
    daemons.append(daemon)
    wait_for(lambda: (ProfilePaths(profile).logs / "node.log").exists(), interval=0.002)
    daemon.process.send_signal(sig)
    code, out, err = finished(daemon)
    assert code == 0 and "Traceback" not in err, err
    # "node running" only if the signal came after it was printed (a stalled test)
    assert ("node running:" in out) != (STOPPED in err), (out, err)
    assert left_as_after_a_clean_stop(profile)
    starts_again(profile)


@pytest.mark.parametrize("sig", SIGNALS, ids=lambda s: s.name)
def test_a_stop_while_the_network_starts(
    profile: Path, sig: signal.Signals, daemons: list[Daemon]
) -> None:
    """Sent as the control socket appears (the note of the last clean stop is taken by
    then): the node finishes starting and stops as after start-up, noting it."""
    daemon = Daemon(profile, *LOOPBACK, passphrase=PASS)
    daemons.append(daemon)
    wait_for(lambda: ProfilePaths(profile).control_socket.exists(), interval=0.002)
    daemon.process.send_signal(sig)
    code, out, err = finished(daemon)
    assert code == 0 and "Traceback" not in err, err
    assert ("node running:" in out) != (STOPPED in err), (out, err)
    assert left_as_after_a_clean_stop(profile)
    starts_again(profile)


def has_an_event_loop(pid: int) -> bool:
    """Whether the process made its asyncio loop (a socket pair: the CLI has no other
    socket before its node starts). Linux's /proc."""
    links = []
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(FileNotFoundError):  # closed since it was listed
            links.append(os.readlink(fd))
    return any(link.startswith("socket:") for link in links)


@pytest.mark.parametrize("sig", SIGNALS, ids=lambda s: s.name)
def test_a_stop_while_waiting_for_the_profile_lock(
    profile: Path, sig: signal.Signals, daemons: list[Daemon]
) -> None:
    """The profile is held by another process (a command, the app closing): the daemon
    waits for it; told to stop meanwhile, it gives up the wait at once."""
    lock = ProfileLock(ProfilePaths(profile).lock)
    lock.acquire()
    try:
        daemon = Daemon(profile, *LOOPBACK, passphrase=PASS)
        daemons.append(daemon)
        wait_for(lambda: has_an_event_loop(daemon.process.pid), interval=0.01)
        daemon.process.send_signal(sig)
        code, out, err = finished(daemon)
    finally:
        lock.release()
    assert (code, out, err.strip()) == (0, "", STOPPED)
    assert not (ProfilePaths(profile).logs / "node.log").exists()  # it never got the lock
    assert left_as_after_a_clean_stop(profile)
    starts_again(profile)


@pytest.mark.parametrize(
    "key", [b"\x03", signal.SIGTERM, signal.SIGHUP], ids=["ctrl-c", "SIGTERM", "SIGHUP"]
)
def test_a_stop_at_the_passphrase_prompt(
    profile: Path, key: bytes | signal.Signals, terminals: list[Terminal]
) -> None:
    """Ctrl+C typed at the prompt, or SIGTERM/SIGHUP sent to the daemon there: it says
    so in a line and exits 0, the terminal echoing again (SIGTERM killed it there and
    left the terminal not showing what is typed)."""
    terminal = Terminal(profile, "daemon", *LOOPBACK)
    terminals.append(terminal)
    terminal.read_until("Passphrase: ")
    if isinstance(key, bytes):
        terminal.type(key)
    else:
        os.kill(terminal.pid, key)
    wait_for(lambda: termios.tcgetattr(terminal.fd)[3] & termios.ECHO)  # echoing again
    assert terminal.exit_code() == 0, terminal.output
    said = terminal.output.decode()
    assert STOPPED in said and "Traceback" not in said and "node running" not in said
    assert left_as_after_a_clean_stop(profile)


def test_a_stop_while_a_mistyped_passphrase_is_tried(
    profile: Path, terminals: list[Terminal]
) -> None:
    """Told to stop while the typed passphrase is being tried, a daemon for which it is
    wrong stops: it does not ask for it again."""
    terminal = Terminal(profile, "daemon", *LOOPBACK)
    terminals.append(terminal)
    terminal.read_until("Passphrase: ")
    terminal.type(b"a typo in it\n")
    terminal.read_until("\n")  # the line was read: the unlock (Argon2id) begins
    os.kill(terminal.pid, signal.SIGTERM)
    assert terminal.exit_code() == 0, terminal.output
    said = terminal.output.decode()
    assert STOPPED in said and "Traceback" not in said and "Try again" not in said
    assert left_as_after_a_clean_stop(profile)
