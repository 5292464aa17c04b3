"""The contract every recommender honours, as a reusable test class.

A model's own test file is a few lines::

    class TestALS(RecommenderContract):
        model_name = "als"
        params = {"factors": 8, "iterations": 10, "random_state": 0}

The data (:func:`cluster_dataset`) has a known right answer: three clusters of users who
each like the items of their own cluster, with the same structure in ratings, baskets and
catalogue text. A model that learns anything recommends in-cluster items.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from recsys.data.dataset import Dataset
from recsys.errors import ConfigError, ModelError
from recsys.models.base import Recommender
from recsys.models.registry import get_model_class

N_CLUSTERS = 3
ITEMS_PER_CLUSTER = 10
USERS_PER_CLUSTER = 14
COLD_ITEMS_PER_CLUSTER = 1
VOCAB = [
    ["guitar", "amplifier", "strings", "pedal", "music"],
    ["tent", "sleeping", "backpack", "hiking", "outdoor"],
    ["espresso", "grinder", "coffee", "beans", "kitchen"],
]


def cluster_of_item(item_index: np.ndarray | int) -> np.ndarray:
    """Cluster of each item index (interacted items first, then the cold catalogue items)."""
    idx = np.asarray(item_index)
    n_warm = N_CLUSTERS * ITEMS_PER_CLUSTER
    return np.where(idx < n_warm, idx // ITEMS_PER_CLUSTER, idx - n_warm)


def cluster_interactions(seed: int = 7) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(interactions, catalog) for the cluster world; deterministic for a seed."""
    rng = np.random.default_rng(seed)
    rows = []
    for user in range(N_CLUSTERS * USERS_PER_CLUSTER):
        cluster = user % N_CLUSTERS
        # Item popularity inside a cluster falls with the index, so there is a clear order.
        probs = np.linspace(2.0, 1.0, ITEMS_PER_CLUSTER)
        liked = rng.choice(ITEMS_PER_CLUSTER, size=6, replace=False, p=probs / probs.sum())
        for k, item in enumerate(sorted(liked)):
            item_id = cluster * ITEMS_PER_CLUSTER + int(item)
            rows.append((f"u{user}", f"i{item_id}", "purchase", float(rng.integers(4, 6)), 1_700_000_000 + user * 1000 + k, f"o{user}"))
        noise = int(rng.integers(0, N_CLUSTERS * ITEMS_PER_CLUSTER))
        if noise // ITEMS_PER_CLUSTER != cluster:
            rows.append((f"u{user}", f"i{noise}", "view", 1.0, 1_700_000_000 + user * 1000 + 99, f"x{user}"))
    interactions = pd.DataFrame(
        rows, columns=["user_id", "item_id", "event_type", "value", "timestamp", "order_id"]
    )
    interactions["event_type"] = np.where(interactions["event_type"] == "purchase", "rating", "view")
    catalog_rows = []
    n_warm = N_CLUSTERS * ITEMS_PER_CLUSTER
    for item in range(n_warm + N_CLUSTERS * COLD_ITEMS_PER_CLUSTER):
        cluster = int(cluster_of_item(item))
        words = rng.choice(VOCAB[cluster], size=3, replace=False)
        catalog_rows.append(
            (f"i{item}", f"{words[0]} {words[1]} {item}", " ".join(words), f"cat{cluster}", 10.0 + item, True)
        )
    catalog = pd.DataFrame(
        catalog_rows, columns=["item_id", "title", "description", "category", "price", "in_stock"]
    )
    return interactions, catalog


def cluster_dataset(seed: int = 7) -> Dataset:
    interactions, catalog = cluster_interactions(seed)
    # The id maps follow first appearance; the tests rely on index k == raw id "i{k}".
    return _reindexed(Dataset.from_interactions(interactions, catalog))


def _reindexed(dataset: Dataset) -> Dataset:
    """Reorder item columns so that item index k is raw id ``i{k}``."""
    order = np.argsort([int(x[1:]) for x in dataset.items.ids])
    from recsys.data.idmap import IdMap

    items = IdMap(dataset.items.ids[order])
    ratings = dataset.ratings[:, order] if dataset.ratings is not None else None
    baskets = dataset.baskets[:, order] if dataset.baskets is not None else None
    catalog = dataset.catalog.iloc[order].reset_index(drop=True) if dataset.catalog is not None else None
    trending = dataset.trending[order] if dataset.trending is not None else None
    return Dataset(
        user_items=sp.csr_matrix(dataset.user_items[:, order]),
        users=dataset.users,
        items=items,
        ratings=sp.csr_matrix(ratings) if ratings is not None else None,
        baskets=sp.csr_matrix(baskets) if baskets is not None else None,
        catalog=catalog,
        trending=trending,
    )


def user_cluster(dataset: Dataset) -> np.ndarray:
    return np.array([int(u[1:]) % N_CLUSTERS for u in dataset.users.ids])


class RecommenderContract:
    """Mixin with the contract tests; subclasses set ``model_name`` and ``params``."""

    model_name: ClassVar[str] = ""
    params: ClassVar[dict[str, Any]] = {}
    #: share of top-3 recommendations that must fall in the user's own cluster
    known_answer_precision: ClassVar[float] = 0.8
    #: share of top-3 similar items that must fall in the query item's cluster
    known_answer_similar: ClassVar[float] = 0.7
    #: False for models that rank everyone alike (popularity)
    personalised: ClassVar[bool] = True
    #: False for models that need more than a bare matrix (ratings, baskets, catalogue)
    fits_bare_matrix: ClassVar[bool] = True
    #: tolerance for save/load score equality
    load_rtol: ClassVar[float] = 1e-5

    # ------------------------------------------------------------ fixtures
    @pytest.fixture(scope="class")
    @classmethod
    def dataset(cls) -> Dataset:
        return cluster_dataset()

    @pytest.fixture(scope="class")
    @classmethod
    def model(cls, dataset: Dataset) -> Recommender:
        return cls.make_model().fit(dataset)

    @classmethod
    def make_model(cls, **overrides: Any) -> Recommender:
        return get_model_class(cls.model_name)({**cls.params, **overrides})

    # ------------------------------------------------------------ known answer
    def test_known_answer(self, model: Recommender, dataset: Dataset) -> None:
        ids, _ = model.recommend(np.arange(dataset.n_users), 3)
        if self.personalised:
            hits = cluster_of_item(ids) == user_cluster(dataset)[:, None]
            assert hits[ids >= 0].mean() >= self.known_answer_precision
        else:
            seen = dataset.user_items.toarray() > 0
            popularity = (dataset.user_items > 0).sum(axis=0).A1
            for user in range(dataset.n_users):
                best_unseen = np.max(np.where(seen[user], -1, popularity))
                assert popularity[ids[user, 0]] == best_unseen

    def test_known_answer_similar_items(self, model: Recommender, dataset: Dataset) -> None:
        if not self.personalised:
            pytest.skip("ranks every item alike")
        warm = np.arange(N_CLUSTERS * ITEMS_PER_CLUSTER)
        ids, _ = model.similar_items(warm, 3)
        hits = cluster_of_item(ids) == cluster_of_item(warm)[:, None]
        assert hits[ids >= 0].mean() >= self.known_answer_similar

    # ------------------------------------------------------------ shape and batching
    def test_shapes_and_types(self, model: Recommender, dataset: Dataset) -> None:
        ids, scores = model.recommend(np.arange(5), 4)
        assert ids.shape == scores.shape == (5, 4)
        assert ids.dtype == np.int32 and scores.dtype == np.float32
        ids, scores = model.similar_items(np.arange(5), 4)
        assert ids.shape == scores.shape == (5, 4)

    def test_batched_equals_one_by_one(self, model: Recommender, dataset: Dataset) -> None:
        users = np.arange(dataset.n_users)
        ids, scores = model.recommend(users, 5)
        small_ids, small_scores = model.recommend(users, 5, batch_size=7)
        np.testing.assert_array_equal(ids, small_ids)
        for user in (0, 1, dataset.n_users - 1):
            one_ids, one_scores = model.recommend([user], 5)
            np.testing.assert_array_equal(one_ids[0], ids[user])
            np.testing.assert_allclose(one_scores[0], scores[user], rtol=1e-5)

    def test_recommend_all_matches_recommend(self, model: Recommender, dataset: Dataset) -> None:
        ids, _ = model.recommend(np.arange(dataset.n_users), 5)
        batches = list(model.iter_recommend_all(5, batch_size=10))
        assert np.concatenate([b[0] for b in batches]).tolist() == list(range(dataset.n_users))
        np.testing.assert_array_equal(np.concatenate([b[1] for b in batches]), ids)

    def test_seen_items_excluded(self, model: Recommender, dataset: Dataset) -> None:
        ids, _ = model.recommend(np.arange(dataset.n_users), 8)
        seen = dataset.user_items
        for user in range(dataset.n_users):
            assert not set(ids[user][ids[user] >= 0]) & set(seen[user].indices)

    def test_item_filter_respected(self, model: Recommender, dataset: Dataset) -> None:
        allowed = np.arange(0, dataset.n_items, 2)
        ids, _ = model.recommend(np.arange(dataset.n_users), 5, item_filter=allowed)
        assert set(ids[ids >= 0].tolist()) <= set(allowed.tolist())
        mask = np.zeros(dataset.n_items, dtype=bool)
        mask[allowed] = True
        mask_ids, _ = model.recommend(np.arange(dataset.n_users), 5, item_filter=mask)
        np.testing.assert_array_equal(ids, mask_ids)
        sim_ids, _ = model.similar_items(np.arange(4), 3, item_filter=allowed)
        assert set(sim_ids[sim_ids >= 0].tolist()) <= set(allowed.tolist())

    def test_scores_non_increasing(self, model: Recommender, dataset: Dataset) -> None:
        for ids, scores in (
            model.recommend(np.arange(dataset.n_users), 10),
            model.similar_items(np.arange(dataset.n_items), 10),
        ):
            # Padding (-1 / -inf) is compared as the lowest float: -inf - -inf would be NaN.
            ranked = np.where(ids >= 0, scores, np.finfo(np.float32).min)
            assert np.all(np.diff(ranked, axis=1) <= 1e-6)
            assert np.all(np.isfinite(scores[ids >= 0]))

    def test_similar_items_never_self(self, model: Recommender, dataset: Dataset) -> None:
        items = np.arange(dataset.n_items)
        ids, _ = model.similar_items(items, 5)
        assert not np.any(ids == items[:, None])

    # ------------------------------------------------------------ persistence
    def test_save_load_identical(self, model: Recommender, dataset: Dataset, tmp_path) -> None:
        model.save(tmp_path / "model")
        loaded = Recommender.load(tmp_path / "model")
        assert type(loaded) is type(model)
        assert loaded.config == model.config
        users = np.arange(dataset.n_users)
        ids, scores = model.recommend(users, 6)
        ids2, scores2 = loaded.recommend(users, 6)
        np.testing.assert_array_equal(ids, ids2)
        np.testing.assert_allclose(scores, scores2, rtol=self.load_rtol)
        items = np.arange(dataset.n_items)
        np.testing.assert_array_equal(model.similar_items(items, 4)[0], loaded.similar_items(items, 4)[0])

    def test_artifact_has_no_pickle(self, model: Recommender, tmp_path) -> None:
        folder = model.save(tmp_path / "model")
        with np.load(folder / "arrays.npz", allow_pickle=False) as arrays:
            for key in arrays.files:
                assert arrays[key].dtype != object, key

    # ------------------------------------------------------------ wrong input
    def test_unknown_user_index(self, model: Recommender, dataset: Dataset) -> None:
        with pytest.raises(ModelError, match="unknown user index"):
            model.recommend([dataset.n_users], 5)
        with pytest.raises(ModelError, match="unknown user index"):
            model.recommend([-1], 5)
        with pytest.raises(ModelError, match="unknown item index"):
            model.similar_items([dataset.n_items + 3], 5)

    @pytest.mark.parametrize("bad_n", [0, -3, 2.5, None])
    def test_bad_n(self, model: Recommender, bad_n: Any) -> None:
        with pytest.raises(ModelError, match="n must be a positive integer"):
            model.recommend([0], bad_n)

    def test_wrong_matrix(self) -> None:
        with pytest.raises(ModelError, match="fit"):
            self.make_model().fit(np.zeros(4))  # type: ignore[arg-type]

    def test_not_fitted(self) -> None:
        with pytest.raises(ModelError, match="fit"):
            self.make_model().recommend([0], 3)

    def test_unknown_parameter_names_allowed(self) -> None:
        with pytest.raises(ConfigError, match=rf"{self.model_name}: unknown parameter 'no_such_knob' \(allowed: "):
            self.make_model(no_such_knob=1)

    def test_fits_bare_matrix(self, dataset: Dataset) -> None:
        if not self.fits_bare_matrix:
            with pytest.raises(ModelError, match="needs"):
                self.make_model().fit(dataset.user_items)
            return
        model = self.make_model().fit(dataset.user_items)
        ids, _ = model.recommend(np.arange(3), 3)
        assert ids.shape == (3, 3)
