"""SQL for the catalogue (``items``): plain async functions taking the connection first.

The caller owns the transaction. ``attributes`` travels as JSON text both ways
(``$n::jsonb`` in, ``::text`` out) so that the pool needs no type codec.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from typing import Any

import asyncpg
import attrs


@attrs.frozen
class Item:
    """One catalogue entry as clients write it."""

    item_id: str
    title: str
    genres: tuple[str, ...] = ()
    active: bool = True
    attributes: dict[str, Any] = attrs.field(factory=dict)


@attrs.frozen
class StoredItem:
    """An item as read back, with its bookkeeping timestamps."""

    item: Item
    created_at: dt.datetime
    updated_at: dt.datetime


_UPSERT = """
INSERT INTO items (item_id, title, genres, active, attributes)
VALUES ($1, $2, $3::text[], $4, $5::jsonb)
ON CONFLICT (item_id) DO UPDATE
SET title = EXCLUDED.title, genres = EXCLUDED.genres, active = EXCLUDED.active,
    attributes = EXCLUDED.attributes, updated_at = now()
"""


def _args(item: Item) -> tuple[Any, ...]:
    return (item.item_id, item.title, list(item.genres), item.active, json.dumps(item.attributes))


async def upsert_item(conn: asyncpg.Connection, item: Item) -> tuple[StoredItem, bool]:
    """Insert or replace one item; the stored item and whether it was created."""
    row = await conn.fetchrow(
        _UPSERT + " RETURNING created_at, updated_at, (xmax = 0) AS created", *_args(item)
    )
    assert row is not None
    return StoredItem(item, row["created_at"], row["updated_at"]), bool(row["created"])


async def upsert_items(conn: asyncpg.Connection, items: Sequence[Item]) -> int:
    """Insert or replace every item (a later duplicate id wins); the number written."""
    await conn.executemany(_UPSERT, [_args(item) for item in items])
    return len(items)


async def get_item(conn: asyncpg.Connection, item_id: str) -> StoredItem | None:
    row = await conn.fetchrow(
        """
        SELECT item_id, title, genres, active, attributes::text AS attributes,
               created_at, updated_at
        FROM items WHERE item_id = $1
        """,
        item_id,
    )
    if row is None:
        return None
    item = Item(row["item_id"], row["title"], tuple(row["genres"]), row["active"],
                json.loads(row["attributes"]))  # fmt: skip
    return StoredItem(item, row["created_at"], row["updated_at"])


async def deactivate_item(conn: asyncpg.Connection, item_id: str) -> bool:
    """Mark an item inactive (it stays readable, never recommended); False when unknown."""
    status = await conn.execute(
        "UPDATE items SET active = false, updated_at = now() WHERE item_id = $1", item_id
    )
    return bool(status != "UPDATE 0")
