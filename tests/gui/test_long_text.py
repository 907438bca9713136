"""Hostile text in a bubble: a 64 KiB message without a space (a peer may send one) took
0.7 s to lay out, at every repaint of the conversation (a scroll step, a hover, a
transfer's progress): the window froze while it was on screen."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from gui_helpers import PASSPHRASE, wait_for
from PySide6.QtCore import QPointF, QRect
from PySide6.QtGui import QColor, QFont, QImage, QPainter, QTextLayout
from PySide6.QtWidgets import QAbstractItemView, QStyleOptionViewItem
from pytestqt.qtbot import QtBot

from app.gui.app import GuiSession
from app.gui.main_window import MainWindow
from app.gui.views import message_delegate
from app.gui.views.painting import (
    LINE_SEPARATOR,
    ZERO_WIDTH_SPACE,
    lay_out,
    text_layout,
    with_break_opportunities,
    with_line_separators,
)
from app.node import api

FAMILY = "\U0001f468\u200d\U0001f469\u200d\U0001f467\u200d\U0001f466"  # one grapheme
ZALGO = "Z\u0337\u0321\u031ba\u0336\u0327\u035d"  # two graphemes


def test_only_long_words_get_break_opportunities_between_whole_graphemes() -> None:
    short = "a" * 200 + " and an ordinary sentence"
    assert with_break_opportunities(short) == short
    for word, grapheme in (("x" * 300, "x"), (FAMILY * 60, FAMILY), (ZALGO * 120, None)):
        spaced = with_break_opportunities(f"see {word} there")
        assert spaced.replace(ZERO_WIDTH_SPACE, "") == f"see {LINE_SEPARATOR}{word} there"
        pieces = spaced[5:-6].split(ZERO_WIDTH_SPACE)
        if grapheme is not None:
            assert pieces == [grapheme] * (len(word) // len(grapheme))
        else:  # a letter with its combining marks stays whole
            assert pieces == ["Z\u0337\u0321\u031b", "a\u0336\u0327\u035d"] * 120


def test_a_long_word_wraps_as_it_did(qtbot: QtBot) -> None:
    font = QFont()
    font.setPointSizeF(10.5)
    text = "start " + "w" * 3000 + " end\n" + "v" * 500 + "\nnext line"
    before, before_size = lay_out(with_line_separators(text), font, 300)
    after, after_size = text_layout(text, font, 300)
    assert after.lineCount() == before.lineCount() > 10
    assert after_size == before_size
    widths = [
        (before.lineAt(i).naturalTextWidth(), after.lineAt(i).naturalTextWidth())
        for i in range(before.lineCount())
    ]
    assert all(abs(old - new) < 0.5 for old, new in widths)


@pytest.mark.asyncio
async def test_a_huge_message_is_laid_out_once_not_at_every_repaint(
    session: GuiSession, friend: api.InitResult, monkeypatch: pytest.MonkeyPatch
) -> None:
    window = session.window
    assert isinstance(window, MainWindow)
    service: Any = session.node
    bob = (await service.add_contact(api.AddContact(friend.whoami.invite))).contact
    await wait_for(lambda: window.contacts.row_of(bob.address) >= 0)
    window.open_conversation(bob.address)
    await wait_for(lambda: window.messages.contact == bob.address and not window.messages.loading)
    laid_out: list[tuple[int, float]] = []

    def counted(text: str, font: QFont, width: float) -> Any:
        laid_out.append((len(text), width))
        return text_layout(text, font, width)

    monkeypatch.setattr(message_delegate, "text_layout", counted)
    huge = "x" * 32_000  # at most 32 KiB is sent
    await service.send_message(api.SendMessage(bob.address, huge))
    await wait_for(lambda: window.messages.rowCount() == 1)
    view = window.conversation.list
    for _ in range(5):  # a hover, a tick, a progress report elsewhere: repaints
        view.viewport().repaint()
    huge_ones = [entry for entry in laid_out if entry[0] == len(huge)]
    assert huge_ones  # laid out, once per width it was shown at
    assert len(set(huge_ones)) == len(huge_ones)


def untouched_outside(image: QImage, rect: QRect, background: QColor) -> bool:
    """Whether every pixel of `image` outside `rect` still has the background colour."""
    for y in range(image.height()):
        if rect.top() <= y <= rect.bottom():
            continue
        for x in range(0, image.width(), 2):
            if QColor(image.pixel(x, y)) != background:
                return False
    return True


def paint_rows_alone(view: QAbstractItemView, row: int, top: int = 300) -> tuple[QImage, QRect]:
    """Paint one row of `view` with its delegate at `top` of a tall empty image."""
    index = view.model().index(row, 0)
    option = QStyleOptionViewItem()
    option.initFrom(view)
    height = view.itemDelegate().sizeHint(option, index).height()
    rect = QRect(0, top, view.viewport().width(), height)
    option.rect = rect
    image = QImage(rect.width(), top + height + top, QImage.Format.Format_ARGB32)
    image.fill(QColor("#123456"))
    painter = QPainter(image)
    view.itemDelegate().paint(painter, option, index)
    painter.end()
    return image, rect


@pytest.mark.asyncio
async def test_stacked_combining_marks_stay_inside_their_row(
    session: GuiSession, friend: api.InitResult, tmp_path: Path
) -> None:
    """Found in the window: a letter with a few thousand combining marks (a message) or
    forty (a contact's name) drew a column over the messages or contacts above it."""
    window = session.window
    assert isinstance(window, MainWindow)
    service: Any = session.node
    bob = (await service.add_contact(api.AddContact(friend.whoami.invite))).contact
    tall = api.init_profile(tmp_path / "tall", "M" + "\u0489\u0304" * 30, PASSPHRASE)
    await service.add_contact(api.AddContact(tall.whoami.invite))
    await wait_for(lambda: window.contacts.rowCount() == 2)
    window.open_conversation(bob.address)
    await wait_for(lambda: window.messages.contact == bob.address and not window.messages.loading)
    await service.send_message(api.SendMessage(bob.address, "x" + "\u0304\u0305\u033f" * 1500))
    await wait_for(lambda: window.messages.rowCount() == 1)
    image, rect = paint_rows_alone(window.conversation.list, 0)
    assert untouched_outside(image, rect, QColor("#123456"))
    row = window.contacts.row_of(tall.whoami.address)
    image, rect = paint_rows_alone(window.contact_list, row)
    assert untouched_outside(image, rect, QColor("#123456"))


async def _tall_message_then_another(
    session: GuiSession, friend: api.InitResult, text: str
) -> tuple[MainWindow, QTextLayout]:
    """Send `text` and a short message after it in the window's open conversation; check
    the tall row is no taller than a row can be and nothing spills over the next one;
    the tall row's text layout."""
    window = session.window
    assert isinstance(window, MainWindow)
    service: Any = session.node
    bob = (await service.add_contact(api.AddContact(friend.whoami.invite))).contact
    window.open_conversation(bob.address)
    await wait_for(lambda: window.messages.contact == bob.address and not window.messages.loading)
    await service.send_message(api.SendMessage(bob.address, text))
    await service.send_message(api.SendMessage(bob.address, "after it"))
    await wait_for(lambda: window.messages.rowCount() == 2)
    view = window.conversation.list
    tall, after = (view.model().index(row, 0) for row in range(2))
    rect = view.visualRect(tall)
    option = QStyleOptionViewItem()
    assert rect.height() == view.itemDelegate().sizeHint(option, tall).height() < 32_767
    assert view.visualRect(after).top() == rect.bottom() + 1  # nothing spills over it
    layout, _ = view.itemDelegate()._text_layout(window.messages.message_at(0), 536.0)
    return window, layout


@pytest.mark.asyncio
async def test_a_message_taller_than_a_row_can_be_is_cut_with_a_note(
    session: GuiSession, friend: api.InitResult
) -> None:
    """Found in the window: 30,000 line breaks (32 KiB allow that) made a bubble 544,000
    pixels tall in a row the list shows at most 32,767 tall: it spilled over the messages
    after it. The text is cut where a row ends, its last line says how much is hidden,
    and Copy text still copies it all."""
    text = "first" + "\n" * 30_000 + "last"
    window, layout = await _tall_message_then_another(session, friend, text)
    assert layout.text().startswith("first")
    last_line = layout.lineAt(layout.lineCount() - 1)
    note = layout.text()[last_line.textStart() :]
    assert note.startswith("… ") and note.endswith(
        " more lines (right-click, Copy text to read them all)"
    )
    assert window.messages.message_at(0).text == text  # what Copy text copies


@pytest.mark.asyncio
async def test_a_tall_message_of_emoji_is_cut_where_a_row_ends_too(
    session: GuiSession, friend: api.InitResult
) -> None:
    """Found sending 6,000 lines of one emoji each (30 KB): the text was cut at the
    line's position counted in UTF-16 units (as Qt counts) but sliced in characters
    (as Python counts), so every emoji before the cut moved it one character further:
    half again as many lines were kept, the bubble was taller than a row can be, and
    it spilled over the messages after it."""
    text = "\n".join("\U0001f600" for _ in range(6000))  # 30 KB: a message holds 32 KiB
    _, layout = await _tall_message_then_another(session, friend, text)
    kept = layout.text().split(LINE_SEPARATOR)
    note = kept.pop()
    assert kept and set(kept) == {"\U0001f600"}  # whole lines
    assert note == f"… {6000 - len(kept)} more lines (right-click, Copy text to read them all)"


@pytest.mark.asyncio
async def test_the_lines_of_a_long_bubble_on_screen_are_drawn(
    session: GuiSession, friend: api.InitResult
) -> None:
    """A bubble of 30,000 lines drew every one at each repaint (0.4 s); now only those in
    the painter's clip are drawn, and these must still be there, wherever they are."""
    window = session.window
    assert isinstance(window, MainWindow)
    service: Any = session.node
    bob = (await service.add_contact(api.AddContact(friend.whoami.invite))).contact
    window.open_conversation(bob.address)
    await wait_for(lambda: window.messages.contact == bob.address and not window.messages.loading)
    text = "\n".join(f"line {n} of a long one" for n in range(1200))
    await service.send_message(api.SendMessage(bob.address, text))
    await wait_for(lambda: window.messages.rowCount() == 1)
    view = window.conversation.list
    index = view.model().index(0, 0)
    option = QStyleOptionViewItem()
    option.initFrom(view)
    height = view.itemDelegate().sizeHint(option, index).height()
    width = view.viewport().width()
    for top in (0, -height // 2, -(height - 200)):  # its start, middle and end on screen
        image = QImage(width, 200, QImage.Format.Format_ARGB32)
        image.fill(QColor("#123456"))
        painter = QPainter(image)
        painter.setClipRect(QRect(0, 0, width, 200))  # what the view repaints
        option.rect = QRect(0, top, width, height)
        view.itemDelegate().paint(painter, option, index)
        painter.end()
        seen = {image.pixel(x, y) for y in range(0, 200, 2) for x in range(width // 2, width, 2)}
        assert len(seen) > 10, top  # bubble, text and its antialiasing: not one flat colour


def test_a_repaint_draws_only_the_lines_on_screen(qtbot: QtBot) -> None:
    """A bubble of 30,000 lines drew every one at each repaint (0.4 s); the lines in
    the painter's clip are still drawn."""
    font = QFont()
    text = "\n".join(f"line {n}" for n in range(2000))
    layout, size = text_layout(text, font, 300)
    image = QImage(300, 200, QImage.Format.Format_ARGB32)
    image.fill(QColor("white"))
    painter = QPainter(image)
    painter.setPen(QColor("black"))
    middle = size.height() / 2
    painter.setClipRect(QRect(0, 0, 300, 200))
    origin = QPointF(0, -middle)  # lines around the middle are on screen
    layout.draw(painter, origin, [], painter.clipBoundingRect())  # as the delegate does
    painter.end()
    inked = sum(
        1
        for y in range(0, 200, 2)
        for x in range(0, 120, 2)
        if QColor(image.pixel(x, y)) != QColor("white")
    )
    assert inked > 50
