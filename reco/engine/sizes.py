"""What the per-process caches' entries cost in memory, in bytes (reco/engine/cache.py, lists.py).

Each figure is the sum of ``sys.getsizeof`` over the objects an entry owns
(its containers, strings and floats) plus ``SLOT``, the cost of the entry's
slots in the cache's own dicts. tests/unit/test_cache_bytes.py checks the
sums against what tracemalloc sees a full cache allocate; strings shared
with another entry (CPython interns none of these) are counted by each.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping

from reco.engine.scoring import ItemInfo

SLOT = 3 * 8 * 3  # a key/hash/value slot, in a dict kept about a third full
_FLOAT = sys.getsizeof(0.0)
_size = sys.getsizeof


def neighbours(weights: Mapping[str, float]) -> int:
    """A neighbour list (a dict of item ids to float weights)."""
    return SLOT + _size(weights) + sum(_size(k) for k in weights) + _FLOAT * len(weights)


def info(item: ItemInfo) -> int:
    """An ItemInfo and the strings it owns."""
    return (SLOT + _size(item) + _size(item.item_id) + _size(item.title) + _size(item.genres)
            + sum(_size(g) for g in item.genres) + _size(item.users) + _FLOAT)  # fmt: skip


def deep(value: object) -> int:
    """A tuple tree of strings and numbers (a kept scored list), with its slot."""
    return SLOT + _deep(value)


def _deep(value: object) -> int:
    if isinstance(value, tuple | frozenset):
        return _size(value) + sum(_deep(v) for v in value)
    return _size(value)
