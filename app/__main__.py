"""Entry point: `scrambled-eggs` (or `python -m app`).

With a subcommand it is the command-line client; without one it opens the window. An
invite link instead of a subcommand (`scrambled-eggs eggs:...`, how desktops open a
clicked link) opens the Add contact dialog with it, in the running window if there is one.
"""

from __future__ import annotations

import os
import sys

# onnxruntime phones home unless this is set before its first import.
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")


def main(argv: list[str] | None = None) -> int:
    """Dispatch to the GUI or the CLI."""
    from app import cli

    parser = cli.build_parser()
    rest, link = cli.link_argument(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(rest)
    if link is not None:
        if args.command is not None or args.selftest:
            parser.error("an invite link is opened alone: scrambled-eggs [--profile DIR] LINK")
        opened = cli.open_link(args, link)
        if opened is not None:
            return opened
    if args.selftest:
        from app.selftest import run_selftest

        return run_selftest()
    if args.command is None:
        from app.gui.app import run_gui

        return run_gui(args.profile, link)
    return cli.run(args)


if __name__ == "__main__":
    sys.exit(main())
