"""Invite links read from a picture of their QR code.

A friend's invite often arrives as a picture: a screenshot of their invite window, a
photo of their screen, the QR code they posted. The Add contact dialog takes such a
picture (pasted, dropped or opened) and reads its QR codes with zxing-cpp (decision
0030), in the window's process: nothing leaves the computer.
"""

from __future__ import annotations

from PySide6.QtCore import QMimeData, Qt
from PySide6.QtGui import QImage, QPixmap

MAX_PICTURE_SIDE = 4000
"""A larger picture is scaled down to this many pixels on its longer side before it is
read: a 100-megapixel screenshot or photo is read in well under a second, and a QR code
that fills less than a few pixels of it could not be read anyway."""

PICTURE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")
"""Files a dropped or opened picture may be (what Qt's image readers take here)."""


class NoQrCode(ValueError):
    """The picture holds no QR code that can be read."""


def texts_in_picture(image: QImage) -> list[str]:
    """The text of every QR code in `image`, in the order found (empty: none)."""
    import zxingcpp  # imported when a picture is read: the window starts without it

    if image.isNull():
        return []
    if max(image.width(), image.height()) > MAX_PICTURE_SIDE:
        image = image.scaled(
            MAX_PICTURE_SIDE,
            MAX_PICTURE_SIDE,
            Qt.AspectRatioMode.KeepAspectRatio,
            Qt.TransformationMode.SmoothTransformation,
        )
    gray = image.convertToFormat(QImage.Format.Format_Grayscale8)
    found = zxingcpp.read_barcodes(gray, formats=zxingcpp.barcode_formats_from_str("QRCode"))
    return [code.text for code in found if code.valid and code.text]


def invite_in_picture(image: QImage) -> str:
    """The invite link (or address) a QR code in `image` holds: the first code whose
    text starts with ``eggs:`` or ``egg``, else the first code's text (the dialog says
    what is wrong with it). `NoQrCode` if the picture holds none."""
    texts = texts_in_picture(image)
    if not texts:
        raise NoQrCode("no QR code")
    for text in texts:
        if text.strip().lower().startswith("egg"):
            return text.strip()
    return texts[0].strip()


def picture_in(mime: QMimeData) -> QImage | None:
    """The picture pasted or dropped as `mime`: image data, or a local picture file
    (the first one); None if it holds neither."""
    if mime.hasImage():
        image = mime.imageData()
        if isinstance(image, QPixmap):
            image = image.toImage()
        if isinstance(image, QImage) and not image.isNull():
            return image
    for url in mime.urls() if mime.hasUrls() else []:
        path = url.toLocalFile()
        if path and path.lower().endswith(PICTURE_SUFFIXES):
            return QImage(path)
    return None
