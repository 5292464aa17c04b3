"""Offline metrics, vectorised over users.

Ranking metrics take the recommendations as an int array of shape (n_users, k) (item
indices, best first, ``-1`` for padding) and the relevant test items as a CSR matrix of
shape (n_users, n_items) whose row ``u`` holds user ``u``'s relevant items (any stored
nonzero counts as relevant). Row ``u`` of both describes the same user. Users without
relevant items are left out of every average. The definitions, and where they differ from
Microsoft Recommenders and ``implicit``, are in docs/evaluation.md.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from recsys.errors import ModelError

RANKING_METRICS: tuple[str, ...] = ("precision", "recall", "ndcg", "map", "hit_rate", "mrr")
BEYOND_ACCURACY_METRICS: tuple[str, ...] = ("coverage", "popularity_bias")
RATING_METRICS: tuple[str, ...] = ("rmse", "mae")
LOWER_IS_BETTER: frozenset[str] = frozenset({"rmse", "mae", "popularity_bias"})


def _check(recommended: np.ndarray, relevant: sp.spmatrix, k: int | None) -> tuple[np.ndarray, sp.csr_matrix, int]:
    recs = np.asarray(recommended)
    if recs.ndim != 2:
        raise ModelError(f"recommendations must be a 2-D array (n_users, k), got shape {recs.shape}")
    if not np.issubdtype(recs.dtype, np.integer):
        raise ModelError(f"recommendations must be integer item indices, got {recs.dtype}")
    truth = sp.csr_matrix(relevant)
    if truth.shape[0] != recs.shape[0]:
        raise ModelError(f"{recs.shape[0]} recommendation rows but {truth.shape[0]} rows of relevant items")
    if recs.size and recs.max() >= truth.shape[1]:
        raise ModelError(f"recommended item index {int(recs.max())} out of range ({truth.shape[1]} items)")
    k = recs.shape[1] if k is None else int(k)
    if k <= 0:
        raise ModelError(f"k must be a positive integer, got {k}")
    if k > recs.shape[1]:
        # Shorter lists than k are scored as if padded: the missing slots never hit.
        recs = np.pad(recs, ((0, 0), (0, k - recs.shape[1])), constant_values=-1)
    return recs[:, :k].astype(np.int64), truth, k


def hit_matrix(recommended: np.ndarray, relevant: sp.spmatrix) -> np.ndarray:
    """Boolean array of shape (n_users, k): is the item in slot ``j`` of user ``u``'s list relevant.

    Looks every (user, item) up among the sorted keys ``u * n_items + i`` of ``relevant`` with
    one ``np.searchsorted``; padding (-1) never hits.
    """
    recs, truth, _ = _check(recommended, relevant, None)
    truth = truth.copy()
    truth.eliminate_zeros()
    truth.sum_duplicates()  # also sorts indices
    n_items = truth.shape[1]
    rows = np.repeat(np.arange(truth.shape[0], dtype=np.int64), np.diff(truth.indptr))
    keys = rows * n_items + truth.indices
    queries = np.arange(recs.shape[0], dtype=np.int64)[:, None] * n_items + recs
    if keys.size == 0:
        return np.zeros(recs.shape, dtype=bool)
    pos = np.minimum(np.searchsorted(keys, queries), keys.size - 1)
    return (keys[pos] == queries) & (recs >= 0)


@dataclass(frozen=True)
class PerUserRanking:
    """Per-user ranking results for the users with at least one relevant item.

    Attributes:
        users: row positions (into the inputs) of those users, shape (m,).
        hits: bool (m, k), slot ``j`` is relevant.
        n_relevant: number of relevant items per user, shape (m,).
        precision, recall, ndcg, ap, hit, rr: per-user values, shape (m,) float64.
    """

    users: np.ndarray
    hits: np.ndarray
    n_relevant: np.ndarray
    precision: np.ndarray
    recall: np.ndarray
    ndcg: np.ndarray
    ap: np.ndarray
    hit: np.ndarray
    rr: np.ndarray


def per_user_ranking(recommended: np.ndarray, relevant: sp.spmatrix, k: int | None = None) -> PerUserRanking:
    """Per-user precision, recall, NDCG, AP, hit and reciprocal rank at ``k``.

    ``recommended``: int (n_users, >= k) item indices; ``relevant``: CSR (n_users, n_items).
    """
    recs, truth, k = _check(recommended, relevant, k)
    truth = truth.copy()
    truth.eliminate_zeros()
    truth.sum_duplicates()
    n_relevant_all = np.diff(truth.indptr)
    users = np.flatnonzero(n_relevant_all > 0)
    hits = hit_matrix(recs[users], truth[users])
    n_rel = n_relevant_all[users].astype(np.float64)
    n_hits = hits.sum(axis=1).astype(np.float64)
    positions = np.arange(1, k + 1, dtype=np.float64)
    discounts = 1.0 / np.log2(positions + 1.0)
    ideal_cum = np.cumsum(discounts)
    capped = np.minimum(n_rel, k)
    ideal = ideal_cum[capped.astype(np.int64) - 1] if users.size else np.zeros(0)
    dcg = hits @ discounts
    precision_at_hits = np.cumsum(hits, axis=1) / positions
    ap = (precision_at_hits * hits).sum(axis=1) / capped if users.size else np.zeros(0)
    first = np.argmax(hits, axis=1)
    any_hit = hits.any(axis=1)
    rr = np.where(any_hit, 1.0 / (first + 1.0), 0.0)
    return PerUserRanking(
        users=users,
        hits=hits,
        n_relevant=n_rel.astype(np.int64),
        precision=n_hits / k,
        recall=n_hits / np.maximum(n_rel, 1.0),
        ndcg=dcg / np.where(ideal > 0, ideal, 1.0),
        ap=ap,
        hit=any_hit.astype(np.float64),
        rr=rr,
    )


def _mean(values: np.ndarray) -> float:
    return float(values.mean()) if values.size else float("nan")


def precision_at_k(recommended: np.ndarray, relevant: sp.spmatrix, k: int | None = None) -> float:
    """Mean over users of hits in the top ``k`` / ``k``."""
    return _mean(per_user_ranking(recommended, relevant, k).precision)


def recall_at_k(recommended: np.ndarray, relevant: sp.spmatrix, k: int | None = None) -> float:
    """Mean over users of hits in the top ``k`` / number of relevant items."""
    return _mean(per_user_ranking(recommended, relevant, k).recall)


def ndcg_at_k(recommended: np.ndarray, relevant: sp.spmatrix, k: int | None = None) -> float:
    """Mean over users of DCG@k / IDCG@k, binary relevance, IDCG over min(k, n_relevant) hits."""
    return _mean(per_user_ranking(recommended, relevant, k).ndcg)


def map_at_k(recommended: np.ndarray, relevant: sp.spmatrix, k: int | None = None) -> float:
    """Mean over users of (sum of precision@j at each hit j <= k) / min(k, n_relevant)."""
    return _mean(per_user_ranking(recommended, relevant, k).ap)


def hit_rate_at_k(recommended: np.ndarray, relevant: sp.spmatrix, k: int | None = None) -> float:
    """Share of users with at least one relevant item in the top ``k``."""
    return _mean(per_user_ranking(recommended, relevant, k).hit)


def mrr_at_k(recommended: np.ndarray, relevant: sp.spmatrix, k: int | None = None) -> float:
    """Mean over users of 1 / rank of the first relevant item in the top ``k`` (0 when none)."""
    return _mean(per_user_ranking(recommended, relevant, k).rr)


def catalog_coverage(recommended: np.ndarray, n_items: int) -> float:
    """Distinct items appearing in any list / ``n_items`` (the whole item index)."""
    recs = np.asarray(recommended)
    if n_items <= 0:
        raise ModelError(f"n_items must be positive, got {n_items}")
    return float(np.unique(recs[recs >= 0]).size / n_items)


def item_popularity(train: sp.spmatrix) -> np.ndarray:
    """Share of training users who interacted with each item, shape (n_items,) float64.

    The denominator is the number of users with at least one training interaction.
    """
    matrix = sp.csr_matrix(train)
    matrix.eliminate_zeros()
    active = int(np.count_nonzero(np.diff(matrix.indptr)))
    per_item = np.bincount(matrix.indices, minlength=matrix.shape[1]).astype(np.float64)
    return per_item / max(active, 1)


def popularity_bias(recommended: np.ndarray, popularity: np.ndarray) -> float:
    """Mean training popularity (:func:`item_popularity`) over all filled recommendation slots."""
    recs = np.asarray(recommended)
    filled = recs[recs >= 0]
    return float(popularity[filled].mean()) if filled.size else float("nan")


def rmse(predicted: np.ndarray, actual: np.ndarray) -> float:
    """Root mean squared error over rating pairs; both shape (n,)."""
    diff = _rating_diff(predicted, actual)
    return float(np.sqrt(np.mean(diff**2)))


def mae(predicted: np.ndarray, actual: np.ndarray) -> float:
    """Mean absolute error over rating pairs; both shape (n,)."""
    return float(np.mean(np.abs(_rating_diff(predicted, actual))))


def _rating_diff(predicted: np.ndarray, actual: np.ndarray) -> np.ndarray:
    pred = np.asarray(predicted, dtype=np.float64).ravel()
    true = np.asarray(actual, dtype=np.float64).ravel()
    if pred.shape != true.shape:
        raise ModelError(f"{pred.size} predictions for {true.size} ratings")
    if pred.size == 0:
        raise ModelError("no ratings to score")
    if not np.all(np.isfinite(pred)):
        raise ModelError(f"{int((~np.isfinite(pred)).sum())} predictions are not finite")
    return pred - true


def ranking_summary(
    recommended: np.ndarray,
    relevant: sp.spmatrix,
    k: int,
    *,
    n_items: int | None = None,
    popularity: np.ndarray | None = None,
) -> dict[str, float]:
    """Every ranking metric at ``k`` as ``{"precision@10": ..., ...}``, plus ``users`` (the count
    averaged over), ``coverage@k`` when ``n_items`` is given and ``popularity_bias@k`` when
    ``popularity`` (shape (n_items,)) is given. Coverage and popularity bias use the lists of
    every row of ``recommended`` (cut to ``k``)."""
    per_user = per_user_ranking(recommended, relevant, k)
    out = {
        f"precision@{k}": _mean(per_user.precision),
        f"recall@{k}": _mean(per_user.recall),
        f"ndcg@{k}": _mean(per_user.ndcg),
        f"map@{k}": _mean(per_user.ap),
        f"hit_rate@{k}": _mean(per_user.hit),
        f"mrr@{k}": _mean(per_user.rr),
    }
    top = np.asarray(recommended)[:, :k]
    if n_items is not None:
        out[f"coverage@{k}"] = catalog_coverage(top, n_items)
    if popularity is not None:
        out[f"popularity_bias@{k}"] = popularity_bias(top, popularity)
    out["users"] = float(per_user.users.size)
    return out
