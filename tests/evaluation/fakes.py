"""Tiny recommenders with known behaviour, for testing the evaluation machinery."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recsys.data.dataset import Dataset
from recsys.errors import ModelError
from recsys.models.base import Recommender


class OracleRecommender(Recommender):
    """Knows the test set: scores a user's test items 1 and everything else 0."""

    name = "oracle"

    def __init__(self, test: pd.DataFrame) -> None:
        super().__init__()
        self.test = test
        self.known = sp.csr_matrix((0, 0))

    def _fit(self, dataset: Dataset, *, show_progress: bool = False) -> None:
        rows = dataset.users.to_index(self.test["user_id"].astype(str).to_numpy())
        cols = dataset.items.to_index(self.test["item_id"].astype(str).to_numpy())
        ok = (rows >= 0) & (cols >= 0)
        self.known = sp.csr_matrix(
            (np.ones(int(ok.sum()), dtype=np.float32), (rows[ok], cols[ok])), shape=(self.n_users, self.n_items)
        )

    def _score_users(self, user_indices: np.ndarray) -> np.ndarray:
        return (self.known[user_indices].toarray() > 0).astype(np.float32)

    def _score_items(self, item_indices: np.ndarray) -> np.ndarray:
        return np.zeros((len(item_indices), self.n_items), dtype=np.float32)

    def _get_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        return {}, {}

    def _set_state(self, meta: dict[str, Any], arrays: Mapping[str, np.ndarray]) -> None:
        pass


class MeanRatingRecommender(OracleRecommender):
    """Predicts every rating as the mean training rating; ranks nothing useful."""

    name = "mean"

    def __init__(self) -> None:
        super().__init__(pd.DataFrame({"user_id": [], "item_id": []}))
        self.mean = 0.0

    def _fit(self, dataset: Dataset, *, show_progress: bool = False) -> None:
        super()._fit(dataset)
        self.mean = float(dataset.ratings.data.mean())

    def predict(self, user_indices: np.ndarray, item_indices: np.ndarray) -> np.ndarray:
        return np.full(len(user_indices), self.mean)


class BrokenRecommender(OracleRecommender):
    """Fails in fit, like a model missing the data it needs."""

    name = "broken"

    def __init__(self) -> None:
        super().__init__(pd.DataFrame({"user_id": [], "item_id": []}))

    def _fit(self, dataset: Dataset, *, show_progress: bool = False) -> None:
        raise ModelError("broken: needs baskets in the training data, which has none")


class SpyRecommender(OracleRecommender):
    """Records every training matrix it is fitted on (class-level, across instances)."""

    name = "spy"
    fitted: ClassVar[list[tuple[Dataset, dict[str, Any]]]] = []

    def __init__(self, config: Any = None, **params: Any) -> None:
        super().__init__(pd.DataFrame({"user_id": [], "item_id": []}))
        self.params = {**dict(config or {}), **params}

    def _fit(self, dataset: Dataset, *, show_progress: bool = False) -> None:
        super()._fit(dataset)
        SpyRecommender.fitted.append((dataset, self.params))

    def _score_users(self, user_indices: np.ndarray) -> np.ndarray:
        # Item popularity times "boost": the ranking is the same for every boost.
        popularity = np.asarray(self.user_items.sum(axis=0)).ravel()
        return np.broadcast_to(popularity * float(self.params.get("boost", 1.0)), (len(user_indices), self.n_items)).astype(np.float32).copy()
