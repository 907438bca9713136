"""The packaging files agree with the app and with their formats (fast: nothing is built)."""

from __future__ import annotations

import ast
import configparser
import json
import os
import plistlib
import re
import shutil
import struct
import subprocess
import sys
from pathlib import Path

from app import __version__

ROOT = Path(__file__).resolve().parents[2]
PACKAGING = ROOT / "packaging"
SPEC = ROOT / "build.spec"
APP_ID = "org.scrambledeggs.ScrambledEggs"


def spec_constant(name: str) -> object:
    """A literal assigned at the top level of build.spec."""
    for node in ast.parse(SPEC.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == name for t in node.targets
        ):
            return ast.literal_eval(node.value)
    raise AssertionError(f"build.spec assigns no {name}")


def test_spec_keeps_every_qt_module_the_app_imports_and_excludes_the_rest() -> None:
    used = set()
    for path in (ROOT / "app").rglob("*.py"):
        used |= set(re.findall(r"PySide6\.(Qt\w+)", path.read_text(encoding="utf-8")))
    kept, unused = spec_constant("QT_KEPT"), spec_constant("QT_UNUSED")
    assert isinstance(kept, set) and isinstance(unused, list)
    assert used <= kept, f"add {sorted(used - kept)} to QT_KEPT in build.spec"
    assert not used & set(unused)
    for heavy in ("QtWebEngineCore", "QtQuick", "QtQml", "Qt3DCore", "QtMultimedia", "QtPdf"):
        assert heavy in unused


def test_spec_bundles_resources_where_the_app_looks_for_them() -> None:
    source = SPEC.read_text(encoding="utf-8")
    (function,) = [
        node
        for node in ast.parse(source).body
        if isinstance(node, ast.FunctionDef) and node.name == "bundled_resources"
    ]
    namespace: dict[str, object] = {"ROOT": ROOT, "Path": Path}
    exec(compile(ast.Module([function], []), str(SPEC), "exec"), namespace)
    datas = namespace["bundled_resources"]()  # type: ignore[operator]
    bundled = {(Path(src).name, dest) for src, dest in datas}
    assert ("scrambled-eggs.svg", "resources/icons") in bundled
    for theme in (ROOT / "resources" / "themes").glob("*.qss"):
        assert (theme.name, "resources/themes") in bundled
    assert all(dest.startswith("resources/") for _, dest in bundled)
    lookup = (ROOT / "app" / "gui" / "resources.py").read_text(encoding="utf-8")
    assert '"_MEIPASS"' in lookup and 'Path(bundle) / "resources"' in lookup
    assert "ort_telemetry.py" in source
    hook = (PACKAGING / "rthooks" / "ort_telemetry.py").read_text(encoding="utf-8")
    assert 'os.environ["ORT_DISABLE_TELEMETRY"] = "1"' in hook


def test_icons_are_rendered_for_every_platform() -> None:
    svg = (ROOT / "resources" / "icons" / "scrambled-eggs.svg").read_bytes()
    scalable = PACKAGING / "linux" / "icons" / "hicolor" / "scalable" / "apps"
    assert (scalable / "scrambled-eggs.svg").read_bytes() == svg, (
        "the app icon changed: run `python packaging/build.py icons`"
    )
    for size in (16, 24, 32, 48, 64, 128, 256, 512):
        png = PACKAGING / "linux" / "icons" / "hicolor" / f"{size}x{size}" / "apps"
        data = (png / "scrambled-eggs.png").read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n"
        assert struct.unpack(">II", data[16:24]) == (size, size)
    ico = (PACKAGING / "windows" / "scrambled-eggs.ico").read_bytes()
    reserved, kind, count = struct.unpack("<HHH", ico[:6])
    assert (reserved, kind) == (0, 1) and count >= 5
    for i in range(count):
        _, _, _, _, _, _, size, offset = struct.unpack("<BBBBHHII", ico[6 + 16 * i : 22 + 16 * i])
        assert ico[offset : offset + 8] == b"\x89PNG\r\n\x1a\n" and offset + size <= len(ico)
    icns = (PACKAGING / "macos" / "scrambled-eggs.icns").read_bytes()
    assert icns[:4] == b"icns" and struct.unpack(">I", icns[4:8])[0] == len(icns)
    kinds, at = [], 8
    while at < len(icns):
        kind, length = icns[at : at + 4], struct.unpack(">I", icns[at + 4 : at + 8])[0]
        assert icns[at + 8 : at + 16] == b"\x89PNG\r\n\x1a\n"
        kinds.append(kind)
        at += length
    assert at == len(icns) and {b"ic07", b"ic08", b"ic09", b"ic10"} <= set(kinds)


def desktop_entry(path: Path) -> configparser.SectionProxy:
    """The [Desktop Entry] group of a .desktop file."""
    entry = configparser.ConfigParser(interpolation=None)
    entry.optionxform = str  # type: ignore[assignment,method-assign]
    entry.read(path, encoding="utf-8")
    return entry["Desktop Entry"]


def test_desktop_entry_and_metainfo_validate() -> None:
    desktop = PACKAGING / "linux" / "scrambled-eggs.desktop"
    metainfo = PACKAGING / "linux" / f"{APP_ID}.metainfo.xml"
    text = metainfo.read_text(encoding="utf-8")
    assert f"<id>{APP_ID}</id>" in text
    assert f'<release version="{__version__}"' in text, "add a <release> for this version"
    assert '<launchable type="desktop-id">scrambled-eggs.desktop</launchable>' in text
    assert "<mediatype>x-scheme-handler/eggs</mediatype>" in text
    entry = desktop_entry(desktop)
    # a clicked eggs: link runs `scrambled-eggs LINK`, which the app takes (app/cli.py)
    assert entry["Exec"] == "scrambled-eggs %u"
    assert entry["MimeType"].split(";") == ["x-scheme-handler/eggs", ""]
    if shutil.which("desktop-file-validate"):
        done = subprocess.run(
            ["desktop-file-validate", str(desktop)], capture_output=True, text=True
        )
        assert done.returncode == 0 and not done.stdout.strip(), done.stdout
    if shutil.which("appstreamcli"):
        done = subprocess.run(
            ["appstreamcli", "validate", "--no-net", str(metainfo)], capture_output=True, text=True
        )
        assert done.returncode == 0, done.stdout


def test_flatpak_manifest_matches_the_app() -> None:
    manifest = PACKAGING / "linux" / "flatpak" / f"{APP_ID}.yml"
    text = manifest.read_text(encoding="utf-8")
    try:
        import yaml  # type: ignore[import-untyped]
    except ImportError:
        data = None
    else:
        data = yaml.safe_load(text)
    if data is not None:
        assert data["id"] == APP_ID and data["command"] == "scrambled-eggs"
        assert data["rename-desktop-file"] == "scrambled-eggs.desktop"
        assert "--share=network" in data["finish-args"]
        (module,) = data["modules"]
        (source,) = module["sources"]
        path = source["path"]
    else:  # no YAML parser here: check the same facts in the text
        assert re.search(rf"^id: {re.escape(APP_ID)}$", text, re.MULTILINE)
        found = re.search(r"^\s+path: (\S+)$", text, re.MULTILINE)
        assert found is not None
        path = found.group(1)
    assert path.endswith(f"scrambled-eggs-{__version__}-linux-x86_64.tar.gz")
    assert (manifest.parent / path).resolve().parent == ROOT / "dist"


def test_macos_plists_and_windows_files() -> None:
    with (PACKAGING / "macos" / "Info.plist").open("rb") as handle:
        info = plistlib.load(handle)
    assert info["CFBundleIdentifier"] == APP_ID and info["NSHighResolutionCapable"] is True
    with (PACKAGING / "macos" / "entitlements.plist").open("rb") as handle:
        assert isinstance(plistlib.load(handle), dict)
    template = (PACKAGING / "windows" / "version_info.txt.in").read_text(encoding="utf-8")
    filled = template.format(
        version=__version__, version_tuple="0, 1, 0, 0", name="Scrambled Eggs", exe="x"
    )
    call = ast.parse(filled, mode="eval").body
    assert isinstance(call, ast.Call) and ast.unparse(call.func) == "VSVersionInfo"
    iss = (PACKAGING / "windows" / "scrambled-eggs.iss").read_text(encoding="utf-8")
    for relative in re.findall(r"^(?:LicenseFile|SetupIconFile)=(.+)$", iss, re.MULTILINE):
        assert (PACKAGING / "windows" / relative.replace("\\", "/")).is_file(), relative
    assert "{#AppVersion}" in iss and "scrambled-eggs.exe" in iss


def test_every_platform_registers_the_eggs_link_scheme() -> None:
    """A clicked `eggs:` invite link opens the app: Windows runs the command registered
    for the URL protocol with the link as its argument, macOS hands it to the running
    app (a QFileOpenEvent, app/gui/app.py) for the scheme the bundle declares."""
    with (PACKAGING / "macos" / "Info.plist").open("rb") as handle:
        info = plistlib.load(handle)
    (url_type,) = info["CFBundleURLTypes"]
    assert url_type["CFBundleURLSchemes"] == ["eggs"]
    assert url_type["CFBundleURLName"].startswith(APP_ID)
    assert url_type["CFBundleTypeRole"] in ("Viewer", "Editor", "Shell", "None")
    gui = (ROOT / "app" / "gui" / "app.py").read_text(encoding="utf-8")
    assert "QEvent.Type.FileOpen" in gui and "installEventFilter" in gui
    iss = (PACKAGING / "windows" / "scrambled-eggs.iss").read_text(encoding="utf-8")
    section = iss.split("[Registry]", 1)[1].split("\n[", 1)[0]
    entries = [
        dict(
            (key.strip(), value.strip())
            for key, _, value in (part.partition(":") for part in line.split("; "))
        )
        for line in section.splitlines()
        if line.startswith("Root:")
    ]
    values = {(e["Subkey"], e["ValueName"]): e["ValueData"] for e in entries}
    assert all(e["Root"] == "HKA" for e in entries)  # HKCU per user, HKLM for all users
    key = '"Software\\Classes\\eggs"'
    assert values[(key, '"URL Protocol"')] == '""'
    assert values[(key, '""')].startswith('"URL:')
    command = values[('"Software\\Classes\\eggs\\shell\\open\\command"', '""')]
    # Inno doubles quotes inside a quoted value: the exe, then the link, each quoted
    assert command == '"""{app}\\{#AppExe}"" ""%1"""'
    assert [e for e in entries if e["Subkey"] == key and "uninsdeletekey" in e.get("Flags", "")]


def test_build_script_lists_every_target() -> None:
    done = subprocess.run(
        [sys.executable, str(PACKAGING / "build.py"), "--help"], capture_output=True, text=True
    )
    assert done.returncode == 0
    for target in ("icons", "linux-onedir", "linux-onefile", "deb", "tarball", "windows", "macos"):
        assert target in done.stdout


def test_spec_excludes_no_module_the_app_imports() -> None:
    """Every module build.spec leaves out (NOT_AT_RUNTIME, NOT_REACHED) stays unimported when
    every app module and the libraries it runs on are imported, in a fresh interpreter."""
    tooling, not_reached = spec_constant("NOT_AT_RUNTIME"), spec_constant("NOT_REACHED")
    assert isinstance(tooling, list) and isinstance(not_reached, list)
    excluded = [*tooling, *not_reached]
    assert "numpy.random" in excluded and "trio" in excluded
    modules = sorted(
        ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        for path in (ROOT / "app").rglob("*.py")
        if path.name != "__main__.py"
    )
    libraries = ["aiortc", "av", "numpy", "onnxruntime", "segno"]
    script = (
        "import importlib, json, sys\n"
        f"for name in {[*modules, *libraries]!r}:\n"
        "    importlib.import_module(name)\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), "ORT_DISABLE_TELEMETRY": "1"},
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    loaded = json.loads(done.stdout)
    imported = sorted(
        name for name in loaded for gone in excluded if name == gone or name.startswith(gone + ".")
    )
    assert not imported, f"build.spec excludes modules the app imports: {imported}"


def test_spec_keeps_the_qt_image_formats_the_app_reads() -> None:
    """The app reads SVG (the svg plugin) and PNG (built into QtGui) for its own
    resources, and JPEG, GIF and WebP (their plugins) for pictures of invite QR codes;
    build.spec drops every other image-format plugin, so no resource or source file may
    use another format."""
    kept = spec_constant("QT_IMAGE_FORMATS_KEPT")
    assert kept == {"svg", "jpeg", "gif", "webp"}
    readable = {"svg", "png"}
    for folder in ("icons", "themes"):
        for path in (ROOT / "resources" / folder).rglob("*"):
            if path.is_file() and path.suffix != ".qss":
                assert path.suffix[1:].lower() in readable, f"{path}: no Qt plugin bundled"
    for sheet in (ROOT / "resources" / "themes").glob("*.qss"):
        for image in re.findall(r"url\(([^)]+)\)", sheet.read_text(encoding="utf-8")):
            assert image.rsplit(".", 1)[-1].lower() in readable, f"{sheet.name}: {image}"
    other_formats = re.compile(r"""["']\.?(tiff?|ico|icns|tga|wbmp)["']""", re.IGNORECASE)
    for path in (ROOT / "app").rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        found = other_formats.search(text)
        assert found is None, f"{path}: reads {found.group(0)}? add its plugin to build.spec"
        assert "QImageReader" not in text and "QMovie" not in text, path
