"""Reading MovieLens-style files and the per-user temporal split: no network, no database.

Ratings: ``user, item, rating, timestamp`` separated by tabs, commas or ``::``,
with or without a header line (RecBole's ``user_id:token ...`` reads as one).
Items (optional): the ``.item`` file next to the ratings, ``item_id, title,
[year,] genres`` with genres space- or ``|``-separated.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterator, Sequence
from pathlib import Path

import attrs

HOLDOUT = 0.2
_SEPARATOR = re.compile(r"::|\t|,")


@attrs.frozen
class Rating:
    user_id: str
    item_id: str
    timestamp: float


@attrs.frozen
class Item:
    item_id: str
    title: str
    genres: tuple[str, ...] = ()


@attrs.frozen
class Split:
    train: dict[str, list[Rating]]  # per user, in time order
    test: dict[str, list[str]]  # per user with a holdout: its most recent items


def _rows(path: Path) -> Iterator[tuple[int, list[str]]]:
    with path.open(encoding="utf-8", errors="replace") as f:
        for number, line in enumerate(f, start=1):
            if line.strip():
                yield number, [field.strip() for field in _SEPARATOR.split(line.rstrip("\n"))]


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def read_ratings(path: Path) -> list[Rating]:
    """Every rating in file order; a header line is skipped, a bad line is an error."""
    ratings = []
    for number, fields in _rows(path):
        if len(fields) < 4:
            raise ValueError(f"{path}:{number}: expected user, item, rating, timestamp")
        if not _is_number(fields[3]):
            if number == 1:
                continue  # the header
            raise ValueError(f"{path}:{number}: timestamp is not a number: {fields[3]!r}")
        ratings.append(Rating(fields[0], fields[1], float(fields[3])))
    return ratings


def items_path(ratings: Path) -> Path:
    return ratings.with_suffix(".item")


def read_items(path: Path) -> list[Item]:
    """Items from an ``.item`` file; the last column holds the genres when there are 3+."""
    with path.open(encoding="utf-8", errors="replace") as f:
        lines = [line.rstrip("\n").split("\t") for line in f if line.strip()]
    if lines and ":" in lines[0][0]:
        lines = lines[1:]
    items = []
    for fields in lines:
        genres = tuple(re.split(r"[ |]+", fields[-1].strip())) if len(fields) >= 3 else ()
        title = fields[1].strip() if len(fields) >= 2 and fields[1].strip() else fields[0]
        items.append(Item(fields[0].strip(), title, tuple(g for g in genres if g)))
    return items


def catalogue(ratings: Sequence[Rating], items: Sequence[Item]) -> list[Item]:
    """The items file plus any rated item it lacks (titled by its id)."""
    known = {i.item_id: i for i in items}
    for r in ratings:
        known.setdefault(r.item_id, Item(r.item_id, r.item_id))
    return [known[k] for k in sorted(known)]


def split(ratings: Sequence[Rating], holdout: float = HOLDOUT) -> Split:
    """Per user, in time order (ties in file order): the most recent ``holdout`` is test."""
    by_user: dict[str, list[tuple[float, int, Rating]]] = defaultdict(list)
    for index, r in enumerate(ratings):
        by_user[r.user_id].append((r.timestamp, index, r))
    train: dict[str, list[Rating]] = {}
    test: dict[str, list[str]] = {}
    for user, rows in by_user.items():
        rows.sort(key=lambda row: row[:2])
        n_test = int(holdout * len(rows))
        train[user] = [r for _, _, r in rows[: len(rows) - n_test]]
        if n_test:
            test[user] = [r.item_id for _, _, r in rows[len(rows) - n_test :]]
    return Split(train, test)


def time_cut(ratings: Sequence[Rating], quantile: float) -> Split:
    """A global time split: train on every rating before the ``quantile`` of time.

    The test of each user seen before the cut is the items they first watched
    at or after it (in time order): what a model trained up to "today" must
    predict, with no look at any user's future.
    """
    stamps = sorted(r.timestamp for r in ratings)
    cut = stamps[min(int(quantile * len(stamps)), len(stamps) - 1)]
    ordered = sorted(enumerate(ratings), key=lambda pair: (pair[1].timestamp, pair[0]))
    train: dict[str, list[Rating]] = defaultdict(list)
    later: dict[str, list[str]] = defaultdict(list)
    for _, r in ordered:
        if r.timestamp < cut:
            train[r.user_id].append(r)
        else:
            later[r.user_id].append(r.item_id)
    test = {}
    for user, items in later.items():
        seen = {r.item_id for r in train.get(user, ())}
        if user in train and (new := [i for i in dict.fromkeys(items) if i not in seen]):
            test[user] = new
    return Split(dict(train), test)


def leave_last_out(ratings: Sequence[Rating]) -> Split:
    """Per user, the single most recent rating is the test (when it is a new item)."""
    whole = split(ratings, holdout=0.0)
    train: dict[str, list[Rating]] = {}
    test: dict[str, list[str]] = {}
    for user, rows in whole.train.items():
        train[user] = rows[:-1]
        if len(rows) > 1 and rows[-1].item_id not in {r.item_id for r in rows[:-1]}:
            test[user] = [rows[-1].item_id]
    return Split(train, test)


@attrs.frozen
class Protocol:
    name: str
    description: str
    held_back: bool  # not one of the two protocols the settings were chosen on


PROTOCOLS = (
    Protocol("per-user", f"each user's most recent {HOLDOUT:.0%} held out", held_back=False),
    Protocol("time-80", "global time cut at the 80th percentile: train before it, test each "
             "known user's first watches after it", held_back=False),
    Protocol("time-90", "global time cut at the 90th percentile (held back)", held_back=True),
    Protocol("last-one", "each user's last watch held out (held back)", held_back=True),
)  # fmt: skip


def split_for(protocol: str, ratings: Sequence[Rating]) -> Split:
    if protocol == "per-user":
        return split(ratings)
    if protocol == "time-80":
        return time_cut(ratings, 0.8)
    if protocol == "time-90":
        return time_cut(ratings, 0.9)
    if protocol == "last-one":
        return leave_last_out(ratings)
    raise ValueError(f"unknown protocol {protocol!r}")


def replay_order(train: dict[str, list[Rating]]) -> list[Rating]:
    """Every training rating in global time order, as a stream of events would be."""
    ordered = [r for rows in train.values() for r in rows]
    ordered.sort(key=lambda r: (r.timestamp, r.user_id, r.item_id))
    return ordered
