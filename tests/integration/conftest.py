"""Integration tier: helper modules of this folder (cli_helpers, ipfs_daemon) are
imported by plain name."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
