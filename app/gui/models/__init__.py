"""Qt item models over node data (contacts, conversations)."""
