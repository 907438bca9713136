"""Entry point: `scrambled-eggs` (or `python -m app`).

With a subcommand it is the command-line client; without one it opens the window.
"""

from __future__ import annotations

import os
import sys

# onnxruntime phones home unless this is set before its first import.
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")


def main(argv: list[str] | None = None) -> int:
    """Dispatch to the GUI or the CLI."""
    from app import cli

    args = cli.build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    if args.selftest:
        from app.selftest import run_selftest

        return run_selftest()
    if args.command is None:
        from app.gui.app import run_gui

        return run_gui(args.profile)
    return cli.run(args)


if __name__ == "__main__":
    sys.exit(main())
