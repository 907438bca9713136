"""One app per profile, from its first moment: a start of the desktop app holds its
profile before its first-run or unlock dialog (`api.one_app`), so a second start hands
its invite link (or only "come to the front") to the first and ends, and no other
process can create the profile or start a node on it meanwhile (decision 0032).

Each start is a real process (tests/node/app_start.py: the app's start without Qt)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.node import api
from app.node.control import ControlServer, connect_control
from app.node.lock import ProfileClaim, ProfileLock, lock_holder
from app.node.paths import ProfilePaths

ROOT = Path(__file__).resolve().parents[2]
START = Path(__file__).with_name("app_start.py")
PASSPHRASE = "correct horse battery"

pytestmark = pytest.mark.slow


def env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=str(ROOT), SCRAMBLED_EGGS_ICE_LOOPBACK="1")


class Start:
    """`app_start.py` running: what it prints, line by line."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(START), *args],
            env=env(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def line(self) -> str:
        """The next line it prints ("" once it ended)."""
        assert self.proc.stdout is not None
        return self.proc.stdout.readline().strip()

    def end(self) -> int:
        """Close its stdin (a holder ends) and wait for it; its exit code."""
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        code = self.proc.wait(60)
        assert self.proc.stderr is not None
        errors = self.proc.stderr.read()
        assert "Traceback" not in errors, errors
        return code


@pytest.fixture
def starts() -> Iterator[list[Start]]:
    made: list[Start] = []
    yield made
    for start in made:
        if start.proc.poll() is None:
            start.proc.kill()
            start.proc.wait()


@pytest.fixture
def invite(tmp_path: Path) -> str:
    """A real, signed invite of someone else."""
    return api.init_profile(tmp_path / "bob", "Bob", None).whoami.invite


def test_a_second_start_hands_its_link_to_the_first_and_ends(
    tmp_path: Path, invite: str, starts: list[Start]
) -> None:
    root = tmp_path / "me"
    first = Start(str(root))  # at its first-run dialog: no profile yet
    starts.append(first)
    assert first.line() == "held"
    clicked = Start(str(root), invite)  # `scrambled-eggs eggs:...` from a browser
    starts.append(clicked)
    assert clicked.line() == "handed"
    assert clicked.end() == 0
    assert first.line() == f"link {invite}"  # shown once its window is up
    again = Start(str(root))  # the desktop entry, clicked again
    starts.append(again)
    assert again.line() == "handed"
    assert again.end() == 0
    assert first.line() == "forward"  # its dialog comes to the front
    assert first.end() == 0
    assert not ProfilePaths(root).database.exists()  # nobody made a profile meanwhile


def test_a_link_clicked_while_the_app_is_at_its_dialog_says_when_it_shows(
    tmp_path: Path, invite: str, starts: list[Start]
) -> None:
    """`scrambled-eggs eggs:...` (what a desktop runs for a clicked link) while the app
    sits at its first-run or unlock dialog: the link is handed over, and the command
    says the window shows it once that dialog is done (not that it is open there)."""
    root = tmp_path / "me"
    first = Start(str(root))
    starts.append(first)
    assert first.line() == "held"
    done = subprocess.run(
        [sys.executable, "-m", "app", "--profile", str(root), invite],
        env=env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "first-run or unlock dialog" in done.stdout
    assert "is open in the Scrambled Eggs window" not in done.stdout
    assert first.line() == f"link {invite}"
    assert first.end() == 0


def test_two_starts_at_once_make_one_profile(tmp_path: Path, starts: list[Start]) -> None:
    """Two starts on a new profile at the same moment (a double click): one shows its
    first-run dialog and makes the profile, the other brings that dialog forward."""
    root = tmp_path / "me"
    starts.extend(Start(str(root), "--create", f"User{n}") for n in range(2))
    first_lines = [start.line() for start in starts]
    assert sorted(first_lines) == ["handed", "held"]
    holder = starts[first_lines.index("held")]
    other = starts[first_lines.index("handed")]
    assert other.end() == 0
    lines = {holder.line(), holder.line()}  # in either order: created, forward
    assert "forward" in lines
    (created,) = [line for line in lines if line.startswith("created ")]
    assert holder.end() == 0
    assert api.inspect_profile(root).address == created.split()[1]


def test_the_profile_held_at_its_dialog_is_refused_to_other_processes(
    tmp_path: Path, starts: list[Start]
) -> None:
    """While the app sits at its first-run dialog, a `scrambled-eggs init` (or another
    app's create) is refused: before, both made an identity, the later one in vain."""
    root = tmp_path / "me"
    first = Start(str(root))
    starts.append(first)
    assert first.line() == "held"
    info = api.inspect_profile(root)
    assert info.in_use and info.holder == str(first.proc.pid)
    with pytest.raises(api.ProfileLocked):
        api.init_profile(root, "Mallory", None)
    init = subprocess.run(
        [sys.executable, "-m", "app", "--profile", str(root), "init", "--name", "Eve"],
        env=dict(env(), SCRAMBLED_EGGS_PASSPHRASE=PASSPHRASE),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert init.returncode != 0 and "in use by another Scrambled Eggs" in init.stderr
    assert not ProfilePaths(root).database.exists()
    assert first.end() == 0


def test_a_daemon_or_a_command_beside_the_app_at_its_unlock_dialog_is_told_so(
    tmp_path: Path, starts: list[Start]
) -> None:
    """One node per profile: a `daemon` started while the app asks for the passphrase is
    refused (before, it took the profile and the app then failed to unlock it), and a
    command is told at once that the app is at its dialog."""
    root = tmp_path / "me"
    api.init_profile(root, "Me", PASSPHRASE)
    first = Start(str(root))  # at its unlock dialog
    starts.append(first)
    assert first.line() == "held"
    run_env = dict(env(), SCRAMBLED_EGGS_PASSPHRASE=PASSPHRASE)
    base = [sys.executable, "-m", "app", "--profile", str(root)]
    status = subprocess.run([*base, "status"], env=run_env, capture_output=True, text=True)
    assert status.returncode != 0
    assert "at its first-run or unlock dialog" in status.stderr
    daemon = subprocess.run(
        [*base, "daemon", "--listen", "127.0.0.1:0", "--no-lan"],
        env=run_env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert daemon.returncode == 1
    assert f"in use by another Scrambled Eggs process (process {first.proc.pid})" in (daemon.stderr)
    assert first.end() == 0


def test_two_creates_at_once_make_one_identity(tmp_path: Path) -> None:
    """The node layer alone (two `init`s at once): one profile, made whole, the other
    refused."""
    root = tmp_path / "me"
    code = (
        "import sys; from pathlib import Path; from app.node import api\n"
        "try:\n"
        "    print(api.init_profile(Path(sys.argv[1]), sys.argv[2], None).whoami.address)\n"
        "except (api.ProfileLocked, api.ProfileExists) as exc:\n"
        "    print('refused', type(exc).__name__)\n"
    )
    runs = [
        subprocess.Popen(
            [sys.executable, "-c", code, str(root), f"User{n}"],
            env=env(),
            stdout=subprocess.PIPE,
            text=True,
        )
        for n in range(2)
    ]
    outputs = [run.communicate(timeout=60)[0].strip() for run in runs]
    made = [out for out in outputs if not out.startswith("refused")]
    assert len(made) == 1, outputs
    assert api.inspect_profile(root).address == made[0]


def test_the_claim_is_lent_to_this_process_and_kept_from_others(tmp_path: Path) -> None:
    root = tmp_path / "me"
    root.mkdir()
    lock = ProfilePaths(root).lock
    with ProfileClaim(lock):
        api.init_profile(root, "Me", None)  # borrows the claim
        with ProfileLock(lock), pytest.raises(api.ProfileLocked):  # the node's, then:
            ProfileLock(lock).acquire()  # lent once at a time
        holder = subprocess.run(
            [sys.executable, "-c", LOCK_HOLDER, str(lock)],
            env=env(),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert holder.stdout.strip() == str(os.getpid())  # still held between the two
    assert lock_holder(lock) is None


LOCK_HOLDER = (
    "import sys; from pathlib import Path; from app.node.lock import lock_holder\n"
    "print(lock_holder(Path(sys.argv[1])))\n"
)


@pytest.mark.asyncio
async def test_the_apps_early_socket_leaves_the_nodes_in_place(tmp_path: Path) -> None:
    """The app answers on the control socket at its dialog; its node's server replaces
    that socket, and stopping the app's afterwards must not remove the node's."""
    root = tmp_path / "me"
    root.mkdir()
    paths = ProfilePaths(root)
    early = ControlServer(None, paths)
    await early.start()
    client = await connect_control(paths)
    assert client is not None
    with pytest.raises(api.ProfileLocked, match="first-run or unlock dialog"):
        await client.status()
    await client.close()
    node = ControlServer(None, paths)  # the node's, started by the same app
    await node.start()
    await early.stop()
    client = await connect_control(paths)
    assert client is not None, "the node's socket was removed"
    await client.close()
    await node.stop()
    assert not paths.control_socket.exists()
