"""Capture structlog events in tests, with the context bound through contextvars."""

from __future__ import annotations

from collections.abc import Iterator, MutableMapping
from contextlib import contextmanager
from typing import Any

import structlog
from structlog.testing import LogCapture

Logs = list[MutableMapping[str, Any]]


@contextmanager
def captured_logs() -> Iterator[Logs]:
    """Every event logged inside, as dicts (request ids and other bound context included)."""
    capture = LogCapture()
    previous = structlog.get_config()
    structlog.configure(processors=[structlog.contextvars.merge_contextvars, capture])
    try:
        yield capture.entries
    finally:
        structlog.configure(**previous)
