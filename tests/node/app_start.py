"""One start of the desktop app as the node layer sees it (no Qt), for
test_one_app_per_profile.py: `python app_start.py PROFILE [LINK] [--create NAME]`.

Prints "held" when this start holds the profile (the app, before its first-run or unlock
dialog), or "handed" when another start held it and took the link (or "come to the
front"). While holding it prints "link LINK" and "forward" for what later starts hand
over, and "created ADDRESS" once it made the profile (`--create`, as its first-run
dialog does); it ends when its stdin closes.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from app.node import api


def say(line: str) -> None:
    print(line, flush=True)


def keep_link(link: str) -> bool:
    """As the app at its dialog: the link is kept until its window is up."""
    say(f"link {link}")
    return False


async def main(argv: list[str]) -> int:
    root = Path(argv[0])
    create = argv[argv.index("--create") + 1] if "--create" in argv else None
    rest = [a for a in argv[1:] if a not in ("--create", create)]
    link = rest[0] if rest else None
    with api.opening_links(root, keep_link, lambda: say("forward")):
        async with api.one_app(root, link) as mine:
            if not mine:
                say("handed")
                return 0
            say("held")
            if create is not None:
                made = await asyncio.to_thread(api.init_profile, root, create, None)
                say(f"created {made.whoami.address}")
            await asyncio.to_thread(sys.stdin.read)  # until the test closes it
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1:])))
