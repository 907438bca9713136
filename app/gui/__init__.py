"""The desktop app: PySide6 widgets over the node API (`app.node.api` only)."""
