"""Aggregate updates from newly stored watch events (called inside the consumer's transaction).

The consumer inserts events (unique by event id) and passes only the new
ones here, in the same transaction, so that a duplicate never counts twice.
"""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

from reco.events import WatchEvent


async def apply_events(conn: asyncpg.Connection, events: Sequence[WatchEvent]) -> None:
    """Update user history, item popularity and co-occurrence for ``events``."""
    # Filled in by the engine issue (#5).
