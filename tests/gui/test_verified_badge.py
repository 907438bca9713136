"""The verified badge is drawn on the contact's avatar, where no name is ever drawn: a
peer chooses their name, and "Bob ✅" beside an unverified contact's avatar read exactly
like a verified Bob (the badge followed the name)."""

from __future__ import annotations

from PySide6.QtCore import QRect
from PySide6.QtGui import QColor, QImage, QPainter
from PySide6.QtWidgets import QStyleOptionViewItem
from pytestqt.qtbot import QtBot

from app.gui.models.contacts import ContactModel
from app.gui.theme import colors
from app.gui.views.contact_delegate import AVATAR, ROW_HEIGHT, ContactDelegate
from app.node import api

WIDTH = 320
AVATAR_LEFT = 6 + 10  # the card's margin and the avatar's
TEXT_LEFT = AVATAR_LEFT + AVATAR + 12
TICKS = ("✅", "✔", "✔️", "☑", "🟢✔")


def _row(contact: api.Contact) -> QImage:
    model = ContactModel()
    model.set_contacts([contact])
    image = QImage(WIDTH, ROW_HEIGHT, QImage.Format.Format_ARGB32)
    image.fill(QColor(colors().base))
    painter = QPainter(image)
    option = QStyleOptionViewItem()
    option.rect = QRect(0, 0, WIDTH, ROW_HEIGHT)
    ContactDelegate().paint(painter, option, model.index(0))
    painter.end()
    return image


def _left_of_the_text(image: QImage) -> list[int]:
    """The pixels of the avatar's column, which the name can't reach."""
    return [image.pixel(x, y) for x in range(int(TEXT_LEFT) - 4) for y in range(ROW_HEIGHT)]


def _greens(image: QImage, left: int, right: int) -> int:
    green = QColor(colors().verified).rgb()
    return sum(
        1 for x in range(left, right) for y in range(ROW_HEIGHT) if image.pixel(x, y) == green
    )


def test_a_name_ending_in_a_tick_does_not_draw_the_verified_badge(qtbot: QtBot) -> None:
    address = "b" * 52  # the same avatar colour and initials for all
    verified = _row(api.Contact("Bob", address, verified=True))
    plain = _row(api.Contact("Bob", address, verified=False))
    assert _greens(verified, 0, int(TEXT_LEFT)) > 60  # the badge, on the avatar
    assert _left_of_the_text(verified) != _left_of_the_text(plain)
    for tick in TICKS:
        impostor = _row(api.Contact(f"Bob {tick}", address, verified=False))
        # what the name holds changes nothing where the badge is drawn
        assert _left_of_the_text(impostor) == _left_of_the_text(plain), tick
        assert _greens(impostor, 0, int(TEXT_LEFT)) == 0, tick


def test_the_verified_badge_is_not_drawn_after_the_name(qtbot: QtBot) -> None:
    """After the name is where a name's own last characters are: nothing of the app's
    there (green of the verified badge) for a verified contact either."""
    verified = _row(api.Contact("Bob", "b" * 52, verified=True))
    assert _greens(verified, int(TEXT_LEFT), WIDTH) == 0
