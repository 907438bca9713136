"""Views and item delegates (conversation, contact list)."""
