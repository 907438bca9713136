"""Compare safety numbers with a contact and mark them verified."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QShowEvent
from PySide6.QtWidgets import (
    QDialog,
    QLabel,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from app.gui.asyncqt import async_slot
from app.gui.bridge import ActionFailed, NodeBridge
from app.gui.dialogs.common import (
    button_row,
    error_label,
    explanation_label,
    fit_height,
    minimum_width,
    primary_button,
    show_error,
    title_label,
)
from app.gui.resources import qr_pixmap
from app.gui.views.peer_text import isolated
from app.node.api import Verification

QR_EDGE = 200
GROUPS_PER_LINE = 4


def format_safety_number(number: str) -> str:
    """60 digits as three lines of four groups of five."""
    groups = number.split()
    lines = [
        "  ".join(groups[i : i + GROUPS_PER_LINE]) for i in range(0, len(groups), GROUPS_PER_LINE)
    ]
    return "\n".join(lines)


class VerifyDialog(QDialog):
    """Loads the safety number when shown (`load`), then offers "Mark as verified"."""

    def __init__(self, bridge: NodeBridge, address: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle(self.tr("Verify safety number"))
        minimum_width(self, 520)
        self._bridge = bridge
        self._address = address
        self.verification: Verification | None = None
        self.heading = title_label(self.tr("Safety number"))
        self.help = explanation_label(
            self.tr(
                "Compare these digits with the ones on your contact's screen, in person or "
                "over a call you trust. If they match, nobody is in the middle of your "
                "conversation."
            )
        )
        self.number = QLabel(self.tr("Loading…"))
        self.number.setObjectName("SafetyNumber")
        self.number.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.number.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.qr = QLabel()
        self.qr.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.qr.setAccessibleName(self.tr("QR code of the safety number"))
        self.qr.setFixedSize(QR_EDGE + 12, QR_EDGE + 12)  # room reserved before it loads
        self.state = QLabel()
        self.state.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.error = error_label()
        self.verify_button = primary_button(self.tr("Mark as verified"))
        self.verify_button.setEnabled(False)
        self.verify_button.clicked.connect(self.mark_verified)
        close = QPushButton(self.tr("Close"))
        close.clicked.connect(self.accept)
        buttons = button_row(close, self.verify_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(24, 20, 24, 20)
        layout.setSpacing(12)
        layout.addWidget(self.heading)
        layout.addWidget(self.help)
        layout.addWidget(self.number)
        layout.addWidget(self.qr, 0, Qt.AlignmentFlag.AlignHCenter)
        layout.addWidget(self.state)
        layout.addWidget(self.error)
        layout.addStretch(1)  # an error's room stays below: the fields don't move
        layout.addLayout(buttons)

    def showEvent(self, event: QShowEvent) -> None:
        super().showEvent(event)
        fit_height(self)

    def _show(self, verification: Verification) -> None:
        self.verification = verification
        self.heading.setText(self.tr("Safety number with {0}").format(isolated(verification.name)))
        self.number.setText(format_safety_number(verification.safety_number))
        self.number.setAccessibleName(
            self.tr("Safety number {0}").format(verification.safety_number)
        )
        digits = verification.safety_number.replace(" ", "")
        self.qr.setPixmap(qr_pixmap(digits, QR_EDGE))
        if verification.verified:
            self.state.setText(
                self.tr("✔ You have verified {0}.").format(isolated(verification.name))
            )
            self.verify_button.setEnabled(False)
            self.verify_button.setText(self.tr("Verified"))
        else:
            self.state.setText(self.tr("Not verified yet."))
            self.verify_button.setEnabled(True)
        # shown while "Loading…": three lines of digits and the state line need more room,
        # else the layout squeezed them and the state sat on the code's light margin
        fit_height(self)

    @async_slot()
    async def load(self) -> None:
        """Fetch the safety number."""
        try:
            self._show(await self._bridge.verification(self._address))
        except ActionFailed as exc:
            self.number.setText("—")
            show_error(self.error, str(exc))

    @async_slot()
    async def mark_verified(self) -> None:
        """Confirm that the numbers match."""
        self.verify_button.setEnabled(False)
        try:
            self._show(await self._bridge.verification(self._address, confirm=True))
        except ActionFailed as exc:
            self.verify_button.setEnabled(True)
            show_error(self.error, str(exc))
