"""Scrambled Eggs: a serverless, end-to-end encrypted messenger and file sharer."""

__version__ = "0.1.0"
