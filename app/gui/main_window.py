"""The main window: contacts and search on the left, the conversation on the right, node
status at the bottom, a tray icon when the desktop has a tray, and the transfers list
(Ctrl+J) for every shared file."""

from __future__ import annotations

from itertools import pairwise
from pathlib import Path

from PySide6.QtCore import QEvent, QModelIndex, QPoint, Qt, Signal
from PySide6.QtGui import (
    QAction,
    QCloseEvent,
    QKeySequence,
    QResizeEvent,
    QShortcut,
)
from PySide6.QtWidgets import (
    QApplication,
    QDialog,
    QFrame,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListView,
    QListWidget,
    QListWidgetItem,
    QMainWindow,
    QMenu,
    QStackedWidget,
    QSystemTrayIcon,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from app.gui.asyncqt import async_slot, run_dialog
from app.gui.bridge import ActionFailed, NodeBridge
from app.gui.desktop_open import DesktopOpener
from app.gui.dialogs.add_contact import AddContactDialog
from app.gui.dialogs.contact_actions import ask_new_name, confirm_remove, pick_paths
from app.gui.dialogs.invite import InviteDialog
from app.gui.dialogs.settings import SettingsDialog
from app.gui.dialogs.transfer_cancel import confirm_cancel, worth_asking
from app.gui.dialogs.transfers import TransfersDialog
from app.gui.dialogs.verify import VerifyDialog
from app.gui.models.contacts import ContactModel, ContactRole
from app.gui.models.messages import MessageModel
from app.gui.models.transfers import TransferModel
from app.gui.resources import app_icon
from app.gui.theme import ThemeManager, text_scale
from app.gui.tray import TrayIcon
from app.gui.views.contact_delegate import ContactDelegate
from app.gui.views.conversation import ConversationPane
from app.gui.views.file_card import TransferAction
from app.gui.views.painting import grapheme_prefix
from app.gui.views.peer_text import isolated, one_line_name
from app.gui.views.search_results import SearchResultDelegate, search_result_item
from app.gui.widgets.elided import ElidedLabel
from app.gui.widgets.icons import ICON_PIXELS, line_icon
from app.gui.widgets.naming import named
from app.gui.widgets.status_bar import ElidingStatusBar
from app.gui.widgets.text_sized import icon_for_text
from app.gui.widgets.toast import Toast
from app.gui.window_place import fit_on_screen, room_for
from app.node.api import (
    Contact,
    Message,
    MessageStatus,
    Peer,
    Settings,
    Status,
    Transfer,
    TransferState,
    Whoami,
)

SIDEBAR_WIDTH = 320
SIDEBAR_MIN_WIDTH = 260
"""In a narrow window the contact list gives the conversation room, down to this."""
SIDEBAR_SHARE = 0.38
MIN_SIZE = (640, 440)
"""The smallest window at a 10 pt font (two side by side fit a 1280-pixel-wide screen);
it and the sidebar widths grow with a larger font (`text_scale`), within the screen."""
OFFER_PAGE = 200
"""Messages read per page while looking for the file messages of our waiting offers."""


def _tool_button(icon: str, tip: str, name: str) -> QToolButton:
    button = QToolButton()
    button.setIcon(line_icon(icon))
    icon_for_text(button, ICON_PIXELS)
    button.setToolTip(tip)
    button.setAccessibleName(name)
    button.setObjectName(f"{icon.title().replace('-', '')}Button")
    return button


class MainWindow(QMainWindow):
    """The messenger window. Talks to the node only through its `NodeBridge`."""

    quitRequested = Signal()

    def __init__(self, bridge: NodeBridge, themes: ThemeManager | None = None) -> None:
        super().__init__()
        self.bridge = bridge
        self._themes = themes
        self.me: Whoami | None = None
        self._add_dialog: AddContactDialog | None = None
        self.settings: Settings | None = None
        self._quitting = False
        self._told_about_tray = False
        self._typing: set[str] = set()  # contacts typing to us now
        self._newest: dict[str, str] = {}
        """The id of the message of each conversation the window heard of last (the
        node publishes them as it stores them): what a read request is bounded by."""
        self.setWindowTitle(self.tr("Scrambled Eggs"))
        self.setWindowIcon(app_icon())
        self.resize(1100, 720)
        self.setMinimumSize(*MIN_SIZE)
        self._sidebar_widths = (SIDEBAR_MIN_WIDTH, SIDEBAR_WIDTH)

        self.contacts = ContactModel(self)
        self.transfers = TransferModel(self)
        self.messages = MessageModel(bridge, self, transfers=self.transfers)
        self.transfers_dialog: TransfersDialog | None = None
        self.opener = DesktopOpener(self)
        self.opener.failed.connect(self._nothing_opened)
        self._build_sidebar()
        self.conversation = ConversationPane(self.messages)
        self.empty = self._build_empty_state()
        self.right = QStackedWidget()
        self.right.addWidget(self.empty)
        self.right.addWidget(self.conversation)
        central = QWidget()
        layout = QHBoxLayout(central)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        layout.addWidget(self.sidebar)
        layout.addWidget(self.right, 1)
        self.setCentralWidget(central)
        self.toast = Toast(central)
        self._build_status_bar()
        self._build_actions()
        self.tray: TrayIcon | None = None
        if QSystemTrayIcon.isSystemTrayAvailable():
            self.tray = TrayIcon(self)
            self.tray.toggleRequested.connect(self.toggle_visible)
            self.tray.quitRequested.connect(self.request_quit)
            self.tray.show()
        self._connect_bridge()
        self._chain_tab_order()

    # ------------------------------------------------------------------ layout

    def _chain_tab_order(self) -> None:
        """Tab goes search, contacts, message field, Send, then the rest of the pane and
        the header buttons. Set pair by pair as the panes were built, the message field's
        Tab went up to the banner's "Verify now" and Send came four stops later."""
        pane = self.conversation
        chain = [
            self.search,
            self.contact_list,
            pane.composer,
            pane.send_button,
            pane.attach_button,
            pane.list,
            pane.banner_button,
            pane.verify_button,
            self.invite_button,
            self.add_button,
            self.transfers_button,
            self.settings_button,
        ]
        for first, second in pairwise(chain):
            self.setTabOrder(first, second)

    def _build_sidebar(self) -> None:
        self.sidebar = named(QFrame(), "Sidebar")
        self.sidebar.setFixedWidth(SIDEBAR_WIDTH)
        header = named(QFrame(), "SidebarHeader")
        header_layout = QHBoxLayout(header)
        header_layout.setContentsMargins(16, 14, 8, 8)
        names = QVBoxLayout()
        names.setSpacing(0)
        self.profile_name = named(ElidedLabel(), "ProfileName")
        self.profile_state = named(ElidedLabel(), "ProfileSubtitle")
        self.profile_state.set_full_text(self.tr("Starting…"))
        names.addWidget(self.profile_name)
        names.addWidget(self.profile_state)
        header_layout.addLayout(names, 1)
        self.invite_button = _tool_button(
            "invite", self.tr("My invite (Ctrl+I)"), self.tr("Show my invite")
        )
        self.add_button = _tool_button(
            "add-contact", self.tr("Add contact (Ctrl+N)"), self.tr("Add contact")
        )
        self.settings_button = _tool_button(
            "settings", self.tr("Settings (Ctrl+,)"), self.tr("Settings")
        )
        self.transfers_button = _tool_button(
            "transfers", self.tr("Transfers (Ctrl+J)"), self.tr("Show transfers")
        )
        for button in (
            self.invite_button,
            self.add_button,
            self.transfers_button,
            self.settings_button,
        ):
            header_layout.addWidget(button)
        self.transfers_button.clicked.connect(self.show_transfers)
        self.invite_button.clicked.connect(self.show_invite)
        self.add_button.clicked.connect(self.show_add_contact)
        self.settings_button.clicked.connect(self.show_settings)

        self.search = named(QLineEdit(), "SearchField")
        self.search.setPlaceholderText(self.tr("Search messages (Enter)"))
        self.search.setAccessibleName(self.tr("Search messages"))
        self.search.setClearButtonEnabled(True)
        # Qt's own clear icon is dark grey whatever the theme: ours follows it
        self._search_clear = self.search.findChild(QAction, "_q_qlineeditclearaction")
        if self._search_clear is not None:
            self._search_clear.setIcon(line_icon("clear"))
        self.search.returnPressed.connect(self.run_search)
        self.search.textChanged.connect(self._search_text_changed)

        self.contact_list = named(QListView(), "ContactList")
        self.contact_list.setAccessibleName(self.tr("Contacts"))
        self.contact_list.setModel(self.contacts)
        self.contact_list.setItemDelegate(ContactDelegate(self.contact_list))
        self.contact_list.setMouseTracking(True)
        self.contact_list.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.contact_list.selectionModel().currentChanged.connect(self._contact_chosen)
        self.contact_list.activated.connect(self._contact_activated)
        self.contact_list.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.contact_list.customContextMenuRequested.connect(self._contact_menu)
        self.no_contacts = named(
            QLabel(self.tr("No contacts yet.\nShare your invite or add someone's (Ctrl+N).")),
            "MutedLabel",
        )
        self.no_contacts.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.no_contacts.setWordWrap(True)
        self.results = named(QListWidget(), "SearchResults")
        self.results.setAccessibleName(self.tr("Search results"))
        self.results.setWordWrap(True)
        self.results.setItemDelegate(SearchResultDelegate(self.results))
        self.results.setMouseTracking(True)  # hover highlight, as in the contact list
        self.results.itemActivated.connect(self._result_chosen)
        self.results.itemClicked.connect(self._result_chosen)
        for widget in (self.search, self.results):  # Esc: back to the contacts
            leave = QShortcut(QKeySequence(Qt.Key.Key_Escape), widget)
            leave.setContext(Qt.ShortcutContext.WidgetShortcut)
            leave.activated.connect(self._leave_search)
        self.left_stack = QStackedWidget()
        self.left_stack.addWidget(self.contact_list)
        self.left_stack.addWidget(self.no_contacts)
        self.left_stack.addWidget(self.results)

        layout = QVBoxLayout(self.sidebar)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        layout.addWidget(header)
        search_row = QHBoxLayout()
        search_row.setContentsMargins(12, 4, 12, 10)
        search_row.addWidget(self.search)
        layout.addLayout(search_row)
        layout.addWidget(self.left_stack, 1)

    def _build_empty_state(self) -> QWidget:
        page = named(QWidget(), "ConversationPane")
        layout = QVBoxLayout(page)
        layout.addStretch(1)
        logo = QLabel()
        logo.setPixmap(app_icon().pixmap(112, 112))
        logo.setAlignment(Qt.AlignmentFlag.AlignCenter)
        title = named(QLabel(self.tr("Private by default")), "EmptyStateTitle")
        title.setAlignment(Qt.AlignmentFlag.AlignCenter)
        text = named(
            QLabel(
                self.tr(
                    "Pick a conversation on the left, or add a contact with their invite link.\n"
                    "Messages are end-to-end encrypted and travel without any server."
                )
            ),
            "EmptyState",
        )
        text.setAlignment(Qt.AlignmentFlag.AlignCenter)
        text.setWordWrap(True)
        for widget in (logo, title, text):
            layout.addWidget(widget)
        layout.addStretch(2)
        return page

    def _build_status_bar(self) -> None:
        self.setStatusBar(ElidingStatusBar())  # a long message ends in "…", not cut off
        self.peers_label = QLabel(self.tr("Connecting…"))
        self.peers_label.setAccessibleName(self.tr("Network status"))
        self.endpoints_label = QLabel()
        self.endpoints_label.setAccessibleName(self.tr("Node endpoints"))
        self.endpoints_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.active_transfers = QToolButton()
        self.active_transfers.setObjectName("ActiveTransfers")
        self.active_transfers.setAccessibleName(self.tr("Transfers in progress"))
        self.active_transfers.clicked.connect(self.show_transfers)
        self.active_transfers.hide()
        self.statusBar().addWidget(self.peers_label)
        # permanent: a temporary status message must not hide it (nor be drawn over it)
        self.statusBar().addPermanentWidget(self.active_transfers)
        self.statusBar().addPermanentWidget(self.endpoints_label)

    def _build_actions(self) -> None:
        def action(text: str, shortcut: QKeySequence | str, slot: object) -> QAction:
            act = QAction(text, self)
            act.setShortcut(QKeySequence(shortcut))
            act.triggered.connect(slot)
            self.addAction(act)
            return act

        self.add_action = action(self.tr("&Add contact…"), "Ctrl+N", self.show_add_contact)
        self.invite_action = action(self.tr("My &invite…"), "Ctrl+I", self.show_invite)
        self.search_action = action(self.tr("&Search messages"), "Ctrl+F", self.focus_search)
        self.settings_action = action(
            self.tr("S&ettings…"),
            QKeySequence(QKeySequence.StandardKey.Preferences),
            self.show_settings,
        )
        self.settings_action.setShortcuts(
            [
                QKeySequence("Ctrl+,"),
                *QKeySequence.keyBindings(QKeySequence.StandardKey.Preferences),
            ]
        )
        self.verify_action = action(
            self.tr("&Verify safety number…"), "Ctrl+Shift+V", self.verify_current
        )
        self.transfers_action = action(self.tr("&Transfers…"), "Ctrl+J", self.show_transfers)
        self.share_action = action(self.tr("Share &files…"), "Ctrl+O", self.share_files)
        self.share_folder_action = action(
            self.tr("Share a f&older…"), "Ctrl+Shift+O", self.share_folder
        )
        self.quit_action = action(self.tr("&Quit"), "Ctrl+Q", self.request_quit)
        menu = self.menuBar().addMenu(self.tr("&Scrambled Eggs"))
        for act in (
            self.invite_action,
            self.add_action,
            self.transfers_action,
            self.settings_action,
        ):
            menu.addAction(act)
        menu.addSeparator()
        menu.addAction(self.quit_action)
        chat = self.menuBar().addMenu(self.tr("&Conversation"))
        chat.addAction(self.share_action)
        chat.addAction(self.share_folder_action)
        chat.addSeparator()
        chat.addAction(self.search_action)
        chat.addAction(self.verify_action)

    def _connect_bridge(self) -> None:
        b = self.bridge
        b.contactAdded.connect(self._on_contact_added)
        self.contacts.lookalikesChanged.connect(self._lookalikes_changed)
        b.contactRemoved.connect(self._on_contact_removed)
        b.contactVerified.connect(self._on_contact_verified)
        b.contactChanged.connect(self._on_contact_verified)
        b.securityAlert.connect(self._on_security_alert)
        b.messageAdded.connect(self._on_message_added)
        b.messageStatusChanged.connect(self._on_status_changed)
        b.typingChanged.connect(self._on_typing_changed)
        b.settingsChanged.connect(self._apply_settings)
        b.statusUpdated.connect(self._on_node_status)
        b.peersUpdated.connect(self._on_peers)
        b.errorOccurred.connect(lambda text: self._tell(text, error=True))
        b.notice.connect(self._tell)
        b.nodeStopped.connect(self._on_node_stopped)
        b.transferAdded.connect(self.transfers.upsert)
        b.transferChanged.connect(self.transfers.upsert)
        self.transfers.activeChanged.connect(self._active_transfers_changed)
        self.conversation.transferActionRequested.connect(self.run_transfer_action)
        self.conversation.sendRequested.connect(b.send_message)
        b.sendFailed.connect(self.conversation.restore_unsent)
        self.conversation.typingRequested.connect(b.set_typing)
        self.conversation.verifyRequested.connect(self.show_verify)
        self.conversation.filesDropped.connect(self._files_dropped)
        self.conversation.caughtUp.connect(self._caught_up)
        self.conversation.draftChanged.connect(b.save_draft)
        self.conversation.shareRequested.connect(lambda address: self.share_with(address))
        self.contacts.unreadChanged.connect(self._unread_changed)

    # ------------------------------------------------------------------ loading

    def set_ready(self, ready: bool) -> None:
        """Enable the actions that need the node (off while it starts)."""
        for widget in (
            self.invite_button,
            self.add_button,
            self.settings_button,
            self.transfers_button,
            self.search,
        ):
            widget.setEnabled(ready)
        for act in (
            self.add_action,
            self.invite_action,
            self.settings_action,
            self.search_action,
            self.transfers_action,
        ):
            act.setEnabled(ready)
        if not ready:
            self.profile_state.set_full_text(self.tr("Starting…"))
        elif not self.conversation.composer.hasFocus():
            # start in the search field: focusing the contact list would open a conversation
            self.search.setFocus()

    async def load(self) -> None:
        """Read identity, settings, transfers and contacts (plus each conversation's last
        message and the drafts kept from before)."""
        self.me = await self.bridge.whoami()
        self.profile_name.set_full_text(self.me.name)
        self._apply_settings(await self.bridge.settings())
        await self.load_transfers()
        contacts = await self.bridge.contacts()
        self.contacts.set_contacts(contacts)
        self._update_contact_stack()
        try:
            self.conversation.set_drafts(await self.bridge.drafts())
            newest = {m.contact: m for m in await self.bridge.last_messages()}
        except ActionFailed:
            return
        for contact in contacts:
            self.contacts.set_last(contact.address, newest.get(contact.address))

    async def load_transfers(self) -> None:
        """Read every transfer once; events keep them current afterwards (a transfer an
        event updated while the list was read keeps the event's state)."""
        token = self.transfers.snapshot_token()
        try:
            transfers = await self.bridge.transfers()
        except ActionFailed as exc:
            self._tell(str(exc), error=True)
            return
        self.transfers.merge_snapshot(transfers, token)
        await self._load_offer_delivery(transfers)

    async def _load_offer_delivery(self, transfers: list[Transfer]) -> None:
        """Whether each offer of ours still waiting for an answer reached the contact:
        the status of its file message (same id), read from the newest page back to the
        offer (events add to it meanwhile; a delivered offer never goes back)."""
        waiting = [t for t in transfers if t.outgoing and t.state is TransferState.OFFERED]
        for contact in {t.contact for t in waiting}:
            wanted = {t.id for t in waiting if t.contact == contact}
            oldest = min(t.time for t in waiting if t.contact == contact)
            before: str | None = None
            while wanted:
                try:
                    page = await self.bridge.messages(contact, before, OFFER_PAGE)
                except ActionFailed:
                    break
                for message in page:
                    if message.id in wanted:
                        wanted.discard(message.id)
                        self.transfers.message_status(message.id, message.status)
                if len(page) < OFFER_PAGE or page[0].time < oldest:
                    break
                before = page[0].id

    def _on_security_alert(self, about: str, _kind: str, detail: str) -> None:
        """Say whom a security alert is about: the node's sentence names nobody (it is
        logged too, and the log holds no contact's name), so a red "A peer behaves
        unusually ..." or "event #4 exists in 2 conflicting versions" left the user
        guessing which of their contacts it meant."""
        if about.startswith("dht:"):
            who = self.tr("a DHT node at {0}").format(about.removeprefix("dht:"))
        else:
            who = isolated(self._contact_name(about))
        self._tell(self.tr("Security alert about {0}: {1}").format(who, detail), error=True)

    def _tell(self, text: str, error: bool = False) -> None:
        target = (
            self.conversation.toast
            if self.right.currentWidget() is self.conversation
            else self.toast
        )
        target.show_message(text, error=error)
        self.statusBar().showMessage(text, 8000)

    def _update_contact_stack(self) -> None:
        if self.left_stack.currentWidget() is self.results:
            return
        empty = self.contacts.rowCount() == 0
        self.left_stack.setCurrentWidget(self.no_contacts if empty else self.contact_list)

    # ------------------------------------------------------------------ conversation

    def _contact_chosen(self, current: QModelIndex, _previous: QModelIndex) -> None:
        if current.isValid():
            contact: Contact = current.data(ContactRole.CONTACT)
            # arrow keys in the list browse: the focus stays there until Enter
            browsing = (
                self.contact_list.hasFocus()
                and QApplication.mouseButtons() == Qt.MouseButton.NoButton
            )
            self.open_conversation(contact.address, not browsing)

    def _contact_activated(self, _index: QModelIndex) -> None:
        """Enter on a contact (or a double click): on to the message field."""
        if self.right.currentWidget() is self.conversation:
            self.conversation.composer.setFocus()

    @async_slot(str)
    async def open_conversation(self, address: str, focus_composer: bool = True) -> None:
        """Show the conversation with `address` (loads only its newest page)."""
        await self._open_conversation(address, focus_composer)

    async def _open_conversation(self, address: str, focus_composer: bool = True) -> None:
        contact = self.contacts.contact(address)
        if contact is None:
            return
        row = self.contacts.row_of(address)
        if self.contact_list.currentIndex().row() != row:
            self.contact_list.setCurrentIndex(self.contacts.index(row))
        if self.messages.contact == address and self.right.currentWidget() is self.conversation:
            return
        typing = address in self._typing
        lookalike = self.contacts.looks_like_another(address)
        self.conversation.set_contact(contact, self.contacts.peer(address), typing, lookalike)
        self.conversation.open_at_unread(self.contacts.unread(address))
        self.right.setCurrentWidget(self.conversation)
        if focus_composer:
            self.conversation.composer.setFocus()
        await self.messages.open(address)
        if self.messages.contact == address and self.conversation.following:
            # opened at the newest: its messages are read (those further up are read
            # once the user scrolls down to them)
            self._mark_seen(address)

    def _files_dropped(self, address: str, paths: list[Path]) -> None:
        self.bridge.share_paths(address, paths)

    # ------------------------------------------------------------------ transfers

    def run_transfer_action(self, transfer_id: str, action: TransferAction) -> None:
        """A file bubble's or transfers row's button (or menu item) was chosen."""
        if action == TransferAction.ACCEPT:
            self.bridge.accept_transfer(transfer_id)
        elif action == TransferAction.CANCEL and worth_asking(self.transfers.transfer(transfer_id)):
            self.cancel_after_asking(transfer_id)  # final: what moved is thrown away
        elif action in (TransferAction.DECLINE, TransferAction.CANCEL):
            self.bridge.cancel_transfer(transfer_id)
        elif action in (TransferAction.RETRY, TransferAction.RESUME):
            self.bridge.retry_transfer(transfer_id)
        elif action == TransferAction.PAUSE:
            self.bridge.pause_transfer(transfer_id)
        else:
            transfer = self.transfers.transfer(transfer_id)
            if transfer is not None:
                self.open_transfer(transfer, action == TransferAction.SHOW_IN_FOLDER)

    @async_slot(str)
    async def cancel_after_asking(self, transfer_id: str) -> None:
        """Ask, then cancel a transfer that has moved data (`confirm_cancel`)."""
        transfer = self.transfers.transfer(transfer_id)
        if transfer is None:
            return
        if not await confirm_cancel(self, transfer, self._contact_name(transfer.contact)):
            return
        self.bridge.cancel_transfer(transfer_id)

    def open_transfer(self, transfer: Transfer, folder: bool) -> None:
        """Open a transfer's file (or the folder holding it) with the desktop's default
        application."""
        if not transfer.path:
            return
        path = Path(transfer.path)
        target = path.parent if folder else path
        if not target.exists():
            self._tell(self.tr("{0} is no longer there.").format(target), error=True)
            return
        self.opener.open(target)

    def _nothing_opened(self, path: str) -> None:
        self._tell(self.tr("No application could open {0}.").format(path), error=True)

    def _active_transfers_changed(self, active: int) -> None:
        self.active_transfers.setVisible(active > 0)
        to_answer = self.transfers.offers_to_answer()  # offers that wait for us
        awaiting = self.transfers.offers_awaiting_answer()  # ours, waiting for them
        moving = active - to_answer - awaiting
        parts = []
        if to_answer:  # first: these need the user
            parts.append(
                self.tr("1 file offered to you")
                if to_answer == 1
                else self.tr("{0} files offered to you").format(to_answer)
            )
        if moving:
            parts.append(
                self.tr("1 transfer active")
                if moving == 1
                else self.tr("{0} transfers active").format(moving)
            )
        if awaiting:
            parts.append(
                self.tr("1 file waiting for them to accept")
                if awaiting == 1
                else self.tr("{0} files waiting for them to accept").format(awaiting)
            )
        text = " · ".join(parts)
        self.active_transfers.setText(text)  # shortened in a narrow window: whole on hover
        self.active_transfers.setToolTip(f"{text}\n{self.tr('Show transfers (Ctrl+J)')}")

    def _contact_name(self, address: str) -> str:
        """The contact's name where the window names them in a sentence, a notification
        or a list: followed by the end of their address when another contact's name
        reads the same (as in the contact list), which the impostor can't choose."""
        contact = self.contacts.contact(address)
        if contact is None:
            return address[:12] + "…"
        if self.contacts.looks_like_another(address):
            return f"{contact.name} …{address[-6:]}"
        return contact.name

    def show_transfers(self) -> TransfersDialog:
        """Ctrl+J: the transfers list (one non-modal window, raised if already open)."""
        if self.transfers_dialog is None:
            self.transfers_dialog = TransfersDialog(
                self.transfers, self._contact_name, self.run_transfer_action, self
            )
        self.transfers_dialog.show()
        self.transfers_dialog.raise_()
        self.transfers_dialog.activateWindow()
        return self.transfers_dialog

    # ------------------------------------------------------------------ node events

    def _on_contact_added(self, contact: Contact) -> None:
        new = self.contacts.row_of(contact.address) < 0
        self.contacts.add(contact)
        self._update_contact_stack()
        if new:  # added again: the conversation kept from before shows in its row
            self._load_last_message(contact.address)

    @async_slot(str)
    async def _load_last_message(self, address: str) -> None:
        try:
            last = await self.bridge.messages(address, None, 1)
        except ActionFailed:
            return
        if last and self.contacts.row_of(address) >= 0:
            self.contacts.note_message(last[-1], seen=True, newest=False)

    def _on_contact_removed(self, contact: Contact) -> None:
        self.contacts.remove(contact.address)
        if self.messages.contact == contact.address:
            self.messages.close()
            self.right.setCurrentWidget(self.empty)
        self._update_contact_stack()

    # ------------------------------------------------------------------ contact actions

    def _contact_menu(self, position: QPoint) -> None:
        """Right click (or the Menu key) on a contact: what can be done with them."""
        index = self.contact_list.indexAt(position)
        if not index.isValid():
            index = self.contact_list.currentIndex()
        if not index.isValid():
            return
        contact: Contact = index.data(ContactRole.CONTACT)
        menu = QMenu(self)
        menu.addAction(self.tr("Share files…"), lambda: self.share_with(contact.address))
        menu.addAction(self.tr("Share a folder…"), lambda: self.share_with(contact.address, True))
        menu.addAction(self.tr("Verify safety number…"), lambda: self.show_verify(contact.address))
        menu.addSeparator()
        menu.addAction(self.tr("Rename…"), lambda: self.rename_contact(contact.address))
        menu.addAction(self.tr("Remove…"), lambda: self.remove_contact(contact.address))
        menu.aboutToHide.connect(menu.deleteLater)  # after its action ran (queued)
        menu.popup(self.contact_list.viewport().mapToGlobal(position))

    def share_files(self) -> None:
        """Ctrl+O: pick files to share with the contact whose conversation is open."""
        if self.conversation.contact is not None:
            self.share_with(self.conversation.contact.address)

    def share_folder(self) -> None:
        """Ctrl+Shift+O: pick a folder to share with the open conversation's contact."""
        if self.conversation.contact is not None:
            self.share_with(self.conversation.contact.address, True)

    @async_slot(str, bool)
    async def share_with(self, address: str, folder: bool = False) -> None:
        """Pick files (or a folder) and share them with `address`."""
        contact = self.contacts.contact(address)
        if contact is None:
            return
        paths = await pick_paths(self, contact, folder)
        if paths:
            self.bridge.share_paths(address, paths)

    @async_slot(str)
    async def rename_contact(self, address: str) -> None:
        """Ask for another name for a contact and give it."""
        contact = self.contacts.contact(address)
        if contact is None:
            return
        name = await ask_new_name(self, contact)
        if name is None:
            return
        try:
            await self.bridge.rename_contact(address, name)
        except ActionFailed as exc:
            self._tell(str(exc), error=True)

    @async_slot(str)
    async def remove_contact(self, address: str) -> None:
        """Ask, then remove a contact (the node's event updates the window)."""
        contact = self.contacts.contact(address)
        if contact is None or not await confirm_remove(self, contact):
            return
        try:
            await self.bridge.remove_contact(address)
        except ActionFailed as exc:
            self._tell(str(exc), error=True)

    def _on_contact_verified(self, contact: Contact) -> None:
        """A contact's state changed (verified, or flagged): redraw it wherever shown."""
        self.contacts.add(contact)
        shown = self.conversation.contact
        if shown is not None and shown.address == contact.address:
            self._show_contact_header(contact)

    def _lookalikes_changed(self) -> None:
        """A contact came, went or was renamed: the open conversation's banner says
        whether another contact's name now reads like this one's."""
        shown = self.conversation.contact
        if shown is not None:
            self.conversation.set_lookalike(self.contacts.looks_like_another(shown.address))

    def _show_contact_header(self, contact: Contact) -> None:
        typing = contact.address in self._typing
        lookalike = self.contacts.looks_like_another(contact.address)
        peer = self.contacts.peer(contact.address)
        self.conversation.set_contact(contact, peer, typing, lookalike)

    def _conversation_visible(self, address: str) -> bool:
        return (
            self.messages.contact == address
            and self.right.currentWidget() is self.conversation
            and self.isVisible()
            and not self.isMinimized()
        )

    def _on_message_added(self, message: Message, before: str | None = None) -> None:
        self.transfers.message_added(message)
        visible = self._conversation_visible(message.contact)
        # whether the newest message is in view, before this one is added below it: a
        # user reading further up has not seen it (no read receipt, it counts as unread
        # and the list's button says so until they scroll down)
        following = visible and self.conversation.following
        self._newest[message.contact] = message.id
        self.messages.add(message, before)
        seen = following and self.isActiveWindow()
        self.contacts.note_message(message, seen=seen, newest=before is None)
        if seen and not message.outgoing:
            # read up to this one: a message arriving while the request is on its way
            # may be out of view by then (the user scrolled up)
            self.bridge.mark_read(message.contact, message.id)
        elif visible and not following and not message.outgoing:
            self.conversation.note_unseen()
        if not message.outgoing and not self.isActiveWindow():
            self._notify(message)

    def _on_status_changed(
        self, message_ids: tuple[str, ...], _contact: str, status: MessageStatus
    ) -> None:
        for message_id in message_ids:
            self.messages.set_status(message_id, status)
            self.transfers.message_status(message_id, status)

    def _on_typing_changed(self, address: str, typing: bool) -> None:
        self._typing = self._typing | {address} if typing else self._typing - {address}
        shown = self.conversation.contact
        if shown is not None and shown.address == address:
            self.conversation.set_typing(typing)

    def _notify(self, message: Message) -> None:
        if self.settings is not None and not self.settings.notifications:
            return
        title, preview = self.notification(message)
        if self.tray is not None and self.tray.supportsMessages():
            self.tray.showMessage(title, preview, app_icon(), 6000)
        else:
            QApplication.alert(self)

    def notification(self, message: Message) -> tuple[str, str]:
        """The title and text of the desktop notification for a message from a contact."""
        contact = self.contacts.contact(message.contact)
        title = self._contact_name(message.contact) if contact else self.tr("New message")
        preview = " ".join(message.text.split())
        if message.transfer is not None:
            preview = self.tr("Sent you a file: {0}").format(self._file_name(message))
        if len(preview) > 120:
            preview = grapheme_prefix(preview, 119) + "…"
        return title, preview

    def _file_name(self, message: Message) -> str:
        """The name of the file a message shares: the transfer's (from the file itself,
        sanitised by the node) once known, else the sender's text made safe to show."""
        transfer = None if message.transfer is None else self.transfers.transfer(message.transfer)
        return transfer.name if transfer is not None else one_line_name(message.text)

    def _unread_changed(self, total: int) -> None:
        title = self.tr("Scrambled Eggs")
        self.setWindowTitle(f"({total}) {title}" if total else title)
        if self.tray is not None:
            self.tray.set_unread(total)

    def _apply_settings(self, settings: Settings) -> None:
        self.settings = settings
        self.profile_name.set_full_text(settings.display_name)
        if self._themes is not None and self._themes.choice != settings.theme:
            self._themes.apply(settings.theme)
            self._restyle()

    def _restyle(self) -> None:
        for button, icon in (
            (self.invite_button, "invite"),
            (self.add_button, "add-contact"),
            (self.settings_button, "settings"),
            (self.transfers_button, "transfers"),
            (self.conversation.verify_button, "verify"),
            (self.conversation.attach_button, "attach"),
        ):
            button.setIcon(line_icon(icon))
        if self._search_clear is not None:
            self._search_clear.setIcon(line_icon("clear"))
        self.conversation.delegate.clear_cache()
        if self.transfers_dialog is not None:
            self.transfers_dialog.list.viewport().update()
        self.update()

    def _on_node_status(self, status: Status) -> None:
        peers = status.dht_peers
        if not status.running:
            text = self.tr("○ Offline")
        elif peers == 0:
            text = self.tr("○ Looking for peers")
        else:
            text = (
                self.tr("● Connected · 1 DHT peer")
                if peers == 1
                else self.tr("● Connected · {0} DHT peers").format(peers)
            )
        if status.clock:  # our clock looks wrong: said while it lasts, the why on hover
            text += self.tr(" · ⚠ Check the computer's clock")
        # a configured IPFS daemon or TURN server that does not answer: a word here,
        # the sentence (what it costs, that it is asked again) on hover
        if status.ipfs:
            text += self.tr(" · ⚠ IPFS daemon not answering")
        if status.turn:
            text += self.tr(" · ⚠ TURN server not answering")
        self.peers_label.setText(text)
        self.peers_label.setToolTip(
            "\n".join(filter(None, (status.clock, status.ipfs, status.turn)))
        )
        # the header is narrow: a word there, the detail in the status bar
        self.profile_state.set_full_text(self.tr("Online") if peers else text.lstrip("○● "))
        shown = ", ".join(status.endpoints) if status.endpoints else self.tr("no endpoint")
        self.endpoints_label.setText(self.tr("Listening on {0}").format(shown))

    def _on_peers(self, peers: list[Peer]) -> None:
        """The transport's peers (one poll): online dots and the conversation header."""
        self.contacts.set_peers(peers)
        shown = self.conversation.contact
        if shown is not None:
            self.conversation.set_presence(self.contacts.peer(shown.address))

    def _on_node_stopped(self, reason: str) -> None:
        self._on_peers([])  # no node, no connections
        self.peers_label.setText(self.tr("○ Node stopped ({0})").format(reason))

    # ------------------------------------------------------------------ search

    def focus_search(self) -> None:
        """Ctrl+F: put the cursor in the search field."""
        self.search.setFocus()
        self.search.selectAll()

    def _leave_search(self) -> None:
        """Esc in the search field or its results: clear the search, show the contacts."""
        self.search.clear()
        self.search.setFocus()

    def _search_text_changed(self, text: str) -> None:
        if not text.strip():
            self.results.clear()
            self.left_stack.setCurrentWidget(self.contact_list)
            self._update_contact_stack()

    @async_slot()
    async def run_search(self) -> None:
        """Search every conversation for the text in the search field."""
        text = self.search.text().strip()
        if not text:
            return
        try:
            found = await self.bridge.search(text)
        except ActionFailed as exc:
            self._tell(str(exc), error=True)
            return
        self.results.clear()
        for message in found:
            who = self._contact_name(message.contact)
            self.results.addItem(search_result_item(message, who, text))
        if not found:
            item = QListWidgetItem(self.tr("No messages contain “{0}”.").format(text))
            item.setFlags(Qt.ItemFlag.NoItemFlags)
            self.results.addItem(item)
        self.left_stack.setCurrentWidget(self.results)
        if found:
            self.results.setCurrentRow(0)  # Enter opens it; Down moves to the second
        self.results.setFocus()

    def _result_chosen(self, item: QListWidgetItem) -> None:
        message = item.data(Qt.ItemDataRole.UserRole)
        if isinstance(message, Message):
            self.show_found(message)

    @async_slot(object)
    async def show_found(self, message: Message) -> None:
        """Open the conversation of a search result at that message (loading older
        pages until it is there) and mark it for a moment."""
        await self._open_conversation(message.contact)
        row = self.messages.row_of(message.id)
        while row < 0 and self.messages.contact == message.contact:
            if not await self.messages.load_older():
                break
            row = self.messages.row_of(message.id)
        if row >= 0 and self.messages.contact == message.contact:
            self.conversation.show_message(row, message.id)

    # ------------------------------------------------------------------ dialogs

    @async_slot()
    async def show_add_contact(self) -> None:
        """Ctrl+N: add a contact from an invite."""
        await self._add_contact(None)

    def open_invite_link(self, link: str) -> None:
        """An invite link clicked outside the app: the window comes to the front with the
        Add contact dialog filled with it (the one already open, if any). The user
        checks the name and fingerprint there and presses Add; nothing is added before."""
        if self.isMinimized():
            self.showNormal()
        self.show()
        self.raise_()
        self.activateWindow()
        if self._add_dialog is not None:
            self._add_dialog.use_link(link)
            self._add_dialog.raise_()
            self._add_dialog.activateWindow()
            return
        self._add_from_link(link)

    @async_slot(str)
    async def _add_from_link(self, link: str) -> None:
        await self._add_contact(link)

    async def _add_contact(self, link: str | None) -> None:
        dialog = AddContactDialog(self.bridge, self, self.me.address if self.me else None, link)
        self._add_dialog = dialog
        try:
            accepted = await run_dialog(dialog)
        finally:
            self._add_dialog = None
        if accepted and dialog.added is not None:
            self._on_contact_added(dialog.added)
            self.open_conversation(dialog.added.address)
        dialog.deleteLater()

    @async_slot()
    async def show_invite(self) -> None:
        """Ctrl+I: show my invite link and QR code."""
        try:
            me = await self.bridge.whoami()
        except ActionFailed as exc:
            self._tell(str(exc), error=True)
            return
        dialog = InviteDialog(me, self)
        await run_dialog(dialog)
        dialog.deleteLater()

    @async_slot(str)
    async def show_verify(self, address: str) -> None:
        """Compare safety numbers with a contact."""
        dialog = VerifyDialog(self.bridge, address, self)
        dialog.load()
        await run_dialog(dialog)
        dialog.deleteLater()

    def verify_current(self) -> None:
        """Verify the contact whose conversation is open."""
        if self.conversation.contact is not None:
            self.show_verify(self.conversation.contact.address)

    @async_slot()
    async def show_settings(self) -> None:
        """Ctrl+,: edit settings."""
        try:
            settings = await self.bridge.settings()
        except ActionFailed as exc:
            self._tell(str(exc), error=True)
            return
        dialog = SettingsDialog(self.bridge, settings, self)
        if await run_dialog(dialog) and dialog.saved is not None:
            self._apply_settings(dialog.saved)
        dialog.deleteLater()

    # ------------------------------------------------------------------ window life

    def dispose(self) -> None:
        """Before the node goes away: drop pending loads, hide the tray icon, close every
        open dialog of the window (Add contact, settings, invite, verify, rename, a
        question: the task awaiting each was destroyed pending at quit, "Task was
        destroyed but it is pending!")."""
        self.messages.close()
        for dialog in self.findChildren(QDialog):
            if dialog.isVisible():
                dialog.reject()
        self._quitting = True
        if self.tray is not None:
            self.tray.hide()

    def toggle_visible(self) -> None:
        """Tray click: show and raise, or hide to the tray."""
        if self.isVisible() and not self.isMinimized() and self.isActiveWindow():
            self.hide()
            return
        self.showNormal()
        self.raise_()
        self.activateWindow()

    def request_quit(self) -> None:
        """Ctrl+Q or tray Quit: leave the app (the node shuts down cleanly)."""
        self._quitting = True
        if self.tray is not None:
            self.tray.hide()
        self.quitRequested.emit()

    def fit_to_font(self) -> None:
        """Minimum size and sidebar widths for the text size in use: at 15 pt the 10 pt
        pixel sizes cut the banner, the names and the search field's hint."""
        scale = text_scale(self)
        room = room_for(self)
        self.setMinimumSize(
            min(round(MIN_SIZE[0] * scale), room.width()),
            min(round(MIN_SIZE[1] * scale), room.height()),
        )
        self._sidebar_widths = (round(SIDEBAR_MIN_WIDTH * scale), round(SIDEBAR_WIDTH * scale))
        self._fit_sidebar(self.width())
        fit_on_screen(self)  # grown by the minimum size: not past the screen's edge

    def _fit_sidebar(self, window_width: int) -> None:
        narrowest, widest = self._sidebar_widths
        share = int(window_width * SIDEBAR_SHARE)
        self.sidebar.setFixedWidth(max(narrowest, min(widest, share)))

    def resizeEvent(self, event: QResizeEvent) -> None:
        self._fit_sidebar(event.size().width())
        super().resizeEvent(event)

    def closeEvent(self, event: QCloseEvent) -> None:
        if self.tray is not None and self.tray.isVisible() and not self._quitting:
            self.hide()
            event.ignore()
            if not self._told_about_tray and self.tray.supportsMessages():
                self._told_about_tray = True
                self.tray.showMessage(
                    self.tr("Scrambled Eggs is still running"),
                    self.tr("It keeps receiving messages. Quit from the tray menu or Ctrl+Q."),
                )
            return
        event.accept()
        if not self._quitting:
            self.request_quit()

    def changeEvent(self, event: QEvent) -> None:
        super().changeEvent(event)
        if event.type() == QEvent.Type.FontChange:  # the theme's sheet, or the desktop's font
            self.fit_to_font()
        if (
            event.type() == QEvent.Type.ActivationChange
            and self.isActiveWindow()
            and self.messages.contact is not None
            and self.right.currentWidget() is self.conversation
            and self.conversation.following  # read further up, the newest are not seen
        ):
            self._mark_seen(self.messages.contact)

    def _caught_up(self, address: str) -> None:
        """The user scrolled down to the newest message of the open conversation: what
        arrived while they read further up is seen now."""
        if self._conversation_visible(address) and self.contacts.unread(address):
            self._mark_seen(address)

    def _mark_seen(self, address: str) -> None:
        """The open conversation with `address` is seen down to its newest message: read
        up to the newest the window has (not "every one": read requests are coalesced,
        and one made as the conversation opened reached the node, on a loaded machine,
        after a message that came while the user had scrolled up, which it then marked
        read, with a read receipt to the sender)."""
        self.contacts.clear_unread(address)
        newest = self._newest.get(address)
        if newest is None and self.messages.contact == address and self.messages.rowCount():
            newest = self.messages.message_at(self.messages.rowCount() - 1).id
        if newest is not None:
            self.bridge.mark_read(address, newest)
