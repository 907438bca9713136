"""Painting helpers and delegates of the conversation, checked without a node."""

from __future__ import annotations

import dataclasses
import itertools

import pytest
from gui_helpers import contrast
from PySide6.QtCore import QRectF
from PySide6.QtGui import (
    QColor,
    QFont,
    QFontMetricsF,
    QImage,
    QPainter,
    QStandardItem,
    QStandardItemModel,
)
from PySide6.QtWidgets import QListView, QStyleOptionViewItem, QVBoxLayout, QWidget
from pytestqt.qtbot import QtBot

from app.gui.models.messages import MessageRole
from app.gui.theme import DARK, LIGHT, ThemeColors
from app.gui.views.file_card import CardFonts, actions_for, card_colors, paint_card
from app.gui.views.message_delegate import MessageDelegate
from app.gui.views.painting import draw_ticks, initials, short_time, text_layout
from app.gui.views.transfer_text import progress_text
from app.gui.widgets.composer import MAX_LINES, Composer
from app.gui.widgets.elided import ElidedLabel
from app.node.api import Message, MessageStatus, Transfer, TransferState


def test_text_layout_keeps_line_breaks(qtbot: QtBot) -> None:
    font = QFont()
    one_line = QFontMetricsF(font).height()
    layout, size = text_layout("line one\nline two", font, 1000.0)
    assert layout.lineCount() == 2
    assert size.height() >= 2 * one_line - 1
    first, second = layout.lineAt(0), layout.lineAt(1)
    text = layout.text()
    assert text[first.textStart() : first.textStart() + first.textLength()].startswith("line one")
    assert text[second.textStart() : second.textStart() + second.textLength()] == "line two"


def test_text_layout_keeps_blank_lines(qtbot: QtBot) -> None:
    layout, _ = text_layout("a\r\n\nb", QFont(), 1000.0)
    assert layout.lineCount() == 3


def _message(text: str, outgoing: bool = False, msg_id: str = "m1") -> Message:
    return Message(
        id=msg_id,
        contact="egg-bob",
        sender="egg-bob",
        outgoing=outgoing,
        text=text,
        time=1_700_000_000.0,
        status=MessageStatus.RECEIVED if not outgoing else MessageStatus.DELIVERED,
    )


def _bubble_height(qtbot: QtBot, text: str) -> int:
    view = QListView()
    qtbot.addWidget(view)
    view.resize(600, 400)
    model = QStandardItemModel()
    item = QStandardItem()
    item.setData(_message(text, msg_id=text), MessageRole.MESSAGE)
    model.appendRow(item)
    view.setModel(model)
    delegate = MessageDelegate(view)
    return delegate.sizeHint(QStyleOptionViewItem(), model.index(0, 0)).height()


def test_bubble_grows_with_line_breaks(qtbot: QtBot) -> None:
    one = _bubble_height(qtbot, "line one")
    three = _bubble_height(qtbot, "line one\nline two\nline three")
    line = QFontMetricsF(QFont()).height()
    assert three >= one + 2 * line - 2


def _composer_in_window(qtbot: QtBot, width: int) -> tuple[QWidget, Composer]:
    window = QWidget()
    qtbot.addWidget(window)
    layout = QVBoxLayout(window)
    layout.addStretch(1)
    composer = Composer()
    layout.addWidget(composer)
    window.resize(width, 500)
    window.show()
    qtbot.waitExposed(window)
    return window, composer


def test_composer_grows_with_wrapped_lines(qtbot: QtBot) -> None:
    _window, composer = _composer_in_window(qtbot, 320)
    empty = composer.height()
    composer.setPlainText("a long line that wraps " * 8)  # one paragraph, several lines
    line = composer.fontMetrics().lineSpacing()
    qtbot.waitUntil(lambda: composer.height() >= empty + 2 * line)
    qtbot.waitUntil(lambda: composer.verticalScrollBar().maximum() == 0)
    composer.clear()
    qtbot.waitUntil(lambda: composer.height() == empty)


def test_composer_stops_growing_at_its_maximum(qtbot: QtBot) -> None:
    _window, composer = _composer_in_window(qtbot, 320)
    composer.setPlainText("\n".join(["x"] * MAX_LINES))
    most = composer.sizeHint().height()
    composer.setPlainText("a long line that wraps " * 60)
    qtbot.wait(50)
    assert composer.visual_lines() > MAX_LINES
    assert composer.sizeHint().height() == most
    qtbot.waitUntil(lambda: composer.verticalScrollBar().maximum() > 0)


def _over(ink: str, alpha: float, background: str) -> QColor:
    top, bottom = QColor(ink), QColor(background)
    mix = [
        alpha * t + (1 - alpha) * b
        for t, b in zip(top.getRgbF()[:3], bottom.getRgbF()[:3], strict=True)
    ]
    return QColor.fromRgbF(*mix)


@pytest.mark.parametrize("theme", [LIGHT, DARK], ids=["light", "dark"])
def test_read_ticks_stand_out_from_delivered_ones(theme: ThemeColors) -> None:
    read = QColor(theme.tick_read)
    bubble = QColor(theme.bubble_out)
    delivered = _over(theme.bubble_out_text, 0.72, theme.bubble_out)  # the delegate's muted ink
    assert contrast(read, bubble) >= 3.0  # visible on the outgoing bubble
    distance = sum(
        (x - y) ** 2 for x, y in zip(read.getRgb()[:3], delivered.getRgb()[:3], strict=True)
    )
    assert distance**0.5 >= 120  # a clearly different colour, not a tint of the same one


def _ink_pixels(status: MessageStatus) -> int:
    image = QImage(40, 30, QImage.Format.Format_ARGB32)
    image.fill(QColor("#000000"))
    painter = QPainter(image)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    draw_ticks(painter, 5, 5, 16, status, QColor("#ffffff"), QColor("#ffffff"))
    painter.end()
    return sum(
        1 for x in range(40) for y in range(30) if QColor(image.pixel(x, y)).lightness() > 128
    )


def test_read_ticks_are_bolder_than_delivered_ones(qtbot: QtBot) -> None:
    # not by colour alone: the glyph differs too (colour-blind users, odd screens)
    assert _ink_pixels(MessageStatus.READ) >= 1.3 * _ink_pixels(MessageStatus.DELIVERED)


def _done_file(outgoing: bool) -> tuple[Message, Transfer]:
    transfer = Transfer(
        id="t1",
        contact="egg-bob",
        outgoing=outgoing,
        name="huge2.iso",
        size=1_500_000_000,
        done_bytes=1_500_000_000,
        state=TransferState.DONE,
        path="/tmp/huge2.iso",
        mime="application/octet-stream",
        time=1_700_000_000.0,
    )
    message = dataclasses.replace(_message("huge2.iso", outgoing), transfer="t1")
    return message, transfer


@pytest.mark.parametrize("outgoing", [True, False], ids=["ours", "theirs"])
@pytest.mark.parametrize("row_width", [200, 260, 300, 340, 420, 800])
def test_file_card_buttons_never_cover_the_time(
    qtbot: QtBot, outgoing: bool, row_width: int
) -> None:
    view = QListView()
    qtbot.addWidget(view)
    delegate = MessageDelegate(view)
    message, transfer = _done_file(outgoing)
    bubble, layout = delegate.file_geometry(QRectF(0, 0, row_width, 400), message, transfer, False)
    assert [a for a, _ in layout.buttons] == actions_for(transfer)
    for _, button in layout.buttons:
        assert not button.intersects(layout.meta)
        assert bubble.contains(button)
    assert bubble.contains(layout.meta)
    assert not layout.progress.intersects(layout.meta)
    # the time and ticks fit in the space kept for them
    _, meta_font = delegate._fonts()
    time_width = QFontMetricsF(meta_font).horizontalAdvance(short_time(message.time))
    assert layout.meta.width() >= time_width
    rects = [r for _, r in layout.buttons]
    assert all(a.right() <= b.left() for a, b in itertools.pairwise(rects))


def test_file_card_keeps_the_time_beside_the_buttons_when_there_is_room(qtbot: QtBot) -> None:
    view = QListView()
    qtbot.addWidget(view)
    message, transfer = _done_file(True)
    _, layout = MessageDelegate(view).file_geometry(
        QRectF(0, 0, 800, 400), message, transfer, False
    )
    assert layout.meta.top() == layout.footer.top()
    assert layout.meta.right() == layout.footer.right()


class _TextRecorder(QPainter):
    """A painter that remembers every text it drew."""

    def __init__(self, image: QImage) -> None:
        super().__init__(image)
        self.texts: list[str] = []

    def drawText(self, *args: object) -> None:  # type: ignore[override]
        self.texts.extend(a for a in args if isinstance(a, str))
        super().drawText(*args)  # type: ignore[call-overload]


def test_a_narrow_file_card_still_shows_the_speed_and_time_left(qtbot: QtBot) -> None:
    """In a narrow window (a 640 px window leaves the bubble ~240 px) the progress line
    "66.6 MB of 300 MB · 4.58 MB/s · 51 s left" does not fit: it drops the size, which
    the line above shows, rather than eliding the speed out of its middle."""
    view = QListView()
    qtbot.addWidget(view)
    delegate = MessageDelegate(view)
    message, done = _done_file(False)
    running = dataclasses.replace(
        done, state=TransferState.RUNNING, size=300_000_000, done_bytes=66_600_000
    )
    running = dataclasses.replace(running, speed_bps=4_580_000.0)
    _, layout = delegate.file_geometry(QRectF(0, 0, 340, 400), message, running, False)
    fonts = CardFonts.from_base(view.font())
    full = progress_text(running)
    assert QFontMetricsF(fonts.detail).horizontalAdvance(full) > layout.progress.width()
    image = QImage(400, 400, QImage.Format.Format_ARGB32)
    painter = _TextRecorder(image)
    paint_card(painter, layout, running, running.name, fonts, card_colors(on_accent=False))
    painter.end()
    (line,) = [t for t in painter.texts if "MB/s" in t]
    assert line == "66.6 MB · 4.58 MB/s · 51 s left"


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("Bobby (re-added)", "BR"),
        ("Alice", "A"),
        ("alice smith", "AS"),
        ("Dr. Who?", "DW"),
        ("\u201cZoe\u201d", "Z"),
        ("  ", "?"),
        ("(((", "?"),
        ("Ann — 2nd phone", "AP"),
        ("R2 D2", "RD"),
        ("42", "4"),
        ("Émile Zola…", "ÉZ"),
    ],
)
def test_initials_use_letters_and_digits_only(name: str, expected: str) -> None:
    assert initials(name) == expected


def test_a_shortened_label_shows_its_whole_text_on_hover(qtbot: QtBot) -> None:
    """Found by a tester: in a narrow window the own name read "Me M…" with no way to
    see the rest. A tooltip set by the label's owner is kept."""
    label = ElidedLabel()
    qtbot.addWidget(label)
    label.show()
    label.resize(400, 20)
    label.set_full_text("Bob Builder")
    assert label.text() == "Bob Builder" and label.toolTip() == ""
    label.resize(30, 20)
    assert label.text() != "Bob Builder" and label.toolTip() == "Bob Builder"
    label.resize(400, 20)
    assert label.toolTip() == ""
    label.setToolTip("eggaddress")
    label.resize(30, 20)
    assert label.toolTip() == "eggaddress"
