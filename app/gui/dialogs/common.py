"""Building blocks shared by the dialogs."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QHBoxLayout, QLabel, QLineEdit, QPlainTextEdit, QPushButton, QWidget


def title_label(text: str, parent: QWidget | None = None) -> QLabel:
    """A dialog's heading."""
    label = QLabel(text, parent)
    label.setObjectName("DialogTitle")
    label.setAccessibleName(text)
    return label


def explanation_label(text: str, parent: QWidget | None = None) -> QLabel:
    """A wrapped paragraph of help text."""
    label = QLabel(text, parent)
    label.setObjectName("Explanation")
    label.setWordWrap(True)
    label.setTextFormat(Qt.TextFormat.PlainText)
    return label


def error_label(parent: QWidget | None = None) -> QLabel:
    """An inline error line, hidden until `show_error` gives it text."""
    label = QLabel(parent)
    label.setObjectName("ErrorLabel")
    label.setWordWrap(True)
    label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
    label.hide()
    return label


def show_error(label: QLabel, text: str | None) -> None:
    """Show `text` in an error label, or hide it when `text` is empty. A shown window
    grows to fit the error, so the fields above it keep their height."""
    label.setText(text or "")
    label.setAccessibleName(text or "")
    label.setVisible(bool(text))
    window = label.window()
    if text and window.isVisible():
        fit_height(window)


def clear_error_on_edit(label: QLabel, *edits: QLineEdit | QPlainTextEdit) -> None:
    """Hide the error label as soon as the user edits any of `edits`."""
    for edit in edits:
        edit.textChanged.connect(lambda *_: show_error(label, None))


def primary_button(text: str, parent: QWidget | None = None) -> QPushButton:
    """The dialog's main action (styled with the accent colour, the default button)."""
    button = QPushButton(text, parent)
    button.setProperty("primary", True)
    button.setDefault(True)
    button.setAccessibleName(text)
    return button


def button_row(dismiss: QPushButton, primary: QPushButton) -> QHBoxLayout:
    """The dialog's buttons, right-aligned: dismiss (Cancel/Quit/Close), then the action."""
    row = QHBoxLayout()
    row.addStretch(1)
    row.addWidget(dismiss)
    row.addWidget(primary)
    return row


def fit_height(window: QWidget) -> None:
    """Grow a window to the height its wrapped labels need at its width (Qt sizes
    top-level windows without height-for-width)."""
    layout = window.layout()
    if layout is not None and layout.hasHeightForWidth():
        needed = layout.totalHeightForWidth(window.width())
        if needed > window.height():
            window.resize(window.width(), needed)
