"""Fitting item-to-item neighbour lists from a user x item watch matrix: pure numpy/scipy.

Two methods, both giving each item its top ``k`` neighbours with weights:

- **EASE** (Steck, "Embarrassingly Shallow Autoencoders", WWW 2019): the
  closed form B = I - P / diag(P), P = (XᵀX + λI)⁻¹, diagonal zero. Exact and
  the best we measured (docs/performance.md, "Quality"), but dense in the
  number of items n: n² floats (8 n² bytes) and an O(n³) inverse.
- **item-kNN** on the sparse co-counts XᵀX, cosine-normalised: memory in
  the number of co-watched pairs, used when n exceeds the exact method's
  bound (``train_exact_max_items``); see docs/design.md, "Trained model".

No I/O here: reco/training/job.py reads the history and writes the result.
"""

from __future__ import annotations

from collections.abc import Sequence

import attrs
import numpy as np
import scipy.sparse as sp

EASE = "ease"
ITEM_KNN = "item-knn"


@attrs.frozen
class Matrix:
    """Watches as a binary CSR matrix, with the ids of its rows and columns."""

    users: list[str]
    items: list[str]
    x: sp.csr_matrix


@attrs.frozen
class Neighbours:
    """Per item (row i of ``ids``/``weights``, item ``items[i]``): its top neighbours."""

    method: str
    items: list[str]
    ids: np.ndarray  # int32 (n, k): column indexes, -1 past the item's last neighbour
    weights: np.ndarray  # float32 (n, k), strongest first


def matrix(pairs: Sequence[tuple[str, str]]) -> Matrix:
    """(user, item) watch pairs (duplicates allowed) -> a binary matrix."""
    users = sorted({u for u, _ in pairs})
    items = sorted({i for _, i in pairs})
    uidx = {u: n for n, u in enumerate(users)}
    iidx = {i: n for n, i in enumerate(items)}
    rows = np.fromiter((uidx[u] for u, _ in pairs), dtype=np.int32, count=len(pairs))
    cols = np.fromiter((iidx[i] for _, i in pairs), dtype=np.int32, count=len(pairs))
    x = sp.csr_matrix((np.ones(len(pairs), dtype=np.float32), (rows, cols)),
                      shape=(len(users), len(items)))  # fmt: skip
    x.data[:] = 1.0  # a watch is a watch, however often it was repeated
    return Matrix(users, items, x)


def ease_weights(x: sp.csr_matrix, lam: float) -> np.ndarray:
    """The dense EASE item-item matrix B (float32, zero diagonal)."""
    gram: np.ndarray = (x.T @ x).toarray().astype(np.float64)
    gram[np.diag_indices_from(gram)] += lam
    p: np.ndarray = np.linalg.inv(gram)
    b: np.ndarray = (p / (-np.diag(p))).astype(np.float32)
    b[np.diag_indices_from(b)] = 0.0
    return b


def knn_weights(x: sp.csr_matrix) -> sp.csr_matrix:
    """Cosine-normalised co-counts c_ij / sqrt(n_i n_j), sparse, zero diagonal."""
    co = (x.T @ x).tocsr().astype(np.float32)
    counts = np.maximum(co.diagonal(), 1.0)
    co.setdiag(0.0)
    co.eliminate_zeros()
    scale = sp.diags(1.0 / np.sqrt(counts))
    return (scale @ co @ scale).tocsr()


def top_k_dense(b: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Each row's ``k`` largest positive entries, strongest first (-1 / 0 pad)."""
    n = b.shape[0]
    k = min(k, max(n - 1, 1))
    part = np.argpartition(-b, k - 1, axis=1)[:, :k] if n > k else np.tile(np.arange(n), (n, 1))
    vals = np.take_along_axis(b, part, axis=1)
    order = np.argsort(-vals, axis=1, kind="stable")
    ids = np.take_along_axis(part, order, axis=1).astype(np.int32)
    weights = np.take_along_axis(vals, order, axis=1).astype(np.float32)
    keep = weights > 0
    return np.where(keep, ids, -1), np.where(keep, weights, 0.0).astype(np.float32)


def top_k_sparse(s: sp.csr_matrix, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Each row's ``k`` largest positive entries of a sparse matrix, strongest first."""
    n = s.shape[0]
    ids = np.full((n, k), -1, dtype=np.int32)
    weights = np.zeros((n, k), dtype=np.float32)
    for row in range(n):
        start, end = s.indptr[row], s.indptr[row + 1]
        cols, vals = s.indices[start:end], s.data[start:end]
        positive = vals > 0
        cols, vals = cols[positive], vals[positive]
        order = np.lexsort((cols, -vals))[:k]
        ids[row, : len(order)] = cols[order]
        weights[row, : len(order)] = vals[order]
    return ids, weights


def fit(m: Matrix, *, k: int, lam: float, exact_max_items: int) -> Neighbours:
    """EASE when the catalogue fits ``exact_max_items``, else item-kNN; top ``k`` each."""
    if len(m.items) <= exact_max_items:
        ids, weights = top_k_dense(ease_weights(m.x, lam), k)
        return Neighbours(EASE, m.items, ids, weights)
    ids, weights = top_k_sparse(knn_weights(m.x), k)
    return Neighbours(ITEM_KNN, m.items, ids, weights)


def scores(x: sp.csr_matrix, n: Neighbours) -> np.ndarray:
    """Dense user x item scores: the sum of the neighbour weights over each user's items."""
    size = len(n.items)
    rows = np.repeat(np.arange(size), n.ids.shape[1])
    cols = n.ids.ravel()
    keep = cols >= 0
    w = sp.csr_matrix((n.weights.ravel()[keep], (rows[keep], cols[keep])), shape=(size, size))
    dense: np.ndarray = np.asarray((x @ w).todense())
    return dense
