"""Benchmarks: scripts that print figures (``just bench <name>``), never timed tests."""
