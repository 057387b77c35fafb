"""The engine's read queries: plain async functions, connection first.

Each returns scoring values (reco/engine/scoring.py), never asyncpg records.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import asyncpg
import attrs

from reco.engine.scoring import ItemInfo, Neighbours, normalise

_ITEM_COLUMNS = "i.item_id, i.title, i.genres, p.user_count, p.log_score"

# The user's version stamp (sql/0004_user_versions.sql; 0 without a row) and, unless
# it is $2 (the stamp of the list the caller holds), the whole history, most recent
# first: one statement, so both come from one snapshot. One row with one array
# (decoded in asyncpg's C code), not a record per item.
_HISTORY = """
SELECT v.version,
       CASE WHEN v.version IS NOT DISTINCT FROM $2::bigint THEN NULL ELSE
           (SELECT coalesce(array_agg(item_id ORDER BY last_watched_at DESC, item_id), '{}')
            FROM user_history WHERE user_id = $1)
       END AS history
FROM (SELECT coalesce((SELECT version FROM user_versions WHERE user_id = $1), 0) AS version) AS v
"""

# The top-K neighbours of each seed by raw weight (two index ranges each: the
# pair is stored once; each range read in weight order by sql/0008's indexes and
# cut at K in its own subquery, so a popular item costs about 2K index rows, not
# its whole pair range; one ORDER BY ... LIMIT over both read every row), joined
# with what scoring needs; inactive items drop out here. The caller caches the
# result per item (reco/engine/recommender.py).
# Weights are in PAIR_EPOCH's units (reco/engine/aggregates.py), as stored: scoring is
# scale-free, so the cached lists need no "now" (see neighbours()).
_NEIGHBOURS = f"""
SELECT s.seed, n.weight, ps.user_count AS seed_users, {_ITEM_COLUMNS}
FROM unnest($1::text[]) AS s(seed)
CROSS JOIN LATERAL (
    (SELECT other_item_id AS other, weight FROM item_cooccurrence WHERE item_id = s.seed
     ORDER BY weight DESC, other_item_id LIMIT $2)
    UNION ALL
    (SELECT item_id, weight FROM item_cooccurrence WHERE other_item_id = s.seed
     ORDER BY weight DESC, item_id LIMIT $2)
    ORDER BY weight DESC, other LIMIT $2
) AS n
JOIN items i ON i.item_id = n.other
JOIN item_popularity p ON p.item_id = n.other
LEFT JOIN item_popularity ps ON ps.item_id = s.seed
"""

_TRENDING = f"""
SELECT {_ITEM_COLUMNS}
FROM item_popularity p JOIN items i USING (item_id)
WHERE i.active AND (cardinality($1::text[]) = 0 OR i.genres && $1::text[])
  AND i.item_id <> ALL($2::text[])
ORDER BY p.log_score DESC, i.item_id LIMIT $3
"""

# The last resort when trending lists run dry: any active item, watched or not.
_CATALOGUE = """
SELECT i.item_id, i.title, i.genres, coalesce(p.user_count, 0) AS user_count,
       coalesce(p.log_score, '-infinity') AS log_score
FROM items i LEFT JOIN item_popularity p USING (item_id)
WHERE i.active AND (cardinality($1::text[]) = 0 OR i.genres && $1::text[])
  AND i.item_id <> ALL($2::text[])
ORDER BY p.log_score DESC NULLS LAST, i.item_id LIMIT $3
"""

_POPULAR = f"""
SELECT {_ITEM_COLUMNS}
FROM item_popularity p JOIN items i USING (item_id)
WHERE i.active AND (cardinality($1::text[]) = 0 OR i.genres && $1::text[])
ORDER BY p.user_count DESC, i.item_id LIMIT $2
"""

# The database's clock, the items whose model data changed since $1 (all when
# NULL: the caller starts empty): counts (item_popularity, stamped by the
# consumer) or neighbour lists (item_neighbour_changes, stamped by the folder);
# the inactive items; and the active trained model version (NULL: none).
_CHANGES = """
SELECT clock_timestamp() AS now,
       CASE WHEN $1::timestamptz IS NULL THEN '{}'::text[]
            ELSE ARRAY(SELECT item_id FROM item_popularity WHERE changed_at > $1
                       UNION
                       SELECT item_id FROM item_neighbour_changes WHERE changed_at > $1)
       END AS changed,
       ARRAY(SELECT item_id FROM items WHERE NOT active) AS inactive,
       m.version AS model_version, m.method AS model_method
FROM (SELECT 1) AS one LEFT JOIN model_versions m ON m.active
"""

# A trained model's neighbours of each seed (sql/0005_trained_models.sql), with
# what scoring needs; a seed the model does not know has no row.
_TRAINED = f"""
SELECT m.item_id AS seed, n.weight, {_ITEM_COLUMNS}
FROM model_neighbours m
CROSS JOIN LATERAL unnest(m.neighbours, m.weights) AS n(other, weight)
JOIN items i ON i.item_id = n.other
JOIN item_popularity p ON p.item_id = n.other
WHERE m.version = $1 AND m.item_id = ANY($2::text[])
"""

# The instant the folder prunes at: the database's clock, or the latest watch when
# that is earlier (a replay of 1997's ratings prunes as it would have in 1997, and a
# quiet service stops pruning instead of emptying its pairs). item_popularity has one
# row per watched item: the scan is bounded by the catalogue, once per prune pass.
_PRUNE_INSTANT = """
SELECT least(clock_timestamp(), (SELECT max(last_at) FROM item_popularity))
"""

_ITEM_USERS = """
SELECT i.item_id, coalesce(p.user_count, 0) AS users
FROM items i LEFT JOIN item_popularity p USING (item_id) WHERE i.item_id = $1
"""


def _info(r: asyncpg.Record) -> ItemInfo:
    return ItemInfo(r["item_id"], r["title"], frozenset(r["genres"]), int(r["user_count"]),
                    float(r["log_score"]))  # fmt: skip


async def history(
    conn: asyncpg.Connection, user_id: str, unless: int | None = None
) -> tuple[int, list[str] | None]:
    """The user's version stamp, and every item the user watched, most recent first
    (read fresh: read-after-write); None instead of the items when the stamp is
    ``unless``: the history is then the one that stamp was read with."""
    row = await conn.fetchrow(_HISTORY, user_id, unless)
    assert row is not None
    return int(row["version"]), row["history"]


async def neighbours(
    conn: asyncpg.Connection, seeds: Sequence[str], per_seed: int
) -> tuple[dict[str, Neighbours], dict[str, ItemInfo]]:
    """Each seed's top ``per_seed`` neighbours, normalised ({} for a seed with none),
    and the infos of those neighbours (one ItemInfo per distinct item).

    The weights are time-decayed and in PAIR_EPOCH's units: divide by
    ``aggregates.pair_scale(now)`` for today's. Not done here: lists are cached per
    item and read at different instants, and a list scaled at each read would mix
    units (the for-user score is a ratio of these weights, the same in any units,
    so only the similar-item scores are shown divided, by the recommender)."""
    rows = await conn.fetch(_NEIGHBOURS, list(seeds), per_seed)
    raw: dict[str, list[tuple[ItemInfo, float]]] = {seed: [] for seed in seeds}
    seed_users: dict[str, int] = {}
    infos: dict[str, ItemInfo] = {}
    for r in rows:
        info = infos.get(r["item_id"]) or infos.setdefault(r["item_id"], _info(r))
        raw[r["seed"]].append((info, float(r["weight"])))
        seed_users[r["seed"]] = int(r["seed_users"] or 0)
    found: dict[str, Neighbours] = {
        seed: normalise(seed_users.get(seed, 0), pairs) for seed, pairs in raw.items()
    }
    return found, infos


async def trending(conn: asyncpg.Connection, *, genres: Sequence[str] = (),
                   exclude: Sequence[str] = (), limit: int) -> list[ItemInfo]:  # fmt: skip
    """Active items by time-decayed popularity, strongest first."""
    return [_info(r) for r in await conn.fetch(_TRENDING, list(genres), list(exclude), limit)]


async def catalogue(conn: asyncpg.Connection, *, genres: Sequence[str],
                    exclude: Sequence[str], limit: int) -> list[ItemInfo]:  # fmt: skip
    """Active items, watched ones first, for when every list ran dry."""
    return [_info(r) for r in await conn.fetch(_CATALOGUE, list(genres), list(exclude), limit)]


async def popular(conn: asyncpg.Connection, *, genres: Sequence[str],
                  limit: int) -> list[ItemInfo]:  # fmt: skip
    """Active items by the number of users who watched them."""
    return [_info(r) for r in await conn.fetch(_POPULAR, list(genres), limit)]


@attrs.frozen
class Changes:
    now: dt.datetime  # the database's clock
    changed: list[str]  # items whose counts or neighbour lists changed since the mark
    inactive: list[str]
    model: tuple[int, str] | None  # the active trained model: (version, method)


async def model_changes(conn: asyncpg.Connection, since: dt.datetime | None) -> Changes:
    """What changed since ``since`` (see :class:`Changes`)."""
    row = await conn.fetchrow(_CHANGES, since)
    assert row is not None
    model = None
    if row["model_version"] is not None:
        model = (int(row["model_version"]), str(row["model_method"]))
    return Changes(row["now"], list(row["changed"]), list(row["inactive"]), model)


async def trained(
    conn: asyncpg.Connection, version: int, seeds: Sequence[str]
) -> tuple[dict[str, Neighbours], dict[str, ItemInfo]]:
    """Each seed's neighbours in model ``version``, strongest first ({} for a seed the
    model does not know), and the infos of those neighbours."""
    rows = await conn.fetch(_TRAINED, version, list(seeds))
    found: dict[str, dict[str, float]] = {seed: {} for seed in seeds}
    infos: dict[str, ItemInfo] = {}
    for r in rows:
        infos.get(r["item_id"]) or infos.setdefault(r["item_id"], _info(r))
        found[r["seed"]][r["item_id"]] = float(r["weight"])
    ordered: dict[str, Neighbours] = {
        seed: dict(sorted(weights.items(), key=lambda n: (-n[1], n[0])))
        for seed, weights in found.items()
    }
    return ordered, infos


async def item_users(conn: asyncpg.Connection, item_id: str) -> int | None:
    """How many users watched ``item_id``; None when the item is not in the catalogue."""
    row = await conn.fetchrow(_ITEM_USERS, item_id)
    return None if row is None else int(row["users"])


async def prune_instant(conn: asyncpg.Connection) -> dt.datetime:
    """Now, for pruning: the database's clock, or the latest stored watch if earlier."""
    instant: dt.datetime = await conn.fetchval(_PRUNE_INSTANT)
    return instant
