"""The transfers list: every file shared with us or by us, newest first, each with its
progress, speed, time left and the buttons its state allows. Non-modal: it stays open
beside the conversation and updates live from the shared `TransferModel`."""

from __future__ import annotations

from PySide6.QtCore import QModelIndex, QPoint, Qt
from PySide6.QtWidgets import (
    QAbstractItemView,
    QDialog,
    QHBoxLayout,
    QLabel,
    QListView,
    QPushButton,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from app.gui.dialogs.common import explanation_label, title_label
from app.gui.models.transfers import TransferModel
from app.gui.theme import text_scale
from app.gui.views.file_card import TransferAction
from app.gui.views.transfer_delegate import ContactName, TransferDelegate
from app.gui.widgets.naming import named
from app.gui.widgets.transfer_menu import ActionHandler, popup_transfer_menu


class TransfersDialog(QDialog):
    """A window listing `model`'s transfers; button clicks and menu choices go to
    `handler(transfer_id, action)`."""

    def __init__(
        self,
        model: TransferModel,
        contact_name: ContactName,
        handler: ActionHandler,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.setWindowTitle(self.tr("Transfers"))
        self.setObjectName("TransfersDialog")
        scale, screen = text_scale(self), self.screen().availableGeometry()
        self.resize(
            min(round(620 * scale), screen.width()), min(round(560 * scale), screen.height())
        )
        self._model = model
        self._handler = handler
        self.list = named(QListView(), "TransferList")
        self.list.setAccessibleName(self.tr("Transfers"))
        self.list.setModel(model)
        self.list.setVerticalScrollMode(QAbstractItemView.ScrollMode.ScrollPerPixel)
        self.list.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.list.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.list.setUniformItemSizes(True)
        self.list.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.list.customContextMenuRequested.connect(self._context_menu)
        self.delegate = TransferDelegate(self.list, contact_name, self)
        self.delegate.transferActionRequested.connect(self._act)
        self.list.setItemDelegate(self.delegate)
        self.empty = explanation_label(
            self.tr(
                "No transfers yet. Drop files or folders onto a conversation to share them "
                "end-to-end encrypted."
            )
        )
        self.empty.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.stack = QStackedWidget()
        self.stack.addWidget(self.list)
        self.stack.addWidget(self.empty)
        self.summary = named(QLabel(), "MutedLabel")
        close = QPushButton(self.tr("Close"))
        close.clicked.connect(self.close)
        bottom = QHBoxLayout()
        bottom.addWidget(self.summary, 1)
        bottom.addWidget(close)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(20, 16, 20, 16)
        layout.setSpacing(10)
        layout.addWidget(title_label(self.tr("Transfers")))
        layout.addWidget(self.stack, 1)
        layout.addLayout(bottom)
        for signal in (model.rowsInserted, model.rowsRemoved, model.modelReset):
            signal.connect(self._refresh)
        model.activeChanged.connect(self._refresh)
        self._refresh()

    def _refresh(self, *_: object) -> None:
        total = self._model.rowCount()
        self.stack.setCurrentWidget(self.list if total else self.empty)
        self.summary.setText(
            self.tr("{0} active · {1} in all").format(self._model.active, total) if total else ""
        )

    def _act(self, transfer_id: str, action: TransferAction) -> None:
        self._handler(transfer_id, action)

    def _context_menu(self, position: QPoint) -> None:
        index: QModelIndex = self.list.indexAt(position)
        if not index.isValid():
            index = self.list.currentIndex()
        if not index.isValid():
            return
        transfer = self._model.transfer_at(index.row())
        popup_transfer_menu(
            transfer, self._handler, self, self.list.viewport().mapToGlobal(position)
        )
