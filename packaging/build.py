"""Build the double-click app and its packages. One command per target:

    python packaging/build.py icons           # render every icon from the SVG
    python packaging/build.py linux-onedir    # dist/scrambled-eggs/ (PyInstaller one folder)
    python packaging/build.py linux-onefile   # dist/onefile/scrambled-eggs (one file)
    python packaging/build.py deb             # dist/scrambled-eggs_<v>_<arch>.deb
    python packaging/build.py tarball         # dist/scrambled-eggs-<v>-linux-<arch>.tar.gz
    python packaging/build.py windows         # dist/scrambled-eggs/ + Inno Setup installer
    python packaging/build.py macos           # dist/Scrambled Eggs.app + .dmg

`deb` and `tarball` package an existing one-folder build (`--app DIR`, default
dist/scrambled-eggs) and build it first when it is missing. Intermediate files go under
build/ (git-ignored); PyInstaller's work folder there is reused between runs.
"""

from __future__ import annotations

import argparse
import ast
import gzip
import hashlib
import io
import os
import re
import shutil
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGING = ROOT / "packaging"
LINUX = PACKAGING / "linux"
APP_NAME = "scrambled-eggs"
DISPLAY_NAME = "Scrambled Eggs"
APP_ID = "org.scrambledeggs.ScrambledEggs"
DESKTOP_FILE = LINUX / f"{APP_NAME}.desktop"
METAINFO_FILE = LINUX / f"{APP_ID}.metainfo.xml"
ICON_THEME = LINUX / "icons" / "hicolor"
INSTALL_DIR = f"/opt/{APP_NAME}"
# What the frozen app needs from a bare Debian/Ubuntu: OpenGL and EGL for Qt's platform
# plugins, fontconfig's configuration for the bundled libfontconfig (see FACTS.md); libc6
# is added with the version the bundled binaries require.
DEB_DEPENDS = ("libgl1", "libegl1", "fontconfig-config")
DEB_MAINTAINER = os.environ.get(
    "DEB_MAINTAINER", "The Scrambled Eggs developers <packaging@scrambled-eggs.invalid>"
)


def app_version() -> str:
    """`app.__version__`, read without importing the app."""
    tree = ast.parse((ROOT / "app" / "__init__.py").read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "__version__" for t in node.targets
        ):
            return str(ast.literal_eval(node.value))
    raise SystemExit("app/__init__.py has no __version__")


def run(command: list[str], **kwargs: object) -> None:
    """Run a command, echoing it; stop the build if it fails."""
    print("+", " ".join(command), flush=True)
    subprocess.run(command, check=True, **kwargs)  # type: ignore[call-overload]


# --------------------------------------------------------------------------- PyInstaller


def pyinstaller(dist: Path, work: Path, onefile: bool = False) -> Path:
    """Run build.spec; returns the built app (folder, file or .app bundle)."""
    command = [
        sys.executable,
        "-m",
        "PyInstaller",
        str(ROOT / "build.spec"),
        "--noconfirm",
        "--log-level=WARN",
        "--distpath",
        str(dist),
        "--workpath",
        str(work),
    ]
    if onefile:
        command += ["--", "--onefile"]
    started = time.monotonic()
    run(command, cwd=ROOT)
    print(f"PyInstaller took {time.monotonic() - started:.1f} s", flush=True)
    if sys.platform == "darwin":
        return dist / f"{DISPLAY_NAME}.app"
    suffix = ".exe" if sys.platform == "win32" else ""
    return dist / f"{APP_NAME}{suffix}" if onefile else dist / APP_NAME


def ensure_onedir(app: Path, work: Path) -> Path:
    """The one-folder app at `app`, built first if it isn't there."""
    if not (app / APP_NAME).is_file():
        built = pyinstaller(app.parent, work)
        if built != app:
            raise SystemExit(f"expected the one-folder app in {app}, got {built}")
    return app


# --------------------------------------------------------------------------- Linux


def deb_architecture() -> str:
    """Debian's name for this machine's architecture."""
    machine = os.uname().machine
    return {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "armhf"}.get(machine, machine)


_GLIBC = re.compile(rb"GLIBC_(2\.\d+)\x00")


def glibc_required(folder: Path) -> str:
    """The highest GLIBC_2.x symbol version any bundled ELF file asks for."""
    best = (2, 0)
    for path in folder.rglob("*"):
        if not path.is_file() or path.is_symlink():
            continue
        with path.open("rb") as handle:
            if handle.read(4) != b"\x7fELF":
                continue
            data = handle.read()
        for match in _GLIBC.finditer(data):
            major, minor = (int(x) for x in match.group(1).split(b"."))
            best = max(best, (major, minor))
    return f"{best[0]}.{best[1]}"


def install_shared_files(share: Path) -> None:
    """Desktop entry, icons and AppStream metadata under a `share/` folder."""
    (share / "applications").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(DESKTOP_FILE, share / "applications" / DESKTOP_FILE.name)
    (share / "metainfo").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(METAINFO_FILE, share / "metainfo" / METAINFO_FILE.name)
    if not ICON_THEME.is_dir():
        raise SystemExit("no icons yet: run `python packaging/build.py icons` first")
    shutil.copytree(ICON_THEME, share / "icons" / "hicolor", dirs_exist_ok=True)


_SHARED_LIBRARY = re.compile(r"\.so(\.[0-9.]+)?$")


def _normalise_modes(root: Path) -> None:
    """0755 for folders and programs, 0644 for everything else, shared libraries included
    (what Debian policy and lintian expect; dlopen needs no execute bit)."""
    for path in [root, *root.rglob("*")]:
        if path.is_symlink():
            continue
        if path.is_dir():
            path.chmod(0o755)
        elif _SHARED_LIBRARY.search(path.name) or not path.stat().st_mode & 0o111:
            path.chmod(0o644)
        else:
            path.chmod(0o755)


def _gzip_n(text: str) -> bytes:
    """gzip -9n: no name or time stamp, so the output is reproducible."""
    buffer = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buffer, compresslevel=9, mtime=0) as gz:
        gz.write(text.encode("utf-8"))
    return buffer.getvalue()


def _deb_docs(doc: Path, version: str) -> None:
    doc.mkdir(parents=True, exist_ok=True)
    licence = (ROOT / "LICENSE").read_text(encoding="utf-8")
    indented = "\n".join(f" {line}" if line.strip() else " ." for line in licence.splitlines())
    (doc / "copyright").write_text(
        "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n"
        f"Upstream-Name: {APP_NAME}\n\n"
        "Files: *\n"
        "Copyright: 2026 The Scrambled Eggs developers\n"
        "License: MIT\n"
        f"{indented}\n\n"
        "Comment: /opt/scrambled-eggs bundles the Python runtime, Qt (LGPL-3.0) through\n"
        " PySide6, and the Python packages the app depends on, each under its own licence.\n",
        encoding="utf-8",
    )
    stamp = time.strftime("%a, %d %b %Y %H:%M:%S +0000", time.gmtime(_source_date()))
    changelog = (
        f"{APP_NAME} ({version}) unstable; urgency=medium\n\n"
        f"  * Release {version}: see the project's README and releases.\n\n"
        f" -- {DEB_MAINTAINER}  {stamp}\n"
    )
    (doc / "changelog.gz").write_bytes(_gzip_n(changelog))


def _source_date() -> int:
    """SOURCE_DATE_EPOCH if set (reproducible builds), else the last commit's time."""
    if "SOURCE_DATE_EPOCH" in os.environ:
        return int(os.environ["SOURCE_DATE_EPOCH"])
    try:
        out = subprocess.run(
            ["git", "log", "-1", "--format=%ct"], cwd=ROOT, capture_output=True, text=True
        )
        return int(out.stdout.strip())
    except (OSError, ValueError):
        return int(time.time())


LINTIAN_OVERRIDES = """\
# A self-contained third-party build, as Signal or VS Code ship theirs: the frozen app
# (Python, Qt, the Python packages) lives in /opt, the add-on software location of the FHS.
scrambled-eggs: dir-or-file-in-opt
# The bundle carries its own copies of libraries (that is what makes it self-contained),
# as built by their upstreams, with RPATHs pointing inside the bundle.
scrambled-eggs: embedded-library *
scrambled-eggs: shared-library-lacks-prerequisites *
scrambled-eggs: library-not-linked-against-libc *
scrambled-eggs: custom-library-search-path *
# Libraries auditwheel vendored into wheels (`<package>.libs/`, patchelf-edited) fail to
# load once stripped (numpy's OpenBLAS: "ELF load command address/offset not page-aligned"),
# so build.spec ships them as built; likewise the few bootstrap extension modules
# PyInstaller collects on its own, outside the spec's strip pass.
scrambled-eggs: unstripped-binary-or-object [opt/scrambled-eggs/_internal/*.libs/*]
scrambled-eggs: unstripped-binary-or-object [opt/scrambled-eggs/_internal/python3.11/lib-dynload/*]
"""


def _md5sums(stage: Path) -> str:
    """DEBIAN/md5sums: every regular file of the package (dpkg --verify uses it)."""
    lines = []
    for path in sorted(stage.rglob("*")):
        if path.is_file() and not path.is_symlink():
            digest = hashlib.md5(path.read_bytes(), usedforsecurity=False).hexdigest()
            lines.append(f"{digest}  {path.relative_to(stage).as_posix()}\n")
    return "".join(lines)


def build_deb(app: Path, out: Path, stage: Path, compression: str = "xz") -> Path:
    """A .deb of the one-folder app: /opt/scrambled-eggs, /usr/bin link, desktop entry,
    icons, AppStream metadata. Built with dpkg-deb, owned by root."""
    version = app_version()
    arch = deb_architecture()
    if stage.exists():
        shutil.rmtree(stage)
    opt = stage / INSTALL_DIR.lstrip("/")
    shutil.copytree(app, opt, symlinks=True)
    (stage / "usr" / "bin").mkdir(parents=True)
    (stage / "usr" / "bin" / APP_NAME).symlink_to(f"{INSTALL_DIR}/{APP_NAME}")
    share = stage / "usr" / "share"
    install_shared_files(share)
    _deb_docs(share / "doc" / APP_NAME, version)
    overrides = share / "lintian" / "overrides"
    overrides.mkdir(parents=True)
    (overrides / APP_NAME).write_text(LINTIAN_OVERRIDES, encoding="utf-8")
    _normalise_modes(stage)
    installed_kib = sum(p.lstat().st_size for p in stage.rglob("*")) // 1024 + 1
    depends = ", ".join([f"libc6 (>= {glibc_required(opt)})", *DEB_DEPENDS])
    control = stage / "DEBIAN"
    control.mkdir(mode=0o755)
    (control / "md5sums").write_text(_md5sums(stage), encoding="utf-8")
    (control / "md5sums").chmod(0o644)
    (control / "control").write_text(
        f"Package: {APP_NAME}\n"
        f"Version: {version}\n"
        f"Architecture: {arch}\n"
        f"Maintainer: {DEB_MAINTAINER}\n"
        f"Installed-Size: {installed_kib}\n"
        f"Depends: {depends}\n"
        "Section: net\n"
        "Priority: optional\n"
        "Description: serverless, end-to-end encrypted messenger and file sharer\n"
        " Scrambled Eggs is a desktop messenger with no server anywhere. Every copy of\n"
        " the app is a full node: it finds friends through a distributed hash table and\n"
        " the local network, talks to them directly, and keeps everything end-to-end\n"
        " encrypted, on the wire and on disk. It includes a headless daemon and a\n"
        " command-line client.\n",
        encoding="utf-8",
    )
    out.mkdir(parents=True, exist_ok=True)
    target = out / f"{APP_NAME}_{version}_{arch}.deb"
    env = dict(os.environ, SOURCE_DATE_EPOCH=str(_source_date()))
    run(
        ["dpkg-deb", "--root-owner-group", f"-Z{compression}", "--build", str(stage), str(target)],
        env=env,
    )
    return target


def build_tarball(app: Path, out: Path) -> Path:
    """A portable .tar.gz: unpack anywhere, run `scrambled-eggs/scrambled-eggs`; `share/`
    holds the desktop entry and icons to copy into ~/.local/share."""
    version = app_version()
    top = f"{APP_NAME}-{version}"
    out.mkdir(parents=True, exist_ok=True)
    target = out / f"{top}-linux-{os.uname().machine}.tar.gz"
    share = out / f".{top}-share"
    if share.exists():
        shutil.rmtree(share)
    install_shared_files(share)
    mtime = _source_date()

    def tidy(info: tarfile.TarInfo) -> tarfile.TarInfo:
        info.uid = info.gid = 0
        info.uname = info.gname = "root"
        info.mtime = mtime
        return info

    with tarfile.open(target, "w:gz", compresslevel=6) as tar:
        tar.add(app, arcname=f"{top}/{APP_NAME}", filter=tidy)
        tar.add(share, arcname=f"{top}/share", filter=tidy)
        readme = (
            f"{DISPLAY_NAME} {version}\n\n"
            f"Run:      ./{APP_NAME}/{APP_NAME}\n"
            f"Menu:     cp -r share/. ~/.local/share/ and put {APP_NAME}/{APP_NAME} on your "
            "PATH\n"
            "Links:    update-desktop-database ~/.local/share/applications (then clicking an "
            "eggs: invite link opens the app)\n"
            "Needs:    libgl1 libegl1 fontconfig-config (apt-get install them)\n"
        ).encode()
        info = tidy(tarfile.TarInfo(f"{top}/README.txt"))
        info.size, info.mode = len(readme), 0o644
        tar.addfile(info, io.BytesIO(readme))
    shutil.rmtree(share)
    return target


# --------------------------------------------------------------------------- Windows, macOS


def find_iscc() -> str:
    """The Inno Setup compiler: on PATH, or in its default install folders."""
    found = shutil.which("iscc") or shutil.which("ISCC")
    if found:
        return found
    for base in (os.environ.get("PROGRAMFILES(X86)"), os.environ.get("PROGRAMFILES")):
        candidate = Path(base or "C:/") / "Inno Setup 6" / "ISCC.exe"
        if candidate.is_file():
            return str(candidate)
    raise SystemExit("Inno Setup 6 (ISCC.exe) not found: install it, e.g. choco install innosetup")


def build_windows(dist: Path, work: Path) -> Path:
    """One-folder app, then the Inno Setup installer around it."""
    app = pyinstaller(dist, work)
    run(
        [
            find_iscc(),
            f"/DAppVersion={app_version()}",
            f"/DSourceDir={app}",
            f"/DOutputDir={dist}",
            str(PACKAGING / "windows" / "scrambled-eggs.iss"),
        ]
    )
    return dist / f"{APP_NAME}-{app_version()}-setup.exe"


def build_macos(dist: Path, work: Path) -> Path:
    """`Scrambled Eggs.app` (signed when MACOS_CODESIGN_IDENTITY is set), then a .dmg."""
    bundle = pyinstaller(dist, work)
    target = dist / f"{APP_NAME}-{app_version()}-macos-{os.uname().machine}.dmg"
    run(["bash", str(PACKAGING / "macos" / "build_dmg.sh"), str(bundle), str(target)])
    return target


# --------------------------------------------------------------------------- commands


def _render_icons() -> Path:
    sys.path.insert(0, str(ROOT))
    sys.path.insert(0, str(PACKAGING))
    from render_icons import render_all

    written = render_all()
    return written[0].parents[2]  # the hicolor theme folder


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and build one target."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument(
        "target",
        choices=[
            "icons",
            "linux-onedir",
            "linux-onefile",
            "deb",
            "tarball",
            "windows",
            "macos",
        ],
    )
    parser.add_argument("--dist", type=Path, default=ROOT / "dist", help="output folder")
    parser.add_argument(
        "--work", type=Path, default=ROOT / "build" / "pyinstaller", help="work folder"
    )
    parser.add_argument(
        "--app", type=Path, help="one-folder app to package (deb, tarball; default: DIST/...)"
    )
    parser.add_argument(
        "--deb-compression",
        choices=["xz", "gzip", "zstd"],
        default="xz",
        help="dpkg-deb compressor (xz: smallest; gzip: several times faster to build)",
    )
    args = parser.parse_args(argv)
    dist: Path = args.dist.absolute()
    work: Path = args.work.absolute()
    app: Path = (args.app or dist / APP_NAME).absolute()
    targets: dict[str, Callable[[], Path]] = {
        "icons": _render_icons,
        "linux-onedir": lambda: pyinstaller(dist, work / "onedir"),
        # its own folder: the one-file app has the one-folder app's name, and either
        # build would delete the other
        "linux-onefile": lambda: pyinstaller(dist / "onefile", work / "onefile", onefile=True),
        "deb": lambda: build_deb(
            ensure_onedir(app, work / "onedir"),
            dist,
            ROOT / "build" / "deb-root",
            args.deb_compression,
        ),
        "tarball": lambda: build_tarball(ensure_onedir(app, work / "onedir"), dist),
        "windows": lambda: build_windows(dist, work / "windows"),
        "macos": lambda: build_macos(dist, work / "macos"),
    }
    started = time.monotonic()
    result = targets[args.target]()
    print(f"{args.target}: {result} ({time.monotonic() - started:.1f} s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
