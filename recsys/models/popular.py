"""Popularity: the fallback for unknown users, overall, per category and trending.

Every user's list is the one global ranking minus the user's seen items, so a block of
users needs only the first ``n + (most items any of them has seen)`` entries of that
ranking (shape (users, n + max_seen)), never a users x items block.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import numpy as np
from pydantic import Field

from recsys.data.dataset import Dataset
from recsys.models.base import ModelConfig, Recommender, top_n


class PopularConfig(ModelConfig):
    """``users``: how many users interacted; ``weight``: summed event weights;
    ``trending``: decayed recent weight (needs timestamps, falls back to ``weight``)."""

    mode: Literal["users", "weight", "trending"] = "users"
    # 0.5 rather than 0: on temporal holdouts it lifted nDCG@10 on ml100k, ml-latest-small
    # and Online Retail and cost at most 2% on generated shops (docs/evaluation.md).
    trending_weight: float = Field(
        0.5, ge=0.0, le=1.0, description="mix of trending into users/weight popularity (0 = none)"
    )


class PopularRecommender(Recommender):
    """Every user gets the same ranking: items by popularity, minus what they have seen."""

    name = "popular"
    config_class = PopularConfig

    def __init__(self, config: PopularConfig | Mapping[str, Any] | None = None, **params: Any) -> None:
        super().__init__(config, **params)
        self.popularity = np.zeros(0, dtype=np.float32)

    def _fit(self, dataset: Dataset, *, show_progress: bool = False) -> None:
        config: PopularConfig = self.config  # type: ignore[assignment]
        matrix = dataset.user_items
        if config.mode == "users":
            base = np.diff(matrix.tocsc().indptr).astype(np.float64)
        else:
            base = np.asarray(matrix.sum(axis=0)).ravel().astype(np.float64)
        trending = dataset.trending
        if config.mode == "trending" and trending is not None:
            base = trending.astype(np.float64)
        elif config.trending_weight > 0 and trending is not None and trending.max() > 0 and base.max() > 0:
            w = config.trending_weight
            base = (1 - w) * base / base.max() + w * trending / trending.max()
        self.popularity = base.astype(np.float32)

    def top_items(self, n: int, *, item_filter: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The ``n`` most popular items (among ``item_filter``): (indices, scores), each shape (n,)."""
        self._require_fitted()
        self._check_n(n)
        allowed = self._allowed_mask(item_filter)
        scores = self.popularity.copy()
        if allowed is not None:
            scores[~allowed] = -np.inf
        scores[self.popularity <= 0] = -np.inf
        ids, best = top_n(scores[None, :], n)
        return ids[0], best[0]

    def _ranking(self, allowed: np.ndarray | None) -> np.ndarray:
        """Item indices by popularity descending (ties: lower index first), only items with
        popularity > 0 and allowed ones: shape (n_ranked,) int64."""
        ranked = np.lexsort((np.arange(self.n_items), -self.popularity))
        ranked = ranked[self.popularity[ranked] > 0]
        return ranked if allowed is None else ranked[allowed[ranked]]

    def _recommend_block(
        self, users: np.ndarray, n: int, exclude_seen: bool, allowed: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """The global ranking's head, minus each user's seen items: (len(users), n) each."""
        ranked = self._ranking(allowed)
        ids = np.full((len(users), n), -1, dtype=np.int32)
        scores = np.full((len(users), n), -np.inf, dtype=np.float32)
        seen = self.user_items[users] if exclude_seen else None
        most_seen = int(np.diff(seen.indptr).max(initial=0)) if seen is not None else 0
        width = min(len(ranked), n + most_seen)
        if width == 0 or len(users) == 0:
            return ids, scores
        keep = np.ones((len(users), width), dtype=bool)
        if seen is not None and seen.nnz:
            # Rank of each item in the ranking (width = beyond the head), then drop seen cells.
            rank = np.full(self.n_items, width, dtype=np.int64)
            rank[ranked[:width]] = np.arange(width)
            seen_rows = np.repeat(np.arange(len(users)), np.diff(seen.indptr))
            seen_rank = rank[seen.indices]
            inside = seen_rank < width
            keep[seen_rows[inside], seen_rank[inside]] = False
        # Stable sort of the "dropped" flags brings each row's kept cells first, in ranking order.
        order = np.argsort(~keep, axis=1, kind="stable")[:, :n]
        valid = np.take_along_axis(keep, order, axis=1)
        head = ranked[:width]
        k = order.shape[1]
        ids[:, :k] = np.where(valid, head[order], -1)
        scores[:, :k] = np.where(valid, self.popularity[head[order]], -np.inf)
        return ids, scores

    def _batch_size(self) -> int:
        return 4096

    def _score_users(self, user_indices: np.ndarray) -> np.ndarray:
        block = np.broadcast_to(self.popularity, (len(user_indices), self.n_items)).copy()
        block[:, self.popularity <= 0] = -np.inf
        return block

    def _score_items(self, item_indices: np.ndarray) -> np.ndarray:
        return self._score_users(item_indices)

    def _get_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        return {}, {"popularity": self.popularity}

    def _set_state(self, meta: dict[str, Any], arrays: Mapping[str, np.ndarray]) -> None:
        self.popularity = arrays["popularity"]
