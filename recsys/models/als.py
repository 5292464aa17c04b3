"""Matrix factorisation on implicit feedback: implicit's ALS and BPR (CPU versions).

Both learn user factors U, shape (n_users, f), and item factors V, shape (n_items, f), and
score ``U[batch] @ V.T``, as implicit's own ``recommend`` does. implicit's BPR appends a
bias column to V and a column of ones to U; the full vectors are used everywhere (scores and
item similarities), again as implicit does, so the bias is counted consistently.

ALS (Hu, Koren & Volinsky 2008): confidence ``alpha * w`` for each observed weight ``w``
(implicit's convention; unobserved cells have confidence 1). The input can be TF-IDF or BM25
weighted first (implicit.nearest_neighbours.tfidf_weight / bm25_weight), which helps ranking
quality on implicit data. Each runs in the orientation that ranked best on MovieLens
(validation splits of ml-100k and ml-latest-small, nDCG@10):

* ``tfidf``: over items x users, ``sqrt(w) * idf(user)``: users with many items count less.
* ``bm25``: over users x items, idf per item and length normalisation per user (over items x
  users it lost 0.1-0.2 nDCG at the same alpha/regularization).

Top-N lists come from implicit's own top-k (``implicit.cpu.topk.topk``: blocked matmul and
a partial sort in C++, seen and cold items filtered inside), the same scores as the dense
``U[batch] @ V.T`` reference without its users x items block.

Defaults (tfidf, alpha 2, regularization 50, 128 factors) were chosen on those validation
splits; the strong regularization is what makes ALS competitive there. BPR's defaults
(64 factors, learning rate 0.005, regularization 0.001, 100 epochs) come from the same search.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Mapping
from typing import Any, Literal

import numpy as np
import scipy.sparse as sp
from pydantic import Field
from threadpoolctl import threadpool_limits

from recsys.data.dataset import Dataset
from recsys.models.base import ModelConfig, Recommender, diagonal, resolve_threads


class ALSConfig(ModelConfig):
    """Parameters of implicit's AlternatingLeastSquares and the input weighting.

    ``regularization`` is absolute, as in implicit: its best value grows with the confidence
    mass per user and item. The default (50) suits MovieLens-like data (about 100 interactions
    per user); for small or very sparse data use about 1 (a 42-user test set needs <= 3).
    """

    factors: int = Field(128, ge=1, description="latent dimensions")
    regularization: float = Field(50.0, ge=0, description="L2 penalty on the factors")
    alpha: float = Field(2.0, gt=0, description="confidence scaling of observed weights")
    iterations: int = Field(15, ge=1, description="ALS sweeps")
    weighting: Literal["none", "bm25", "tfidf"] = Field("tfidf", description="input weighting before fitting")
    k1: float = Field(100.0, gt=0, description="BM25 term saturation (weighting='bm25')")
    b: float = Field(0.8, ge=0, le=1, description="BM25 length normalisation (weighting='bm25')")
    random_state: int | None = Field(42, description="seed of the initial factors; None = random")
    num_threads: int = Field(
        0, ge=0, description="threads for fitting; 0 = the model's threads (training.threads) (results do not depend on it)"
    )


class BPRConfig(ModelConfig):
    """Parameters of implicit's BayesianPersonalizedRanking."""

    factors: int = Field(64, ge=1, description="latent dimensions (implicit adds one bias column)")
    learning_rate: float = Field(0.005, gt=0, description="SGD step size")
    regularization: float = Field(0.001, ge=0, description="L2 penalty on the factors")
    iterations: int = Field(100, ge=1, description="epochs over the positive interactions")
    random_state: int | None = Field(42, description="seed of the initial factors and the sampling; None = random")
    num_threads: int = Field(
        1, ge=0, description="SGD threads; 1 makes a fit reproducible for a random_state, 0 = all cores"
    )


def weight_input(user_items: sp.csr_matrix, weighting: str, k1: float, b: float) -> sp.csr_matrix:
    """The users x items matrix as ALS sees it, CSR float32 of the same shape (see module doc)."""
    from implicit.nearest_neighbours import bm25_weight, tfidf_weight

    if weighting == "bm25":
        weighted = bm25_weight(user_items, K1=k1, B=b)
    elif weighting == "tfidf":
        weighted = tfidf_weight(user_items.T).T
    else:
        weighted = user_items
    matrix = sp.csr_matrix(weighted, dtype=np.float32)
    matrix.eliminate_zeros()
    matrix.sort_indices()
    return matrix


def factor_top_k(
    items: np.ndarray,
    queries: np.ndarray,
    n: int,
    *,
    exclude: sp.csr_matrix | None = None,
    blocked: np.ndarray | None = None,
    item_norms: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Top ``n`` of ``queries @ items.T`` (/ ``item_norms``) per query row with implicit's top-k.

    ``items`` (n_items, f), ``queries`` (rows, f) float32; ``exclude``: CSR (rows, n_items) of
    cells to leave out (seen items); ``blocked``: boolean mask (n_items,) of items never
    listed. Returns (ids int32, scores float32) of shape (rows, n), padded -1 / -inf.
    """
    from implicit.cpu.topk import topk

    rows, n_items = len(queries), len(items)
    ids = np.full((rows, n), -1, dtype=np.int32)
    scores = np.full((rows, n), -np.inf, dtype=np.float32)
    k = min(n, n_items)
    if rows == 0 or k == 0:
        return ids, scores
    filter_items = np.flatnonzero(blocked).astype(np.int32) if blocked is not None and blocked.any() else None
    found_ids, found_scores = topk(
        np.ascontiguousarray(items, dtype=np.float32),
        np.ascontiguousarray(queries, dtype=np.float32),
        k,
        item_norms=item_norms,
        filter_query_items=exclude if exclude is not None and exclude.nnz else None,
        filter_items=filter_items,
        num_threads=1,  # the caller runs blocks on its own threads
    )
    # implicit gives filtered cells the score -FLT_MAX instead of leaving them out.
    valid = np.isfinite(found_scores) & (found_scores > -np.finfo(np.float32).max)
    ids[:, :k] = np.where(valid, found_ids, -1)
    scores[:, :k] = np.where(valid, found_scores, -np.inf)
    return ids, scores


class FactorRecommender(Recommender):
    """Shared scoring and persistence of user/item factor models.

    Attributes after fit:
        user_factors: (n_users, f) float32.
        item_factors: (n_items, f) float32.
    Items nobody interacted with have no learned factors and are never recommended.
    """

    def __init__(self, config: ModelConfig | Mapping[str, Any] | None = None, **params: Any) -> None:
        super().__init__(config, **params)
        self.user_factors = np.zeros((0, 0), dtype=np.float32)
        self.item_factors = np.zeros((0, 0), dtype=np.float32)
        self._item_norms = np.zeros(0, dtype=np.float32)
        self._cold = np.zeros(0, dtype=bool)

    def _fit(self, dataset: Dataset, *, show_progress: bool = False) -> None:
        with threadpool_limits(1, "blas"):
            model = self._implicit_model()
            model.fit(self._training_matrix(), show_progress=show_progress)
        self.user_factors = np.ascontiguousarray(model.user_factors, dtype=np.float32)
        self.item_factors = np.ascontiguousarray(model.item_factors, dtype=np.float32)
        self._prepare()

    @abstractmethod
    def _implicit_model(self) -> Any:
        """The unfitted implicit CPU model for this config."""

    def _training_matrix(self) -> sp.csr_matrix:
        matrix = self.user_items.copy()
        matrix.eliminate_zeros()
        return matrix

    def _prepare(self) -> None:
        self._cold = np.diff(self.user_items.tocsc().indptr) == 0
        self._item_norms = np.linalg.norm(self.item_factors, axis=1).astype(np.float32)

    def _score_users(self, user_indices: np.ndarray) -> np.ndarray:
        scores = self.user_factors[user_indices] @ self.item_factors.T
        scores[:, self._cold] = -np.inf
        return scores

    def _recommend_block(
        self, users: np.ndarray, n: int, exclude_seen: bool, allowed: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray]:
        blocked = self._cold if allowed is None else self._cold | ~allowed
        return factor_top_k(
            self.item_factors, self.user_factors[users], n, exclude=self._seen_block(users, exclude_seen), blocked=blocked
        )

    def _similar_block(self, items: np.ndarray, n: int, allowed: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """Cosine top-N with implicit's top-k: unit queries, scores divided by the item norms."""
        norms = np.where(self._item_norms > 0, self._item_norms, 1.0).astype(np.float32)
        blocked = self._cold if allowed is None else self._cold | ~allowed
        ids, scores = factor_top_k(
            self.item_factors,
            self.item_factors[items] / norms[items, None],
            n,
            exclude=diagonal(items, self.n_items),
            blocked=blocked,
            item_norms=norms,
        )
        ids[self._cold[items]], scores[self._cold[items]] = -1, -np.inf
        return ids, scores

    def _score_items(self, item_indices: np.ndarray) -> np.ndarray:
        """Cosine between item factors, as implicit's similar_items."""
        norms = np.where(self._item_norms > 0, self._item_norms, 1.0).astype(np.float32)
        scores = (self.item_factors[item_indices] @ self.item_factors.T) / (norms[item_indices, None] * norms[None, :])
        scores[:, self._cold] = -np.inf
        scores[self._cold[item_indices]] = -np.inf
        return scores

    def _get_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        return {}, {"user_factors": self.user_factors, "item_factors": self.item_factors}

    def _set_state(self, meta: dict[str, Any], arrays: Mapping[str, np.ndarray]) -> None:
        self.user_factors = np.ascontiguousarray(arrays["user_factors"], dtype=np.float32)
        self.item_factors = np.ascontiguousarray(arrays["item_factors"], dtype=np.float32)
        self._prepare()


class ALSRecommender(FactorRecommender):
    """Implicit-feedback ALS (implicit.cpu.als.AlternatingLeastSquares, conjugate gradient)."""

    name = "als"
    config_class = ALSConfig
    non_finite_hint = "lower models.als.alpha or raise models.als.regularization (check the [weighting] values too)"

    def _implicit_model(self) -> Any:
        from implicit.cpu.als import AlternatingLeastSquares

        config: ALSConfig = self.config  # type: ignore[assignment]
        return AlternatingLeastSquares(
            factors=config.factors,
            regularization=config.regularization,
            alpha=config.alpha,
            dtype=np.float32,
            iterations=config.iterations,
            num_threads=config.num_threads or resolve_threads(self.threads),
            random_state=config.random_state,
        )

    def _training_matrix(self) -> sp.csr_matrix:
        config: ALSConfig = self.config  # type: ignore[assignment]
        return weight_input(super()._training_matrix(), config.weighting, config.k1, config.b)


class BPRRecommender(FactorRecommender):
    """Bayesian Personalised Ranking (implicit.cpu.bpr.BayesianPersonalizedRanking)."""

    name = "bpr"
    config_class = BPRConfig
    non_finite_hint = "lower models.bpr.learning_rate or raise models.bpr.regularization"

    def _implicit_model(self) -> Any:
        from implicit.cpu.bpr import BayesianPersonalizedRanking

        config: BPRConfig = self.config  # type: ignore[assignment]
        return BayesianPersonalizedRanking(
            factors=config.factors,
            learning_rate=config.learning_rate,
            regularization=config.regularization,
            dtype=np.float32,
            iterations=config.iterations,
            num_threads=config.num_threads,
            random_state=config.random_state,
        )
