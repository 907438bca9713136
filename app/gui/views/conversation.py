"""The conversation pane: header, verification banner, the message list (lazy history,
file bubbles with their transfer's progress and buttons), the composer, and the drop
target for files and folders."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import (
    QIdentityProxyModel,
    QModelIndex,
    QPersistentModelIndex,
    QPoint,
    Qt,
    QTimer,
    Signal,
)
from PySide6.QtGui import (
    QDragEnterEvent,
    QDragLeaveEvent,
    QDragMoveEvent,
    QDropEvent,
    QFocusEvent,
    QGuiApplication,
    QKeySequence,
    QResizeEvent,
    QShortcut,
    QTextCursor,
)
from PySide6.QtWidgets import (
    QAbstractItemView,
    QAbstractSlider,
    QFrame,
    QHBoxLayout,
    QLabel,
    QListView,
    QMenu,
    QPushButton,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from app.gui.models.contacts import presence_text
from app.gui.models.messages import MessageModel, MessageRole
from app.gui.views.file_card import TransferAction
from app.gui.views.message_delegate import MessageDelegate
from app.gui.views.peer_text import breakable, isolated
from app.gui.widgets.composer import Composer
from app.gui.widgets.drop_overlay import DropOverlay, local_paths
from app.gui.widgets.elided import ElidedLabel
from app.gui.widgets.icons import ICON_PIXELS, line_icon
from app.gui.widgets.naming import named
from app.gui.widgets.text_sized import icon_for_text
from app.gui.widgets.toast import Toast
from app.gui.widgets.transfer_menu import popup_transfer_menu
from app.node.api import MAX_MESSAGE_BYTES, Contact, Peer, message_too_long

FETCH_MARGIN = 60  # pixels from the top at which older history is requested
TRIM_ABOVE = 300
"""While the user follows the newest messages, an open conversation with more rows than
this forgets its oldest ones (down to `KEEP_ROWS`; scrolling up reads them again). Every
arriving message makes Qt lay out all rows: ~9 µs each here, 86 ms per message at 10 000."""
KEEP_ROWS = 200
HIGHLIGHT_MS = 2500  # how long a message opened from search is marked
DRAFT_SAVE_DELAY_MS = 1000  # a draft is stored once typing pauses this long
AnyIndex = QModelIndex | QPersistentModelIndex


class OnDemandFetch(QIdentityProxyModel):
    """Hides `canFetchMore` from the view: Qt would fetch whenever the last row is visible,
    which in a chat (newest at the bottom) is always. The pane asks for older pages itself
    when the user scrolls to the top."""

    def canFetchMore(self, parent: AnyIndex) -> bool:
        return False


class MessageList(QListView):
    """The scrolling list of bubbles."""

    resized = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("MessageList")
        self.setAccessibleName(self.tr("Messages"))
        self.setVerticalScrollMode(QAbstractItemView.ScrollMode.ScrollPerPixel)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
        self.setResizeMode(QListView.ResizeMode.Adjust)
        self.setUniformItemSizes(False)
        self.setWordWrap(True)
        self.verticalScrollBar().setSingleStep(24)
        # reached with Tab (a click on a message leaves the focus in the message field);
        # the arrow keys then pick a message, Ctrl+C or the Menu key act on it
        self.setFocusPolicy(Qt.FocusPolicy.TabFocus)
        copy = QShortcut(QKeySequence(QKeySequence.StandardKey.Copy), self)
        copy.setContext(Qt.ShortcutContext.WidgetShortcut)
        copy.activated.connect(self.copy_current)

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        self.resized.emit()

    def focusInEvent(self, event: QFocusEvent) -> None:
        if not self._current_in_view():
            # the lowest message in view (the newest when the list is at the bottom): the
            # list does not move under a user reading further up
            viewport = self.viewport().rect()
            lowest = self.indexAt(viewport.bottomLeft() + QPoint(viewport.width() // 2, -4))
            model = self.model()
            if not lowest.isValid() and model is not None and model.rowCount():
                lowest = model.index(model.rowCount() - 1, 0)
            if lowest.isValid():
                self.setAutoScroll(False)  # as it is, even if partly in view
                self.setCurrentIndex(lowest)
                self.setAutoScroll(True)
        super().focusInEvent(event)

    def _current_in_view(self) -> bool:
        current = self.currentIndex()
        return current.isValid() and self.viewport().rect().intersects(self.visualRect(current))

    def copy_current(self) -> None:
        """Ctrl+C: the text of the message picked with the arrow keys (a file's name)."""
        message = self.currentIndex().data(MessageRole.MESSAGE)
        if message is not None:
            QGuiApplication.clipboard().setText(message.text)


class ConversationPane(QWidget):
    """Shows one conversation; emits requests, never calls the node itself."""

    sendRequested = Signal(str, str)  # contact address, text
    verifyRequested = Signal(str)  # contact address
    filesDropped = Signal(str, list)  # contact address, list[Path]
    shareRequested = Signal(str)  # contact address: pick files to share with them
    typingRequested = Signal(str, bool)  # contact address, whether the composer holds text
    transferActionRequested = Signal(str, object)  # transfer id, TransferAction
    caughtUp = Signal(str)  # contact address: the user scrolled down to the newest message
    draftChanged = Signal(str, str)  # contact address, unsent text to keep ("": none)

    def __init__(self, model: MessageModel, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("ConversationPane")
        self.setAcceptDrops(True)
        self._model = model
        self._contact: Contact | None = None
        self._peer: Peer | None = None
        self._typing = False
        self._stick_to_bottom = True
        self._anchor_from_bottom: int | None = None
        self._trim_pending = False
        self._unseen = 0  # messages from the contact that came while the user read above
        self._unread_on_open = 0  # the contact's unread messages when the pane was opened
        self._drafts: dict[str, str] = {}
        """What was typed and not sent, per contact, while another conversation is shown.
        The node keeps them too, sealed like messages (`draftChanged`), so they survive a
        restart: the shown conversation's a second after typing stops (at once when
        emptied, e.g. sent), the others' when the user switches away."""
        self._draft_timer = QTimer(self)
        self._draft_timer.setSingleShot(True)
        self._draft_timer.setInterval(DRAFT_SAVE_DELAY_MS)
        self._draft_timer.timeout.connect(self.flush_draft)
        self._keeping_draft = True

        self._title = named(ElidedLabel(), "ConversationTitle")  # a name has no width limit
        self._subtitle = named(ElidedLabel(), "ConversationSubtitle")
        self._subtitle.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.verify_button = named(QToolButton(), "VerifyButton")
        self.verify_button.setIcon(line_icon("verify"))
        icon_for_text(self.verify_button, ICON_PIXELS)
        self.verify_button.setToolTip(self.tr("Compare safety numbers"))
        self.verify_button.setAccessibleName(self.tr("Verify safety number"))
        self.verify_button.clicked.connect(self._ask_verify)
        header = named(QFrame(), "ConversationHeader")
        header_layout = QHBoxLayout(header)
        header_layout.setContentsMargins(20, 10, 12, 10)
        titles = QVBoxLayout()
        titles.setSpacing(0)
        titles.addWidget(self._title)
        titles.addWidget(self._subtitle)
        header_layout.addLayout(titles, 1)
        header_layout.addWidget(self.verify_button)

        self.banner = named(QFrame(), "Banner")
        banner_layout = QHBoxLayout(self.banner)
        banner_layout.setContentsMargins(20, 8, 12, 8)
        self.banner_label = QLabel(wordWrap=True)
        self.banner_button = QPushButton(self.tr("Verify now"))
        self.banner_button.setAccessibleName(self.tr("Verify this contact now"))
        self.banner_button.clicked.connect(self._ask_verify)
        banner_layout.addWidget(self.banner_label, 1)
        banner_layout.addWidget(self.banner_button)
        self.banner.hide()

        self.list = MessageList()
        self._proxy = OnDemandFetch(self)
        self._proxy.setSourceModel(model)
        self.list.setModel(self._proxy)
        self.delegate = MessageDelegate(self.list, self)
        self.delegate.transferActionRequested.connect(self.transferActionRequested)
        self.list.setItemDelegate(self.delegate)
        self.list.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.list.customContextMenuRequested.connect(self._context_menu)

        self.composer = Composer()
        self.composer.max_bytes = MAX_MESSAGE_BYTES
        self.composer.submitted.connect(self._send)
        self.composer.pageRequested.connect(self._page)
        self.length_hint = named(QLabel(), "LengthHint")
        self.length_hint.setVisible(False)
        self.send_button = named(QPushButton(self.tr("Send")), "SendButton")
        self.send_button.setAccessibleName(self.tr("Send message"))
        self.send_button.setEnabled(False)
        self.send_button.clicked.connect(self.composer.submit)
        self.composer.textChanged.connect(self._composer_changed)
        bar = named(QFrame(), "ComposerBar")
        bar_layout = QHBoxLayout(bar)
        bar_layout.setContentsMargins(16, 10, 16, 10)
        bar_layout.setSpacing(10)
        self.attach_button = named(QToolButton(), "AttachButton")
        self.attach_button.setIcon(line_icon("attach"))
        icon_for_text(self.attach_button, ICON_PIXELS)
        self.attach_button.setToolTip(self.tr("Share files (Ctrl+O)"))
        self.attach_button.setAccessibleName(self.tr("Share files"))
        self.attach_button.clicked.connect(self._ask_share)
        bar_layout.addWidget(self.attach_button, 0, Qt.AlignmentFlag.AlignBottom)
        bar_layout.addWidget(self.composer, 1)
        bar_layout.addWidget(self.length_hint, 0, Qt.AlignmentFlag.AlignBottom)
        bar_layout.addWidget(self.send_button, 0, Qt.AlignmentFlag.AlignBottom)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        layout.addWidget(header)
        layout.addWidget(self.banner)
        layout.addWidget(self.list, 1)
        layout.addWidget(bar)

        self.overlay = DropOverlay(self)
        self.toast = Toast(self, above=bar)
        self.newer_button = named(QPushButton(self.list), "NewerButton")
        self.newer_button.setCursor(Qt.CursorShape.PointingHandCursor)
        self.newer_button.clicked.connect(self._scroll_to_bottom)
        self.list.resized.connect(self._list_resized)
        self.newer_button.hide()

        scrollbar = self.list.verticalScrollBar()
        scrollbar.valueChanged.connect(self._on_scroll)
        scrollbar.rangeChanged.connect(self._on_range)
        model.rowsAboutToBeInserted.connect(self._before_insert)
        model.opened.connect(self._opened)

    # ------------------------------------------------------------------ contact

    @property
    def contact(self) -> Contact | None:
        """The contact shown."""
        return self._contact

    def set_contact(
        self,
        contact: Contact,
        peer: Peer | None = None,
        typing: bool = False,
        lookalike: bool = False,
    ) -> None:
        """Show `contact`'s header and banner (the model loads the messages); `peer` is what
        the transport last said about them, `typing` whether they are typing to us,
        `lookalike` whether another contact's name reads the same."""
        self._switch_draft(contact.address)
        self._contact = contact
        self._peer = peer
        self._typing = typing
        self._stick_to_bottom = True
        self._anchor_from_bottom = None
        self._set_unseen(0)
        self._unread_on_open = 0
        self.delegate.first_unread = None
        self.delegate.clear_cache()
        self._title.set_full_text(contact.name)
        self._show_subtitle()
        self._subtitle.setToolTip(contact.address)
        self._show_banner(contact, lookalike)
        self.overlay.set_target(isolated(contact.name))
        self.composer.setPlaceholderText(self.tr("Message {0}").format(self._banner_name(contact)))
        self.composer.viewport().update()  # a shown placeholder is not redrawn by itself

    def _switch_draft(self, address: str) -> None:
        """Keep what is typed for the contact shown until now, and put back what was
        typed for `address`: a draft never goes to another contact."""
        previous = self._contact
        if previous is not None and previous.address == address:
            return  # the same conversation, shown again (its header changed)
        if previous is not None:
            self._draft_timer.stop()
            text = self.composer.toPlainText()
            kept = text if text.strip() else ""
            if kept:
                self._drafts[previous.address] = text
            else:
                self._drafts.pop(previous.address, None)
            self._keeping_draft = False  # the clear below empties the box, not the draft
            self.composer.clear()  # tells the contact we stopped typing
            self._keeping_draft = True
            self.draftChanged.emit(previous.address, kept)
        self._contact = None  # a draft put back is not typing
        self.composer.setPlainText(self._drafts.pop(address, ""))
        self.composer.moveCursor(QTextCursor.MoveOperation.End)

    def set_drafts(self, drafts: dict[str, str]) -> None:
        """The drafts the node kept (at start): each goes back to its conversation,
        unless something was typed there already."""
        for address, text in drafts.items():
            if self._contact is not None and self._contact.address == address:
                if not self.composer.toPlainText().strip():
                    contact, self._contact = self._contact, None  # not typing
                    self.composer.setPlainText(text)
                    self.composer.moveCursor(QTextCursor.MoveOperation.End)
                    self._contact = contact
            else:
                self._drafts.setdefault(address, text)

    def flush_draft(self) -> None:
        """Ask to store the shown conversation's draft now (typing paused, or quitting)."""
        self._draft_timer.stop()
        if self._contact is not None:
            text = self.composer.toPlainText()
            self.draftChanged.emit(self._contact.address, text if text.strip() else "")

    def set_lookalike(self, lookalike: bool) -> None:
        """Whether another contact's name now reads like the shown contact's."""
        if self._contact is not None:
            self._show_banner(self._contact, lookalike)

    @property
    def subtitle(self) -> str:
        """The header's second line: presence · verification · short address."""
        return self._subtitle.full_text()

    def set_presence(self, peer: Peer | None) -> None:
        """The transport's latest word about the contact shown (None: not connected)."""
        if peer != self._peer:
            self._peer = peer
            self._show_subtitle()

    @property
    def typing(self) -> bool:
        """Whether the header says the contact is typing."""
        return self._typing

    def set_typing(self, typing: bool) -> None:
        """The contact shown started or stopped typing to us."""
        if typing != self._typing:
            self._typing = typing
            self._show_subtitle()

    def _show_subtitle(self) -> None:
        contact = self._contact
        if contact is None:
            return
        short = f"{contact.address[:12]}…{contact.address[-6:]}"
        state = self.tr("Verified") if contact.verified else self.tr("Not verified")
        presence = self.tr("typing…") if self._typing else presence_text(self._peer)
        self._subtitle.set_full_text(f"{presence} · {state} · {short}")
        self._subtitle.setAccessibleName(self.tr("{0}, {1}").format(presence, state))

    @staticmethod
    def _banner_name(contact: Contact) -> str:
        """The name as the banner's sentence holds it: a long word in it (a peer may
        choose 64 letters without a space) can wrap, instead of widening the label
        beyond the window and cutting the sentence off."""
        return isolated(breakable(contact.name))

    def _show_banner(self, contact: Contact, lookalike: bool) -> None:
        """Red when someone presented another key for the contact, yellow while unverified
        or while another contact's name reads the same."""
        if contact.key_changed:
            self.banner.setObjectName("DangerBanner")
            self.banner_label.setText(
                self.tr(
                    "Warning: someone presented a different encryption key for {0}. Messages "
                    "are paused. Check with {0} in person or over a call; if they really have "
                    "a new key, remove them and add them again from their new invite."
                ).format(self._banner_name(contact))
            )
        else:
            self.banner.setObjectName("Banner")
            texts = []
            if lookalike:
                texts.append(
                    self.tr(
                        "Another contact's name looks the same: this {0} has the address "
                        "ending {1}."
                    ).format(self._banner_name(contact), contact.address[-6:])
                )
            if contact.not_added_back:
                texts.append(
                    self.tr(
                        "{0} has not added you yet: your messages wait until they do. Share "
                        "your invite with {0}."
                    ).format(self._banner_name(contact))
                )
            if not contact.verified:
                texts.append(
                    self.tr(
                        "Not verified yet: compare safety numbers with {0} in person or on a "
                        "call, so nobody can be in the middle."
                    ).format(self._banner_name(contact))
                )
            self.banner_label.setText(" ".join(texts))
        self.banner_button.setVisible(not contact.key_changed and not contact.verified)
        self.banner.setVisible(
            contact.key_changed or not contact.verified or lookalike or contact.not_added_back
        )
        self.banner.style().unpolish(self.banner)  # the object name picks the QSS rule
        self.banner.style().polish(self.banner)

    def _ask_share(self) -> None:
        if self._contact is not None:
            self.shareRequested.emit(self._contact.address)

    def _ask_verify(self) -> None:
        if self._contact is not None:
            self.verifyRequested.emit(self._contact.address)

    def _composer_changed(self) -> None:
        text = self.composer.toPlainText()
        has_text = bool(text.strip())
        too_long = self.composer.too_long()
        self.send_button.setEnabled(has_text and not too_long)
        if too_long:  # kept in the box: the user splits it or shares it as a file
            size = len(text.encode("utf-8", "replace"))
            self.length_hint.setText(
                self.tr("{0} KiB: too long (at most {1} KiB)").format(
                    -(-size // 1024), MAX_MESSAGE_BYTES // 1024
                )
            )
            self.length_hint.setToolTip(message_too_long(size))
        self.length_hint.setVisible(too_long)
        if self._contact is not None:
            self.typingRequested.emit(self._contact.address, has_text)
            if self._keeping_draft and has_text:
                self._draft_timer.start()  # stored once typing pauses
            elif self._keeping_draft:
                self.flush_draft()  # emptied (sent, or deleted): at once

    def restore_unsent(self, address: str, text: str) -> None:
        """A message to `address` could not be sent: put its text back in the composer
        (before anything typed since), or in that conversation's draft if another one is
        shown now."""
        if self._contact is None or self._contact.address != address:
            draft = self._drafts.get(address, "")
            self._drafts[address] = f"{text}\n{draft}" if draft.strip() else text
            self.draftChanged.emit(address, self._drafts[address])
            return
        typed = self.composer.toPlainText()
        self.composer.setPlainText(f"{text}\n{typed}" if typed.strip() else text)
        self.composer.moveCursor(QTextCursor.MoveOperation.End)

    def _send(self, text: str) -> None:
        if self._contact is not None:
            self._scroll_to_bottom()  # what we send shows at the bottom: so do theirs
            if self.delegate.first_unread is not None:  # answered: they are not new now
                self.delegate.first_unread = None
                self.list.doItemsLayout()
            self.sendRequested.emit(self._contact.address, text)

    # ------------------------------------------------------------------ scrolling

    def open_at_unread(self, unread: int) -> None:
        """The conversation being opened has `unread` messages from the contact: once its
        newest page is in, show the first of them at the top under a "New messages" line
        (instead of the newest at the bottom: more than a screenful were marked read
        unseen). Reaching the bottom reads them."""
        self._unread_on_open = unread

    def _opened(self, _address: str) -> None:
        unread, self._unread_on_open = self._unread_on_open, 0
        row, exact = self._first_unread_row(unread)
        if row < 0:
            self._scroll_to_bottom()
            return
        if exact:  # (the first is further back than the page read: no line)
            self.delegate.first_unread = self._model.message_at(row).id
        self._stick_to_bottom = False
        self._set_unseen(unread)
        index = self._proxy.mapFromSource(self._model.index(row, 0))
        self.list.scrollTo(index, QAbstractItemView.ScrollHint.PositionAtTop)
        if self._at_bottom():  # they all fit on the screen: seen
            self._scroll_to_bottom()

    def _first_unread_row(self, unread: int) -> tuple[int, bool]:
        """The row of the oldest of the contact's last `unread` messages and True, or the
        oldest row loaded and False when they go back further (-1 when there are none)."""
        if unread <= 0:
            return -1, False
        count = 0
        for row in range(self._model.rowCount() - 1, -1, -1):
            if not self._model.message_at(row).outgoing:
                count += 1
                if count == unread:
                    return row, True
        return (0 if count else -1), False

    @property
    def following(self) -> bool:
        """Whether the newest message is in view (the user follows the conversation): a
        message arriving now is seen; while the user reads further up, it is not."""
        return self._stick_to_bottom or self._at_bottom()

    @property
    def unseen(self) -> int:
        """Messages from the contact that arrived below while the user read further up."""
        return self._unseen

    def note_unseen(self) -> None:
        """A message from the contact arrived while the user reads further up: the button
        at the bottom of the list counts it (reaching the bottom reads it)."""
        self._set_unseen(self._unseen + 1)

    def _set_unseen(self, count: int) -> None:
        self._unseen = count
        if count:
            self.newer_button.setText(
                self.tr("↓ 1 new message")
                if count == 1
                else self.tr("↓ {0} new messages").format(count)
            )
            self.newer_button.setAccessibleName(self.newer_button.text().lstrip("↓ "))
            self.newer_button.adjustSize()
            self._place_newer_button()
            self.newer_button.show()
            self.newer_button.raise_()
        else:
            self.newer_button.hide()

    def _place_newer_button(self) -> None:
        viewport = self.list.viewport()
        size = self.newer_button.sizeHint()
        self.newer_button.resize(size)
        x = viewport.x() + (viewport.width() - size.width()) // 2
        y = viewport.y() + viewport.height() - size.height() - 12
        self.newer_button.move(max(0, x), max(0, y))

    def _list_resized(self) -> None:
        # the list, not only the pane: the banner coming or going changes its height
        if self.newer_button.isVisible():
            self._place_newer_button()

    def _at_bottom(self) -> bool:
        bar = self.list.verticalScrollBar()
        return bar.value() >= bar.maximum() - 8

    def _scroll_to_bottom(self) -> None:
        was_following = self._stick_to_bottom
        self._stick_to_bottom = True
        self.list.scrollToBottom()
        if not was_following:
            self._caught_up()

    def _page(self, direction: int) -> None:
        """Page Up / Page Down in the message field scroll the messages (a click on them
        leaves the focus in the field)."""
        bar = self.list.verticalScrollBar()
        bar.triggerAction(
            QAbstractSlider.SliderAction.SliderPageStepSub
            if direction < 0
            else QAbstractSlider.SliderAction.SliderPageStepAdd
        )

    def _caught_up(self) -> None:
        """The newest message came into view after the user read further up."""
        self._set_unseen(0)
        if self._contact is not None:
            self.caughtUp.emit(self._contact.address)

    def _before_insert(self, _parent: QModelIndex, first: int, _last: int) -> None:
        bar = self.list.verticalScrollBar()
        if first == 0 and self._model.rowCount() > 0:
            # older history goes above: keep the same messages in view
            self._anchor_from_bottom = bar.maximum() - bar.value()
        elif self._at_bottom():
            self._stick_to_bottom = True
        if first > 0 and not self._trim_pending and self._model.rowCount() >= TRIM_ABOVE:
            self._trim_pending = True  # once the arrivals of this turn of the loop are in
            QTimer.singleShot(0, self, self._trim)

    def _trim(self) -> None:
        """Forget the oldest rows of a long conversation while the user follows the newest
        ones (not while they read further up)."""
        self._trim_pending = False
        if self._stick_to_bottom and self._model.rowCount() > TRIM_ABOVE:
            self._model.drop_oldest(KEEP_ROWS)

    def _on_range(self, _minimum: int, maximum: int) -> None:
        bar = self.list.verticalScrollBar()
        if self._anchor_from_bottom is not None:
            bar.setValue(maximum - self._anchor_from_bottom)
            self._anchor_from_bottom = None
        elif self._stick_to_bottom:
            bar.setValue(maximum)
        if maximum == 0:
            self.request_older()  # the history doesn't fill the view yet

    def _on_scroll(self, value: int) -> None:
        bar = self.list.verticalScrollBar()
        was_following = self._stick_to_bottom
        self._stick_to_bottom = value >= bar.maximum() - 8
        if self._stick_to_bottom and not was_following:
            self._caught_up()
        if value <= bar.minimum() + FETCH_MARGIN:
            self.request_older()

    def show_message(self, row: int, message_id: str) -> None:
        """Scroll the message in `row` of the model to the middle and mark it with a
        band for `HIGHLIGHT_MS` (a search result was opened)."""
        index = self._proxy.mapFromSource(self._model.index(row, 0))
        self._stick_to_bottom = False
        self.list.scrollTo(index, QAbstractItemView.ScrollHint.PositionAtCenter)
        self.delegate.highlighted = message_id
        self.list.viewport().update()

        def clear() -> None:
            if self.delegate.highlighted == message_id:
                self.delegate.highlighted = None
                self.list.viewport().update()

        QTimer.singleShot(HIGHLIGHT_MS, self, clear)

    def request_older(self) -> bool:
        """Load the page before the oldest message shown, if there is one."""
        root = QModelIndex()
        if self._model.canFetchMore(root):
            self._model.fetchMore(root)
            return True
        return False

    # ------------------------------------------------------------------ file bubbles

    def _context_menu(self, position: QPoint) -> QMenu | None:
        """Right click (or the Menu key) on a bubble: a file's actions, or a message's
        Copy text, as a menu (returned, shown without blocking)."""
        index = self.list.indexAt(position)
        if not index.isValid():
            return None
        where = self.list.viewport().mapToGlobal(position)
        transfer = index.data(MessageRole.TRANSFER)
        if transfer is not None:
            return popup_transfer_menu(transfer, self._request_action, self, where)
        message = index.data(MessageRole.MESSAGE)
        if message is None:
            return None
        menu = QMenu(self)
        copy = menu.addAction(self.tr("Copy text"))
        copy.triggered.connect(lambda: QGuiApplication.clipboard().setText(message.text))
        menu.aboutToHide.connect(menu.deleteLater)
        menu.popup(where)
        return menu

    def _request_action(self, transfer_id: str, action: TransferAction) -> None:
        self.transferActionRequested.emit(transfer_id, action)

    # ------------------------------------------------------------------ drag and drop

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        if self._contact is not None and local_paths(event.mimeData()):
            event.acceptProposedAction()
            self.overlay.show_over_parent()
        else:
            event.ignore()

    def dragMoveEvent(self, event: QDragMoveEvent) -> None:
        if self.overlay.isVisible():
            event.acceptProposedAction()
        else:
            event.ignore()

    def dragLeaveEvent(self, event: QDragLeaveEvent) -> None:
        self.overlay.hide()
        event.accept()

    def dropEvent(self, event: QDropEvent) -> None:
        self.overlay.hide()
        paths: list[Path] = local_paths(event.mimeData())
        if self._contact is None or not paths:
            event.ignore()
            return
        event.acceptProposedAction()
        self.filesDropped.emit(self._contact.address, paths)
