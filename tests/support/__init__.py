"""Test support: the embedded servers as fixtures, and a running service."""
