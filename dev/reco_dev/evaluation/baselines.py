"""Baselines on the same split: most-popular, EASE, and ``implicit`` models (optional).

EASE (λ = 500, the dataset's reference setting; full dense scores, no top-K
cut) uses numpy and scipy, runtime dependencies since `reco train`;
``implicit`` is the ``evaluate`` extra: when it is missing or fails, the
baseline reports why instead of a figure.
"""

from __future__ import annotations

import warnings
from collections import Counter
from collections.abc import Callable
from typing import Any

import attrs

from reco_dev.evaluation.data import Rating

K = 10
EASE_LAMBDA = 500.0
Lists = dict[str, list[str]]


@attrs.frozen
class Baseline:
    name: str
    lists: Lists | None
    error: str = ""


def most_popular(train: dict[str, list[Rating]], users: list[str], k: int = K) -> Lists:
    """The most-watched training items the user has not watched (ties by item id)."""
    counts = Counter(r.item_id for rows in train.values() for r in rows)
    ranked = sorted(counts, key=lambda item: (-counts[item], item))
    lists = {}
    for user in users:
        seen = {r.item_id for r in train.get(user, ())}
        lists[user] = [item for item in ranked if item not in seen][:k]
    return lists


def implicit_models() -> list[tuple[str, Callable[[], Any]]]:
    """(name, factory) for the implicit baselines; raises ImportError without the extra."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # import-time advice about BLAS threads
        from implicit.als import AlternatingLeastSquares
        from implicit.nearest_neighbours import CosineRecommender

    return [
        ("implicit item-item cosine (K=100)", lambda: CosineRecommender(K=100)),
        ("implicit ALS (64 factors)",
         lambda: AlternatingLeastSquares(factors=64, random_state=0)),
    ]  # fmt: skip


def run_all(train: dict[str, list[Rating]], users: list[str]) -> list[Baseline]:
    """Every baseline, in print order; one that cannot run carries its reason."""
    results = [Baseline("most popular", most_popular(train, users))]
    try:
        results.append(Baseline(f"EASE (lambda={EASE_LAMBDA:g})", ease(train, users)))
    except Exception as exc:  # noqa: BLE001 -- a failing baseline must not hide the others
        results.append(Baseline(f"EASE (lambda={EASE_LAMBDA:g})", None, f"failed: {exc!r}"))
    try:
        models = implicit_models()
    except ImportError as exc:
        reason = f"not run: {exc} (pip install 'reco[evaluate]')"
        return [*results, Baseline("implicit item-item cosine (K=100)", None, reason),
                Baseline("implicit ALS (64 factors)", None, reason)]  # fmt: skip
    for name, factory in models:
        try:
            results.append(Baseline(name, _fit_recommend(factory, train, users)))
        except Exception as exc:  # noqa: BLE001 -- a failing baseline must not hide the others
            results.append(Baseline(name, None, f"failed: {exc!r}"))
    return results


def _fit_recommend(
    factory: Callable[[], Any], train: dict[str, list[Rating]], users: list[str]
) -> Lists:
    import numpy as np
    import scipy.sparse as sp
    from threadpoolctl import threadpool_limits

    items = sorted({r.item_id for rows in train.values() for r in rows})
    index = {item: i for i, item in enumerate(items)}
    rows, cols = [], []
    for u, user in enumerate(users):
        for r in train.get(user, ()):
            rows.append(u)
            cols.append(index[r.item_id])
    matrix = sp.csr_matrix((np.ones(len(rows), dtype=np.float32), (rows, cols)),
                           shape=(len(users), len(items)))  # fmt: skip
    matrix.data[:] = 1.0  # a watch is a watch, however often it was rated
    with warnings.catch_warnings(), threadpool_limits(1, "blas"):
        warnings.simplefilter("ignore")  # implicit's BLAS/threadpool advice is noise here
        model = factory()
        model.fit(matrix, show_progress=False)
        ids, _ = model.recommend(np.arange(len(users)), matrix, N=K,
                                 filter_already_liked_items=True)  # fmt: skip
    return {user: [items[int(i)] for i in ids[u] if 0 <= int(i) < len(items)]
            for u, user in enumerate(users)}  # fmt: skip


def ease(train: dict[str, list[Rating]], users: list[str], k: int = K) -> Lists:
    """EASE's full ranking (X B, training items excluded)."""
    import numpy as np

    from reco.training import fit

    m = fit.matrix([(r.user_id, r.item_id) for rows in train.values() for r in rows])
    scores = np.asarray(m.x @ fit.ease_weights(m.x, EASE_LAMBDA))
    row_of = {u: n for n, u in enumerate(m.users)}
    lists: Lists = {}
    for user in users:
        if (row := row_of.get(user)) is None:
            lists[user] = []
            continue
        s = scores[row].copy()
        s[m.x[row].indices] = -np.inf
        top = np.argsort(-s, kind="stable")[:k]
        lists[user] = [m.items[int(i)] for i in top if np.isfinite(s[i])]
    return lists
