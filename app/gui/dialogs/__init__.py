"""Dialogs: first run, unlock, add contact, invite, verify, settings."""
