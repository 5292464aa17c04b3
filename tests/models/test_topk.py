"""The fused score-and-select kernels give exactly the reference selections.

Each kernel is compared with scipy's product followed by the reference selection of
:mod:`recsys.models.base` on random blocks with many ties, excluded cells, filters, empty
rows and both float widths, plus a small case worked by hand.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from recsys.models.base import top_n, top_n_sparse
from recsys.models.topk import DotIndex, dense_product_top_n, sparse_dot_top_n, sparse_product_top_n

N = 7


def random_sparse(rows: int, cols: int, density: float, seed: int, dtype: type = np.float32) -> sp.csr_matrix:
    matrix = sp.random(rows, cols, density=density, random_state=seed, format="csr", dtype=np.float64)
    # Few distinct values, both signs: many ties and some sums that cancel to zero.
    matrix.data = np.round(matrix.data * 4) / 2 - 0.5
    matrix = matrix.astype(dtype)
    matrix.data[matrix.indptr[3] : matrix.indptr[4]] = 0  # an empty query row
    matrix.eliminate_zeros()
    return matrix


def masked(block: np.ndarray, exclude: sp.csr_matrix | None, allowed: np.ndarray | None) -> np.ndarray:
    block = np.asarray(block, dtype=np.float32).copy()
    if exclude is not None:
        block[np.repeat(np.arange(block.shape[0]), np.diff(exclude.indptr)), exclude.indices] = -np.inf
    if allowed is not None:
        block[:, ~allowed] = -np.inf
    return block


def assert_same(got: tuple[np.ndarray, np.ndarray], expected: tuple[np.ndarray, np.ndarray], full: np.ndarray) -> None:
    """Same scores everywhere; where items differ, both are tied at that place (top_n picks any
    of the items tied at the cut)."""
    assert got[0].dtype == np.int32 and got[1].dtype == np.float32
    np.testing.assert_array_equal(got[1], expected[1])
    rows, cols = np.nonzero(got[0] != expected[0])
    np.testing.assert_array_equal(full[rows, got[0][rows, cols]], expected[1][rows, cols])


@pytest.fixture(params=[np.float32, np.float64], ids=["float32", "float64"])
def dtype(request: pytest.FixtureRequest) -> type:
    return request.param


@pytest.mark.parametrize("with_exclude", [False, True])
@pytest.mark.parametrize("with_filter", [False, True])
def test_sparse_product_equals_top_n_sparse_of_the_product(dtype: type, with_exclude: bool, with_filter: bool) -> None:
    queries = random_sparse(60, 40, 0.1, 1, dtype)
    matrix = random_sparse(40, 90, 0.08, 2, dtype)
    exclude = random_sparse(60, 90, 0.1, 3) if with_exclude else None
    allowed = np.random.default_rng(4).random(90) < 0.7 if with_filter else None
    product = sp.csr_matrix(queries @ matrix)
    expected = top_n_sparse(product, N, exclude=exclude, allowed=allowed)
    got = sparse_product_top_n(queries, matrix, N, exclude=exclude, allowed=allowed)
    # The product's stored cells are the candidates: the selection is exact, ties included.
    np.testing.assert_array_equal(got[0], expected[0])
    np.testing.assert_array_equal(got[1], expected[1])
    assert (got[0][3] == -1).all()


def test_dense_product_equals_top_n_of_the_masked_product(dtype: type) -> None:
    queries = random_sparse(50, 30, 0.15, 5, dtype)
    matrix = np.round(np.random.default_rng(6).normal(size=(30, 80)), 1).astype(dtype)
    exclude = random_sparse(50, 80, 0.1, 7)
    allowed = np.random.default_rng(8).random(80) < 0.8
    full = masked(np.asarray(queries @ matrix), exclude, allowed)
    got = dense_product_top_n(queries, matrix, N, exclude=exclude, allowed=allowed)
    assert_same(got, top_n(full, N), full)
    # The empty query row scores 0 everywhere: a list of zeros, as in the dense path.
    assert (got[1][3] == 0).all()


@pytest.mark.parametrize("signs", ["non-negative", "mixed"])
def test_sparse_dot_equals_the_dense_dot_products(dtype: type, signs: str) -> None:
    # Non-negative data takes the pruned path (blocks of 4 items here, so that bounds prune),
    # mixed signs the one that reads every item row, 64 queries at a time.
    queries = random_sparse(150, 50, 0.1, 9, dtype)
    items = random_sparse(70, 50, 0.1, 10, dtype)
    if signs == "non-negative":
        queries.data, items.data = np.abs(queries.data), np.abs(items.data)
    index = DotIndex(items, block=4)
    assert index.nonnegative == (signs == "non-negative")
    exclude = random_sparse(150, 70, 0.1, 11)
    allowed = np.random.default_rng(12).random(70) < 0.8
    full = masked((queries @ items.T).toarray(), exclude, allowed)
    full[full == 0] = -np.inf  # no shared term: no candidate
    got = index.top_n(queries, N, exclude=exclude, allowed=allowed)
    assert_same(got, top_n(full, N), full)
    np.testing.assert_array_equal(sparse_dot_top_n(queries, items, N, exclude=exclude, allowed=allowed)[0], got[0])
    # Sums taken as scipy's sparse product takes them: the same floats as top_n_sparse's.
    expected = top_n_sparse(sp.csr_matrix(queries @ items.T), N, exclude=exclude, allowed=allowed)
    np.testing.assert_array_equal(got[1], expected[1])


def test_a_case_worked_by_hand() -> None:
    queries = sp.csr_matrix(np.array([[1, 0, 2], [0, 0, 0]], dtype=np.float32))
    matrix = np.array([[1, 2, 0, 3], [9, 9, 9, 9], [1, 0, 0, 1]], dtype=np.float32)
    # Row 0 scores [3, 2, 0, 5]; item 3 is excluded, item 0 filtered out.
    exclude = sp.csr_matrix(np.array([[0, 0, 0, 1], [0, 0, 0, 0]], dtype=np.float32))
    allowed = np.array([False, True, True, True])
    ids, scores = dense_product_top_n(queries, matrix, 3, exclude=exclude, allowed=allowed)
    assert ids.tolist() == [[1, 2, -1], [1, 2, 3]]
    assert scores[0, :2].tolist() == [2.0, 0.0] and np.isneginf(scores[0, 2]) and scores[1].tolist() == [0, 0, 0]
    ids, scores = sparse_product_top_n(queries, sp.csr_matrix(matrix), 3)
    assert ids.tolist() == [[3, 0, 1], [-1, -1, -1]] and scores[0].tolist() == [5.0, 3.0, 2.0]
    ids, scores = sparse_dot_top_n(queries, sp.csr_matrix(matrix.T), 2, exclude=exclude)
    assert ids.tolist() == [[0, 1], [-1, -1]] and scores[0].tolist() == [3.0, 2.0]


def test_shapes_that_do_not_fit_are_refused() -> None:
    queries = sp.csr_matrix((2, 3), dtype=np.float32)
    with pytest.raises(ValueError, match="do not multiply"):
        sparse_product_top_n(queries, sp.csr_matrix((4, 5), dtype=np.float32), 2)
    with pytest.raises(ValueError, match="do not multiply"):
        dense_product_top_n(queries, np.zeros((4, 5), dtype=np.float32), 2)
    with pytest.raises(ValueError, match="different widths"):
        sparse_dot_top_n(queries, sp.csr_matrix((4, 5), dtype=np.float32), 2)
    with pytest.raises(ValueError, match="allowed has shape"):
        dense_product_top_n(queries, np.zeros((3, 5), dtype=np.float32), 2, allowed=np.ones(4, dtype=bool))
    with pytest.raises(ValueError, match="exclude has shape"):
        sparse_product_top_n(queries, sp.csr_matrix((3, 5), dtype=np.float32), 2, exclude=sp.csr_matrix((2, 4)))


def test_pruned_dot_skips_blocks_and_stays_exact() -> None:
    """Items in two groups sharing no term: a query of one group never needs the other's
    blocks, and the lists equal the full products' even where scores tie across blocks."""
    rng = np.random.default_rng(13)
    group = np.repeat([0, 1], 200)
    terms = np.where(group[:, None] == 0, rng.integers(0, 20, (400, 3)), rng.integers(20, 40, (400, 3)))
    items = sp.csr_matrix((np.ones(1200, dtype=np.float32), (np.repeat(np.arange(400), 3), terms.ravel())), shape=(400, 40))
    items.sum_duplicates()
    queries = sp.csr_matrix(rng.integers(0, 3, (30, 40)).astype(np.float32))
    full = (queries @ items.T).toarray().astype(np.float32)
    full[full == 0] = -np.inf
    index = DotIndex(items, block=8)
    got = index.top_n(queries, 10)
    assert_same(got, top_n(full, 10), full)
    # The bounds are tight enough to prune: blocks hold one group each.
    bounds = sp.csr_matrix((index.bound_data, index.bound_blocks, index.bound_indptr), shape=(40, len(index.starts) - 1))
    blocks_per_term = np.diff(bounds.indptr)
    assert blocks_per_term.max() <= 25  # a term is in at most the 25 blocks of its group
