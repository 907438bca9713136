"""The desktop app: PySide6 widgets over the node API (`app.node.api` only)."""

from app.gui.pyside_sources import stop_caching_module_sources

stop_caching_module_sources()
