"""The context menu of a transfer (right click or the Menu key on a file bubble or a row of
the transfers list): the same actions as the card's buttons, reachable by keyboard."""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import QPoint
from PySide6.QtWidgets import QMenu, QWidget

from app.gui.views.file_card import TransferAction, action_label, actions_for
from app.node.api import Transfer

ActionHandler = Callable[[str, TransferAction], None]


def transfer_menu(transfer: Transfer, handler: ActionHandler, parent: QWidget) -> QMenu | None:
    """A menu of the actions `transfer` offers now (None if it offers none); choosing one
    calls `handler(transfer.id, action)`."""
    actions = actions_for(transfer)
    if not actions:
        return None
    menu = QMenu(parent)
    for action in actions:
        item = menu.addAction(action_label(action))
        item.setData(action.value)
        item.triggered.connect(lambda _=False, a=action: handler(transfer.id, a))
    return menu


def popup_transfer_menu(
    transfer: Transfer, handler: ActionHandler, parent: QWidget, global_pos: QPoint
) -> QMenu | None:
    """Show `transfer_menu` at `global_pos` (non-blocking); returns the menu shown."""
    menu = transfer_menu(transfer, handler, parent)
    if menu is not None:
        menu.aboutToHide.connect(menu.deleteLater)
        menu.popup(global_pos)
    return menu
