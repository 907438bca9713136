"""Light and dark themes: a Fusion palette, a style sheet from `resources/themes/`, and the
colours the item delegates paint with. "system" follows `QStyleHints.colorScheme` live."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtGui import QColor, QFont, QFontInfo, QGuiApplication, QPalette
from PySide6.QtWidgets import QApplication, QWidget

from app.gui.resources import theme_path

THEMES = ("system", "light", "dark")


@dataclass(frozen=True)
class ThemeColors:
    """Colours for custom-painted items (bubbles, badges, separators)."""

    dark: bool
    window: str
    base: str
    text: str
    muted: str
    accent: str
    accent_text: str
    bubble_in: str
    bubble_in_text: str
    bubble_out: str
    bubble_out_text: str
    separator: str
    badge: str
    badge_text: str
    verified: str
    online: str
    tick_read: str
    selection: str
    warning_bg: str
    warning_text: str


LIGHT = ThemeColors(
    dark=False,
    window="#f4f5f7",
    base="#ffffff",
    text="#1b1d21",
    muted="#6b7280",
    accent="#2f6fdf",
    accent_text="#ffffff",
    bubble_in="#eef0f3",
    bubble_in_text="#1b1d21",
    bubble_out="#2f6fdf",
    bubble_out_text="#ffffff",
    separator="#e2e5ea",
    badge="#2f6fdf",
    badge_text="#ffffff",
    verified="#1f9d55",
    online="#22b35e",
    tick_read="#ffd54f",  # amber: not a tint of the white ticks on the blue bubble
    selection="#dfe9fb",
    warning_bg="#fff4d6",
    warning_text="#6b4a00",
)

DARK = ThemeColors(
    dark=True,
    window="#17191d",
    base="#1f2228",
    text="#e8eaed",
    muted="#9aa0a9",
    accent="#5b8def",
    accent_text="#ffffff",
    bubble_in="#2b2f37",
    bubble_in_text="#e8eaed",
    bubble_out="#3b6fd6",
    bubble_out_text="#ffffff",
    separator="#30343c",
    badge="#5b8def",
    badge_text="#ffffff",
    verified="#4cc38a",
    online="#3fd07a",
    tick_read="#ffd54f",
    selection="#2c3a55",
    warning_bg="#4a3b12",
    warning_text="#ffe7a3",
)

_active: ThemeColors = LIGHT


def colors() -> ThemeColors:
    """The colours of the theme in use right now."""
    return _active


def _palette(c: ThemeColors) -> QPalette:
    p = QPalette()
    role = QPalette.ColorRole
    p.setColor(role.Window, QColor(c.window))
    p.setColor(role.WindowText, QColor(c.text))
    p.setColor(role.Base, QColor(c.base))
    p.setColor(role.AlternateBase, QColor(c.window))
    p.setColor(role.Text, QColor(c.text))
    p.setColor(role.PlaceholderText, QColor(c.muted))
    p.setColor(role.Button, QColor(c.base))
    p.setColor(role.ButtonText, QColor(c.text))
    p.setColor(role.Highlight, QColor(c.accent))
    p.setColor(role.HighlightedText, QColor(c.accent_text))
    p.setColor(role.ToolTipBase, QColor(c.base))
    p.setColor(role.ToolTipText, QColor(c.text))
    p.setColor(role.Link, QColor(c.accent))
    for disabled in (role.Text, role.ButtonText, role.WindowText):
        p.setColor(QPalette.ColorGroup.Disabled, disabled, QColor(c.muted))
    return p


def system_prefers_dark() -> bool:
    """True when the desktop asks for a dark colour scheme."""
    return QGuiApplication.styleHints().colorScheme() == Qt.ColorScheme.Dark


DESIGN_POINT_SIZE = 10.0
"""The body font size the style sheets are written for (their ``QWidget { font-size }``);
headings are sized relative to it."""

STANDARD_DPI = 96
"""The logical DPI the pixel sizes in the GUI were chosen at."""

_POINT_SIZE = re.compile(r"font-size:\s*(\d+(?:\.\d+)?)pt")
_PIXELS = re.compile(r"\b(\d+)px\b")


def desktop_point_size(font: QFont) -> float:
    """The size in points of `font`, the desktop's font as Qt hands it to the application
    (a font given in pixels is converted)."""
    points = font.pointSizeF()
    return points if points > 0 else QFontInfo(font).pointSizeF()


def scale_font_sizes(sheet: str, desktop_points: float) -> str:
    """`sheet` with every ``font-size: Npt`` grown by desktop/design size. A sheet pinning
    10 pt overrode a larger desktop font (low vision: 13-16 pt) with 10 pt everywhere;
    a desktop font at or below the design size keeps the sizes as written."""
    factor = max(1.0, desktop_points / DESIGN_POINT_SIZE)
    if factor == 1.0:
        return sheet
    return _POINT_SIZE.sub(lambda m: f"font-size: {float(m.group(1)) * factor:.1f}pt", sheet)


def text_scale(widget: QWidget) -> float:
    """How much larger than the design size `widget`'s text is (1.0 at 10 pt or less): the
    factor for sizes given in pixels that must hold text (a window's minimum size, a
    fixed column width)."""
    widget.ensurePolished()  # the style sheet's font, not the one before it applies
    points = desktop_point_size(widget.font()) * widget.logicalDpiY() / STANDARD_DPI
    return max(1.0, points / DESIGN_POINT_SIZE)


MARK_RULES = """
QCheckBox::indicator, QRadioButton::indicator { width: 14px; height: 14px; border-width: 1px; }
QCheckBox::indicator { border-radius: 3px; }
QRadioButton::indicator { border-radius: 7px; }
QPushButton { icon-size: 16px; }
QSpinBox, QComboBox { padding-right: 24px; }
QSpinBox::up-button, QSpinBox::down-button { width: 22px; }
QComboBox::drop-down { width: 24px; }
QSpinBox::up-arrow, QSpinBox::down-arrow, QComboBox::down-arrow { width: 10px; height: 10px; }
"""
"""Sizes in pixels of the marks drawn beside text, at a 10 pt font: the check box and
radio button (14 at 96 dpi whatever the font) with their edge and corners, a push
button's icon (a dialog's Cancel), the spin and combo box arrows and their buttons (all
drawn by the themes' sheets)."""


def mark_sizes(desktop_points: float, dpi: float = STANDARD_DPI) -> str:
    """Style rules growing the marks drawn beside text (`MARK_RULES`) with a desktop
    font larger than the design size ("" otherwise): at 18 pt a 14-pixel check box and
    10-pixel spin box arrows were tiny beside the text."""
    factor = desktop_points / DESIGN_POINT_SIZE
    if factor <= 1.0:
        return ""
    factor *= dpi / STANDARD_DPI
    return _PIXELS.sub(lambda m: f"{round(int(m.group(1)) * factor)}px", MARK_RULES)


def style_sheet(
    path: Path, desktop_points: float = DESIGN_POINT_SIZE, dpi: float = STANDARD_DPI
) -> str:
    """The style sheet at `path` ("" if missing), its ``@THEMES@`` image folder made
    absolute (``url()`` in an application style sheet is read from the working folder),
    its font sizes fitted to the desktop font of `desktop_points` and its marks beside
    text grown with them (`mark_sizes`, at the screen's `dpi`)."""
    if not path.is_file():
        return ""
    sheet = path.read_text("utf-8").replace("@THEMES@", path.parent.as_posix())
    return scale_font_sizes(sheet, desktop_points) + mark_sizes(desktop_points, dpi)


class ThemeManager(QObject):
    """Applies a theme to the application and re-applies it when the system scheme changes
    (for the "system" setting)."""

    changed = Signal()

    def __init__(self, app: QApplication) -> None:
        super().__init__(app)
        self._app = app
        self._choice = "system"
        self._desktop_points = desktop_point_size(app.font())
        app.setStyle("Fusion")
        app.styleHints().colorSchemeChanged.connect(self._on_system_scheme)
        app.fontChanged.connect(self._on_font)  # the desktop's font changing while it runs

    @property
    def choice(self) -> str:
        """The user's setting: system, light or dark."""
        return self._choice

    def apply(self, choice: str) -> None:
        """Switch to `choice` (system, light or dark) at once."""
        global _active
        self._choice = choice if choice in THEMES else "system"
        dark = self._choice == "dark" or (self._choice == "system" and system_prefers_dark())
        _active = DARK if dark else LIGHT
        self._app.setPalette(_palette(_active))
        screen = self._app.primaryScreen()
        dpi = screen.logicalDotsPerInchY() if screen is not None else STANDARD_DPI
        sheet = style_sheet(theme_path("dark" if dark else "light"), self._desktop_points, dpi)
        self._app.setStyleSheet(sheet)
        self.changed.emit()

    def _on_font(self, font: QFont) -> None:
        points = desktop_point_size(font)
        if points != self._desktop_points:
            self._desktop_points = points
            self.apply(self._choice)

    def _on_system_scheme(self, _scheme: Qt.ColorScheme) -> None:
        if self._choice == "system":
            self.apply("system")
