#!/usr/bin/env bash
# Set up Scrambled Eggs on a fresh Debian/Ubuntu machine, then run it or test it.
#
#   bash tools/setup.sh run [ARGS...]   install everything, then launch the app
#   bash tools/setup.sh test [PYTEST ARGS...]
#                                       install everything, then run every check and test
#
# System packages are installed with apt-get when run as root; otherwise the exact
# apt-get line is printed and the script stops. Python packages go into ./.venv.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

mode="${1:-run}"
shift || true

# Qt (offscreen and on a real X11 display), the virtual display the GUI tests use.
apt_packages=(
  libglib2.0-0 libgl1 libegl1 libxkbcommon0 libfontconfig1 libfreetype6 libdbus-1-3
  libxkbcommon-x11-0 libxcb-cursor0 libxcb-icccm4 libxcb-keysyms1 libxcb-shape0
  libxcb-randr0 libxcb-render-util0 libxcb-image0 libxcb-xinerama0 libxcb-xkb1
)
if [[ "$mode" == "test" ]]; then
  # virtual display + screenshots (GUI end-to-end), network namespaces (multi-host tests),
  # things no one here wrote to interoperate with: Chromium (WebRTC), coturn (TURN)
  apt_packages+=(xvfb xauth imagemagick xdotool iproute2 nftables chromium coturn)
  # packaging checks: desktop entry and AppStream validators, lintian for the .deb
  apt_packages+=(desktop-file-utils appstream lintian)
  # Node.js + npm run the JavaScript IPFS daemon used by the file-sharing tests
  command -v npm >/dev/null 2>&1 || apt_packages+=(nodejs npm)
fi

missing=()
if command -v dpkg-query >/dev/null 2>&1; then
  for pkg in "${apt_packages[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || missing+=("$pkg")
  done
else
  echo "note: not a Debian/Ubuntu system; install the equivalents of: ${apt_packages[*]}" >&2
fi
if ((${#missing[@]})); then
  if [[ "$(id -u)" == "0" ]]; then
    echo "Installing system packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "These system packages are missing. Install them, then run this again:" >&2
    echo "  sudo apt-get install -y --no-install-recommends ${missing[*]}" >&2
    exit 1
  fi
fi

python="${PYTHON:-python3}"
if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  echo "Scrambled Eggs needs Python 3.11 or newer (set PYTHON=/path/to/python3.11)." >&2
  exit 1
fi
if [[ ! -x .venv/bin/python ]]; then
  if ! "$python" -m venv .venv 2>/dev/null; then
    rm -rf .venv
    if [[ "$(id -u)" == "0" ]] && command -v apt-get >/dev/null; then
      apt-get install -y -qq --no-install-recommends python3-venv >/dev/null
      "$python" -m venv .venv
    else
      echo "Python's venv module is missing: sudo apt-get install -y python3-venv" >&2
      exit 1
    fi
  fi
fi
.venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip
.venv/bin/python -m pip install -q --disable-pip-version-check -e ".[test]"

case "$mode" in
  run)
    if [[ -z "${DISPLAY:-}" && -z "${WAYLAND_DISPLAY:-}" && "$(uname)" == "Linux" ]]; then
      echo "No display found. To run without a window: .venv/bin/scrambled-eggs daemon" >&2
      exit 1
    fi
    exec .venv/bin/scrambled-eggs "$@"
    ;;
  test)
    export ORT_DISABLE_TELEMETRY=1
    echo "== ruff";          .venv/bin/ruff check .
    echo "== ruff format";   .venv/bin/ruff format --check .
    echo "== mypy";          .venv/bin/mypy
    echo "== import-linter"; .venv/bin/lint-imports
    # pytest exits 5 when it collected no tests: that fails here like any other error.
    if (($#)); then
      exec .venv/bin/python -m pytest -q -ra "$@"
    fi
    # The Qt tiers run in their own process so no Qt state (QApplication, event loop,
    # native threads) outlives them into the network tests.
    echo "== pytest (core, node, integration, packaging)"
    .venv/bin/python -m pytest -q -ra --ignore=tests/gui --ignore=tests/e2e
    echo "== pytest (gui)"
    .venv/bin/python -m pytest -q -ra tests/gui
    echo "== pytest (e2e: real app processes under Xvfb)"
    exec .venv/bin/python -m pytest -q -ra tests/e2e
    ;;
  *)
    echo "usage: bash tools/setup.sh run|test [ARGS...]" >&2
    exit 2
    ;;
esac
