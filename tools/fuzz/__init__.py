"""Hostile-peer fuzzing of a running node (loopback only): see hostile_peer.py."""
