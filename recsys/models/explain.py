"""Why an item is recommended: the seen item that contributes most to its score.

Item-based models score ``s(u, j) = sum_i x_ui * W[i, j]`` over the items ``i`` the user has
(item-kNN: similarity, EASE: B, rules: confidence or lift, content: cosine). The term of
seen item ``i`` is its contribution; the largest positive one is the ``because`` item.
:func:`because_items` expands every (user, item) pair into its user's seen items in chunks
of bounded size and takes the argmax per pair with array operations (a segmented maximum,
O(terms)), no loop per pair.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import scipy.sparse as sp

from recsys.errors import ModelError
from recsys.models.base import Recommender

# Expanded (pair, seen item) terms evaluated at once.
EXPLAIN_CHUNK_TERMS = 4_000_000

#: ``weights(seen_items, target_items) -> W[seen, target]``, both arrays of the same shape.
PairWeights = Callable[[np.ndarray, np.ndarray], np.ndarray]


def because_items(
    user_items: sp.csr_matrix, users: np.ndarray, items: np.ndarray, weights: PairWeights
) -> np.ndarray:
    """For each pair (users[k], items[k]), the seen item with the largest ``x_ui * W[i, j]``.

    Args:
        user_items: CSR (n_users, n_items), the ``x_ui`` the model scores with.
        users, items: shape (n,) int; items[k] == -1 (list padding) gives -1.
        weights: W looked up for arrays of (seen item, target item).
    Returns:
        (n,) int64 item indices; -1 where no seen item has a positive contribution. Ties go
        to the lower item index.
    """
    users = np.asarray(users, dtype=np.int64)
    items = np.asarray(items, dtype=np.int64)
    out = np.full(len(users), -1, dtype=np.int64)
    valid = np.flatnonzero(items >= 0)
    if not len(valid):
        return out
    if not user_items.has_sorted_indices:
        # The first best term of a pair must be its lowest seen item (ties).
        user_items = user_items.sorted_indices()
    lengths = np.diff(user_items.indptr)[users[valid]]
    ends = np.cumsum(lengths)
    bounds = np.searchsorted(ends, np.arange(EXPLAIN_CHUNK_TERMS, int(ends[-1]) if len(ends) else 0, EXPLAIN_CHUNK_TERMS))
    for lo, hi in zip(np.r_[0, bounds], np.r_[bounds, len(valid)], strict=True):
        if hi <= lo:
            continue
        pairs = valid[lo:hi]
        size = lengths[lo:hi]
        if not size.sum():
            continue
        owner = np.repeat(np.arange(hi - lo), size)
        # Position of each term inside its user's row of user_items.
        offsets = np.arange(int(size.sum())) - np.repeat(np.cumsum(size) - size, size)
        positions = user_items.indptr[users[pairs]][owner] + offsets
        seen = user_items.indices[positions].astype(np.int64)
        contribution = user_items.data[positions].astype(np.float64) * np.asarray(
            weights(seen, items[pairs][owner]), dtype=np.float64
        )
        contribution = np.where(np.isfinite(contribution), contribution, -np.inf)
        # Best term per pair: each pair's terms are contiguous and in ascending item order,
        # so the first term equal to its pair's maximum is the best, ties to the lower item.
        filled = size > 0
        best = np.maximum.reduceat(contribution, (np.cumsum(size) - size)[filled])
        hits = np.flatnonzero(contribution == np.repeat(best, size[filled]))
        first = hits[np.r_[True, owner[hits][1:] != owner[hits][:-1]]]
        good = contribution[first] > 0
        out[pairs[owner[first][good]]] = seen[first][good]
    return out


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


def sparse_pair_weights(matrix: sp.spmatrix) -> PairWeights:
    """W[i, j] lookups in a sparse item x item matrix (0 where not stored), one C-level call."""
    csr = sp.csr_matrix(matrix)

    def lookup(seen: np.ndarray, targets: np.ndarray) -> np.ndarray:
        return np.asarray(csr[seen, targets], dtype=np.float64).ravel()

    return lookup
