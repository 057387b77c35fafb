"""Partitions and retention of the growing tables (docs/design.md "Retention")."""
