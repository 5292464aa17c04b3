"""Why an item is recommended: the seen item that contributes most to its score.

Item-based models score ``s(u, j) = sum_i x_ui * W[i, j]`` over the items ``i`` the user has
(item-kNN: similarity, EASE: B, rules: confidence or lift, content: cosine). The term of
seen item ``i`` is its contribution; the largest positive one is the ``because`` item, ties
to the lower item index.

The kernels below take each (user, item) pair, walk the user's row of ``x`` once and look
``W[i, j]`` up where it lives: a binary search in a sorted CSR row (:func:`because_sparse`),
a cell of a dense matrix (:func:`because_dense`), or the dot product of two TF-IDF rows
(:func:`because_dot`). They are compiled with numba and release the GIL, so the training
run's block threads explain on every core, and nothing of the size of the user matrix is
copied per call.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import scipy.sparse as sp
from numba import njit

from recsys.errors import ModelError
from recsys.models.base import Recommender

#: How a stored ``x_ui`` counts: as stored; 1 where > 0, else 0; 1 where nonzero; 1 wherever stored.
Weighting = Literal["stored", "positive", "nonzero", "ones"]
_WEIGHTING = {"stored": 0, "positive": 1, "nonzero": 2, "ones": 3}


@njit(nogil=True, cache=True, inline="always")
def _weight(value, mode):  # type: ignore[no-untyped-def]
    if mode == 0:
        return np.float64(value)
    if mode == 1:
        return 1.0 if value > 0 else 0.0
    if mode == 2:
        return 1.0 if value != 0 else 0.0
    return 1.0


@njit(nogil=True, cache=True)
def _because_sparse_kernel(  # type: ignore[no-untyped-def]
    x_indptr, x_indices, x_data, mode, users, items, w_indptr, w_indices, w_data, out
):
    for k in range(len(users)):
        target = items[k]
        out[k] = -1
        if target < 0:
            continue
        user = users[k]
        best = 0.0
        for p in range(x_indptr[user], x_indptr[user + 1]):
            seen = x_indices[p]
            lo, hi = w_indptr[seen], w_indptr[seen + 1]
            while lo < hi:  # first stored column >= target (rows are sorted)
                mid = (lo + hi) // 2
                if w_indices[mid] < target:
                    lo = mid + 1
                else:
                    hi = mid
            if lo == w_indptr[seen + 1] or w_indices[lo] != target:
                continue
            contribution = _weight(x_data[p], mode) * np.float64(w_data[lo])
            if contribution > best and np.isfinite(contribution):
                best = contribution
                out[k] = seen


@njit(nogil=True, cache=True)
def _because_dense_kernel(x_indptr, x_indices, x_data, mode, users, items, position, weights, out):  # type: ignore[no-untyped-def]
    for k in range(len(users)):
        out[k] = -1
        if items[k] < 0:
            continue
        column = position[items[k]]
        if column < 0:
            continue
        user = users[k]
        best = 0.0
        for p in range(x_indptr[user], x_indptr[user + 1]):
            row = position[x_indices[p]]
            if row < 0:
                continue
            contribution = _weight(x_data[p], mode) * np.float64(weights[row, column])
            if contribution > best and np.isfinite(contribution):
                best = contribution
                out[k] = x_indices[p]


@njit(nogil=True, cache=True)
def _because_dot_kernel(  # type: ignore[no-untyped-def]
    x_indptr, x_indices, x_data, mode, users, items, t_indptr, t_indices, t_data, n_terms, out
):
    target_row = np.zeros(n_terms, dtype=t_data.dtype)
    zero = np.zeros(1, dtype=t_data.dtype)
    for k in range(len(users)):
        out[k] = -1
        target = items[k]
        if target < 0:
            continue
        for s in range(t_indptr[target], t_indptr[target + 1]):
            target_row[t_indices[s]] = t_data[s]
        user = users[k]
        best = 0.0
        for p in range(x_indptr[user], x_indptr[user + 1]):
            seen = x_indices[p]
            cosine = zero[0]
            for s in range(t_indptr[seen], t_indptr[seen + 1]):
                cosine += target_row[t_indices[s]] * t_data[s]
            contribution = _weight(x_data[p], mode) * np.float64(cosine)
            if contribution > best and np.isfinite(contribution):
                best = contribution
                out[k] = seen
        for s in range(t_indptr[target], t_indptr[target + 1]):
            target_row[t_indices[s]] = 0


def _rows(matrix: sp.spmatrix) -> sp.csr_matrix:
    """``matrix`` as CSR with sorted indices: a user's first best term is its lowest item, and
    W's rows can be binary-searched. No copy when it already is one."""
    csr = matrix if sp.isspmatrix_csr(matrix) else sp.csr_matrix(matrix)
    if not csr.has_sorted_indices:
        csr = csr.sorted_indices()
    return csr


def because_sparse(
    user_items: sp.spmatrix, users: np.ndarray, items: np.ndarray, weights: sp.spmatrix, weighting: Weighting = "stored"
) -> np.ndarray:
    """For each pair (users[k], items[k]), the seen item ``i`` with the largest ``x_ui * W[i, j]``.

    Args:
        user_items: (n_users, n_items) sparse ``x``; ``weighting`` says how its values count.
        users, items: shape (n,) int; items[k] == -1 (list padding) gives -1.
        weights: W, (n_items, n_items) sparse; cells it does not store are 0.
    Returns:
        (n,) int64 item indices; -1 where no seen item has a positive, finite contribution.
        Ties go to the lower item index.
    """
    x, w = _rows(user_items), _rows(weights)
    users, items = _pairs(users, items)
    out = np.empty(len(users), dtype=np.int64)
    _because_sparse_kernel(x.indptr, x.indices, x.data, _WEIGHTING[weighting], users, items, w.indptr, w.indices, w.data, out)
    return out


def because_dense(
    user_items: sp.spmatrix,
    users: np.ndarray,
    items: np.ndarray,
    weights: np.ndarray,
    position: np.ndarray,
    weighting: Weighting = "stored",
) -> np.ndarray:
    """:func:`because_sparse` with a dense W over a subset of the items: ``W[position[i],
    position[j]]``, shape (m, m); an item whose position is -1 has an all-zero row and column."""
    x = _rows(user_items)
    users, items = _pairs(users, items)
    out = np.empty(len(users), dtype=np.int64)
    _because_dense_kernel(x.indptr, x.indices, x.data, _WEIGHTING[weighting], users, items, np.asarray(position, dtype=np.int64), weights, out)
    return out


def because_dot(
    user_items: sp.spmatrix, users: np.ndarray, items: np.ndarray, item_rows: sp.spmatrix, weighting: Weighting = "stored"
) -> np.ndarray:
    """:func:`because_sparse` with ``W[i, j] = item_rows[i] . item_rows[j]`` (e.g. the cosine of
    L2-normalised TF-IDF rows), summed in the precision of ``item_rows`` over the shared terms
    in ascending order, as scipy's product of the two rows; items sharing no term contribute
    nothing."""
    x, t = _rows(user_items), _rows(item_rows)
    users, items = _pairs(users, items)
    out = np.empty(len(users), dtype=np.int64)
    _because_dot_kernel(x.indptr, x.indices, x.data, _WEIGHTING[weighting], users, items, t.indptr, t.indices, t.data, t.shape[1], out)
    return out


def _pairs(users: np.ndarray, items: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    users = np.ascontiguousarray(users, dtype=np.int64)
    items = np.ascontiguousarray(items, dtype=np.int64)
    if users.shape != items.shape or users.ndim != 1:
        raise ValueError(f"users {users.shape} and items {items.shape} must be one-dimensional and alike")
    return users, items


def checked_pairs(
    model: Recommender, user_indices: np.ndarray | list[int], item_indices: np.ndarray | list[int]
) -> tuple[np.ndarray, np.ndarray]:
    """Validated (users, items) int64 arrays of one shape (n,) for ``explain``; items may be -1."""
    users = model._check_indices(user_indices, model.n_users, "user")
    raw_items = np.atleast_1d(np.asarray(item_indices))
    if raw_items.shape != users.shape:
        raise ModelError(f"{model.name}: explain() needs as many items as users, got {raw_items.shape} and {users.shape}")
    padding = raw_items == -1
    items = np.full(len(users), -1, dtype=np.int64)
    if (~padding).any():
        items[~padding] = model._check_indices(raw_items[~padding], model.n_items, "item")
    return users, items
