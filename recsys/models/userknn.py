"""User-based collaborative filtering: the items of a user's ``k`` most similar users.

The user x user similarity is never held dense: only the ``k`` best neighbours of each user
are kept, a CSR matrix of shape (n_users, n_users) with at most ``k`` entries per row, from
implicit's multithreaded all-pairs k-NN on the transposed matrix (``k + 1`` neighbours, as
implicit counts the user itself, which is dropped) or, with shrinkage, which implicit does
not have, from sparse block products. Scores are then ``S[batch] @ X``: each neighbour's
items weighted by how similar the neighbour is, top-N taken from the sparse product.

Similarity: cosine with optional shrinkage, ``x_u . x_v / (|x_u| |x_v| + shrinkage)``, which
lowers the weight of neighbours that share only a few items. ``k`` = 100 without shrinkage
ranked best on validation splits of ml-100k and ml-latest-small (nDCG@10).

Cost: the neighbour search visits every pair of users that share an item, sum over items of
(users of the item)^2 pairs: 1.0e9 on the 1M synthetic shop, 53e9 on the 10M one (300k
users), where the most popular item alone has 85k users. ``max_pair_products`` bounds it:
above the budget, the most popular items are left out of the *similarity* (not of the lists:
neighbours' items are all recommended), the fewest that bring the pair count within budget.
Items everyone has say little about whose taste is alike (the inverse user frequency of
Breese et al., 1998). The default, 2e9, leaves every item in on ML-100K, ml-latest-small,
Online Retail and the 1M shop, so their lists are exact; on the 10M shop it leaves out the
421 items with more than 1,965 users and the fit takes 38 s on 2 threads (BENCHMARKS.md).
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np
import scipy.sparse as sp
from pydantic import Field
from tqdm.auto import tqdm

from recsys.data.dataset import Dataset
from recsys.models.base import (
    ModelConfig,
    Recommender,
    diagonal,
    resolve_threads,
    sparse_from_arrays,
    sparse_to_arrays,
    top_n_entries,
)
from recsys.models.itemknn import sparse_scores_to_dense
from recsys.models.topk import sparse_product_top_n

log = logging.getLogger(__name__)

# Rows per sparse similarity product when neighbours are computed with shrinkage.
NEIGHBOUR_BLOCK_ROWS = 1024


class UserKNNConfig(ModelConfig):
    """``k``: neighbours per user; ``shrinkage``: added to the cosine denominator (0 = plain cosine)."""

    k: int = Field(100, ge=1, description="neighbours kept per user")
    shrinkage: float = Field(0.0, ge=0, description="cosine shrinkage term; 0 = plain cosine")
    max_pair_products: int | None = Field(
        2_000_000_000,
        gt=0,
        description="budget of user pairs the neighbour search visits (sum over items of users^2); "
        "above it the most popular items are left out of the similarity; None = every item",
    )


def similarity_items(matrix: sp.csr_matrix, max_pair_products: int | None) -> np.ndarray:
    """Boolean mask (n_cols,) of the columns the row similarity is computed on: all of them, or,
    when sum over columns of (non-zeros)^2 exceeds ``max_pair_products``, the columns with at
    most ``cap`` non-zeros for the largest ``cap`` that brings the sum within the budget."""
    counts = np.diff(sp.csc_matrix(matrix).indptr).astype(np.int64)
    keep = np.ones(len(counts), dtype=bool)
    squares = counts.astype(np.float64) ** 2
    if max_pair_products is None or squares.sum() <= max_pair_products:
        return keep
    levels = np.unique(counts)  # ascending
    # Pairs visited when every column with at most ``level`` non-zeros is kept.
    cumulative = np.cumsum(np.bincount(counts, weights=squares)[levels])
    within = np.flatnonzero(cumulative <= max_pair_products)
    cap = int(levels[within[-1]]) if len(within) else 0
    return counts <= cap


def top_k_neighbours(
    matrix: sp.csr_matrix,
    k: int,
    shrinkage: float = 0.0,
    *,
    threads: int = 0,
    show_progress: bool = False,
    columns: np.ndarray | None = None,
) -> sp.csr_matrix:
    """Sparse top-``k`` cosine neighbours of every row of ``matrix`` (shape (n_rows, n_cols)).

    Returns a float32 CSR matrix of shape (n_rows, n_rows): row ``u`` holds the ``k`` rows most
    similar to ``u`` (never ``u`` itself; only positive similarities). Without shrinkage the
    cosine top-k comes from implicit's multithreaded all-pairs k-NN (on the transposed matrix,
    ``k + 1`` neighbours, the row itself then dropped); with shrinkage, from sparse block
    products selected with :func:`top_n_entries`. Neither holds a dense n_rows x n_rows block.
    ``columns``: boolean mask (n_cols,) of the columns the similarity is computed on (None = all).
    """
    n_rows = matrix.shape[0]
    matrix = sp.csr_matrix(matrix, dtype=np.float32)
    if columns is not None and not columns.all():
        matrix = sp.csr_matrix(matrix @ sp.diags(columns.astype(np.float32)), dtype=np.float32)
    matrix.eliminate_zeros()
    k = min(k, max(n_rows - 1, 0))
    if k == 0 or matrix.nnz == 0:
        return sp.csr_matrix((n_rows, n_rows), dtype=np.float32)
    if shrinkage == 0:
        rows, cols, values = _implicit_neighbours(matrix, k, resolve_threads(threads), show_progress)
    else:
        rows, cols, values = _shrunk_neighbours(matrix, k, shrinkage, show_progress)
    keep = (rows != cols) & (values > 0)
    ids, best = top_n_entries(rows[keep], cols[keep], values[keep], n_rows, n_rows, k)
    found = ids >= 0
    neighbours = sp.csr_matrix(
        (best[found], (np.nonzero(found)[0], ids[found])), shape=(n_rows, n_rows), dtype=np.float32
    )
    neighbours.sort_indices()
    return neighbours


def _implicit_neighbours(
    matrix: sp.csr_matrix, k: int, threads: int, show_progress: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(row, neighbour, cosine) entries from implicit's CosineRecommender over the rows of ``matrix``."""
    from implicit.nearest_neighbours import CosineRecommender
    from implicit.utils import ParameterWarning

    model = CosineRecommender(K=k + 1, num_threads=threads)  # + 1: a row is its own nearest neighbour
    with warnings.catch_warnings():
        # implicit's normalisation returns COO and then warns about its own conversion.
        warnings.simplefilter("ignore", ParameterWarning)
        model.fit(sp.csr_matrix(matrix.T), show_progress=show_progress)
    similarity = sp.coo_matrix(model.similarity)
    return similarity.row.astype(np.int64), similarity.col.astype(np.int64), similarity.data.astype(np.float32)


def _shrunk_neighbours(
    matrix: sp.csr_matrix, k: int, shrinkage: float, show_progress: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Top ``k + 1`` (row, neighbour, shrunk cosine) entries per row, a block of sparse products at a time."""
    n_rows = matrix.shape[0]
    norms = np.sqrt(np.asarray(matrix.multiply(matrix).sum(axis=1)).ravel()).astype(np.float32)
    transposed = matrix.T.tocsr()
    parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    for start in tqdm(range(0, n_rows, NEIGHBOUR_BLOCK_ROWS), disable=not show_progress, desc="user neighbours", unit="block"):
        stop = min(start + NEIGHBOUR_BLOCK_ROWS, n_rows)
        dots = sp.csr_matrix(matrix[start:stop] @ transposed)
        rows = np.repeat(np.arange(stop - start, dtype=np.int64), np.diff(dots.indptr))
        cols = dots.indices.astype(np.int64)
        values = dots.data / (norms[start + rows] * norms[cols] + np.float32(shrinkage))
        ids, best = top_n_entries(rows, cols, values.astype(np.float32), stop - start, n_rows, k + 1)
        found = ids >= 0
        parts.append((np.nonzero(found)[0] + start, ids[found].astype(np.int64), best[found]))
    return tuple(np.concatenate(column) for column in zip(*parts, strict=True))  # type: ignore[return-value]


def column_normalised(matrix: sp.csr_matrix) -> sp.csr_matrix:
    """``matrix`` with every non-empty column scaled to unit length (same shape, float32)."""
    squares = np.asarray(matrix.multiply(matrix).sum(axis=0)).ravel()
    with np.errstate(divide="ignore"):
        inverse = np.where(squares > 0, 1.0 / np.sqrt(squares), 0.0).astype(np.float32)
    return sp.csr_matrix(matrix @ sp.diags(inverse), dtype=np.float32)


class UserKNNRecommender(Recommender):
    """Recommends what the most similar users have, weighted by their similarity.

    Attributes after fit:
        neighbours: CSR (n_users, n_users) float32, the top-``k`` similarities of each user.
    """

    name = "userknn"
    config_class = UserKNNConfig

    def __init__(self, config: UserKNNConfig | Mapping[str, Any] | None = None, **params: Any) -> None:
        super().__init__(config, **params)
        self.neighbours = sp.csr_matrix((0, 0), dtype=np.float32)
        #: items left out of the similarity by ``max_pair_products`` (they are still recommended).
        self.items_left_out = 0
        self._user_profiles = sp.csr_matrix((0, 0), dtype=np.float32)
        self._item_profiles = sp.csr_matrix((0, 0), dtype=np.float32)

    def _fit(self, dataset: Dataset, *, show_progress: bool = False) -> None:
        config: UserKNNConfig = self.config  # type: ignore[assignment]
        columns = similarity_items(self.user_items, config.max_pair_products)
        self.items_left_out = int((~columns).sum())
        if self.items_left_out:
            log.info(
                "userknn: %d most popular items left out of the user similarity (max_pair_products = %d)",
                self.items_left_out, config.max_pair_products,
            )
        self.neighbours = top_k_neighbours(
            self.user_items, config.k, config.shrinkage, threads=self.threads, show_progress=show_progress, columns=columns
        )
        self._prepare()

    def _prepare(self) -> None:
        # Unit-length item columns, (n_users, n_items), and their transpose, for similar_items.
        self._user_profiles = column_normalised(self.user_items)
        self._item_profiles = self._user_profiles.T.tocsr()

    def _user_scores(self, user_indices: np.ndarray) -> sp.csr_matrix:
        return sp.csr_matrix(self.neighbours[user_indices] @ self.user_items)

    def _item_scores(self, item_indices: np.ndarray) -> sp.csr_matrix:
        return sp.csr_matrix(self._item_profiles[item_indices] @ self._user_profiles)

    def _score_users(self, user_indices: np.ndarray) -> np.ndarray:
        return sparse_scores_to_dense(self._user_scores(user_indices))

    def _score_items(self, item_indices: np.ndarray) -> np.ndarray:
        """Cosine between items over the users who have them (items nobody shares: -inf)."""
        return sparse_scores_to_dense(self._item_scores(item_indices))

    def _recommend_block(
        self, users: np.ndarray, n: int, exclude_seen: bool, allowed: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray]:
        return sparse_product_top_n(
            self.neighbours[users], self.user_items, n, exclude=self._seen_block(users, exclude_seen), allowed=allowed
        )

    def _similar_block(self, items: np.ndarray, n: int, allowed: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        return sparse_product_top_n(
            self._item_profiles[items], self._user_profiles, n, exclude=diagonal(items, self.n_items), allowed=allowed
        )

    def _get_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        return {"items_left_out": self.items_left_out}, sparse_to_arrays("neighbours", self.neighbours)

    def _set_state(self, meta: dict[str, Any], arrays: Mapping[str, np.ndarray]) -> None:
        self.neighbours = sparse_from_arrays("neighbours", arrays)
        self.items_left_out = int(meta.get("items_left_out", 0))
        self._prepare()

