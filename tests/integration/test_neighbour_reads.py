"""The neighbours query reads about K rows of a popular item's pair range (issue 15).

A pair is stored once, so an item's neighbours are two ranges: item_id = x and
other_item_id = x. sql/0008 orders both by (weight DESC, the other item), and
the planner merges two index scans that stop after K rows; before it, the
query read both ranges whole and sorted them. The statement under test is the
real one (``queries._NEIGHBOURS``), explained with ANALYZE on a seeded table.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import asyncpg
import pytest

from reco.engine import queries

pytestmark = [pytest.mark.anyio, pytest.mark.integration]

SEED = "i05000"
PER_SIDE = 5_000  # pairs stored (other, SEED) and (SEED, other): 10,000 in all
K = 100
# Zero-padded ids sort the same in Python and in any collation; weights repeat
# (97 values) so ties are broken by the other item, as the query promises.
_SEED_ROWS = (
    """INSERT INTO items (item_id, title)
       SELECT format('i%s', lpad(n::text, 5, '0')), 'title ' || n
       FROM generate_series(0, 2 * $1::int) AS n""",
    """INSERT INTO item_popularity (item_id, user_count, log_score, last_at)
       SELECT item_id, 10, 0, now() FROM items""",
    """INSERT INTO item_cooccurrence (item_id, other_item_id, weight)
       SELECT least(i.item_id, $1::text), greatest(i.item_id, $1::text),
              (substr(i.item_id, 2)::int * 37 % 97)::float8
       FROM items i WHERE i.item_id <> $1::text""",
)


async def _seed(conn: asyncpg.Connection) -> None:
    rows, popularity, pairs = _SEED_ROWS
    await conn.execute(rows, PER_SIDE)
    await conn.execute(popularity)
    await conn.execute(pairs, SEED)
    await conn.execute("ANALYZE items, item_popularity, item_cooccurrence")


def _nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from _nodes(child)


async def test_popular_item_reads_about_k_pair_rows(conn: asyncpg.Connection) -> None:
    await _seed(conn)
    explained = await conn.fetchval(
        "EXPLAIN (ANALYZE, FORMAT JSON) " + queries._NEIGHBOURS, [SEED], K
    )
    plan = json.loads(explained)[0]["Plan"]
    scans = [n for n in _nodes(plan) if n.get("Relation Name") == "item_cooccurrence"]
    read = sum(n["Actual Rows"] * n["Actual Loops"] for n in scans)
    assert scans, plan
    assert all("Index" in n["Node Type"] for n in scans), [n["Node Type"] for n in scans]
    # two ranges of 5,000 each; a merge of two ordered scans reads at most K + 1 per side
    assert read <= 2 * (K + 1), (read, json.dumps(plan, indent=1))


async def test_neighbours_are_the_brute_force_top_k(conn: asyncpg.Connection) -> None:
    await _seed(conn)
    pairs = await conn.fetch("SELECT item_id, other_item_id, weight FROM item_cooccurrence")
    everyone = [
        (r["other_item_id"] if r["item_id"] == SEED else r["item_id"], r["weight"]) for r in pairs
    ]
    assert len(everyone) == 2 * PER_SIDE
    want = sorted(everyone, key=lambda p: (-p[1], p[0]))[:K]
    rows = await conn.fetch(queries._NEIGHBOURS, [SEED], K)
    got = sorted(((r["item_id"], r["weight"]) for r in rows), key=lambda p: (-p[1], p[0]))
    assert got == want
    assert {r["seed"] for r in rows} == {SEED}
