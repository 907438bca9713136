"""The .deb made from the frozen app: control fields, dependencies, files and lintian."""

from __future__ import annotations

import configparser
import shutil
import subprocess
from pathlib import Path

import pytest

from app import __version__

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]

ICON_SIZES = (16, 24, 32, 48, 64, 128, 256, 512)


def dpkg_deb(*args: str) -> str:
    return subprocess.run(
        ["dpkg-deb", *args], capture_output=True, text=True, check=True, timeout=300
    ).stdout


def control_fields(deb: Path) -> dict[str, str]:
    fields: dict[str, str] = {}
    for line in dpkg_deb("--field", str(deb)).splitlines():
        if line[:1].isspace() or ":" not in line:
            continue
        key, _, value = line.partition(":")
        fields[key] = value.strip()
    return fields


def contents(deb: Path) -> dict[str, str]:
    """Path (without the leading ".") -> the `dpkg-deb --contents` line for it."""
    entries = {}
    for line in dpkg_deb("--contents", str(deb)).splitlines():
        path = line.split(None, 5)[5].split(" -> ")[0]
        entries[path.lstrip(".")] = line
    return entries


def test_control_fields_and_dependencies(deb_package: Path) -> None:
    fields = control_fields(deb_package)
    assert fields["Package"] == "scrambled-eggs"
    assert fields["Version"] == __version__
    assert fields["Architecture"] == "amd64"
    assert fields["Section"] == "net"
    assert int(fields["Installed-Size"]) > 50_000  # KiB: the whole frozen app is in it
    depends = [d.strip() for d in fields["Depends"].split(",")]
    names = [d.split()[0] for d in depends]
    # What the frozen app needs from a bare system, and nothing more.
    assert names == ["libc6", "libgl1", "libegl1", "fontconfig-config"]
    assert depends[0].startswith("libc6 (>= 2.")
    assert "Description" in fields and fields["Maintainer"]
    assert " md5sums" in dpkg_deb("--info", str(deb_package))


def test_files_desktop_entry_and_icons(deb_package: Path, tmp_path: Path) -> None:
    files = contents(deb_package)
    assert "/opt/scrambled-eggs/scrambled-eggs" in files
    assert files["/opt/scrambled-eggs/scrambled-eggs"].startswith("-rwxr-xr-x root/root")
    assert "/opt/scrambled-eggs/_internal/resources/icons/scrambled-eggs.svg" in files
    link = files["/usr/bin/scrambled-eggs"]
    assert link.startswith("lrwxrwxrwx") and link.endswith("-> /opt/scrambled-eggs/scrambled-eggs")
    for size in ICON_SIZES:
        assert f"/usr/share/icons/hicolor/{size}x{size}/apps/scrambled-eggs.png" in files
    assert "/usr/share/icons/hicolor/scalable/apps/scrambled-eggs.svg" in files
    assert "/usr/share/metainfo/org.scrambledeggs.ScrambledEggs.metainfo.xml" in files
    assert "/usr/share/doc/scrambled-eggs/copyright" in files
    assert all(" root/root " in line for line in files.values())

    dpkg_deb("--extract", str(deb_package), str(tmp_path))
    entry = configparser.ConfigParser(interpolation=None)
    entry.optionxform = str  # type: ignore[assignment,method-assign]
    entry.read(tmp_path / "usr/share/applications/scrambled-eggs.desktop", encoding="utf-8")
    desktop = entry["Desktop Entry"]
    assert desktop["Type"] == "Application" and desktop["Name"] == "Scrambled Eggs"
    assert desktop["Exec"].split()[0] == "scrambled-eggs"  # the /usr/bin link
    # a clicked eggs: invite link comes as the one argument (%u): the app takes it
    assert desktop["Exec"] == "scrambled-eggs %u"
    assert "x-scheme-handler/eggs" in desktop["MimeType"].split(";")
    assert desktop["Icon"] == "scrambled-eggs"  # found in the hicolor theme installed above
    assert "InstantMessaging" in desktop["Categories"].split(";")
    png = tmp_path / "usr/share/icons/hicolor/256x256/apps/scrambled-eggs.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    if shutil.which("desktop-file-validate"):
        validated = subprocess.run(
            [
                "desktop-file-validate",
                str(tmp_path / "usr/share/applications/scrambled-eggs.desktop"),
            ],
            capture_output=True,
            text=True,
        )
        assert validated.returncode == 0 and not validated.stdout.strip(), validated.stdout
    if shutil.which("appstreamcli"):
        metainfo = tmp_path / "usr/share/metainfo/org.scrambledeggs.ScrambledEggs.metainfo.xml"
        validated = subprocess.run(
            ["appstreamcli", "validate", "--no-net", str(metainfo)], capture_output=True, text=True
        )
        assert validated.returncode == 0, validated.stdout
        assert f'<release version="{__version__}"' in metainfo.read_text(encoding="utf-8")


def test_lintian_reports_no_errors(deb_package: Path) -> None:
    if shutil.which("lintian") is None:
        pytest.skip("lintian is not installed (apt-get install lintian)")
    done = subprocess.run(
        ["lintian", "--no-tag-display-limit", str(deb_package)],
        capture_output=True,
        text=True,
        timeout=900,
    )
    errors = [line for line in done.stdout.splitlines() if line.startswith("E:")]
    assert not errors, "\n".join(errors)
    assert done.returncode == 0, done.stdout + done.stderr
