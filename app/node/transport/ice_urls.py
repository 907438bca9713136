"""STUN and TURN server addresses as the user writes them (`ice_servers`).

``stun:HOST[:PORT]``, ``turn:USER:PASSWORD@HOST[:PORT][?transport=udp|tcp]`` and
``turns:USER:PASSWORD@HOST[:PORT][?transport=tcp]``; the password may hold ``@`` and
``:`` (the host is what follows the last ``@``, the user what precedes the first ``:``).

One parser serves both the check when a setting is changed and the list handed to
aiortc, and it accepts only what aiortc 1.16 / aioice can use: before, an entry aiortc
can't parse (``stun:u:p@host``, ``turn:u:p@[::1]``, a space after the host) was saved and
then made every WebRTC offer or answer raise ``ValueError: malformed uri``; one it
silently drops (a second TURN server, ``?transport=sctp``, a TURN server without a
password) was saved and never used. aiortc takes one STUN and one TURN server (the first
of each), so a list with two of a kind is refused rather than half-used.

Sentences about an entry never hold its password (`shown`): they reach logs and
screens.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass

from .base import IceServer

log = logging.getLogger(__name__)

SCHEMES = ("stun", "turn", "turns")
_TRANSPORTS = {"stun": (), "turn": ("udp", "tcp"), "turns": ("tcp",)}
_HOST = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9_.-]*[A-Za-z0-9])?")
HIDDEN = "•••"
"""What a password is shown as."""
FORMS = "stun:HOST:PORT or turn:USER:PASSWORD@HOST:PORT"


class BadIceUrl(ValueError):
    """An entry that is no usable STUN/TURN server address: `str()` names it (without
    its password) and says why; `reason` says only why (for the log)."""

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(f"{name}{reason}")
        self.reason = reason.lstrip(": ")


@dataclass(frozen=True)
class IceUrl:
    """One parsed entry."""

    scheme: str
    host: str
    port: int | None
    transport: str | None
    username: str | None
    password: str | None

    @property
    def relay(self) -> bool:
        """A TURN server (as opposed to STUN)."""
        return self.scheme != "stun"

    def url(self) -> str:
        """The URL aiortc gets: without the credentials, which travel apart."""
        port = "" if self.port is None else f":{self.port}"
        query = "" if self.transport is None else f"?transport={self.transport}"
        return f"{self.scheme}:{self.host}{port}{query}"

    def server(self) -> IceServer:
        """The `IceServer` for the WebRTC configuration."""
        return IceServer((self.url(),), self.username, self.password)


def shown(text: str) -> str:
    """`text` as it may be shown or logged: a password before the host replaced."""
    if "@" not in text:
        return text
    head, _, where = text.rpartition("@")
    scheme, colon, creds = head.partition(":")
    user = creds.partition(":")[0] if colon else ""
    if colon and scheme.strip().lower() in SCHEMES and user and ":" in creds:
        return f"{scheme}:{user}:{HIDDEN}@{where}"
    return f"{HIDDEN}@{where}"


def parse_ice_url(text: str) -> IceUrl:
    """Parse one entry; `BadIceUrl` with a sentence (naming it without its password)."""
    name = repr(shown(text))
    scheme, colon, rest = text.partition(":")
    scheme = scheme.lower()
    if not colon or scheme not in SCHEMES or rest.startswith("//"):
        raise BadIceUrl(name, f" is not a STUN or TURN server address ({FORMS}).")
    creds, at, where = rest.rpartition("@")
    if at and scheme == "stun":
        raise BadIceUrl(name, ": a STUN server takes no user name or password (stun:HOST:PORT).")
    username = password = None
    if scheme != "stun":
        username, _, password = creds.partition(":")
        if not username or not password:
            raise BadIceUrl(
                name,
                f": a TURN server needs a user name and a password "
                f"({scheme}:USER:PASSWORD@HOST:PORT).",
            )
        if any(c.isspace() for c in username):
            raise BadIceUrl(name, ": the user name holds a space.")
        if password == HIDDEN:  # copied from `settings` or the window, which hide it
            raise BadIceUrl(
                name,
                f": the password is hidden ({HIDDEN}); type the password itself "
                "(`settings --show-secrets` or the window's Show passwords show the one "
                "the profile keeps; an entry changed by hand in config.json has none).",
            )
    host_port, question, query = where.partition("?")
    transport = _transport(name, scheme, query) if question else None
    if host_port.startswith("[") or host_port.count(":") > 1:
        raise BadIceUrl(
            name,
            ": an IPv6 address can't be used for a STUN or TURN server here; "
            "give its host name or IPv4 address.",
        )
    host, colon, port_text = host_port.partition(":")
    if not _HOST.fullmatch(host):
        raise BadIceUrl(name, f" has no valid host name ({FORMS}).")
    port = None
    if colon:
        if not (port_text.isascii() and port_text.isdigit() and 0 < int(port_text) < 65536):
            raise BadIceUrl(name, " has no valid port (1 to 65535).")
        port = int(port_text)
    return IceUrl(scheme, host, port, transport, username, password)


def _transport(name: str, scheme: str, query: str) -> str:
    key, _, value = query.partition("=")
    allowed = _TRANSPORTS[scheme]
    if key == "transport" and value in allowed:
        return value
    if not allowed:
        raise BadIceUrl(name, ": a STUN server address takes no '?' part.")
    return _bad_transport(name, scheme, allowed)


def _bad_transport(name: str, scheme: str, allowed: tuple[str, ...]) -> str:
    choices = " or ".join(f"?transport={t}" for t in allowed)
    raise BadIceUrl(name, f": a {scheme}: server takes only {choices} after the port.")


def ice_list_problems(texts: Sequence[str]) -> list[str]:
    """One sentence per entry that can't be used, and one if a kind is listed twice."""
    problems: list[str] = []
    kinds: dict[bool, list[str]] = {False: [], True: []}
    for text in texts:
        try:
            parsed = parse_ice_url(text)
        except BadIceUrl as exc:
            problems.append(str(exc))
            continue
        kinds[parsed.relay].append(shown(text))
    for relay, listed in kinds.items():
        if len(listed) > 1:
            kind = "TURN" if relay else "STUN"
            problems.append(
                f"Only one {kind} server can be used (WebRTC here takes the first and "
                f"ignores the rest): keep one of {', '.join(map(repr, listed))}."
            )
    return problems


def ice_servers_of(texts: Sequence[str]) -> tuple[IceServer, ...]:
    """The servers for `RTCConfiguration(iceServers=...)`: an explicit, possibly empty list.

    Settings are checked when changed, but `config.json` may be edited by hand: an entry
    that can't be used is left out (and logged without its password) rather than handed
    to aiortc, where it would fail every WebRTC connection; of a kind listed twice, the
    first is kept, as aiortc would."""
    servers: list[IceServer] = []
    seen: set[bool] = set()
    for number, text in enumerate(texts, 1):
        try:
            parsed = parse_ice_url(text)
        except BadIceUrl as exc:
            log.warning("ignoring ice_servers entry %d: %s", number, exc.reason)
            continue
        if parsed.relay in seen:
            log.warning("ignoring a second %s server", "TURN" if parsed.relay else "STUN")
            continue
        seen.add(parsed.relay)
        servers.append(parsed.server())
    return tuple(servers)
