"""A friend's invite arrives as a picture of its QR code (a screenshot of their invite
window, a photo of their screen): pasted, dropped or opened in the Add contact dialog, it
fills in the invite, shows who it is from, and adds nothing before Add. Before, the only
way in was the link's text: README promised "an invite link (or its QR code)", and a
desktop user holding the code had no way to read it."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from gui_helpers import wait_for
from PySide6.QtCore import QMimeData, QPoint, Qt, QUrl
from PySide6.QtGui import QColor, QGuiApplication, QImage, QPainter, QTransform
from pytestqt.qtbot import QtBot

from app.gui.bridge import NodeBridge
from app.gui.dialogs.add_contact import AddContactDialog
from app.gui.dialogs.invite import QR_EDGE
from app.gui.qr_reading import MAX_PICTURE_SIDE, invite_in_picture, texts_in_picture
from app.gui.resources import qr_pixmap
from app.node import api


def code_of(text: str, dark: str = "#111111", light: str = "#ffffff") -> QImage:
    """`text`'s QR code as the invite window draws it."""
    return qr_pixmap(text, QR_EDGE, dark, light).toImage()


def screenshot_with(
    code: QImage, angle: float = 0.0, size: int = 900, height: int | None = None
) -> QImage:
    """A grey 'screenshot' with `code` somewhere in it, turned by `angle` degrees."""
    shot = QImage(size, height or size, QImage.Format.Format_RGB32)
    shot.fill(QColor("#d0d4da"))
    turned = code.transformed(
        QTransform().rotate(angle), Qt.TransformationMode.SmoothTransformation
    )
    painter = QPainter(shot)
    painter.fillRect(40, 40, 300, 60, QColor("#2b6ee0"))  # something else on screen
    painter.drawImage(
        QPoint(size - turned.width() - 60, (height or size) - turned.height() - 80), turned
    )
    painter.end()
    return shot


async def dialog_for(qtbot: QtBot, node: api.NodeApi) -> AddContactDialog:
    QGuiApplication.clipboard().setText("")
    dialog = AddContactDialog(NodeBridge(node))
    qtbot.addWidget(dialog)
    dialog.show()
    await wait_for(dialog.isVisible)
    return dialog


def test_the_invite_windows_own_code_reads_back_in_both_themes(
    qtbot: QtBot, friend: api.InitResult
) -> None:
    del qtbot  # a QApplication for the pictures
    invite = friend.whoami.invite
    for dark, light in (("#111111", "#ffffff"), ("#e8e8e8", "#1e1f22")):  # dark: inverted
        assert invite_in_picture(code_of(invite, dark, light)) == invite
    assert invite_in_picture(screenshot_with(code_of(invite), angle=12)) == invite


@pytest.mark.asyncio
async def test_a_pasted_picture_fills_the_invite_and_adds_only_on_add(
    qtbot: QtBot, node: api.NodeApi, friend: api.InitResult
) -> None:
    invite = friend.whoami.invite
    dialog = await dialog_for(qtbot, node)
    pasted = QMimeData()
    pasted.setImageData(screenshot_with(code_of(invite)))
    assert dialog.invite.canInsertFromMimeData(pasted)
    dialog.invite.insertFromMimeData(pasted)  # what Ctrl+V and a drop both call
    assert dialog.invite.toPlainText() == invite
    assert not dialog.error.isVisible()
    assert dialog.preview.isVisible() and "Invite from Bob" in dialog.preview.text()
    await asyncio.sleep(0.3)
    assert await node.list_contacts() == []  # read, not added
    await wait_for(dialog.add_button.isEnabled)
    qtbot.mouseClick(dialog.add_button, Qt.MouseButton.LeftButton)
    await wait_for(lambda: dialog.result() == AddContactDialog.DialogCode.Accepted)
    assert [c.name for c in await node.list_contacts()] == ["Bob"]


@pytest.mark.asyncio
async def test_a_dropped_picture_file_is_read(
    qtbot: QtBot, node: api.NodeApi, friend: api.InitResult, tmp_path: Path
) -> None:
    invite = friend.whoami.invite
    photo = tmp_path / "bob-invite.jpg"
    assert screenshot_with(code_of(invite), angle=-20).save(str(photo), "JPG", 85)
    dialog = await dialog_for(qtbot, node)
    dropped = QMimeData()
    dropped.setUrls([QUrl.fromLocalFile(str(photo))])
    assert dialog.invite.canInsertFromMimeData(dropped)
    dialog.invite.insertFromMimeData(dropped)
    assert dialog.invite.toPlainText() == invite
    dialog.invite.clear()
    dialog.use_picture(QImage(str(photo)))  # the "Read a QR code picture…" button's path
    assert dialog.invite.toPlainText() == invite


@pytest.mark.asyncio
async def test_pictures_without_an_invite_say_why_and_fill_nothing(
    qtbot: QtBot, node: api.NodeApi, tmp_path: Path
) -> None:
    dialog = await dialog_for(qtbot, node)
    blank = QImage(640, 480, QImage.Format.Format_RGB32)
    blank.fill(QColor("white"))
    not_a_picture = tmp_path / "notes.png"
    not_a_picture.write_text("not an image")
    cases = [
        (blank, "No QR code could be read"),
        (QImage(str(not_a_picture)), "No QR code could be read"),
        (code_of("https://example.invalid/menu"), "not a Scrambled Eggs invite"),
    ]
    for picture, words in cases:
        dialog.use_picture(picture)
        assert dialog.error.isVisible() and words in dialog.error.text(), dialog.error.text()
        assert dialog.invite.toPlainText() == ""
    assert await node.list_contacts() == []


def test_a_huge_picture_is_read_scaled_down(qtbot: QtBot, friend: api.InitResult) -> None:
    del qtbot
    invite = friend.whoami.invite
    wide = MAX_PICTURE_SIDE * 2  # a panorama of two 4K screens: read at half size
    huge = screenshot_with(code_of(invite).scaled(1200, 1200), size=wide, height=1400)
    assert texts_in_picture(huge) == [invite]
