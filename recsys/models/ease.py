"""EASE, the Embarrassingly Shallow Autoencoder (Steck, WWW 2019).

A dense item x item weight matrix with a closed form::

    P = (X^T X + l2 * I)^-1
    B = I - P * diagMat(1 / diag(P))     i.e.  B[i, j] = -P[i, j] / P[j, j],  B[j, j] = 0

and scores ``X[batch] @ B``. B[i, j] is how much having item ``i`` speaks for item ``j``, so
row ``B[i]`` is the score vector of a user who has only item ``i``: that row is what
``similar_items`` ranks. Top-N lists are selected while each user's row of ``X @ B`` is
summed (:func:`~recsys.models.topk.dense_product_top_n`), without a dense block per batch.

Only items with interactions take part (others have an all-zero row and column in B and are
never recommended), and their count is capped by ``max_items``: B is dense, 4 bytes x m^2
(20 000 items = 1.6 GB).

The inverse is computed with LAPACK Cholesky ``potrf`` + ``potri`` in float32, in place in the
Gram matrix's buffer, so the peak is one m x m array. Measured with one BLAS thread
(benchmarks/bench_ease.py, BENCHMARKS.md "EASE"): 0.09 s at 1.7k items and 8.6 s at 10k,
against 0.35 s and 51 s for ``np.linalg.inv`` and 0.14 s and 20 s for float32
``cho_factor`` + ``cho_solve``. float32 is used only when it is safe: the relative error of
the inverse is about cond(G) x 6e-8 at most, and cond(G) <= (max row sum of G + l2) / l2
(Gershgorin); when that bound exceeds ``FLOAT32_MAX_CONDITION`` the solve runs in float64.
The factorisation uses the model's ``threads`` BLAS threads: the fit on the 10M synthetic shop
(19,000 active items) took 52 s on 2 threads against 122 s on one (benchmarks/bench_pipeline.py,
BENCHMARKS.md).
On ml-100k and ml-latest-small the bound is about 130 and float32 gives the same top-10 as
float64 for every user.

``l2`` = 350 was chosen on validation splits carved from the training data of ml-100k and
ml-latest-small (nDCG@10; 250-750 are all within about 1% of the best on both).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import numpy as np
import scipy.linalg
import scipy.sparse as sp
from pydantic import Field
from threadpoolctl import threadpool_limits

from recsys.data.dataset import Dataset
from recsys.errors import ModelError
from recsys.models.base import ModelConfig, Recommender, resolve_threads
from recsys.models.explain import because_dense, checked_pairs
from recsys.models.topk import dense_product_top_n

# Bound on cond(X^T X + l2 I) up to which float32 keeps the inverse within ~1e-3 relative error.
FLOAT32_MAX_CONDITION = 1e4
# Cells of the sparse product per block when building the dense Gram matrix.
GRAM_BLOCK_CELLS = 16_000_000
# Rows per step when mirroring the inverse's upper triangle into the lower one.
SYMMETRISE_BLOCK = 1024


class EASEConfig(ModelConfig):
    """``l2``: ridge penalty (larger = smoother, more popular items); ``max_items``: refuse to
    fit above this many items (B is dense); ``binarize``: 1 for any positive weight."""

    l2: float = Field(350.0, gt=0, description="L2 penalty lambda on B")
    max_items: int = Field(20_000, ge=1, description="largest item count to fit (dense items x items)")
    binarize: bool = Field(True, description="use 1 for every positive weight")
    precision: Literal["auto", "float32", "float64"] = Field(
        "auto", description="solve precision; auto = float32 unless the conditioning bound says otherwise"
    )


def gram_matrix(matrix: sp.csr_matrix, dtype: type[np.floating]) -> np.ndarray:
    """Dense ``X^T X`` of a users x items matrix: shape (n_items, n_items), C order.

    Built a block of rows at a time: the sparse product of a whole catalogue is nearly dense
    and would take three times the memory of the dense result as CSR.
    """
    size = matrix.shape[1]
    columns = sp.csc_matrix(matrix)
    rows = sp.csr_matrix(matrix)
    gram = np.empty((size, size), dtype=dtype)
    step = int(max(1, min(size, GRAM_BLOCK_CELLS // max(1, size))))
    for start in range(0, size, step):
        stop = min(start + step, size)
        gram[start:stop] = (columns[:, start:stop].T @ rows).toarray()
    return gram


def condition_bound(matrix: sp.csr_matrix, l2: float) -> float:
    """Upper bound on cond(X^T X + l2 I): (largest row sum of X^T X + l2) / l2 (Gershgorin).

    X^T X is non-negative for a non-negative X, so its row sums are ``X^T (X 1)``: no Gram needed.
    """
    row_sums = matrix.T @ np.asarray(matrix.sum(axis=1)).ravel()
    return (float(np.max(row_sums, initial=0.0)) + l2) / l2


def ease_weights(gram: np.ndarray, l2: float) -> np.ndarray:
    """EASE's B from the Gram matrix ``X^T X`` (shape (m, m)), computed in ``gram``'s buffer.

    Returns B, shape (m, m), C order, dtype of ``gram``; ``gram`` is overwritten.
    """
    size = gram.shape[0]
    gram[np.diag_indices(size)] += gram.dtype.type(l2)
    # gram is symmetric, so its transpose (a Fortran-ordered view) is the same matrix and
    # LAPACK can factor and invert it in place.
    potrf, potri = scipy.linalg.get_lapack_funcs(("potrf", "potri"), (gram,))
    factor, info = potrf(gram.T, lower=False, overwrite_a=True, clean=False)
    if info != 0:
        raise ModelError(f"ease: X^T X + l2*I is not positive definite (LAPACK potrf info={info}); raise l2")
    inverse, info = potri(factor, lower=False, overwrite_c=True)
    if info != 0:
        raise ModelError(f"ease: could not invert X^T X + l2*I (LAPACK potri info={info}); raise l2")
    # potri fills the upper triangle (inverse[i, j], i <= j); mirror it, a block of rows at a time.
    for start in range(0, size, SYMMETRISE_BLOCK):
        stop = min(start + SYMMETRISE_BLOCK, size)
        inverse[start:stop, :start] = inverse[:start, start:stop].T
        block = inverse[start:stop, start:stop]
        block[...] = np.triu(block) + np.triu(block, 1).T
    weights = inverse.T  # C-ordered view of the symmetric P
    diagonal = weights.diagonal().copy()
    weights /= -diagonal[None, :]
    weights[np.diag_indices(size)] = 0.0
    return weights


class EASERecommender(Recommender):
    """Linear item-to-item model with a closed-form solution; strong on small/medium catalogues.

    Attributes after fit:
        weights: B restricted to the active items, shape (m, m) float32.
        active: indices of the m items that have interactions, shape (m,) int64.
    """

    name = "ease"
    config_class = EASEConfig

    def __init__(self, config: EASEConfig | Mapping[str, Any] | None = None, **params: Any) -> None:
        super().__init__(config, **params)
        self.weights = np.zeros((0, 0), dtype=np.float32)
        self.active = np.zeros(0, dtype=np.int64)
        self.solve_dtype = "float32"
        self._inputs = sp.csr_matrix((0, 0), dtype=np.float32)
        self._position = np.zeros(0, dtype=np.int64)

    def _fit(self, dataset: Dataset, *, show_progress: bool = False) -> None:
        config: EASEConfig = self.config  # type: ignore[assignment]
        self.active = np.flatnonzero(np.diff(self.user_items.tocsc().indptr) > 0).astype(np.int64)
        size = len(self.active)
        if size > config.max_items:
            raise ModelError(
                f"ease: {size} items with interactions exceed max_items={config.max_items} "
                f"(B would be a dense {size} x {size} float32 matrix, {4 * size**2 / 1e9:.1f} GB); "
                "raise max_items if the memory is there, or use 'itemknn' or 'als', which scale to large catalogues"
            )
        self._prepare()
        dtype = np.float64 if config.precision == "float64" else np.float32
        if config.precision == "auto" and condition_bound(self._inputs, config.l2) > FLOAT32_MAX_CONDITION:
            dtype = np.float64
        gram = gram_matrix(self._inputs, dtype)
        self.solve_dtype = gram.dtype.name
        # The inverse is LAPACK's, on ``threads`` BLAS threads whatever the process-wide
        # limit (OPENBLAS_NUM_THREADS=1, which implicit asks for, would leave a core idle).
        with threadpool_limits(resolve_threads(self.threads), "blas"):
            self.weights = ease_weights(gram, config.l2).astype(np.float32, copy=False)

    def _prepare(self) -> None:
        config: EASEConfig = self.config  # type: ignore[assignment]
        inputs = self.user_items.copy()
        inputs.eliminate_zeros()
        if config.binarize:
            inputs.data = (inputs.data > 0).astype(np.float32)
        # X restricted to the active items: shape (n_users, m).
        self._inputs = inputs if len(self.active) == self.n_items else sp.csr_matrix(inputs[:, self.active])
        self._position = np.full(self.n_items, -1, dtype=np.int64)
        self._position[self.active] = np.arange(len(self.active))

    def _spread(self, active_scores: np.ndarray) -> np.ndarray:
        """Scores over the active items, shape (rows, m), as (rows, n_items) with -inf elsewhere."""
        if len(self.active) == self.n_items:
            return active_scores
        scores = np.full((active_scores.shape[0], self.n_items), -np.inf, dtype=np.float32)
        scores[:, self.active] = active_scores
        return scores

    def _score_users(self, user_indices: np.ndarray) -> np.ndarray:
        rows = self._inputs[user_indices]
        return self._spread(np.asarray(rows @ self.weights, dtype=np.float32))

    def _recommend_block(
        self, users: np.ndarray, n: int, exclude_seen: bool, allowed: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray]:
        exclude = None
        if exclude_seen:
            seen = self.user_items[users]  # every stored item is active
            exclude = sp.csr_matrix((seen.data, self._position[seen.indices], seen.indptr), shape=(len(users), len(self.active)))
        return self._listed(dense_product_top_n(self._inputs[users], self.weights, n, exclude=exclude, allowed=self._active_mask(allowed)))

    def _similar_block(self, items: np.ndarray, n: int, allowed: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        positions = self._position[items]
        active = positions >= 0  # cold items have no row of B: empty lists
        one = np.ones(int(active.sum()), dtype=np.float32)
        queries = sp.csr_matrix((one, positions[active], np.r_[0, np.cumsum(active)]), shape=(len(items), len(self.active)))
        ids, scores = self._listed(dense_product_top_n(queries, self.weights, n, exclude=queries, allowed=self._active_mask(allowed)))
        ids[~active], scores[~active] = -1, -np.inf
        return ids, scores

    def _active_mask(self, allowed: np.ndarray | None) -> np.ndarray | None:
        return None if allowed is None else allowed[self.active]

    def _listed(self, top: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Positions among the active items -> item indices (the order is the same)."""
        ids, scores = top
        return np.where(ids >= 0, self.active[np.maximum(ids, 0)], -1).astype(np.int32), scores

    def _score_items(self, item_indices: np.ndarray) -> np.ndarray:
        """Row B[i]: the scores of a user who has only item ``i`` (cold items: all -inf)."""
        positions = self._position[item_indices]
        scores = self._spread(self.weights[np.maximum(positions, 0)].astype(np.float32, copy=True))
        scores[positions < 0] = -np.inf
        return scores

    def explain(self, user_indices: np.ndarray | list[int], item_indices: np.ndarray | list[int]) -> np.ndarray:
        """The seen item ``i`` with the largest term ``x_ui * B[i, j]`` of each entry's score."""
        users, items = checked_pairs(self, user_indices, item_indices)
        weighting = "positive" if self.config.binarize else "stored"  # type: ignore[attr-defined]
        return because_dense(self.user_items, users, items, self.weights, self._position, weighting)

    def _get_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        return {"solve_dtype": self.solve_dtype}, {"weights": self.weights, "active": self.active}

    def _set_state(self, meta: dict[str, Any], arrays: Mapping[str, np.ndarray]) -> None:
        self.weights = np.ascontiguousarray(arrays["weights"], dtype=np.float32)
        self.active = np.asarray(arrays["active"], dtype=np.int64)
        self.solve_dtype = str(meta.get("solve_dtype", "float32"))
        self._prepare()
