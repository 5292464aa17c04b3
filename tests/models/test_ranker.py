"""The two-stage ranker (model contract, carving, features, persistence) and the
``because`` explanations of the item-based models."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from recsys.data.dataset import Dataset
from recsys.errors import ConfigError, ModelError
from recsys.models.base import Recommender
from recsys.models.ranker import RankerConfig, RankerRecommender, carve_labels, monotone_direction
from recsys.models.registry import get_model_class
from tests.models.contract import RecommenderContract, cluster_dataset

SMALL: dict[str, Any] = {
    "candidates": [
        {"model": "ease", "params": {"l2": 10.0}},
        {"model": "itemknn", "params": {"k": 10}},
        {"model": "popular"},
    ],
    "per_model": 20,
    "n_estimators": 30,
    "min_child_samples": 5,
}


class TestRanker(RecommenderContract):
    model_name = "ranker"
    params = SMALL


class TestRankerStacked(RecommenderContract):
    model_name = "ranker"
    params = {**SMALL, "folds": 3, "objective": "binary"}


# ----------------------------------------------------------------------------- carving
def _timed_matrix() -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """Three users with 5, 4 and 2 items; item j of a user was seen at time 100 * j."""
    dense = np.array([[1, 1, 1, 1, 1, 0], [0, 1, 1, 1, 1, 0], [1, 0, 0, 0, 0, 1]], dtype=np.float32)
    matrix = sp.csr_matrix(dense)
    times = sp.csr_matrix(dense * (100.0 * np.arange(1, 7)))
    return matrix, times


def test_random_carving_partitions_each_user() -> None:
    matrix, times = _timed_matrix()
    config = RankerConfig(label_share=0.4, min_user_items=3, seed=3)
    [(history, labels)] = carve_labels(matrix, times, config)
    assert (history + labels != matrix).nnz == 0
    assert history.multiply(labels).nnz == 0
    assert np.diff(labels.indptr).tolist() == [2, 1, 0]  # floor(0.4 * n), user 2 is too small


def test_time_carving_labels_the_newest_items() -> None:
    matrix, times = _timed_matrix()
    [(history, labels)] = carve_labels(matrix, times, RankerConfig(carving="time", label_share=0.4, min_user_items=3))
    assert labels[0].indices.tolist() == [3, 4] and labels[1].indices.tolist() == [4]
    assert history[0].indices.tolist() == [0, 1, 2]


def test_time_carving_needs_timestamps() -> None:
    matrix, _ = _timed_matrix()
    with pytest.raises(ModelError, match="needs timestamps"):
        carve_labels(matrix, None, RankerConfig(carving="time"))


def test_kfold_carving_labels_every_item_once() -> None:
    matrix, times = _timed_matrix()
    folds = carve_labels(matrix, times, RankerConfig(folds=2, min_user_items=3))
    labels = sum((f[1] for f in folds), sp.csr_matrix(matrix.shape, dtype=np.float32))
    assert labels[:2].nnz == matrix[:2].nnz and labels[2].nnz == 0
    for history, label in folds:
        assert (history + label != matrix).nnz == 0


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"candidates": [{"model": "ease"}, {"model": "ease"}]}, "share a label"),
        ({"candidates": [{"model": "rules"}]}, "needs baskets"),
        ({"candidates": [{"model": "ranker"}]}, "cannot be a candidate"),
        ({"folds": 3, "carving": "time"}, "needs carving = 'random'"),
        ({"explain_from": "itemknn", "candidates": [{"model": "ease"}]}, "not a candidate model"),
        ({"candidates": [{"model": "als", "params": {"factors": -1}}]}, "factors"),
    ],
)
def test_bad_config_is_refused(params: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        RankerRecommender(params)


def test_same_model_twice_with_labels() -> None:
    config = RankerConfig(candidates=[{"model": "als"}, {"model": "als", "label": "als_seed1", "params": {"random_state": 1}}])
    assert [c.feature_prefix for c in config.candidates] == ["als", "als_seed1"]


# ----------------------------------------------------------------------------- features, state
@pytest.fixture(scope="module")
def shop_dataset() -> Dataset:
    """The cluster fixture with timestamps and prices: category, price and recency features apply."""
    base = cluster_dataset()
    coo = base.user_items.tocoo()
    rng = np.random.default_rng(0)
    interactions = pd.DataFrame(
        {
            "user_id": base.users.ids[coo.row],
            "item_id": base.items.ids[coo.col],
            "timestamp": 1_700_000_000 + rng.integers(0, 90 * 86_400, coo.nnz),
        }
    )
    catalog = base.catalog.copy()
    catalog["price"] = 5.0 + np.arange(len(catalog)) % 7
    return Dataset.from_interactions(interactions, catalog, users=base.users, items=base.items)


def test_features_and_importances_in_state(shop_dataset: Dataset, tmp_path: Path) -> None:
    model = RankerRecommender({**SMALL, "carving": "time"}).fit(shop_dataset)
    names = model.feature_names
    assert "itemknn_score" not in names  # raw scores are off by default
    for expected in ("ease_rank", "ease_zscore", "itemknn_relative", "item_popularity", "item_trend", "user_activity",
                     "category_affinity", "category_days_since", "relative_price"):
        assert expected in names
    assert set(model.importances) == set(names)
    assert abs(sum(model.importances.values()) - 1.0) < 1e-4
    assert 0 < model.training["candidate_recall"] <= 1
    folder = model.save(tmp_path / "ranker")
    with open(folder / "model.json", encoding="utf-8") as handle:
        state = json.load(handle)["state"]
    assert state["feature_names"] == names and set(state["importances"]) == set(names)
    loaded = Recommender.load(folder)
    users = np.arange(shop_dataset.n_users)
    np.testing.assert_array_equal(model.recommend(users, 5)[0], loaded.recommend(users, 5)[0])


def test_raw_scores_and_dropped_features() -> None:
    model = RankerRecommender({**SMALL, "raw_scores": True, "drop_features": ["user_activity"]}).fit(cluster_dataset())
    assert "ease_score" in model.feature_names and "user_activity" not in model.feature_names
    ids, _ = model.recommend(np.arange(5), 3)
    assert np.all(ids >= 0)


def test_bare_matrix_has_no_catalogue_features() -> None:
    model = RankerRecommender(SMALL).fit(cluster_dataset().user_items)
    assert not {"category_affinity", "relative_price", "item_trend"} & set(model.feature_names)


def test_monotone_directions() -> None:
    assert [monotone_direction(n) for n in ("als_rank", "als_score", "ease_zscore", "ease_relative", "user_activity")] == [-1, 1, 1, 1, 0]


def test_scores_only_candidates(shop_dataset: Dataset) -> None:
    model = RankerRecommender({**SMALL, "per_model": 2, "candidates": [{"model": "popular"}]}).fit(shop_dataset)
    ids, _ = model.recommend(np.arange(shop_dataset.n_users), 5)
    assert np.all(ids[:, 2:] == -1)  # one model proposing 2 items: lists are at most 2 long
    assert np.all(ids[:, :2] >= 0)


def test_no_labels_is_an_error() -> None:
    with pytest.raises(ModelError, match="no training labels"):
        RankerRecommender({**SMALL, "min_user_items": 1000}).fit(cluster_dataset())


# ----------------------------------------------------------------------------- explanations
def scores_without_because(model: Recommender, users: np.ndarray, items: np.ndarray, because: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(score of each entry, score of the entry once its because item is removed from the
    user's history), the model otherwise unchanged. One virtual user per entry, scored in one batch."""
    rows = sp.csr_matrix(model.user_items[users], copy=True)
    original = model._score_users(users)[np.arange(len(users)), items]
    removed = sp.csr_matrix((np.ones(len(users)), (np.arange(len(users)), because)), shape=rows.shape)
    reduced = rows - rows.multiply(removed)
    reduced.eliminate_zeros()
    altered = copy.deepcopy(model)
    altered.user_items = sp.csr_matrix(reduced, dtype=np.float32)
    altered.n_users = len(users)
    if hasattr(altered, "_prepare") and altered.name == "ease":
        altered._prepare()
    changed = altered._score_users(np.arange(len(users)))[np.arange(len(users)), items]
    return original, changed


def check_because(model: Recommender, n: int = 10, *, removal: bool = True, scorer: Recommender | None = None) -> float:
    """Every because item of the model's top-``n`` is in the user's history and, where
    ``removal``, removing it lowers the entry's score in ``scorer`` (default: the model).
    Returns the share of entries that have a because item."""
    users = np.arange(model.n_users)
    ids, _ = model.recommend(users, n)
    flat_users = np.repeat(users, n)
    flat_items = ids.ravel()
    because = model.explain(flat_users, flat_items)
    assert because.shape == flat_items.shape and because.dtype == np.int64
    assert np.all(because[flat_items < 0] == -1)
    has = because >= 0
    assert np.asarray(model.user_items[flat_users[has], because[has]]).ravel().min() > 0
    if removal and has.any():
        before, after = scores_without_because(scorer or model, flat_users[has], flat_items[has], because[has])
        assert np.all(np.where(np.isfinite(after), after, -np.inf) < before - 1e-7)
    return float(has[flat_items >= 0].mean())


@pytest.mark.parametrize(
    ("name", "params", "removal"),
    [("itemknn", {"k": 10}, True), ("ease", {"l2": 10.0}, True), ("rules", {}, True), ("content", {}, False)],
)
def test_because_items_on_the_cluster_data(name: str, params: dict[str, Any], removal: bool) -> None:
    model = get_model_class(name)(params).fit(cluster_dataset())
    assert check_because(model, 5, removal=removal) > 0.9


def test_because_is_the_largest_contribution() -> None:
    """Known answer on a 2-user matrix: the seen item with the largest x_ui * S[i, j]."""
    from recsys.models.itemknn import ItemKNNRecommender

    model = ItemKNNRecommender().fit(sp.csr_matrix(np.array([[1, 1, 0, 0], [0, 0, 1, 1]], dtype=np.float32)))
    model.similarity = sp.csr_matrix(np.array([[0, 0, 0.2, 0.9], [0, 0, 0.7, 0.1], [0, 0, 0, 0], [0, 0, 0, 0]], dtype=np.float32))
    model.user_items = sp.csr_matrix(np.array([[1, 2, 0, 0], [0, 0, 1, 1]], dtype=np.float32))
    assert model.explain([0, 0, 1, 0], [2, 3, 0, -1]).tolist() == [1, 0, -1, -1]


def test_explain_checks_its_arguments() -> None:
    model = get_model_class("ease")({"l2": 10.0}).fit(cluster_dataset())
    with pytest.raises(ModelError, match="as many items as users"):
        model.explain([0, 1], [2])
    with pytest.raises(ModelError, match="unknown item index"):
        model.explain([0], [10_000])
    with pytest.raises(ModelError, match="gives no 'because' explanations"):
        get_model_class("popular")().fit(cluster_dataset()).explain([0], [1])


def test_ranker_explains_with_its_item_based_candidate() -> None:
    model = RankerRecommender({**SMALL, "explain_from": "itemknn"}).fit(cluster_dataset())
    ids, _ = model.recommend(np.arange(model.n_users), 3)
    users = np.repeat(np.arange(model.n_users), 3)
    itemknn = next(m for m in model.components if m.name == "itemknn")
    np.testing.assert_array_equal(model.explain(users, ids.ravel()), itemknn.explain(users, ids.ravel()))


# ----------------------------------------------------------------------------- ML-100K
def _movielens_train(datasets_dir: Path) -> Dataset:
    """ML-100K's training part of the README protocol (stratified 75/25 per user, seed 42)."""
    from recsys.evaluation.runner import id_maps, load_input
    from recsys.evaluation.splits import SplitSpec, split_data

    loaded = load_input(datasets_dir / "ml-100k", "movielens-100k")
    users, items = id_maps(loaded.interactions, loaded.catalog)
    split = split_data(loaded.interactions, SplitSpec(method="stratified", test_size=0.25, seed=42))[0]
    return Dataset.from_interactions(split.train, loaded.catalog, users=users, items=items)


@pytest.mark.movielens
@pytest.mark.slow
def test_movielens_because_items(datasets_dir: Path) -> None:
    train = _movielens_train(datasets_dir)
    for name in ("itemknn", "ease"):
        share = check_because(get_model_class(name)().fit(train), 10)
        assert share > 0.99, name
    ranker = RankerRecommender().fit(train)
    # The ranker's because item is its EASE candidate model's: removing it lowers EASE's
    # score of the entry, the ranker's strongest item-based input.
    ease = ranker._explaining_model()
    assert ease is not None and ease.name == "ease"
    assert check_because(ranker, 10, scorer=ease) > 0.99


def test_group_ndcg_matches_scikit_learn() -> None:
    from sklearn.metrics import ndcg_score

    from recsys.models.ranker import group_ndcg

    rng = np.random.default_rng(0)
    sizes = np.array([5, 8, 3, 6])
    label = (rng.random(sizes.sum()) < 0.4).astype(np.float64)
    label[np.cumsum(sizes) - 1] = 1.0
    predicted = rng.random(sizes.sum())
    parts = np.split(np.arange(sizes.sum()), np.cumsum(sizes)[:-1])
    expected = np.mean([ndcg_score([label[p]], [predicted[p]], k=3) for p in parts])
    assert group_ndcg(predicted, label, sizes, 3) == pytest.approx(expected)


def test_auto_objective_is_recorded() -> None:
    model = RankerRecommender({**SMALL, "objective": "auto"}).fit(cluster_dataset())
    assert model.training["objective"] in ("lambdarank", "binary")
    assert set(model.training["objective_selection"]) == {"lambdarank", "binary"}


def test_label_users_are_capped() -> None:
    model = RankerRecommender({**SMALL, "max_label_users": 10}).fit(cluster_dataset())
    assert model.training["users"] <= 10
