"""SVD for explicit ratings: scikit-surprise's biased matrix factorisation behind our interface.

Surprise fits the model (its SGD is the reference implementation); afterwards every learned
array is remapped from surprise's inner ids to our indices, so ranking and rating prediction
are plain vectorised numpy and the artifact is ``.npz`` + JSON.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import numpy as np
import pandas as pd
import scipy.sparse as sp
from pydantic import Field, model_validator

from recsys.data.dataset import Dataset
from recsys.errors import ModelError
from recsys.models.als import factor_top_k
from recsys.models.base import ModelConfig, Recommender


class SVDConfig(ModelConfig):
    """Parameters of ``surprise.SVD`` (same names and defaults).

    ``rating_scale`` (low, high) clips predictions like surprise does; None = the smallest
    and largest rating in the training data, when they span at most ``MAX_SCALE_SPAN``
    points. The SGD's learning rate and regularisation assume such a scale: values beyond
    it (counts or quantities up to thousands taken as ratings drive the factors to NaN) are
    mapped linearly onto ``rating_scale`` (or 1-5 without one) with ``out_of_scale =
    "rescale"``, or refused with ``"refuse"``. Predictions are mapped back to the data's
    units. The per-parameter learning rates and regularisation terms override ``lr_all`` /
    ``reg_all`` when set.
    """

    n_factors: int = Field(100, ge=1)
    n_epochs: int = Field(20, ge=0)
    biased: bool = True
    init_mean: float = 0.0
    init_std_dev: float = Field(0.1, ge=0.0)
    lr_all: float = Field(0.005, gt=0.0)
    reg_all: float = Field(0.02, ge=0.0)
    lr_bu: float | None = Field(None, gt=0.0)
    lr_bi: float | None = Field(None, gt=0.0)
    lr_pu: float | None = Field(None, gt=0.0)
    lr_qi: float | None = Field(None, gt=0.0)
    reg_bu: float | None = Field(None, ge=0.0)
    reg_bi: float | None = Field(None, ge=0.0)
    reg_pu: float | None = Field(None, ge=0.0)
    reg_qi: float | None = Field(None, ge=0.0)
    random_state: int | None = Field(None, ge=0)
    rating_scale: tuple[float, float] | None = None
    out_of_scale: Literal["rescale", "refuse"] = "rescale"

    @model_validator(mode="after")
    def _scale_ordered(self) -> SVDConfig:
        if self.rating_scale is not None and not self.rating_scale[0] < self.rating_scale[1]:
            raise ValueError(f"rating_scale must be (low, high) with low < high, got {self.rating_scale}")
        return self


# Widest span of rating values taken as a rating scale as they are (0-10 scales included).
MAX_SCALE_SPAN = 10.0
RESCALED_SCALE = (1.0, 5.0)


def fitting_scale(values: np.ndarray, config: SVDConfig) -> tuple[tuple[float, float], tuple[float, float] | None]:
    """(scale the SGD fits on, (data low, data high) when the values are mapped onto it, else None).

    Raises ModelError for values outside the scale under ``out_of_scale = "refuse"``.
    """
    low, high = float(values.min()), float(values.max())
    if config.rating_scale is not None:
        scale = (float(config.rating_scale[0]), float(config.rating_scale[1]))
        outside = int(np.count_nonzero((values < scale[0]) | (values > scale[1])))
        if not outside:
            return scale, None
        problem = (
            f"svd: {outside} of {values.size} ratings lie outside models.svd.rating_scale {scale} "
            f"(the data ranges from {low:g} to {high:g})"
        )
    else:
        if high - low <= MAX_SCALE_SPAN:
            return (low, high), None
        scale = RESCALED_SCALE
        problem = (
            f"svd: ratings range from {low:g} to {high:g}, wider than a rating scale "
            f"({MAX_SCALE_SPAN:g} points; counts or quantities?)"
        )
    if config.out_of_scale == "refuse":
        raise ModelError(
            f"{problem}: set models.svd.rating_scale to the data's scale, models.svd.out_of_scale = \"rescale\", "
            "or leave svd out for implicit data"
        )
    return scale, (low, high)


class SVDRecommender(Recommender):
    """Biased matrix factorisation of explicit ratings (Funk SVD), fitted by scikit-surprise.

    Estimate: r(u, i) = mu + bu[u] + bi[i] + qi[i] . pu[u] (without mu and biases when
    ``biased=False``). Users or items without ratings have zero biases and factors, which is
    exactly surprise's estimate for an unknown user or item. Items nobody rated are never
    recommended, and have no similar items: the model knows nothing about them.

    Attributes after fit (our index order):
        global_mean: mu, the mean training rating.
        bu: (n_users,) float32 user biases.   bi: (n_items,) float32 item biases.
        pu: (n_users, n_factors) float32.     qi: (n_items, n_factors) float32.
        known_users / known_items: (n_users,) / (n_items,) bool, has at least one rating.
        surprise_algo: the fitted ``surprise.SVD`` (only after fit, not after load).
    """

    name = "svd"
    config_class = SVDConfig
    requires = frozenset({"ratings"})
    non_finite_hint = "lower models.svd.lr_all, or set models.svd.rating_scale (values far beyond 1-5 diverge)"
    empty_hint = "no item has a rating: check the value column and the rating events"

    def __init__(self, config: SVDConfig | Mapping[str, Any] | None = None, **params: Any) -> None:
        super().__init__(config, **params)
        self.global_mean = 0.0
        self.rating_scale: tuple[float, float] = (0.0, 0.0)
        # (data low, data high) when ratings were mapped linearly onto rating_scale to fit.
        self.data_range: tuple[float, float] | None = None
        self.bu = np.zeros(0, dtype=np.float32)
        self.bi = np.zeros(0, dtype=np.float32)
        self.pu = np.zeros((0, 0), dtype=np.float32)
        self.qi = np.zeros((0, 0), dtype=np.float32)
        self.known_users = np.zeros(0, dtype=bool)
        self.known_items = np.zeros(0, dtype=bool)
        self._qi_unit = np.zeros((0, 0), dtype=np.float32)
        self.surprise_algo: Any = None

    # -------------------------------------------------------------------- fit
    def _fit(self, dataset: Dataset, *, show_progress: bool = False) -> None:
        from surprise import SVD, Reader
        from surprise import Dataset as SurpriseDataset

        config: SVDConfig = self.config  # type: ignore[assignment]
        ratings = sp.coo_matrix(dataset.ratings)
        if ratings.nnz == 0:
            raise ModelError(f"{self.name}: the training data has no ratings")
        values = ratings.data.astype(np.float64)
        if not np.all(np.isfinite(values)):
            raise ModelError(f"{self.name}: ratings contain NaN or infinite values")
        scale, data_range = fitting_scale(values, config)
        if data_range is not None:
            values = _linear(values, data_range, scale)
        # Row-major order (user by user) is the order surprise's SGD visits the ratings in.
        order = np.lexsort((ratings.col, ratings.row))
        frame = pd.DataFrame(
            {"user": ratings.row[order].astype(np.int64), "item": ratings.col[order].astype(np.int64), "rating": values[order]}
        )
        trainset = SurpriseDataset.load_from_df(frame, Reader(rating_scale=scale)).build_full_trainset()
        params = config.model_dump(exclude={"rating_scale", "out_of_scale"})
        algo = SVD(**params, verbose=False)
        algo.fit(trainset)

        user_raw, user_inner = _id_arrays(trainset._raw2inner_id_users)
        item_raw, item_inner = _id_arrays(trainset._raw2inner_id_items)
        n_factors = config.n_factors
        self.global_mean = float(trainset.global_mean)
        self.rating_scale = (float(scale[0]), float(scale[1]))
        self.data_range = data_range
        self.bu = np.zeros(self.n_users, dtype=np.float32)
        self.bi = np.zeros(self.n_items, dtype=np.float32)
        self.pu = np.zeros((self.n_users, n_factors), dtype=np.float32)
        self.qi = np.zeros((self.n_items, n_factors), dtype=np.float32)
        self.known_users = np.zeros(self.n_users, dtype=bool)
        self.known_items = np.zeros(self.n_items, dtype=bool)
        if config.biased:
            self.bu[user_raw] = algo.bu[user_inner]
            self.bi[item_raw] = algo.bi[item_inner]
        self.pu[user_raw] = algo.pu[user_inner]
        self.qi[item_raw] = algo.qi[item_inner]
        self.known_users[user_raw] = True
        self.known_items[item_raw] = True
        self.surprise_algo = algo
        self._prepare()

    def _prepare(self) -> None:
        norms = np.linalg.norm(self.qi, axis=1, keepdims=True)
        self._qi_unit = np.divide(self.qi, norms, out=np.zeros_like(self.qi), where=norms > 0)

    # ---------------------------------------------------------------- predict
    def predict(self, user_indices: np.ndarray | list[int], item_indices: np.ndarray | list[int]) -> np.ndarray:
        """Rating estimates for (user, item) pairs, shape (n_pairs,) float64, clipped to the rating scale.

        Equal to ``surprise.SVD.predict(u, i).est`` for every pair, unknown users and items included.
        """
        users = self._check_indices(user_indices, self.n_users, "user")
        items = self._check_indices(item_indices, self.n_items, "item")
        if users.shape != items.shape:
            raise ModelError(f"{self.name}: predict() needs as many users as items, got {len(users)} and {len(items)}")
        dot = np.einsum("ij,ij->i", self.pu[users].astype(np.float64), self.qi[items].astype(np.float64))
        if self.config.biased:  # type: ignore[attr-defined]
            estimate = self.global_mean + self.bu[users].astype(np.float64) + self.bi[items] + dot
        else:
            # Surprise cannot estimate a pair with an unknown side and falls back to the mean.
            both = self.known_users[users] & self.known_items[items]
            estimate = np.where(both, dot, self.global_mean)
        estimate = np.clip(estimate, self.rating_scale[0], self.rating_scale[1])
        return estimate if self.data_range is None else _linear(estimate, self.rating_scale, self.data_range)

    # ---------------------------------------------------------------- scoring
    def _score_users(self, user_indices: np.ndarray) -> np.ndarray:
        block = self.pu[user_indices] @ self.qi.T
        if self.config.biased:  # type: ignore[attr-defined]
            block += np.float32(self.global_mean) + self.bu[user_indices][:, None] + self.bi[None, :]
        block[:, ~self.known_items] = -np.inf
        return block

    def _recommend_block(
        self, users: np.ndarray, n: int, exclude_seen: bool, allowed: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """implicit's top-k over [pu, 1] . [qi, bi], plus mu + bu (the same for every item of a user)."""
        blocked = ~self.known_items if allowed is None else ~self.known_items | ~allowed
        if not self.config.biased:  # type: ignore[attr-defined]
            return factor_top_k(self.qi, self.pu[users], n, exclude=self._seen_block(users, exclude_seen), blocked=blocked)
        items = np.hstack([self.qi, self.bi[:, None]])
        queries = np.hstack([self.pu[users], np.ones((len(users), 1), dtype=np.float32)])
        ids, scores = factor_top_k(items, queries, n, exclude=self._seen_block(users, exclude_seen), blocked=blocked)
        scores += np.float32(self.global_mean) + self.bu[users][:, None]
        return ids, scores

    def _score_items(self, item_indices: np.ndarray) -> np.ndarray:
        block = self._qi_unit[item_indices] @ self._qi_unit.T
        block[:, ~self.known_items] = -np.inf
        block[~self.known_items[item_indices]] = -np.inf
        return block

    # ------------------------------------------------------------ persistence
    def _get_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        meta = {
            "global_mean": self.global_mean,
            "rating_scale": list(self.rating_scale),
            "data_range": None if self.data_range is None else list(self.data_range),
        }
        arrays = {
            "bu": self.bu,
            "bi": self.bi,
            "pu": self.pu,
            "qi": self.qi,
            "known_users": self.known_users,
            "known_items": self.known_items,
        }
        return meta, arrays

    def _set_state(self, meta: dict[str, Any], arrays: Mapping[str, np.ndarray]) -> None:
        self.global_mean = float(meta["global_mean"])
        low, high = meta["rating_scale"]
        self.rating_scale = (float(low), float(high))
        data_range = meta.get("data_range")
        self.data_range = None if data_range is None else (float(data_range[0]), float(data_range[1]))
        self.bu, self.bi = arrays["bu"], arrays["bi"]
        self.pu, self.qi = arrays["pu"], arrays["qi"]
        self.known_users, self.known_items = arrays["known_users"], arrays["known_items"]
        self._prepare()


def _linear(values: np.ndarray, source: tuple[float, float], target: tuple[float, float]) -> np.ndarray:
    """``values`` mapped linearly from the ``source`` range onto the ``target`` range."""
    span = source[1] - source[0]
    if span <= 0:
        return np.full_like(values, target[0], dtype=np.float64)
    return target[0] + (np.asarray(values, dtype=np.float64) - source[0]) * (target[1] - target[0]) / span


def _id_arrays(raw_to_inner: Mapping[Any, int]) -> tuple[np.ndarray, np.ndarray]:
    """(our indices, surprise inner ids), each shape (n_known,) int64, from surprise's raw->inner dict."""
    raw = np.fromiter(raw_to_inner.keys(), dtype=np.int64, count=len(raw_to_inner))
    inner = np.fromiter(raw_to_inner.values(), dtype=np.int64, count=len(raw_to_inner))
    return raw, inner
