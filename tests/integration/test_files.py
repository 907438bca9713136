"""File sharing between daemons in separate processes, driven through the CLI.

Loopback only (`SCRAMBLED_EGGS_ICE_LOOPBACK=1` lets aioice use 127.0.0.1). Each daemon
saves into its own downloads folder, set in its profile's settings file.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cli_helpers import Daemon, cli_json, run_cli, wait_for
from ipfs_daemon import running_ipfs_daemon

pytestmark = pytest.mark.usefixtures("ice_loopback_env")
PASS = "a passphrase for tests"
MiB = 1024 * 1024


def configure(profile: Path, downloads: Path, **extra: Any) -> None:
    """Set the downloads folder (and other settings) in the profile's settings file."""
    path = profile / "config.json"
    config = json.loads(path.read_text()) if path.exists() else {"version": 1}
    config.update(downloads_folder=str(downloads), **extra)
    path.write_text(json.dumps(config))


def start(profile: Path, port: int = 0, prefix: tuple[str, ...] = ()) -> Daemon:
    daemon = Daemon(
        profile, "--listen", f"127.0.0.1:{port}", "--no-lan", passphrase=PASS, prefix=prefix
    )
    daemon.port = int(daemon.wait_ready()["endpoints"][0].rpartition(":")[2])  # type: ignore[attr-defined]
    return daemon


def log_lines(profile: Path, needle: str) -> list[str]:
    log = profile / "logs" / "node.log"
    return [line for line in log.read_text().splitlines() if needle in line]


def share(profile: Path, contact: str, *paths: Path) -> list[str]:
    done = run_cli(profile, "share", contact, *map(str, paths), "--json", passphrase=PASS,
                   timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr
    return list(json.loads(done.stdout)["transfers"])


def transfers(profile: Path) -> dict[str, dict[str, Any]]:
    return {t["id"]: t for t in cli_json(profile, "transfers", passphrase=PASS)}


def state_of(profile: Path, transfer_id: str) -> dict[str, Any] | None:
    return transfers(profile).get(transfer_id)


def in_state(profile: Path, transfer_id: str, state: str) -> dict[str, Any] | None:
    found = state_of(profile, transfer_id)
    if found is not None and found["state"] == "failed" and state != "failed":
        raise AssertionError(f"transfer failed: {found}")
    return found if found is not None and found["state"] == state else None


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(MiB):
            digest.update(chunk)
    return digest.hexdigest()


def write_random(path: Path, size: int) -> Path:
    with path.open("wb") as fh:
        left = size
        while left:
            n = min(left, 4 * MiB)
            fh.write(os.urandom(n))
            left -= n
    return path


def make_pair(
    tmp_path: Path,
    daemons: list[Daemon],
    bob_prefix: tuple[str, ...] = (),
    auto_accept: int = 1 << 30,
    alice_prefix: tuple[str, ...] = (),
    **settings: Any,
) -> tuple[Path, Path]:
    """Alice and Bob, running, contacts of each other; Bob auto-accepts up to 1 GiB.
    `bob_prefix` runs Bob's daemon under another command (a mount namespace);
    `settings` go into both settings files."""
    a, b = tmp_path / "alice", tmp_path / "bob"
    cli_json(a, "init", "--name", "Alice", passphrase=PASS)
    cli_json(b, "init", "--name", "Bob", passphrase=PASS)
    configure(a, tmp_path / "alice-downloads", **settings)
    configure(b, tmp_path / "bob-downloads", auto_accept_bytes=auto_accept, **settings)
    daemons.append(start(a, prefix=alice_prefix))
    daemons.append(start(b, prefix=bob_prefix))
    alice = cli_json(a, "whoami", passphrase=PASS)
    bob = cli_json(b, "whoami", passphrase=PASS)
    cli_json(a, "contacts", "add", bob["invite"], passphrase=PASS)
    cli_json(b, "contacts", "add", alice["invite"], passphrase=PASS)
    return a, b


@pytest.fixture
def pair(tmp_path: Path, daemons: list[Daemon]) -> tuple[Path, Path]:
    return make_pair(tmp_path, daemons)


def hostile_corpus() -> list[str]:
    """The hostile names of tests/core/test_filenames.py."""
    path = Path(__file__).parents[1] / "core" / "test_filenames.py"
    spec = importlib.util.spec_from_file_location("hostile_filenames", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return list(module.HOSTILE)


def in_namespace(daemon: Daemon, *command: str) -> str:
    """Run `command` in the mount namespace of `daemon`'s process."""
    done = subprocess.run(
        ["nsenter", "--target", str(daemon.process.pid), "--mount", *command],
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout


@pytest.mark.slow
def test_small_files_and_a_folder_arrive_intact(pair: tuple[Path, Path], tmp_path: Path) -> None:
    a, b = pair
    src = tmp_path / "src"
    (src / "folder" / "sub").mkdir(parents=True)
    files = {
        "empty.bin": b"",
        "one.txt": b"x",
        "folder/a.txt": b"hello",
        "folder/sub/b.bin": os.urandom(300 * 1024),
    }
    for rel, data in files.items():
        (src / rel).write_bytes(data)
    ids = share(a, "Bob", src / "empty.bin", src / "one.txt", src / "folder")
    assert len(ids) == 4
    for tid in ids:
        wait_for(lambda tid=tid: in_state(b, tid, "done"), timeout=60)
        wait_for(lambda tid=tid: in_state(a, tid, "done"), timeout=60)
    got = transfers(b)
    names = sorted(got[t]["name"] for t in ids)
    assert names == sorted(["empty.bin", "one.txt", "folder/a.txt", "folder/sub/b.bin"])
    downloads = tmp_path / "bob-downloads"
    for tid in ids:
        t = got[tid]
        saved = Path(t["path"])
        assert saved.is_relative_to(downloads)
        assert saved.read_bytes() == files[t["name"]]
        assert t["done_bytes"] == t["size"] == len(files[t["name"]])
    # the offer is a message of the conversation, named after the file
    msgs = cli_json(b, "messages", "Alice", passphrase=PASS)
    assert sorted(m["text"] for m in msgs) == names


@pytest.mark.slow
def test_200_mib_between_two_daemons(pair: tuple[Path, Path], tmp_path: Path) -> None:
    a, b = pair
    src = write_random(tmp_path / "big.bin", 200 * MiB)
    [tid] = share(a, "Bob", src)
    done = wait_for(lambda: in_state(b, tid, "done"), timeout=240, interval=1.0)
    assert sha256(Path(done["path"])) == sha256(src)
    wait_for(lambda: in_state(a, tid, "done"), timeout=30)


@pytest.fixture
def slow_loopback() -> Iterator[tuple[str, ...]]:
    """A network namespace whose loopback moves 80 Mbit/s (tbf), so a transfer lasts
    long enough to be killed in the middle; yields the command prefix to run in it."""
    ns = f"eggs-files-{os.getpid()}"
    try:
        subprocess.run(["ip", "netns", "add", ns], check=True, capture_output=True)
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.skip(f"cannot create a network namespace here: {exc}")
    try:
        for command in (
            ("ip", "link", "set", "lo", "up"),
            ("tc", "qdisc", "add", "dev", "lo", "root", "tbf", "rate", "80mbit",
             "burst", "256kb", "latency", "100ms"),
        ):  # fmt: skip
            subprocess.run(["ip", "netns", "exec", ns, *command], check=True, capture_output=True)
        yield ("ip", "netns", "exec", ns)
    finally:
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def set_loopback_rate(prefix: tuple[str, ...], rate: str) -> None:
    """Change the rate of `slow_loopback`'s namespace (`prefix`) for what follows."""
    subprocess.run(
        [*prefix, "tc", "qdisc", "change", "dev", "lo", "root", "tbf", "rate", rate,
         "burst", "256kb", "latency", "100ms"],
        check=True,
        capture_output=True,
    )  # fmt: skip


def kill_mid_transfer(
    tmp_path: Path, daemons: list[Daemon], prefix: tuple[str, ...], victim: int
) -> tuple[Path, Path, str, Path, dict[str, Any]]:
    """Share 64 MiB from Alice to Bob, SIGKILL daemon `victim` (0 Alice, 1 Bob) once
    Bob holds a fifth of it, and start it again on the same port."""
    a, b = make_pair(tmp_path, daemons, alice_prefix=prefix, bob_prefix=prefix)
    src = write_random(tmp_path / "resume.bin", 64 * MiB)
    [tid] = share(a, "Bob", src)
    before = wait_for(
        lambda: (t := state_of(b, tid)) and t["done_bytes"] >= 13 * MiB and t,
        timeout=120,
        interval=0.2,
    )
    assert before["state"] == "running" and before["done_bytes"] < 64 * MiB
    killed = daemons[victim]
    killed.stop(signal.SIGKILL)
    profile = (a, b)[victim]
    daemons[victim] = start(profile, killed.port, prefix)  # type: ignore[attr-defined]
    return a, b, tid, src, before


def finish_monotonically(b: Path, tid: str, floor: int) -> dict[str, Any]:
    """Wait until Bob is done; his progress never drops below `floor` on the way."""
    seen = [floor]

    def progressed() -> dict[str, Any] | None:
        t = state_of(b, tid)
        assert t is not None
        seen.append(t["done_bytes"])
        return t if t["state"] == "done" else None

    done = wait_for(progressed, timeout=180, interval=0.5)
    assert seen == sorted(seen) and min(seen) >= floor
    return done


@pytest.mark.slow
def test_sigkill_of_the_sender_resumes_from_the_blocks_held(
    tmp_path: Path, daemons: list[Daemon], slow_loopback: tuple[str, ...]
) -> None:
    a, b, tid, src, before = kill_mid_transfer(tmp_path, daemons, slow_loopback, victim=0)
    done = finish_monotonically(b, tid, before["done_bytes"])
    assert sha256(Path(done["path"])) == sha256(src)
    # the restarted sender served only the blocks Bob still lacked
    served = wait_for(lambda: log_lines(a, f"transfer {tid}: received by the contact"))
    count = int(served[-1].split("; ")[1].split()[0])
    chunks = 64 * MiB // (256 * 1024 - 16) + 1
    assert 0 < count <= chunks - before["done_bytes"] // (256 * 1024 - 16)


@pytest.mark.slow
def test_sigkill_of_the_receiver_resumes_from_the_blocks_held(
    tmp_path: Path, daemons: list[Daemon], slow_loopback: tuple[str, ...]
) -> None:
    _, b, tid, src, before = kill_mid_transfer(tmp_path, daemons, slow_loopback, victim=1)
    done = finish_monotonically(b, tid, before["done_bytes"])
    assert sha256(Path(done["path"])) == sha256(src)
    chunks = 64 * MiB // (256 * 1024 - 16) + 1
    [resumed] = [line for line in log_lines(b, f"transfer {tid}: ") if "already held" in line][
        1:
    ]  # the first run started from nothing
    held = int(resumed.split(": ")[-1].split()[0])
    assert held >= before["done_bytes"] // (256 * 1024 - 16)
    [saved] = log_lines(b, f"transfer {tid}: saved")
    fetched = int(saved.split("; ")[1].split()[0])
    assert fetched == chunks - held


@pytest.mark.slow
def test_sigkill_of_the_sender_while_it_encrypts_an_early_offer_resumes(
    tmp_path: Path, daemons: list[Daemon], slow_loopback: tuple[str, ...]
) -> None:
    """A large file is offered before it is encrypted (protocol.md section 10.6). The
    sender killed while it encrypts encrypts it again at its next start (same key, same
    blocks); the receiver keeps every chunk it holds and checks the whole file against
    the root before saving it."""
    a, b = make_pair(tmp_path, daemons, alice_prefix=slow_loopback, bob_prefix=slow_loopback)
    src = write_random(tmp_path / "early.bin", 1 << 30)
    [tid] = share(a, "Bob", src)
    before = wait_for(
        lambda: (t := state_of(b, tid)) and t["done_bytes"] > 0 and t, timeout=60, interval=0.05
    )
    killed = daemons[0]
    killed.stop(signal.SIGKILL)
    assert log_lines(a, f"transfer {tid}: offered before it is encrypted")
    assert not log_lines(a, f"transfer {tid}: encrypted;")  # killed while encrypting
    set_loopback_rate(slow_loopback, "10gbit")
    daemons[0] = start(a, killed.port, slow_loopback)
    done = finish_monotonically(b, tid, before["done_bytes"])
    assert sha256(Path(done["path"])) == sha256(src)
    assert log_lines(a, f"transfer {tid}: encrypting again")
    # every chunk came once: none held before the kill was fetched again
    [saved] = log_lines(b, f"transfer {tid}: saved")
    fetched = int(saved.split("; ")[1].split()[0])
    assert fetched == (1 << 30) // (256 * 1024 - 16) + 1
    wait_for(lambda: in_state(a, tid, "done"), timeout=30)


@pytest.mark.slow
def test_pause_resume_and_cancel_mid_transfer(
    tmp_path: Path, daemons: list[Daemon], slow_loopback: tuple[str, ...]
) -> None:
    """The receiver pauses (progress stops, the hidden part keeps what came), resumes
    from there (only the rest is fetched), then cancels (the part is removed)."""
    a, b = make_pair(tmp_path, daemons, alice_prefix=slow_loopback, bob_prefix=slow_loopback)
    src = write_random(tmp_path / "big.bin", 64 * MiB)
    [tid] = share(a, "Bob", src)
    wait_for(lambda: (t := state_of(b, tid)) and t["done_bytes"] >= 8 * MiB, timeout=120)
    # from here 1 MB/s: the rest takes ~50 s, so a command slowed down by a loaded
    # machine still finds the transfer running (at 10 MB/s it could end first)
    set_loopback_rate(slow_loopback, "8mbit")
    paused = cli_json(b, "transfers", "pause", tid, passphrase=PASS)
    assert paused["state"] == "paused" and 8 * MiB <= paused["done_bytes"] < 64 * MiB
    downloads = tmp_path / "bob-downloads"
    [part] = list(downloads.iterdir())  # what came is in the hidden part, nothing else
    assert part.name.startswith(".big.bin.") and part.name.endswith(".part")
    time.sleep(1.5)
    assert state_of(b, tid) == paused  # nothing moves while paused
    refused = run_cli(a, "transfers", "pause", tid, passphrase=PASS)
    assert refused.returncode == 1 and "Only a file you receive" in refused.stderr

    assert cli_json(b, "transfers", "retry", tid, passphrase=PASS)["state"] == "running"

    def second_start() -> list[str]:
        return [line for line in log_lines(b, f"transfer {tid}: ") if "already held" in line][1:]

    [resumed] = wait_for(second_start)
    held = int(resumed.split(": ")[-1].split()[0])
    assert held * (256 * 1024 - 16) >= paused["done_bytes"]
    moving = paused["done_bytes"] + 2 * MiB
    wait_for(lambda: (t := state_of(b, tid)) and t["done_bytes"] >= moving, timeout=120)
    assert cli_json(b, "transfers", "cancel", tid, passphrase=PASS)["state"] == "cancelled"
    assert list(downloads.iterdir()) == []
    wait_for(lambda: in_state(a, tid, "cancelled"))


@pytest.mark.slow
def test_hostile_file_names_all_land_inside_the_downloads_folder(
    pair: tuple[Path, Path], tmp_path: Path
) -> None:
    a, b = pair
    src = tmp_path / "hostile"
    src.mkdir()
    # every corpus name a file can have here ("/" and NUL can't be in a POSIX name;
    # those are covered by tests/node/test_file_io.py with crafted manifests)
    names = [
        n
        for n in dict.fromkeys(hostile_corpus())
        if n not in ("", ".", "..") and "/" not in n and "\0" not in n
        and len(os.fsencode(n)) <= 255
    ]  # fmt: skip
    assert len(names) >= 30
    contents = {}
    for i, name in enumerate(names):
        (src / name).write_bytes(f"file {i}".encode())
        contents[name] = f"file {i}".encode()
    ids = share(a, "Bob", *(src / n for n in names))
    downloads = (tmp_path / "bob-downloads").resolve()
    for tid in ids:
        wait_for(lambda tid=tid: in_state(b, tid, "done"), timeout=90)
    got = transfers(b)
    sent = transfers(a)
    saved = set()
    for tid in ids:
        path = Path(got[tid]["path"])
        assert os.path.realpath(path).startswith(str(downloads) + os.sep)
        assert path.parent == tmp_path / "bob-downloads"
        assert path.read_bytes() == contents[sent[tid]["name"]]
        saved.add(path.name)
    assert len(saved) == len(names)
    assert {p.name for p in downloads.iterdir()} == saved  # nothing else, no .part


@pytest.mark.slow
@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root")
@pytest.mark.parametrize(
    ("options", "expected"),
    [("size=1m", "not enough free space"), ("ro,size=1m", "a read-only file system")],
)
def test_disk_full_and_read_only_downloads_fail_cleanly(
    tmp_path: Path, daemons: list[Daemon], options: str, expected: str
) -> None:
    downloads = tmp_path / "bob-downloads"
    downloads.mkdir()
    mount = f'mount -t tmpfs -o {options} tmpfs {downloads} && exec "$@"'
    prefix = ("unshare", "--mount", "--propagation", "private", "sh", "-c", mount, "sh")
    a, b = make_pair(tmp_path, daemons, bob_prefix=prefix)
    src = write_random(tmp_path / "big.bin", 3 * MiB)
    [tid] = share(a, "Bob", src)
    failed = wait_for(lambda: in_state(b, tid, "failed"), timeout=90)
    assert expected in failed["error"] and "nothing was saved" in failed["error"]
    assert failed["path"] is None
    # nothing under the final name, no partial file left behind
    assert in_namespace(daemons[1], "ls", "-A", str(downloads)) == ""
    # retry fails the same way while the disk stays full: still nothing saved
    done = run_cli(b, "transfers", "retry", tid, "--json", passphrase=PASS)
    assert done.returncode == 0, done.stderr
    wait_for(lambda: in_state(b, tid, "failed"), timeout=60)
    assert in_namespace(daemons[1], "ls", "-A", str(downloads)) == ""


@pytest.mark.slow
@pytest.mark.timeout(1200)
@pytest.mark.filterwarnings("ignore:The 'strict' parameter:FutureWarning")
def test_through_the_ipfs_daemon_with_the_sender_offline(
    tmp_path: Path, daemons: list[Daemon]
) -> None:
    with running_ipfs_daemon(tmp_path / "ipfs") as ipfs:
        a, b = make_pair(tmp_path, daemons, auto_accept=0, ipfs_api=ipfs.api_addr)
        src = write_random(tmp_path / "via-ipfs.bin", 3 * MiB + 5)
        [tid] = share(a, "Bob", src)
        offered = wait_for(lambda: in_state(b, tid, "offered"), timeout=60)
        assert offered["size"] == 3 * MiB + 5 and offered["done_bytes"] == 0
        assert daemons[0].stop() == 0  # the sender goes offline
        accepted = cli_json(b, "transfers", "accept", tid, passphrase=PASS)
        assert accepted["state"] == "running"
        done = wait_for(lambda: in_state(b, tid, "done"), timeout=120)
        assert sha256(Path(done["path"])) == sha256(src)


@pytest.mark.slow
def test_offers_cancel_from_either_side_and_offline_shares_wait_for_the_node(
    tmp_path: Path, daemons: list[Daemon]
) -> None:
    a, b = make_pair(tmp_path, daemons, auto_accept=0)
    one = write_random(tmp_path / "one.bin", 100_000)
    two = write_random(tmp_path / "two.bin", 200_000)
    first, second = share(a, "Bob", one, two)
    for tid in (first, second):
        wait_for(lambda tid=tid: in_state(b, tid, "offered"))
    assert in_state(a, first, "offered")  # the sender waits for them to accept
    # the sender withdraws the first, the receiver declines the second
    assert cli_json(a, "transfers", "cancel", first, passphrase=PASS)["state"] == "cancelled"
    assert cli_json(b, "transfers", "cancel", second, passphrase=PASS)["state"] == "cancelled"
    wait_for(lambda: in_state(b, first, "cancelled"))
    wait_for(lambda: in_state(a, second, "cancelled"))
    refused = run_cli(b, "transfers", "accept", first, passphrase=PASS)
    assert refused.returncode == 1 and "not offered" in refused.stderr
    missing = run_cli(b, "transfers", "accept", "nope", passphrase=PASS)
    assert missing.returncode == 1 and "No transfer has the id" in missing.stderr

    # without a running node the share is recorded, and sent once the node starts
    alice = daemons[0]
    assert alice.stop() == 0
    [offline] = share(a, "Bob", one)
    assert in_state(a, offline, "offered")
    not_running = run_cli(a, "transfers", "cancel", offline, passphrase=PASS)
    assert not_running.returncode == 1 and "needs the running node" in not_running.stderr
    daemons[0] = start(a, alice.port)  # type: ignore[attr-defined]
    wait_for(lambda: in_state(b, offline, "offered"), timeout=60)
    assert cli_json(b, "transfers", "accept", offline, passphrase=PASS)["state"] == "running"
    wait_for(lambda: in_state(a, offline, "running") or in_state(a, offline, "done"))
    done = wait_for(lambda: in_state(b, offline, "done"), timeout=60)
    assert Path(done["path"]).read_bytes() == one.read_bytes()
    wait_for(lambda: in_state(a, offline, "done"))
