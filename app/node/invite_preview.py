"""What an invite link holds, read and verified without adding anyone (the Add contact
dialog shows the name and fingerprint before the user confirms)."""

from __future__ import annotations

from app.core.errors import InvalidInvite
from app.core.identity import fingerprint, parse_invite
from app.node.api import BadInvite, InvitePreview
from app.node.service import _as_pasted, _invite_problem


def preview(link: str) -> InvitePreview:
    """The verified contents of `link` (shape-checked by the caller); `BadInvite` with
    the sentence `NodeService.add_contact` gives for the same link."""
    try:
        invite = parse_invite(_as_pasted(link))
    except InvalidInvite as exc:
        raise BadInvite(_invite_problem(exc)) from None
    return InvitePreview(invite.name, invite.address, fingerprint(invite.identity))
