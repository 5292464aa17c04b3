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
  itemknn, userknn and rules;
* :func:`dense_product_top_n` = ``top_n(queries @ matrix with excluded cells -inf, n)``:
  every cell is a candidate; ease;
* :class:`DotIndex` / :func:`sparse_dot_top_n`: top-N of ``queries @ items.T`` where the
  items' rows are sparse too (TF-IDF) and a cell without a shared term is no candidate;
  with non-negative data it visits item blocks by an upper bound and stops when no block
  left can reach the list, so it scores a fraction of the catalogue (content).

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
# Queries scored at once by the unpruned dot kernel, and the most bytes their dense chunk may take.
DOT_LANES = 64
DOT_CHUNK_BYTES = 8 << 20
# Items per block of a DotIndex, and the relative slack by which a block's bound must miss.
DOT_BLOCK = 128
BOUND_MARGIN = 1e-5


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
    q_indptr, q_indices, q_data, matrix, n, ex_indptr, ex_indices, allowed, out_ids, out_scores,
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
            if np.isfinite(value):
                count = _keep_best(ids, scores, count, n, c, value)
                if count == n:
                    threshold = scores[n - 1]
        for t in range(count, n):
            ids[t] = -1
            scores[t] = -np.inf


@njit(nogil=True, cache=True)
def _dot_kernel(  # type: ignore[no-untyped-def]
    q_indptr, q_indices, q_data, m_indptr, m_indices, m_data, n_terms, lanes, n,
    ex_indptr, ex_indices, allowed, out_ids, out_scores,
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
                if value != 0 and np.isfinite(value):
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


@njit(nogil=True, cache=True)
def _pruned_dot_kernel(  # type: ignore[no-untyped-def]
    q_indptr, q_indices, q_data, n_terms, n_cols,
    block_items, block_starts, block_term_indptr, block_terms, block_values, width,
    bound_indptr, bound_blocks, bound_data, n,
    ex_indptr, ex_indices, allowed, out_ids, out_scores,
):
    rows = len(q_indptr) - 1
    n_blocks = len(block_starts) - 1
    profile = np.zeros(n_terms, dtype=q_data.dtype)
    lanes = np.zeros(width, dtype=q_data.dtype)
    bounds = np.zeros(n_blocks, dtype=np.float64)
    touched = np.zeros(n_blocks, dtype=np.bool_)
    reached = np.empty(n_blocks, dtype=np.int64)
    excluded = np.zeros(n_cols, dtype=np.bool_)
    masked = len(allowed) > 0
    excluding = len(ex_indptr) > 0
    for row in range(rows):
        n_reached = 0
        for p in range(q_indptr[row], q_indptr[row + 1]):
            term = q_indices[p]
            weight = q_data[p]
            profile[term] = weight
            for s in range(bound_indptr[term], bound_indptr[term + 1]):
                block = bound_blocks[s]
                if not touched[block]:
                    touched[block] = True
                    reached[n_reached] = block
                    n_reached += 1
                bounds[block] += weight * bound_data[s]
        if excluding:
            for p in range(ex_indptr[row], ex_indptr[row + 1]):
                excluded[ex_indices[p]] = True
        candidates = reached[:n_reached]
        order = np.argsort(-bounds[candidates])
        ids = out_ids[row]
        scores = out_scores[row]
        count = 0
        threshold = -np.inf
        for position in range(n_reached):
            block = candidates[order[position]]
            # Every item of this block and of the blocks after it scores at most its bound:
            # once that is below the n-th best, no item left can enter (nor tie).
            if count == n and bounds[block] * (1.0 + BOUND_MARGIN) < threshold:
                break
            start = block_starts[block]
            size = block_starts[block + 1] - start
            lanes[:size] = 0
            # The block's terms ascending, each a row of its items' weights: every item's
            # sum runs over its own terms in ascending order, as its sparse dot product
            # would, and the block's items are summed side by side.
            for k in range(block_term_indptr[block], block_term_indptr[block + 1]):
                weight = profile[block_terms[k]]
                if weight != 0:
                    values = block_values[k * width : k * width + size]
                    for lane in range(size):
                        lanes[lane] += weight * values[lane]
            for lane in range(size):
                column = block_items[start + lane]
                if (masked and not allowed[column]) or excluded[column]:
                    continue
                value = np.float32(lanes[lane])
                if value == 0 or not np.isfinite(value) or value < threshold:
                    continue
                count = _keep_best(ids, scores, count, n, column, value)
                if count == n:
                    threshold = scores[n - 1]
        for t in range(count, n):
            ids[t] = -1
            scores[t] = -np.inf
        for t in range(n_reached):
            bounds[reached[t]] = 0
            touched[reached[t]] = False
        for p in range(q_indptr[row], q_indptr[row + 1]):
            profile[q_indices[p]] = 0
        if excluding:
            for p in range(ex_indptr[row], ex_indptr[row + 1]):
                excluded[ex_indices[p]] = False


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
) -> tuple[np.ndarray, np.ndarray]:
    """Top ``n`` of each row of ``queries @ matrix`` (sparse (rows, k) times dense (k, n_cols)).

    Every cell is a candidate except the stored cells of ``exclude`` and the columns where
    ``allowed`` is False. Returns (ids int32, scores float32) of shape (rows, n), equal to
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
    _dense_kernel(left.indptr, left.indices, left.data, weights, n, ex_indptr, ex_indices, _mask(allowed, n_cols), ids, scores)
    return ids, scores


class DotIndex:
    """Item rows (n_cols, k) prepared for :meth:`top_n`: blocks of similar items and their bounds.

    Items are ordered by their most common term, then by their heaviest one, and cut into
    blocks of ``DOT_BLOCK``; ``bounds`` (k, n_blocks) holds each term's largest weight in
    each block. With non-negative queries and items, a query's bound on a block (its
    profile times the block's maxima) caps every score in the block: blocks are visited
    best bound first and the search stops when the next bound is below the n-th best score.
    The result is exact; its cost follows the blocks that can hold a top-n item, not the
    catalogue. A block is scored dense over the terms its items have (``block_values``),
    so its items' sums run side by side in SIMD lanes instead of one gathered dot product
    after another; each item's sum still takes its terms in ascending order, so the
    scores are those of the sparse product. Measured on the 10M shop's catalogue (20,000
    items, 20,000 profiles, one thread): 3.2 s with one sparse dot per item, 1.3 s with
    dense blocks of 128.
    """

    def __init__(self, items: sp.spmatrix, block: int | None = None) -> None:
        matrix = sp.csr_matrix(items)
        if matrix.dtype not in (np.float32, np.float64):
            matrix = matrix.astype(np.float64)
        matrix.sum_duplicates()  # sorted indices, one entry per term
        self.items = matrix
        n_cols, n_terms = matrix.shape
        self.block = block or DOT_BLOCK
        self.nonnegative = bool(matrix.nnz == 0 or matrix.data.min() >= 0)
        rows = np.repeat(np.arange(n_cols, dtype=np.int64), np.diff(matrix.indptr))
        terms = matrix.indices.astype(np.int64)
        document_frequency = np.bincount(terms, minlength=n_terms)
        filled = np.diff(matrix.indptr) > 0
        firsts = matrix.indptr[:-1][filled]
        primary = np.full(n_cols, -1, dtype=np.int64)
        secondary = np.full(n_cols, -1, dtype=np.int64)
        if matrix.nnz:
            common = np.lexsort((terms, -document_frequency[terms], rows))
            heavy = np.lexsort((terms, -matrix.data, rows))
            primary[filled] = terms[common[firsts]]
            secondary[filled] = terms[heavy[firsts]]
        self.order = np.lexsort((np.arange(n_cols), secondary, primary)).astype(np.int64)
        n_blocks = max(1, -(-n_cols // self.block))
        self.starts = np.minimum(np.arange(n_blocks + 1, dtype=np.int64) * self.block, n_cols)
        block_of = np.empty(n_cols, dtype=np.int64)
        block_of[self.order] = np.arange(n_cols) // self.block
        keys = terms * n_blocks + block_of[rows]
        by_key = np.argsort(keys, kind="stable")
        keys = keys[by_key]
        heads = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]]) if len(keys) else np.zeros(0, dtype=np.int64)
        maxima = np.maximum.reduceat(matrix.data[by_key], heads) if len(keys) else matrix.data[:0]
        unique = keys[heads]
        self.bound_indptr = np.r_[0, np.cumsum(np.bincount(unique // n_blocks, minlength=n_terms))].astype(np.int64)
        self.bound_blocks = (unique % n_blocks).astype(np.int64)
        self.bound_data = maxima.astype(np.float64)
        # Each block dense over the terms its items have: row k of ``block_values`` (one
        # row of ``block`` lanes per (block, term), blocks in order, terms ascending) holds
        # the items' weights of term ``block_terms[k]``, 0 where an item lacks it.
        lane = np.empty(n_cols, dtype=np.int64)
        lane[self.order] = np.arange(n_cols) % self.block
        pair_keys = block_of[rows] * n_terms + terms
        pairs = np.unique(pair_keys)
        self.block_term_indptr = np.r_[0, np.cumsum(np.bincount(pairs // n_terms, minlength=n_blocks))].astype(np.int64)
        self.block_terms = (pairs % n_terms).astype(np.int64)
        self.block_values = np.zeros(len(pairs) * self.block, dtype=matrix.dtype)
        self.block_values[np.searchsorted(pairs, pair_keys) * self.block + lane[rows]] = matrix.data

    def top_n(
        self,
        queries: sp.spmatrix,
        n: int,
        *,
        exclude: sp.spmatrix | None = None,
        allowed: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top ``n`` items of each query row (rows, k) by dot product; cells scoring 0 (no shared
        term) are never candidates. Returns (ids int32, scores float32) of shape (rows, n)."""
        items = self.items
        left = _csr(queries, items.dtype)
        if left.shape[1] != items.shape[1]:
            raise ValueError(f"queries {left.shape} and items {items.shape} have different widths")
        rows, n_cols = left.shape[0], items.shape[0]
        ids = np.empty((rows, n), dtype=np.int32)
        scores = np.empty((rows, n), dtype=np.float32)
        ex_indptr, ex_indices = _exclusion(exclude, rows, n_cols)
        mask = _mask(allowed, n_cols)
        if self.nonnegative and (left.nnz == 0 or left.data.min() >= 0):
            _pruned_dot_kernel(
                left.indptr, left.indices, left.data, items.shape[1], n_cols,
                self.order, self.starts, self.block_term_indptr, self.block_terms, self.block_values, self.block,
                self.bound_indptr, self.bound_blocks, self.bound_data, n,
                ex_indptr, ex_indices, mask, ids, scores,
            )
        else:
            lanes = int(np.clip(DOT_CHUNK_BYTES // max(1, left.shape[1] * items.dtype.itemsize), 8, DOT_LANES))
            _dot_kernel(
                left.indptr, left.indices, left.data, items.indptr, items.indices, items.data, items.shape[1], lanes, n,
                ex_indptr, ex_indices, mask, ids, scores,
            )
        return ids, scores


def sparse_dot_top_n(
    queries: sp.spmatrix,
    items: sp.spmatrix | DotIndex,
    n: int,
    *,
    exclude: sp.spmatrix | None = None,
    allowed: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Top ``n`` items of each query by dot product: ``queries @ items.T``, never built.

    ``queries``: (rows, k) sparse; ``items``: (n_cols, k) sparse, one row per item (e.g.
    TF-IDF rows), or a :class:`DotIndex` of them (build it once for many calls). Cells
    scoring 0 are no candidates (no shared term). Returns (ids int32, scores float32) of
    shape (rows, n), equal to :func:`~recsys.models.base.top_n` of the dense product with
    excluded cells and zeros at -inf. Non-negative data (TF-IDF) visits only the item
    blocks whose bound can reach the top ``n``; other data reads every item row once per
    ``DOT_LANES`` queries.
    """
    index = items if isinstance(items, DotIndex) else DotIndex(items)
    return index.top_n(queries, n, exclude=exclude, allowed=allowed)
