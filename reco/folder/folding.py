"""Folding co-occurrence increments into ``item_cooccurrence``: one writer per row.

The consumer's batch transaction appends the batch's pair increments to
``item_cooccurrence_deltas`` (apply_events, reco/engine/ingest.py): no index
and no row that another batch touches, so concurrent store lanes and
instances never wait for each other there, and the increments commit or roll
back with the events they come from.

:func:`fold` takes the committed increments of a range of the table's pages
in one statement (a TID range scan: it reads only those pages, so its cost is
bounded by the chunk, never by the backlog): it deletes them, sums them per
pair, adds the sums to ``item_cooccurrence`` and stamps both ends of every
changed pair in ``item_neighbour_changes`` (the read-side caches drop those
lists). Deleting and adding commit together, so each increment is folded
exactly once; one still inside an open transaction is invisible to the
delete and waits for the next fold. :func:`fold_pass` walks the table's
pages chunk by chunk, one transaction each, so a backlog of any size (after
an outage) drains in steps that each fit ``cooccurrence_fold_timeout``; rows
appended meanwhile, past the pages it measured, wait for the next pass. The pair space is cut
into parts by a hash of the pair's first id, and a transaction-level
advisory lock per part lets one folder at a time into each (the others skip
that turn): every ``item_cooccurrence`` row has a single writer, hence no
lock waits on pairs and no deadlocks, whatever the number of instances.
Summing several batches' worth also writes each popular pair once per fold
instead of once per batch.

:func:`prune` is the folder's other write, under the same locks: pair weights
decay with time (reco/engine/aggregates.py, PAIR_EPOCH: no row is rewritten
for that), and the pairs whose decayed weight fell below the floor are
deleted, a chunk of ``item_cooccurrence``'s pages per transaction, both ends
stamped like a fold's. A pair fed again later starts afresh.
"""

from __future__ import annotations

import datetime as dt

import anyio
import asyncpg

from reco.engine import aggregates

# pg_try_advisory_xact_lock key: "reco" + "fold" in ASCII (the migrations use "reco" + "mig").
LOCK_KEY = 0x7265636F666F6C64

# Pages [$3, $4) of the table (TID range scan, PostgreSQL >= 14).
# Part $1 of $2 of the pair space, by a hash of the pair's first id: parts never share a pair
# row (they may stamp the same items, in the same sorted order: a wait, never a deadlock).
_FOLD = """
WITH taken AS (
    DELETE FROM item_cooccurrence_deltas
    WHERE ctid >= $3::text::tid AND ctid < $4::text::tid
      AND (hashtext(item_id) & 2147483647) % $2 = $1
    RETURNING item_id, other_item_id, weight
), summed AS (
    SELECT item_id, other_item_id, sum(weight) AS weight
    FROM taken GROUP BY item_id, other_item_id
), added AS (
    INSERT INTO item_cooccurrence AS c (item_id, other_item_id, weight)
    SELECT item_id, other_item_id, weight FROM summed ORDER BY item_id, other_item_id
    ON CONFLICT (item_id, other_item_id) DO UPDATE SET weight = c.weight + EXCLUDED.weight
), stamped AS (
    INSERT INTO item_neighbour_changes AS n (item_id, changed_at)
    SELECT item_id, clock_timestamp() FROM (
        SELECT item_id FROM summed UNION SELECT other_item_id FROM summed
    ) AS ends ORDER BY item_id
    ON CONFLICT (item_id) DO UPDATE SET changed_at = EXCLUDED.changed_at
)
SELECT count(*) FROM taken
"""


async def fold(
    conn: asyncpg.Connection,
    *,
    statement_timeout: float,
    part: int = 0,
    parts: int = 1,
    first_block: int = 0,
    blocks: int = 2**31 - 1,
) -> int | None:
    """Fold the committed increments of ``part`` (of ``parts``) stored in pages
    ``[first_block, first_block + blocks)``; how many rows, or None when another
    folder is at that part.

    Parts split the pair space so that several folders can run at once on disjoint
    rows, each under its own lock (``LOCK_KEY + part``). Folders that disagree on
    ``parts`` stay correct (each increment is deleted, so folded, by one transaction
    only) but may wait for each other's rows. ``statement_timeout`` (seconds) replaces
    the pool's statement timeout for the rest of the transaction.

    The caller owns the transaction (one per chunk): the part's lock and the fold
    commit together.
    """
    return await _in_chunk(
        conn, _FOLD, "fold", statement_timeout=statement_timeout, part=part, parts=parts,
        first_block=first_block, blocks=blocks,
    )  # fmt: skip


async def _in_chunk(
    conn: asyncpg.Connection,
    sql: str,
    name: str,
    *args: object,
    statement_timeout: float,
    part: int,
    parts: int,
    first_block: int,
    blocks: int,
) -> int | None:
    """Run ``sql`` (a fold or prune statement: part $1 of $2, pages [$3, $4), then ``args``)
    under the part's lock in the caller's transaction; its count, or None when another
    folder holds the part."""
    if not conn.is_in_transaction():
        raise RuntimeError(f"{name}() runs inside the caller's transaction")
    last = min(first_block + blocks, 2**32 - 1)
    if not await conn.fetchval("SELECT pg_try_advisory_xact_lock($1)", LOCK_KEY + part):
        return None
    await conn.execute(f"SET LOCAL statement_timeout = {int(statement_timeout * 1000)}")
    counted: int = await conn.fetchval(
        sql, part, parts, f"({first_block},0)", f"({last},0)", *args,
        timeout=statement_timeout + 1,
    )  # fmt: skip
    return counted


async def table_blocks(conn: asyncpg.Connection, table: str = "item_cooccurrence_deltas") -> int:
    """How many pages ``table`` has now."""
    value: int = await conn.fetchval(
        "SELECT pg_relation_size($1::regclass) / current_setting('block_size')::bigint", table
    )
    return value


# Pages [$3, $4) of item_cooccurrence, part $1 of $2 (the fold's parts, under the same
# lock: the part's single writer), pairs whose stored weight is below $5 (the floor in
# PAIR_EPOCH's units); both ends of every deleted pair are stamped, as the fold does.
_PRUNE = """
WITH pruned AS (
    DELETE FROM item_cooccurrence
    WHERE ctid >= $3::text::tid AND ctid < $4::text::tid
      AND (hashtext(item_id) & 2147483647) % $2 = $1
      AND weight < $5::float8
    RETURNING item_id, other_item_id
), stamped AS (
    INSERT INTO item_neighbour_changes AS n (item_id, changed_at)
    SELECT item_id, clock_timestamp() FROM (
        SELECT item_id FROM pruned UNION SELECT other_item_id FROM pruned
    ) AS ends ORDER BY item_id
    ON CONFLICT (item_id) DO UPDATE SET changed_at = EXCLUDED.changed_at
)
SELECT count(*) FROM pruned
"""


def prune_below(weight_floor: float, now: dt.datetime) -> float:
    """The stored weight under which a pair reads below ``weight_floor`` at ``now``."""
    return weight_floor * aggregates.pair_scale(now)


async def prune(
    conn: asyncpg.Connection,
    *,
    below: float,
    statement_timeout: float,
    part: int = 0,
    parts: int = 1,
    first_block: int = 0,
    blocks: int = 2**31 - 1,
) -> int | None:
    """Delete the pairs of ``part`` stored in pages ``[first_block, first_block + blocks)``
    of ``item_cooccurrence`` whose stored weight is below ``below`` (:func:`prune_below`);
    how many, or None when another folder is at that part. The caller owns the
    transaction, as for :func:`fold` (whose lock this takes).

    Decay alone never deletes a row (weights only shrink relative to now); this is what
    bounds the table: a pair stays while it weighs at least the floor in today's units,
    so the pairs kept are at most (the pair weight fed per unit of time) * tau / floor.
    """
    return await _in_chunk(
        conn, _PRUNE, "prune", below, statement_timeout=statement_timeout, part=part,
        parts=parts, first_block=first_block, blocks=blocks,
    )  # fmt: skip


def chunks(table_blocks: int, chunk_blocks: int) -> list[tuple[int, int]]:
    """The (first block, blocks) chunks of one pass over ``table_blocks`` pages.

    An empty table still gets one chunk: rows may have arrived since it was measured.
    """
    return [(first, chunk_blocks) for first in range(0, max(table_blocks, 1), chunk_blocks)]


async def fold_pass(
    conn: asyncpg.Connection,
    *,
    statement_timeout: float,
    chunk_blocks: int,
    part: int = 0,
    parts: int = 1,
) -> int | None:
    """One pass over the table's pages, ``chunk_blocks`` at a time, each chunk in its own
    transaction (owned here: this is a caller of :func:`fold`); rows folded, or None when
    another folder held the part at the start."""
    total: int | None = None
    for first, blocks in chunks(await table_blocks(conn), chunk_blocks):
        async with conn.transaction():
            folded = await fold(
                conn, statement_timeout=statement_timeout, part=part, parts=parts,
                first_block=first, blocks=blocks,
            )  # fmt: skip
        if folded is None:
            return total  # another folder took the part over: it finishes the pass
        total = (total or 0) + folded
    return total


async def pending(conn: asyncpg.Connection) -> bool:
    """Are any committed increments waiting to be folded? (tools, tests and benchmarks)"""
    waiting: bool = await conn.fetchval("SELECT EXISTS (SELECT 1 FROM item_cooccurrence_deltas)")
    return waiting


async def fold_all(conn: asyncpg.Connection, *, statement_timeout: float) -> None:
    """Fold until nothing committed is pending, waiting out other folders (tools and tests)."""
    while await pending(conn):
        async with conn.transaction():
            folded = await fold(conn, statement_timeout=statement_timeout)
        if folded is None:
            await anyio.sleep(0.01)  # another folder holds the lock
