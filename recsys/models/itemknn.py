"""Item-based collaborative filtering on implicit's nearest-neighbour recommenders.

implicit computes a sparse item x item matrix ``similarity`` (row ``i`` holds the ``k``
nearest neighbours of item ``i``, the item itself included) from cosine, TF-IDF or BM25
weighted co-occurrences. A user's score for item ``j`` is ``sum_i x_ui * similarity[i, j]``,
which is ``user_items[batch] @ similarity``: the same sum implicit's own ``recommend``
accumulates; the top-N is taken row by row as the product is accumulated
(:func:`~recsys.models.topk.sparse_product_top_n`), never densified nor stored.

Defaults (BM25, k=75, k1=0.4, b=0.25) were chosen on validation splits carved from the
training data of ml-100k and ml-latest-small (nDCG@10); plain cosine (k=75) scored 7% and
25% lower there.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any, Literal

import numpy as np
import scipy.sparse as sp
from pydantic import Field

from recsys.data.dataset import Dataset
from recsys.models.base import ModelConfig, Recommender, diagonal, resolve_threads, sparse_from_arrays, sparse_to_arrays, top_n_sparse
from recsys.models.topk import sparse_product_top_n
from recsys.models.explain import because_sparse, checked_pairs


class ItemKNNConfig(ModelConfig):
    """``similarity``: how co-occurrences are weighted before the dot product (implicit's
    CosineRecommender, TFIDFRecommender or BM25Recommender); ``k``: neighbours kept per item;
    ``k1``/``b``: BM25 saturation and length normalisation (used by ``bm25`` only)."""

    similarity: Literal["cosine", "tfidf", "bm25"] = "bm25"
    k: int = Field(75, ge=1, description="neighbours kept per item (the item itself is one of them)")
    k1: float = Field(0.4, gt=0, description="BM25 term saturation")
    b: float = Field(0.25, ge=0, le=1, description="BM25 length normalisation")


def sparse_scores_to_dense(scores: sp.spmatrix) -> np.ndarray:
    """A sparse score block as a dense float32 array; cells outside its structure are ``-inf``.

    A neighbourhood model has no opinion on items no neighbour reaches, so they are left out
    of the lists (shorter lists, padded by ``top_n``) instead of filled with arbitrary zeros.
    """
    block = sp.csr_matrix(scores)
    dense = np.full(block.shape, -np.inf, dtype=np.float32)
    rows = np.repeat(np.arange(block.shape[0]), np.diff(block.indptr))
    dense[rows, block.indices] = block.data
    return dense


def implicit_item_knn(config: ItemKNNConfig, threads: int = 0) -> Any:
    """The unfitted implicit model for ``config``, fitting on ``threads`` threads (0 = all cores)."""
    from implicit.nearest_neighbours import BM25Recommender, CosineRecommender, TFIDFRecommender

    if config.similarity == "bm25":
        return BM25Recommender(K=config.k, K1=config.k1, B=config.b, num_threads=threads)
    if config.similarity == "tfidf":
        return TFIDFRecommender(K=config.k, num_threads=threads)
    return CosineRecommender(K=config.k, num_threads=threads)


class ItemKNNRecommender(Recommender):
    """Recommends the nearest neighbours of the items a user has, summed and weighted."""

    name = "itemknn"
    config_class = ItemKNNConfig

    def __init__(self, config: ItemKNNConfig | Mapping[str, Any] | None = None, **params: Any) -> None:
        super().__init__(config, **params)
        self.similarity = sp.csr_matrix((0, 0), dtype=np.float32)

    def _fit(self, dataset: Dataset, *, show_progress: bool = False) -> None:
        from implicit.utils import ParameterWarning

        config: ItemKNNConfig = self.config  # type: ignore[assignment]
        model = implicit_item_knn(config, resolve_threads(self.threads))
        user_items = self.user_items.copy()
        user_items.eliminate_zeros()
        with warnings.catch_warnings():
            # implicit's weighting helpers return COO and then warn about their own conversion.
            warnings.simplefilter("ignore", ParameterWarning)
            model.fit(user_items, show_progress=show_progress)
        similarity = sp.csr_matrix(model.similarity, dtype=np.float32)
        similarity.eliminate_zeros()
        similarity.sort_indices()
        self.similarity = similarity

    def _user_scores(self, user_indices: np.ndarray) -> sp.csr_matrix:
        """Sparse scores (len(user_indices), n_items): items no neighbour reaches have none."""
        return sp.csr_matrix(self.user_items[user_indices] @ self.similarity)

    def _score_users(self, user_indices: np.ndarray) -> np.ndarray:
        return sparse_scores_to_dense(self._user_scores(user_indices))

    def _recommend_block(
        self, users: np.ndarray, n: int, exclude_seen: bool, allowed: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray]:
        return sparse_product_top_n(
            self.user_items[users], self.similarity, n, exclude=self._seen_block(users, exclude_seen), allowed=allowed
        )

    def _similar_block(self, items: np.ndarray, n: int, allowed: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        return top_n_sparse(self.similarity[items], n, exclude=diagonal(items, self.n_items), allowed=allowed)

    def _score_items(self, item_indices: np.ndarray) -> np.ndarray:
        """Row ``i`` of ``similarity``: the neighbours of item ``i``, as implicit's similar_items."""
        return sparse_scores_to_dense(self.similarity[item_indices])

    def explain(self, user_indices: np.ndarray | list[int], item_indices: np.ndarray | list[int]) -> np.ndarray:
        """The seen item ``i`` with the largest term ``x_ui * similarity[i, j]`` of each entry's score."""
        users, items = checked_pairs(self, user_indices, item_indices)
        return because_sparse(self.user_items, users, items, self.similarity)

    def _get_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        return {}, sparse_to_arrays("similarity", self.similarity)

    def _set_state(self, meta: dict[str, Any], arrays: Mapping[str, np.ndarray]) -> None:
        self.similarity = sparse_from_arrays("similarity", arrays)
