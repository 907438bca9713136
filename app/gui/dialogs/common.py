"""Building blocks shared by the dialogs."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QHBoxLayout, QLabel, QLineEdit, QPlainTextEdit, QPushButton, QWidget

from app.gui.theme import text_scale


def title_label(text: str, parent: QWidget | None = None) -> QLabel:
    """A dialog's heading."""
    label = QLabel(text, parent)
    label.setObjectName("DialogTitle")
    label.setAccessibleName(text)
    # wrapped: a long contact name or a large font broke it off mid-word at the edge
    label.setWordWrap(True)
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


def minimum_width(window: QWidget, pixels: int) -> None:
    """Give `window` a minimum width of `pixels` at a 10 pt font, grown in proportion to
    a larger one (within the screen): at 15 pt a 520-pixel dialog wrapped its paragraphs
    so tall that its buttons fell off a 1280x800 screen."""
    screen = window.screen().availableGeometry()
    window.setMinimumWidth(min(round(pixels * text_scale(window)), screen.width()))


def fit_height(window: QWidget) -> None:
    """Grow a window to the width its unwrapped content needs and to the height its
    wrapped labels need at that width (Qt sizes top-level windows without
    height-for-width, and a window with its own minimum width ignores its layout's)."""
    layout = window.layout()
    if layout is None:
        return
    screen = window.screen().availableGeometry()
    width = max(window.width(), min(layout.totalMinimumSize().width(), screen.width()))
    height = window.height()
    if layout.hasHeightForWidth():
        height = max(height, layout.totalHeightForWidth(width))
    if (width, height) != (window.width(), window.height()):
        window.resize(width, height)
        keep_on_screen(window)


def keep_on_screen(window: QWidget) -> None:
    """Move a shown window that grew past the screen's edge back inside it (its buttons
    are at the bottom)."""
    if not window.isVisible():
        return
    screen = window.screen().availableGeometry()
    frame = window.frameGeometry()
    x = max(screen.left(), min(frame.left(), screen.right() + 1 - frame.width()))
    y = max(screen.top(), min(frame.top(), screen.bottom() + 1 - frame.height()))
    if (x, y) != (frame.left(), frame.top()):
        window.move(x, y)
