"""A trained model's own offline figures: fit before a time cut, score the watches after it.

Stored with each model version (``model_versions.figures``), so an operator
can compare versions without running `reco evaluate`. Pure: no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from reco.training import fit

K = 10
CUT = 0.9  # the quantile of first-watch times the holdout starts at


def holdout(
    rows: Sequence[tuple[str, str, float]], *, k: int, lam: float, exact_max_items: int
) -> dict[str, float | int]:
    """Recall@10 and NDCG@10 of a model fitted on the first watches before the time cut.

    ``rows`` are (user, item, first-watch time as epoch seconds). The test of
    each user known before the cut is the items first watched at or after it.
    """
    if not rows:
        return {"users": 0}
    stamps = sorted(t for _, _, t in rows)
    cut = stamps[min(int(CUT * len(stamps)), len(stamps) - 1)]
    before = [(u, i) for u, i, t in rows if t < cut]
    if not before:
        return {"users": 0}
    m = fit.matrix(before)
    test: dict[str, set[str]] = {}
    for u, i, t in rows:
        if t >= cut:
            test.setdefault(u, set()).add(i)
    model = fit.fit(m, k=k, lam=lam, exact_max_items=exact_max_items)
    row_of = {u: n for n, u in enumerate(m.users)}
    users = [u for u in test if u in row_of]
    if not users:
        return {"users": 0}
    x = m.x[[row_of[u] for u in users]]
    scores = fit.scores(x, model)
    recall = ndcg = 0.0
    for n, user in enumerate(users):
        s = scores[n]
        s[x[n].indices] = -np.inf
        top = [m.items[int(i)] for i in np.argsort(-s, kind="stable")[:K]]
        recall_n, ndcg_n = _score(top, test[user])
        recall += recall_n
        ndcg += ndcg_n
    return {"users": len(users), "recall_at_10": recall / len(users),
            "ndcg_at_10": ndcg / len(users), "cut_quantile": CUT}  # fmt: skip


def _score(top: Sequence[str], relevant: set[str]) -> tuple[float, float]:
    hits = [rank for rank, item in enumerate(top) if item in relevant]
    ideal = sum(1 / math.log2(rank + 2) for rank in range(min(K, len(relevant))))
    dcg = sum(1 / math.log2(rank + 2) for rank in hits)
    return len(hits) / min(K, len(relevant)), dcg / ideal
