"""Two-stage ranking: candidates from several models, re-ranked by gradient-boosted trees.

Stage one: each candidate model (by default ease, als, userknn, itemknn and popular) gives its top
``per_model`` unseen items per user; the union is the user's candidate set. Stage two: a
LightGBM ``lambdarank`` model orders the candidates from features of the (user, item) pair:

* per candidate model: rank (``per_model + 1`` when absent), score z-scored over the user's
  candidates from that model, and score relative to the user's best;
* how many models proposed the item;
* item popularity (share of users) and trend (share of its users in the newest 30 days);
* user activity (log of items seen);
* category affinity (share of the user's items in the item's category, and that over the
  category's share of the catalogue) and days since the user last touched the category;
* price relative to the user's usual price (log ratio to the mean log price of their items).

Features a data set lacks (no catalogue, prices or timestamps) are left out, so the
feature list depends on the data; it is kept with the fitted model with each feature's
importance (total gain), and the model refuses to score data that lacks one of them.

Training labels come from the training data only. Each user's items are carved into
``history`` and ``labels``: ``carving = "random"`` draws the label items at random per user
(the shape of a stratified test split), ``"time"`` takes each user's newest items (the
shape of a leave-last or temporal split). The carving must match how the model is judged:
a time carving scored on a random split learns "recent" and loses. With ``folds >= 2``
(random carving only) every item is a label once: fold ``f`` of each user's items is
labelled by candidate models fitted on the other folds, and the examples of all folds
train one ranker (k-fold stacking: more examples, candidate models fitted on more data).
The candidate models used for serving are then fitted on all of the training data.

Only candidates are ever scored: other items get ``-inf``, so a list is at most the
candidate set long (``recommend`` pads with -1 past it).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import numpy as np
import scipy.sparse as sp
from pydantic import Field, model_validator

from recsys.data import schema
from recsys.data.dataset import Dataset
from recsys.errors import ModelError
from recsys.models.base import ModelConfig, Recommender, sparse_from_arrays, sparse_to_arrays
from recsys.models.registry import get_model_class

DAY_SECONDS = 86_400.0
TREND_WINDOW_DAYS = 30.0


class CandidateModel(ModelConfig):
    """One first-stage model: its registry name, parameters and the label of its features
    (default: the model name; set it to use one model twice, e.g. with two seeds)."""

    model: str
    params: dict[str, Any] = Field(default_factory=dict)
    label: str | None = Field(None, pattern=r"^[A-Za-z0-9_]+$")

    @property
    def feature_prefix(self) -> str:
        return self.label or self.model


class RankerConfig(ModelConfig):
    """Candidate models, how labels are carved from the training data, and the learner.

    Defaults were chosen on validation splits carved from the training part of ML-100K and
    ml-latest-small (README, "Two-stage ranker").
    """

    candidates: list[CandidateModel] = Field(
        default_factory=lambda: [
            CandidateModel(model="ease"),
            CandidateModel(model="als"),
            CandidateModel(model="userknn"),
            CandidateModel(model="itemknn"),
            CandidateModel(model="popular"),
        ],
        min_length=1,
    )
    per_model: int = Field(100, ge=1, description="top items each candidate model proposes per user")
    carving: Literal["random", "time"] = Field("random", description="how label items are picked from each user's items")
    folds: int = Field(1, ge=1, description="1 = one holdout of label_share; k >= 2 = k-fold stacking (random carving)")
    label_share: float = Field(0.2, gt=0.0, lt=1.0, description="share of each user's items carved as labels (folds = 1)")
    min_user_items: int = Field(3, ge=2, description="users with fewer items give no training labels")
    max_label_users: int | None = Field(
        50_000, ge=1, description="users sampled per fold for training labels (bounds the training set); None = all"
    )
    seed: int = 0
    objective: Literal["auto", "lambdarank", "rank_xendcg", "binary"] = Field(
        "auto",
        description="auto = lambdarank or binary, whichever ranks a held-out quarter of the carved users better",
    )
    n_estimators: int = Field(100, ge=1)
    learning_rate: float = Field(0.05, gt=0.0)
    num_leaves: int = Field(7, ge=2)
    min_child_samples: int = Field(50, ge=1)
    feature_fraction: float = Field(0.8, gt=0.0, le=1.0)
    lambda_l2: float = Field(0.0, ge=0.0, description="L2 penalty on leaf values")
    monotone: bool = Field(
        True, description="the ranker's score may only rise with a candidate model's score and fall with its rank"
    )
    raw_scores: bool = Field(
        False,
        description="also feed each candidate model's raw score (off: its scale shifts when the models are refitted on all data)",
    )
    drop_features: list[str] = Field(default_factory=list, description="feature names left out (ablations)")

    def dropped_features(self) -> set[str]:
        """Feature names not used: ``drop_features``, and the raw scores unless ``raw_scores``."""
        dropped = set(self.drop_features)
        if not self.raw_scores:
            dropped |= {f"{c.feature_prefix}_score" for c in self.candidates}
        return dropped
    explain_from: str | None = Field(
        None, description="candidate model whose explanations the ranker gives; None = the first that has them"
    )

    @model_validator(mode="after")
    def _check(self) -> RankerConfig:
        names = [c.feature_prefix for c in self.candidates]
        if len(set(names)) != len(names):
            raise ValueError(f"two candidate models share a label: {', '.join(names)} (give each a distinct 'label')")
        for candidate in self.candidates:
            if candidate.model == "ranker":
                raise ValueError("a ranker cannot be a candidate model of a ranker")
            model_class = get_model_class(candidate.model)
            if "baskets" in model_class.requires:
                raise ValueError(
                    f"candidate {candidate.model!r} needs baskets, which cannot be carved per user without leaking labels"
                )
            model_class.parse_config(candidate.params)
        if self.folds >= 2 and self.carving != "random":
            raise ValueError("folds >= 2 (k-fold stacking) needs carving = 'random'")
        if self.explain_from is not None and self.explain_from not in names:
            raise ValueError(f"explain_from {self.explain_from!r} is not a candidate model ({', '.join(names)})")
        return self


# ----------------------------------------------------------------------------- carving
def carve_labels(
    user_items: sp.csr_matrix,
    last_times: sp.csr_matrix | None,
    config: RankerConfig,
) -> list[tuple[sp.csr_matrix, sp.csr_matrix]]:
    """(history, labels) CSR pairs of the shape of ``user_items``, one per fold.

    Every pair of a user with at least ``min_user_items`` items is either history or label;
    other users keep everything as history. A user always keeps at least one history item.
    """
    matrix = sp.csr_matrix(user_items)
    matrix.eliminate_zeros()
    counts = np.diff(matrix.indptr)
    rows = np.repeat(np.arange(matrix.shape[0]), counts)
    random = np.random.default_rng(config.seed).random(matrix.nnz)
    if config.carving == "time":
        if last_times is None:
            raise ModelError("ranker: carving = 'time' needs timestamps in the training data, which has none")
        times = np.asarray(aligned(last_times, matrix), dtype=np.float64)
        # Newest first; equal times in random order.
        order = np.lexsort((random, -times, rows))
    else:
        order = np.lexsort((random, rows))
    rank = np.empty(matrix.nnz, dtype=np.int64)
    starts = matrix.indptr[:-1]
    rank[order] = np.arange(matrix.nnz) - np.repeat(starts, counts)
    eligible = counts[rows] >= config.min_user_items
    folds = []
    if config.folds == 1:
        n_labels = np.maximum(1, np.floor(counts * config.label_share)).astype(np.int64)
        n_labels = np.minimum(n_labels, counts - 1)
        masks = [eligible & (rank < n_labels[rows])]
    else:
        masks = [eligible & (rank % config.folds == fold) for fold in range(config.folds)]
    for label_mask in masks:
        folds.append((_masked(matrix, ~label_mask), _masked(matrix, label_mask)))
    return folds


def _masked(matrix: sp.csr_matrix, keep: np.ndarray) -> sp.csr_matrix:
    """The entries of ``matrix`` where ``keep`` (shape (nnz,)) is True, same shape."""
    out = matrix.copy()
    out.data = np.where(keep, out.data, 0).astype(out.dtype)
    out.eliminate_zeros()
    return out


def aligned(values: sp.csr_matrix, structure: sp.csr_matrix) -> np.ndarray:
    """Values of ``values`` at every stored entry of ``structure`` (row order), 0 where absent."""
    coo = structure.tocoo()
    return np.asarray(sp.csr_matrix(values)[coo.row, coo.col]).ravel()


def history_dataset(dataset: Dataset, history: sp.csr_matrix) -> Dataset:
    """``dataset`` restricted to the ``history`` pairs (ratings and times too; no baskets or trending)."""
    structure = history.copy()
    structure.data[:] = 1.0

    def restrict(matrix: sp.csr_matrix | None) -> sp.csr_matrix | None:
        if matrix is None:
            return None
        out = sp.csr_matrix(sp.csr_matrix(matrix).multiply(structure))
        out.eliminate_zeros()
        return out

    return Dataset(
        user_items=history,
        users=dataset.users,
        items=dataset.items,
        ratings=restrict(dataset.ratings),
        catalog=dataset.catalog,
        last_times=restrict(dataset.last_times),
        info=dict(dataset.info),
    )


# ----------------------------------------------------------------------------- features
class FeatureContext:
    """What the features of (user, item) pairs are computed from: one users x items history.

    Built once per history matrix (carved history during training, the full training data
    for serving), so training and serving features mean the same thing.
    """

    def __init__(
        self,
        history: sp.csr_matrix,
        last_times: sp.csr_matrix | None,
        category: np.ndarray | None = None,
        log_price: np.ndarray | None = None,
    ) -> None:
        self.history = sp.csr_matrix(history)
        self.history.eliminate_zeros()
        n_users, n_items = self.history.shape
        binary = self.history.copy()
        binary.data[:] = 1.0
        self.binary = binary
        item_users = np.diff(binary.tocsc().indptr).astype(np.float64)
        self.popularity = item_users / max(1, n_users)
        self.activity = np.log1p(np.diff(binary.indptr)).astype(np.float64)
        self.times: sp.csr_matrix | None = None
        self.trend: np.ndarray | None = None
        if last_times is not None:
            times = aligned(last_times, self.history)
            if np.any(times > 0):
                self.times = sp.csr_matrix((times, self.history.indices, self.history.indptr), shape=self.history.shape)
                newest = float(times.max())
                recent = self.times.copy()
                recent.data = (recent.data >= newest - TREND_WINDOW_DAYS * DAY_SECONDS).astype(np.float64)
                recent_users = np.asarray(recent.sum(axis=0)).ravel()
                self.trend = np.where(item_users > 0, recent_users / np.maximum(item_users, 1), 0.0)
                # When each item was first and typically seen, and when each user was active.
                self.item_first = np.full(n_items, np.nan)
                np.fmin.at(self.item_first, self.times.indices, self.times.data)
                item_sum = np.bincount(self.times.indices, weights=self.times.data, minlength=n_items)
                self.item_mean = np.where(item_users > 0, item_sum / np.maximum(item_users, 1), np.nan)
                user_counts = np.diff(self.times.indptr)
                user_sum = np.add.reduceat(self.times.data, np.minimum(self.times.indptr[:-1], max(0, self.times.nnz - 1))) if self.times.nnz else np.zeros(n_users)
                self.user_mean = np.where(user_counts > 0, user_sum / np.maximum(user_counts, 1), np.nan)
                self.user_last = np.full(n_users, np.nan)
                owners = np.repeat(np.arange(n_users), user_counts)
                np.fmax.at(self.user_last, owners, self.times.data)
        self.category = category
        if category is not None:
            n_categories = int(category.max()) + 1
            self.item_category = sp.csr_matrix(
                (np.ones(n_items), (np.arange(n_items), category)), shape=(n_items, n_categories)
            )
            self.category_share = np.bincount(category, minlength=n_categories) / max(1, n_items)
        self.log_price = log_price

    @staticmethod
    def catalog_arrays(catalog: Any) -> tuple[np.ndarray | None, np.ndarray | None]:
        """(category codes (n_items,) int64, log prices (n_items,) float64 with NaN) of a
        catalogue; None for a field the catalogue lacks or leaves empty everywhere."""
        if catalog is None:
            return None, None
        category = None
        if schema.CATEGORY in catalog:
            labels = catalog[schema.CATEGORY].to_numpy(dtype=str)
            if np.any(labels != ""):
                _, codes = np.unique(labels, return_inverse=True)
                category = codes.astype(np.int64)
        log_price = None
        if schema.PRICE in catalog:
            price = catalog[schema.PRICE].to_numpy(dtype=np.float64, na_value=np.nan)
            valid = np.isfinite(price) & (price > 0)
            if valid.any():
                log_price = np.where(valid, np.log(np.where(valid, price, 1.0)), np.nan)
        return category, log_price

    def names(self, models: list[str]) -> list[str]:
        """Feature names in column order."""
        out = []
        for name in models:
            out += [f"{name}_rank", f"{name}_score", f"{name}_zscore", f"{name}_relative"]
        out += ["n_models", "item_popularity", "user_activity"]
        if self.trend is not None:
            out += ["item_trend", "item_first_days_before_user_last", "item_mean_minus_user_mean_days"]
        if self.category is not None:
            out += ["category_affinity", "category_lift"]
            if self.times is not None:
                out.append("category_days_since")
        if self.log_price is not None:
            out.append("relative_price")
        return out

    def features(
        self, users: np.ndarray, rows: np.ndarray, items: np.ndarray, per_model: list[tuple[np.ndarray, np.ndarray]], depth: int
    ) -> np.ndarray:
        """Feature matrix (n_pairs, n_features) float32 of the candidate pairs.

        ``users``: the batch's user indices (b,); ``rows``/``items``: each pair's position in
        the batch and item index, sorted by (row, item); ``per_model``: each model's
        (ids, scores) of shape (b, depth).
        """
        n_items = self.history.shape[1]
        pair_keys = rows.astype(np.int64) * n_items + items
        columns: list[np.ndarray] = []
        proposed = np.zeros(len(rows), dtype=np.float64)
        for ids, scores in per_model:
            valid = ids >= 0
            finite = np.where(valid & np.isfinite(scores), scores, np.nan).astype(np.float64)
            # Users with no proposal from a model (all NaN) get NaN features, which LightGBM
            # treats as missing.
            count = np.isfinite(finite).sum(axis=1, keepdims=True)
            total = np.where(np.isfinite(finite), finite, 0.0)
            mean = total.sum(axis=1, keepdims=True) / np.maximum(count, 1)
            std = np.sqrt((np.where(np.isfinite(finite), finite - mean, 0.0) ** 2).sum(axis=1, keepdims=True) / np.maximum(count, 1))
            best = np.where(np.isfinite(finite), finite, -np.inf).max(axis=1, keepdims=True)
            with np.errstate(invalid="ignore", divide="ignore"):
                zscore = (finite - mean) / np.where(std > 0, std, 1.0)
                relative = finite / np.where(np.abs(best) > 0, np.abs(best), 1.0)
            batch_rows = np.broadcast_to(np.arange(len(ids))[:, None], ids.shape)
            model_keys = batch_rows[valid].astype(np.int64) * n_items + ids[valid]
            where = np.searchsorted(pair_keys, model_keys)
            rank = np.full(len(rows), float(depth + 1))
            rank[where] = (np.broadcast_to(np.arange(1, ids.shape[1] + 1), ids.shape)[valid]).astype(np.float64)
            raw = np.full(len(rows), np.nan)
            raw[where] = finite[valid]
            z = np.full(len(rows), np.nan)
            z[where] = zscore[valid]
            rel = np.full(len(rows), np.nan)
            rel[where] = relative[valid]
            proposed[where] += 1
            columns += [rank, raw, z, rel]
        user_of_pair = users[rows]
        columns += [proposed, self.popularity[items], self.activity[user_of_pair]]
        if self.trend is not None:
            columns.append(self.trend[items])
            columns.append((self.user_last[user_of_pair] - self.item_first[items]) / DAY_SECONDS)
            columns.append((self.item_mean[items] - self.user_mean[user_of_pair]) / DAY_SECONDS)
        if self.category is not None:
            history = self.binary[users]
            per_category = np.asarray((history @ self.item_category).todense(), dtype=np.float64)
            totals = np.maximum(per_category.sum(axis=1, keepdims=True), 1.0)
            share = per_category / totals
            item_category = self.category[items]
            affinity = share[rows, item_category]
            columns += [affinity, affinity / np.maximum(self.category_share[item_category], 1e-9)]
            if self.times is not None:
                times = self.times[users]
                last = np.full(per_category.shape, -np.inf)
                history_rows = np.repeat(np.arange(len(users)), np.diff(times.indptr))
                np.maximum.at(last, (history_rows, self.category[times.indices]), times.data)
                newest = np.max(np.where(np.isfinite(last), last, -np.inf), axis=1)
                days = (newest[rows] - last[rows, item_category]) / DAY_SECONDS
                columns.append(np.where(np.isfinite(days), days, np.nan))
        if self.log_price is not None:
            history = self.binary[users]
            known = np.isfinite(self.log_price)
            price_sum = history @ np.where(known, self.log_price, 0.0)
            price_count = history @ known.astype(np.float64)
            with np.errstate(invalid="ignore", divide="ignore"):
                usual = np.where(price_count > 0, price_sum / np.maximum(price_count, 1), np.nan)
            columns.append(self.log_price[items] - usual[rows])
        return np.column_stack(columns).astype(np.float32)


def monotone_direction(feature: str) -> int:
    """-1 for a candidate model's rank, +1 for its scores, 0 (free) for everything else."""
    if feature.endswith("_rank"):
        return -1
    if feature.endswith(("_score", "_zscore", "_relative")):
        return 1
    return 0


def group_ndcg(predicted: np.ndarray, label: np.ndarray, group: np.ndarray, k: int) -> float:
    """Mean nDCG@k over consecutive groups of rows (sizes ``group``), binary labels."""
    owner = np.repeat(np.arange(len(group)), group)
    order = np.lexsort((-predicted, owner))
    starts = np.concatenate(([0], np.cumsum(group)[:-1]))
    position = np.arange(len(order)) - np.repeat(starts, group)
    discount = np.where(position < k, 1.0 / np.log2(position + 2.0), 0.0)
    dcg = np.bincount(owner, weights=discount * label[order], minlength=len(group))
    positives = np.bincount(owner, weights=label, minlength=len(group)).astype(np.int64)
    ideal = np.concatenate(([0.0], np.cumsum(1.0 / np.log2(np.arange(k) + 2.0))))[np.minimum(positives, k)]
    valid = ideal > 0
    return float(np.mean(dcg[valid] / ideal[valid])) if valid.any() else 0.0


# ----------------------------------------------------------------------------- model
class RankerRecommender(Recommender):
    """Candidate models + a LightGBM learning-to-rank model over pair features.

    Attributes after fit:
        components: the candidate models, fitted on all training data.
        feature_names: the feature columns in order.
        importances: feature name -> total gain in the trees (the share of the whole).
        training: sizes of the carved training set (users, pairs, positives, candidate recall).
    """

    name = "ranker"
    config_class = RankerConfig

    def __init__(self, config: RankerConfig | Mapping[str, Any] | None = None, **params: Any) -> None:
        super().__init__(config, **params)
        self.components: list[Recommender] = []
        self.feature_names: list[str] = []
        self.importances: dict[str, float] = {}
        self.training: dict[str, Any] = {}
        self._booster: Any = None
        self._context: FeatureContext | None = None

    @property
    def _config(self) -> RankerConfig:
        return self.config  # type: ignore[return-value]

    # -------------------------------------------------------------------- fit
    def _fit_components(self, dataset: Dataset, *, show_progress: bool) -> list[Recommender]:
        models = []
        for candidate in self._config.candidates:
            model = get_model_class(candidate.model)(candidate.params)
            missing = [need for need in model.requires if getattr(dataset, need) is None]
            if missing:
                raise ModelError(f"ranker: candidate model {candidate.model!r} needs {', '.join(missing)}, which the data has none of")
            models.append(model.fit(dataset, show_progress=show_progress))
        return models

    def _fit(self, dataset: Dataset, *, show_progress: bool = False) -> None:
        config = self._config
        blocks: list[np.ndarray] = []
        labels: list[np.ndarray] = []
        groups: list[np.ndarray] = []
        relevant_total = 0
        found_total = 0
        names = [c.feature_prefix for c in config.candidates]
        catalog = FeatureContext.catalog_arrays(dataset.catalog)
        for history, held_out in carve_labels(self.user_items, dataset.last_times, config):
            carved = history_dataset(dataset, history)
            models = self._fit_components(carved, show_progress=show_progress)
            context = FeatureContext(history, dataset.last_times, *catalog)
            users = np.flatnonzero(np.diff(held_out.indptr) > 0)
            if config.max_label_users is not None and len(users) > config.max_label_users:
                rng = np.random.default_rng(config.seed)
                users = np.sort(rng.choice(users, config.max_label_users, replace=False))
            step = self._batch_size()
            for start in range(0, len(users), step):
                batch = users[start : start + step]
                rows, items, features = self._candidate_features(models, context, batch)
                truth = held_out[batch]
                truth_keys = np.repeat(np.arange(len(batch)), np.diff(truth.indptr)).astype(np.int64) * self.n_items + truth.indices
                pair_keys = rows.astype(np.int64) * self.n_items + items
                label = np.isin(pair_keys, truth_keys).astype(np.float32)
                relevant_total += truth.nnz
                found_total += int(label.sum())
                sizes = np.bincount(rows, minlength=len(batch))
                positive = np.bincount(rows, weights=label, minlength=len(batch)) > 0
                keep = positive[rows]
                blocks.append(features[keep])
                labels.append(label[keep])
                groups.append(sizes[positive])
        if not blocks or not sum(len(b) for b in labels):
            raise ModelError(
                f"ranker: no training labels among the candidates (users need at least {config.min_user_items} items; "
                "lower min_user_items or raise per_model)"
            )
        features = np.concatenate(blocks)
        label = np.concatenate(labels)
        group = np.concatenate(groups)
        self.components = self._fit_components(dataset, show_progress=show_progress)
        self._context = FeatureContext(self.user_items, dataset.last_times, *catalog)
        self.feature_names = [n for n in self._context.names(names) if n not in config.dropped_features()]
        objective, selection = self._choose_objective(features, label, group)
        self._booster = self._train(features, label, group, objective)
        self._set_importances()
        self.training = {
            "objective": objective,
            "objective_selection": selection,
            "users": int(len(group)),
            "pairs": int(len(label)),
            "positives": int(label.sum()),
            "candidate_recall": float(found_total / relevant_total) if relevant_total else None,
            "folds": config.folds,
            "carving": config.carving,
        }

    def _train(self, features: np.ndarray, label: np.ndarray, group: np.ndarray, objective: str) -> Any:
        import lightgbm

        train_set = lightgbm.Dataset(
            features, label, group=group if objective != "binary" else None, feature_name=self.feature_names, free_raw_data=True
        )
        return lightgbm.train(self._lightgbm_params(objective), train_set, num_boost_round=self._config.n_estimators)

    def _choose_objective(self, features: np.ndarray, label: np.ndarray, group: np.ndarray) -> tuple[str, dict[str, float]]:
        """The configured objective, or for ``auto`` the one of lambdarank / binary with the
        higher nDCG@10 on a random quarter of the carved users, trained on the rest.

        Pairwise lambdarank wins with many labels per user; with one or two (sparse shop
        data) its gradients are noisy and the pointwise binary objective ranks better.
        """
        if self._config.objective != "auto":
            return self._config.objective, {}
        rng = np.random.default_rng(self._config.seed)
        held = rng.random(len(group)) < 0.25
        if held.all() or not held.any():
            return "lambdarank", {}
        row_group = np.repeat(np.arange(len(group)), group)
        rows_held = held[row_group]
        scores = {}
        for objective in ("lambdarank", "binary"):
            booster = self._train(features[~rows_held], label[~rows_held], group[~held], objective)
            predicted = booster.predict(features[rows_held], num_threads=1)
            scores[objective] = round(group_ndcg(predicted, label[rows_held], group[held], 10), 6)
        return max(scores, key=lambda name: (scores[name], name == "lambdarank")), scores

    def _lightgbm_params(self, objective: str) -> dict[str, Any]:
        config = self._config
        params: dict[str, Any] = {
            "objective": objective,
            "learning_rate": config.learning_rate,
            "num_leaves": config.num_leaves,
            "min_child_samples": config.min_child_samples,
            "feature_fraction": config.feature_fraction,
            "seed": config.seed,
            "deterministic": True,
            "num_threads": 1,
            "lambda_l2": config.lambda_l2,
            "verbose": -1,
        }
        if config.monotone:
            params["monotone_constraints"] = [monotone_direction(name) for name in self.feature_names]
            params["monotone_constraints_method"] = "advanced"
        if objective == "lambdarank":
            params.update(lambdarank_truncation_level=20)
        return params

    def _set_importances(self) -> None:
        gains = np.asarray(self._booster.feature_importance(importance_type="gain"), dtype=np.float64)
        total = gains.sum()
        shares = gains / total if total > 0 else gains
        self.importances = {name: round(float(share), 6) for name, share in zip(self.feature_names, shares)}

    def _candidate_features(
        self, models: list[Recommender], context: FeatureContext, users: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Candidate pairs of a batch of users: (rows in the batch, items, features), sorted by (row, item)."""
        depth = self._config.per_model
        per_model = [model.recommend(users, depth, exclude_seen=True) for model in models]
        ids = np.concatenate([p[0] for p in per_model], axis=1)
        batch_rows = np.broadcast_to(np.arange(len(users))[:, None], ids.shape)
        valid = ids >= 0
        keys = np.unique(batch_rows[valid].astype(np.int64) * self.n_items + ids[valid])
        rows = (keys // self.n_items).astype(np.int64)
        items = (keys % self.n_items).astype(np.int64)
        features = context.features(users, rows, items, per_model, depth)
        dropped = self._config.dropped_features()
        if dropped:
            names = context.names([c.feature_prefix for c in self._config.candidates])
            features = features[:, [i for i, name in enumerate(names) if name not in dropped]]
        return rows, items, features

    # ---------------------------------------------------------------- scoring
    def _score_users(self, user_indices: np.ndarray) -> np.ndarray:
        block = np.full((len(user_indices), self.n_items), -np.inf, dtype=np.float32)
        if not len(user_indices):
            return block
        rows, items, features = self._candidate_features(self.components, self._context, np.asarray(user_indices))
        if len(rows):
            block[rows, items] = np.asarray(self._booster.predict(features, num_threads=1), dtype=np.float32)
        return block

    def _score_items(self, item_indices: np.ndarray) -> np.ndarray:
        """Similar items come from the explaining candidate model (item-to-item has no ranker stage)."""
        return self._similar_model()._score_items(item_indices)

    def _similar_model(self) -> Recommender:
        personalised = [m for m in self.components if m.name != "popular"]
        return self._explaining_model() or (personalised or self.components)[0]

    def _explaining_model(self) -> Recommender | None:
        wanted = self._config.explain_from
        for model in self.components:
            if wanted is not None and model.name != wanted:
                continue
            if type(model).explain is not Recommender.explain:
                return model
        return None

    @property
    def explains(self) -> bool:
        return self._explaining_model() is not None

    def explain(self, user_indices: np.ndarray | list[int], item_indices: np.ndarray | list[int]) -> np.ndarray:
        """The seen item that contributes most to the entry in the explaining candidate model.

        That model (``explain_from``, else the first candidate with explanations) was fitted
        on the same training data; its score is the ranker's strongest input for the item.
        """
        self._require_fitted()
        model = self._explaining_model()
        if model is None:
            raise ModelError(f"ranker: none of the candidate models ({', '.join(m.name for m in self.components)}) gives explanations")
        return model.explain(user_indices, item_indices)

    # ------------------------------------------------------------ persistence
    def _get_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        meta: dict[str, Any] = {
            "components": [],
            "feature_names": self.feature_names,
            "importances": self.importances,
            "training": self.training,
            "booster": self._booster.model_to_string(),
        }
        arrays: dict[str, np.ndarray] = {}
        for position, model in enumerate(self.components):
            component_meta, component_arrays = model._get_state()
            meta["components"].append({"model": model.name, "config": model.config.model_dump(mode="json"), "state": component_meta})
            for key, value in component_arrays.items():
                arrays[f"c{position}:{key}"] = value
            arrays.update(sparse_to_arrays(f"c{position}:user_items", model.user_items))
        context = self._context
        if context is not None:
            if context.times is not None:
                arrays.update(sparse_to_arrays("last_times", context.times))
            if context.category is not None:
                arrays["item_category"] = context.category
            if context.log_price is not None:
                arrays["item_log_price"] = context.log_price
        return meta, arrays

    def _set_state(self, meta: dict[str, Any], arrays: Mapping[str, np.ndarray]) -> None:
        import lightgbm

        self.components = []
        for position, entry in enumerate(meta["components"]):
            model = get_model_class(entry["model"])(entry["config"])
            prefix = f"c{position}:"
            own = {key[len(prefix) :]: value for key, value in arrays.items() if key.startswith(prefix)}
            model.user_items = sparse_from_arrays("user_items", own)
            model.n_users, model.n_items = model.user_items.shape
            model._set_state(entry["state"], own)
            self.components.append(model)
        self.feature_names = list(meta["feature_names"])
        self.importances = dict(meta["importances"])
        self.training = dict(meta.get("training", {}))
        self._booster = lightgbm.Booster(model_str=meta["booster"])
        times = sparse_from_arrays("last_times", arrays) if "last_times__data" in arrays else None
        self._context = FeatureContext(self.user_items, times, arrays.get("item_category"), arrays.get("item_log_price"))
        names = self._context.names([c.feature_prefix for c in self._config.candidates])
        names = [n for n in names if n not in self._config.dropped_features()]
        if names != self.feature_names:
            raise ModelError(f"ranker: saved features {self.feature_names} do not match the data's {names}")
