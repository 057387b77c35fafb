"""SQL of trained models (sql/0005_trained_models.sql): plain async functions, connection first."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from typing import Any

import asyncpg

# pg_try_advisory_lock key: "reco" + "trn" in ASCII; one training run at a time.
LOCK_KEY = 0x7265636F74726E

_HISTORY = "SELECT user_id, item_id, first_watched_at FROM user_history"

_INSERT_VERSION = """
INSERT INTO model_versions (method, trained_from, trained_to, started_at, fit_seconds,
                            users, items, watches, params, figures)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::jsonb, $10::jsonb)
RETURNING version
"""

# Two statements, one transaction: the unique index on the active flag is
# checked row by row, so the old version is switched off first.
_DEACTIVATE = "UPDATE model_versions SET active = false WHERE active AND version <> $1"
_ACTIVATE = "UPDATE model_versions SET active = true WHERE version = $1"
_PRUNE = """
DELETE FROM model_versions
WHERE NOT active AND version NOT IN (
    SELECT version FROM model_versions ORDER BY version DESC LIMIT $1)
"""

_ACTIVE = "SELECT version, method FROM model_versions WHERE active"


async def try_lock(conn: asyncpg.Connection) -> bool:
    """The session-level training lock (released when the connection closes)."""
    return bool(await conn.fetchval("SELECT pg_try_advisory_lock($1)", LOCK_KEY))


async def history(
    conn: asyncpg.Connection, *, statement_timeout: float
) -> list[tuple[str, str, dt.datetime]]:
    """Every (user, item, first watch) of user_history."""
    rows = await conn.fetch(_HISTORY, timeout=statement_timeout)
    return [(r[0], r[1], r[2]) for r in rows]


async def insert_version(conn: asyncpg.Connection, *, method: str,
                         window: tuple[dt.datetime | None, dt.datetime | None],
                         started_at: dt.datetime, fit_seconds: float, users: int, items: int,
                         watches: int, params: dict[str, Any],
                         figures: dict[str, Any]) -> int:  # fmt: skip
    """A new, inactive version row; its number."""
    version = await conn.fetchval(
        _INSERT_VERSION, method, window[0], window[1], started_at, fit_seconds, users, items,
        watches, json.dumps(params), json.dumps(figures),
    )  # fmt: skip
    return int(version)


async def write_neighbours(
    conn: asyncpg.Connection, version: int,
    rows: Sequence[tuple[str, list[str], list[float]]], *, statement_timeout: float,
) -> None:  # fmt: skip
    """The version's neighbour lists, one row per item (COPY)."""
    await conn.copy_records_to_table(
        "model_neighbours", records=[(version, item, ids, ws) for item, ids, ws in rows],
        columns=("version", "item_id", "neighbours", "weights"), timeout=statement_timeout,
    )  # fmt: skip


async def activate(conn: asyncpg.Connection, version: int, keep: int) -> int:
    """Make ``version`` the active one and delete all but the ``keep`` newest; how many went."""
    async with conn.transaction():
        await conn.execute(_DEACTIVATE, version)
        await conn.execute(_ACTIVATE, version)
        status = await conn.execute(_PRUNE, keep)
    return int(status.split()[-1])


async def active(conn: asyncpg.Connection) -> tuple[int, str] | None:
    """(version, method) of the active model, or None."""
    row = await conn.fetchrow(_ACTIVE)
    return None if row is None else (int(row[0]), str(row[1]))
