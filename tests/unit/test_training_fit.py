"""Fitting neighbour lists (reco/training/fit.py) and the model's own figures: no database."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from reco.training import figures, fit

# Two groups of items watched together: a-b-c and x-y-z.
PAIRS = [(f"u{k}", i) for k in range(6) for i in ("a", "b", "c")] + [
    (f"v{k}", i) for k in range(6) for i in ("x", "y", "z")
]


def neighbours_of(n: fit.Neighbours, item: str) -> list[str]:
    row = n.items.index(item)
    return [n.items[int(i)] for i in n.ids[row] if i >= 0]


class TestFit:
    def test_matrix_is_binary_whatever_the_repeats(self) -> None:
        m = fit.matrix([("u", "a"), ("u", "a"), ("v", "b")])
        assert m.users == ["u", "v"]
        assert m.items == ["a", "b"]
        assert m.x.toarray().tolist() == [[1.0, 0.0], [0.0, 1.0]]

    def test_ease_neighbours_stay_within_the_group(self) -> None:
        n = fit.fit(fit.matrix(PAIRS), k=5, lam=1.0, exact_max_items=100)
        assert n.method == fit.EASE
        assert set(neighbours_of(n, "a")) == {"b", "c"}
        assert set(neighbours_of(n, "x")) == {"y", "z"}

    def test_large_catalogue_falls_back_to_item_knn(self) -> None:
        """Above exact_max_items: cosine on sparse co-counts, the same groups."""
        n = fit.fit(fit.matrix(PAIRS), k=5, lam=1.0, exact_max_items=3)
        assert n.method == fit.ITEM_KNN
        assert set(neighbours_of(n, "a")) == {"b", "c"}
        row = n.items.index("a")
        assert n.weights[row][:2].tolist() == pytest.approx([1.0, 1.0])  # always together

    def test_top_k_keeps_the_strongest_positive_weights_in_order(self) -> None:
        b = np.array([[0, 3, -1, 2], [1, 0, 0, 0], [5, 4, 0, 3], [0, 0, 0, 0]], dtype=np.float32)
        ids, weights = fit.top_k_dense(b, 2)
        assert ids.tolist() == [[1, 3], [0, -1], [0, 1], [-1, -1]]
        assert weights[0].tolist() == [3.0, 2.0]
        sparse_ids, _ = fit.top_k_sparse(sp.csr_matrix(b), 2)
        assert sparse_ids.tolist() == ids.tolist()

    def test_scores_sum_the_neighbour_weights_of_the_history(self) -> None:
        m = fit.matrix(PAIRS)
        n = fit.fit(m, k=5, lam=1.0, exact_max_items=100)
        history = sp.csr_matrix(([1.0], ([0], [m.items.index("a")])), shape=(1, len(m.items)))
        s = fit.scores(history, n)
        assert m.items[int(np.argmax(s[0]))] in {"b", "c"}


class TestFigures:
    def test_holdout_scores_the_watches_after_the_cut(self) -> None:
        """Users who watch a group's items in order: the last ones are predictable."""
        rows = [(f"u{k}", i, float(t + k)) for k in range(20) for t, i in enumerate("abcd")]
        rows += [(f"v{k}", i, float(t + k)) for k in range(20) for t, i in enumerate("wxyz")]
        got = figures.holdout(rows, k=5, lam=1.0, exact_max_items=100)
        assert got["users"] > 0
        assert 0.0 < got["recall_at_10"] <= 1.0
        assert 0.0 < got["ndcg_at_10"] <= 1.0

    def test_no_history_gives_no_figures(self) -> None:
        assert figures.holdout([], k=5, lam=1.0, exact_max_items=100) == {"users": 0}
