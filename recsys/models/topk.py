"""Fused score-and-select kernels: top-N of ``queries @ matrix`` without the score block.

The reference paths of :mod:`recsys.models.base` build each block of scores (a dense
(rows, n_items) array or a sparse product), mask it and select from it: five or six passes
over 256 MB blocks, most of them holding the GIL. When a model's scores are a product of a
sparse query matrix (user rows, profiles, baskets) with an item matrix, these kernels
compute one query row at a time into an accumulator of n_items cells (which stays in the
core's cache), remove the excluded cells and keep the best ``n`` on the fly. They are
compiled with numba, release the GIL (so the base class's block threads use every core)
and give exactly the reference's lists:

* :func:`sparse_product_top_n` = ``top_n_sparse(queries @ matrix, n, exclude, allowed)``:
  a cell is a candidate when the product stores it (scipy drops sums equal to zero);
* :func:`dense_product_top_n` = ``top_n(queries @ matrix with excluded cells -inf, n)``:
  every cell is a candidate.

Sums are taken in the same order and precision as scipy's products (query entries in
stored order, float32 when both operands are float32), and candidates are ranked by their
float32 value, best first, ties by lower column, padded with -1 / -inf: the order of
:func:`~recsys.models.base.top_n` and :func:`~recsys.models.base.top_n_entries`.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from numba import njit

_NO_MASK = np.ones(0, dtype=np.bool_)
# Queries scored at once by sparse_dot_top_n, and the most bytes their dense chunk may take.
DOT_LANES = 64
DOT_CHUNK_BYTES = 8 << 20


@njit(nogil=True, cache=True, inline="always")
def _keep_best(best_ids, best_scores, count, n, column, value):  # type: ignore[no-untyped-def]
    """Insert (column, value) into the row's sorted best-n (score desc, column asc); returns the count."""
    if count == n:
        last = n - 1
        if value < best_scores[last] or (value == best_scores[last] and column > best_ids[last]):
            return count
        position = last
    else:
        position = count
        count += 1
    while position > 0 and (
        value > best_scores[position - 1] or (value == best_scores[position - 1] and column < best_ids[position - 1])
    ):
        best_scores[position] = best_scores[position - 1]
        best_ids[position] = best_ids[position - 1]
        position -= 1
    best_scores[position] = value
    best_ids[position] = column
    return count


@njit(nogil=True, cache=True)
def _sparse_kernel(  # type: ignore[no-untyped-def]
    q_indptr, q_indices, q_data, m_indptr, m_indices, m_data, n_cols, n,
    ex_indptr, ex_indices, allowed, out_ids, out_scores,
):
    rows = len(q_indptr) - 1
    accumulator = np.zeros(n_cols, dtype=q_data.dtype)
    touched = np.zeros(n_cols, dtype=np.bool_)
    reached = np.empty(n_cols, dtype=np.int64)
    masked = len(allowed) > 0
    excluding = len(ex_indptr) > 0
    for row in range(rows):
        n_reached = 0
        for p in range(q_indptr[row], q_indptr[row + 1]):
            k = q_indices[p]
            weight = q_data[p]
            for s in range(m_indptr[k], m_indptr[k + 1]):
                column = m_indices[s]
                if not touched[column]:
                    touched[column] = True
                    reached[n_reached] = column
                    n_reached += 1
                accumulator[column] += weight * m_data[s]
        if excluding:
            for p in range(ex_indptr[row], ex_indptr[row + 1]):
                column = ex_indices[p]
                if touched[column]:
                    accumulator[column] = -np.inf
        count = 0
        for t in range(n_reached):
            column = reached[t]
            total = accumulator[column]
            accumulator[column] = 0
            touched[column] = False
            if total == 0 or (masked and not allowed[column]):
                continue
            value = np.float32(total)
            if np.isfinite(value):
                count = _keep_best(out_ids[row], out_scores[row], count, n, column, value)
        for t in range(count, n):
            out_ids[row, t] = -1
            out_scores[row, t] = -np.inf


@njit(nogil=True, cache=True)
def _dense_kernel(  # type: ignore[no-untyped-def]
    q_indptr, q_indices, q_data, matrix, n, ex_indptr, ex_indices, allowed, skip_zeros, out_ids, out_scores,
):
    rows = len(q_indptr) - 1
    n_cols = matrix.shape[1]
    accumulator = np.zeros(n_cols, dtype=matrix.dtype)
    masked = len(allowed) > 0
    excluding = len(ex_indptr) > 0
    for row in range(rows):
        accumulator[:] = 0
        for p in range(q_indptr[row], q_indptr[row + 1]):
            weight = q_data[p]
            source = matrix[q_indices[p]]
            for c in range(n_cols):
                accumulator[c] += weight * source[c]
        if excluding:
            for p in range(ex_indptr[row], ex_indptr[row + 1]):
                accumulator[ex_indices[p]] = -np.inf
        ids = out_ids[row]
        scores = out_scores[row]
        count = 0
        # Below the n-th best so far a cell cannot enter: one comparison for most cells.
        threshold = -np.inf
        for c in range(n_cols):
            value = np.float32(accumulator[c])
            if value < threshold or (masked and not allowed[c]):
                continue
            if np.isfinite(value) and not (skip_zeros and value == 0):
                count = _keep_best(ids, scores, count, n, c, value)
                if count == n:
                    threshold = scores[n - 1]
        for t in range(count, n):
            ids[t] = -1
            scores[t] = -np.inf


@njit(nogil=True, cache=True)
def _dot_kernel(  # type: ignore[no-untyped-def]
    q_indptr, q_indices, q_data, m_indptr, m_indices, m_data, n_terms, lanes, n,
    ex_indptr, ex_indices, allowed, skip_zeros, out_ids, out_scores,
):
    rows = len(q_indptr) - 1
    n_cols = len(m_indptr) - 1
    # ``lanes`` query rows at a time, dense and transposed (n_terms, lanes), so that each
    # matrix entry multiplies one contiguous run of lanes.
    chunk = np.zeros((n_terms, lanes), dtype=q_data.dtype)
    excluded = np.zeros((n_cols, lanes), dtype=np.bool_)
    sums = np.zeros(lanes, dtype=q_data.dtype)
    thresholds = np.empty(lanes, dtype=np.float32)
    counts = np.zeros(lanes, dtype=np.int64)
    masked = len(allowed) > 0
    excluding = len(ex_indptr) > 0
    for first in range(0, rows, lanes):
        width = min(lanes, rows - first)
        for lane in range(width):
            row = first + lane
            for p in range(q_indptr[row], q_indptr[row + 1]):
                chunk[q_indices[p], lane] = q_data[p]
            if excluding:
                for p in range(ex_indptr[row], ex_indptr[row + 1]):
                    excluded[ex_indices[p], lane] = True
            thresholds[lane] = -np.inf
            counts[lane] = 0
        for column in range(n_cols):
            if masked and not allowed[column]:
                continue
            sums[:] = 0
            for s in range(m_indptr[column], m_indptr[column + 1]):
                weight = m_data[s]
                source = chunk[m_indices[s]]
                for lane in range(lanes):
                    sums[lane] += weight * source[lane]
            for lane in range(width):
                value = np.float32(sums[lane])
                if value < thresholds[lane] or excluded[column, lane]:
                    continue
                if np.isfinite(value) and not (skip_zeros and value == 0):
                    row = first + lane
                    counts[lane] = _keep_best(out_ids[row], out_scores[row], counts[lane], n, column, value)
                    if counts[lane] == n:
                        thresholds[lane] = out_scores[row, n - 1]
        for lane in range(width):
            row = first + lane
            for p in range(q_indptr[row], q_indptr[row + 1]):
                chunk[q_indices[p], lane] = 0
            if excluding:
                for p in range(ex_indptr[row], ex_indptr[row + 1]):
                    excluded[ex_indices[p], lane] = False
            for t in range(counts[lane], n):
                out_ids[row, t] = -1
                out_scores[row, t] = -np.inf


def _csr(matrix: sp.spmatrix, dtype: np.dtype) -> sp.csr_matrix:
    out = sp.csr_matrix(matrix)
    if out.dtype != dtype:
        out = out.astype(dtype)
    return out


def _exclusion(exclude: sp.spmatrix | None, rows: int, n_cols: int) -> tuple[np.ndarray, np.ndarray]:
    if exclude is None:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    if exclude.shape != (rows, n_cols):
        raise ValueError(f"exclude has shape {exclude.shape}, the scores {(rows, n_cols)}")
    if exclude.nnz == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    excluded = sp.csr_matrix(exclude)
    return excluded.indptr, excluded.indices


def _mask(allowed: np.ndarray | None, n_cols: int) -> np.ndarray:
    if allowed is None:
        return _NO_MASK
    mask = np.ascontiguousarray(allowed, dtype=np.bool_)
    if mask.shape != (n_cols,):
        raise ValueError(f"allowed has shape {mask.shape}, expected ({n_cols},)")
    return mask


def sparse_product_top_n(
    queries: sp.spmatrix,
    matrix: sp.spmatrix,
    n: int,
    *,
    exclude: sp.spmatrix | None = None,
    allowed: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Top ``n`` of each row of the sparse product ``queries @ matrix``, never built.

    ``queries``: (rows, k) sparse; ``matrix``: (k, n_cols) sparse; ``exclude``: (rows,
    n_cols) sparse whose stored cells are left out (e.g. the users' seen items);
    ``allowed``: boolean (n_cols,) or None. Returns (ids int32, scores float32) of shape
    (rows, n), equal to ``top_n_sparse(queries @ matrix, n, exclude=..., allowed=...)``.
    """
    dtype = np.result_type(queries.dtype, matrix.dtype, np.float32)
    left, right = _csr(queries, dtype), _csr(matrix, dtype)
    if left.shape[1] != right.shape[0]:
        raise ValueError(f"queries {left.shape} and matrix {right.shape} do not multiply")
    rows, n_cols = left.shape[0], right.shape[1]
    ids = np.empty((rows, n), dtype=np.int32)
    scores = np.empty((rows, n), dtype=np.float32)
    ex_indptr, ex_indices = _exclusion(exclude, rows, n_cols)
    _sparse_kernel(
        left.indptr, left.indices, left.data, right.indptr, right.indices, right.data, n_cols, n,
        ex_indptr, ex_indices, _mask(allowed, n_cols), ids, scores,
    )
    return ids, scores


def dense_product_top_n(
    queries: sp.spmatrix,
    matrix: np.ndarray,
    n: int,
    *,
    exclude: sp.spmatrix | None = None,
    allowed: np.ndarray | None = None,
    skip_zeros: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Top ``n`` of each row of ``queries @ matrix`` (sparse (rows, k) times dense (k, n_cols)).

    Every cell is a candidate except the stored cells of ``exclude``, the columns where
    ``allowed`` is False and, with ``skip_zeros``, cells whose score is 0 (for scores that
    are 0 exactly where there is no evidence, as a cosine of non-negative vectors). Returns (ids int32, scores float32) of shape (rows, n), equal to
    :func:`~recsys.models.base.top_n` of the dense product with those cells set to -inf.
    """
    weights = np.ascontiguousarray(matrix)
    if weights.dtype not in (np.float32, np.float64):
        weights = weights.astype(np.float64)
    left = _csr(queries, weights.dtype)
    if left.shape[1] != weights.shape[0]:
        raise ValueError(f"queries {left.shape} and matrix {weights.shape} do not multiply")
    rows, n_cols = left.shape[0], weights.shape[1]
    ids = np.empty((rows, n), dtype=np.int32)
    scores = np.empty((rows, n), dtype=np.float32)
    ex_indptr, ex_indices = _exclusion(exclude, rows, n_cols)
    _dense_kernel(left.indptr, left.indices, left.data, weights, n, ex_indptr, ex_indices, _mask(allowed, n_cols), skip_zeros, ids, scores)
    return ids, scores


def sparse_dot_top_n(
    queries: sp.spmatrix,
    items: sp.spmatrix,
    n: int,
    *,
    exclude: sp.spmatrix | None = None,
    allowed: np.ndarray | None = None,
    skip_zeros: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Top ``n`` items of each query by dot product: ``queries @ items.T``, never built.

    ``queries``: (rows, k) sparse; ``items``: (n_cols, k) sparse, one row per item (e.g.
    TF-IDF rows), whose entries are read once per ``DOT_LANES`` queries, so the cost is
    nnz(items) per query whatever share of the items each query reaches. Cells scoring 0
    are no candidates with ``skip_zeros`` (no shared term). Returns (ids int32, scores
    float32) of shape (rows, n), equal to :func:`~recsys.models.base.top_n` of the dense
    product with excluded cells (and, with ``skip_zeros``, zeros) at -inf.
    """
    dtype = np.result_type(queries.dtype, items.dtype, np.float32)
    left, right = _csr(queries, dtype), _csr(items, dtype)
    if left.shape[1] != right.shape[1]:
        raise ValueError(f"queries {left.shape} and items {right.shape} have different widths")
    rows, n_cols = left.shape[0], right.shape[0]
    ids = np.empty((rows, n), dtype=np.int32)
    scores = np.empty((rows, n), dtype=np.float32)
    ex_indptr, ex_indices = _exclusion(exclude, rows, n_cols)
    lanes = int(np.clip(DOT_CHUNK_BYTES // max(1, left.shape[1] * dtype.itemsize), 8, DOT_LANES))
    _dot_kernel(
        left.indptr, left.indices, left.data, right.indptr, right.indices, right.data, left.shape[1], lanes, n,
        ex_indptr, ex_indices, _mask(allowed, n_cols), skip_zeros, ids, scores,
    )
    return ids, scores
