"""Ranking metrics over per-user lists: Recall@k, NDCG@k and catalogue coverage."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import attrs


@attrs.frozen
class Scores:
    recall: float
    ndcg: float
    coverage: float  # distinct recommended items / catalogue size
    covered: int
    users: int


def recall_at(recommended: Sequence[str], relevant: set[str], k: int) -> float:
    """Hits in the top k over min(k, |relevant|), so a perfect list scores 1."""
    hits = sum(1 for item in recommended[:k] if item in relevant)
    return hits / min(k, len(relevant))


def ndcg_at(recommended: Sequence[str], relevant: set[str], k: int) -> float:
    dcg = sum(1 / math.log2(rank + 2) for rank, item in enumerate(recommended[:k])
              if item in relevant)  # fmt: skip
    ideal = sum(1 / math.log2(rank + 2) for rank in range(min(k, len(relevant))))
    return dcg / ideal


def evaluate(
    lists: Mapping[str, Sequence[str]], test: Mapping[str, Sequence[str]],
    catalogue_size: int, k: int = 10,
) -> Scores:  # fmt: skip
    """Mean Recall@k and NDCG@k over the users with a holdout; a missing list scores 0."""
    recall = ndcg = 0.0
    covered: set[str] = set()
    for user, held in test.items():
        relevant = set(held)
        recommended = list(lists.get(user, ()))[:k]
        covered.update(recommended)
        recall += recall_at(recommended, relevant, k)
        ndcg += ndcg_at(recommended, relevant, k)
    users = len(test)
    n = max(users, 1)
    coverage = len(covered) / max(catalogue_size, 1)
    return Scores(recall / n, ndcg / n, coverage, len(covered), users)
