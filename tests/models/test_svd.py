import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from surprise import SVD, Reader
from surprise import Dataset as SurpriseDataset

from recsys.data.dataset import Dataset
from recsys.data.idmap import IdMap
from recsys.errors import ConfigError, ModelError
from recsys.models.base import Recommender
from recsys.models.svd import SVDRecommender
from tests.models.contract import RecommenderContract


class TestSVD(RecommenderContract):
    model_name = "svd"
    # The contract ratings are all 4 or 5 and only inside each user's cluster: rating values
    # carry no cluster signal, so the biased model ranks by noise. Without biases (PMF) the
    # factors must reproduce the ratings themselves, and the blocks of the rating matrix
    # become the factors: the unbiased model learns the clusters.
    params = {"biased": False, "n_factors": 16, "random_state": 0}
    fits_bare_matrix = False


def random_ratings(
    n_users: int = 40, n_items: int = 30, density: float = 0.3, seed: int = 0
) -> Dataset:
    """Ratings 1..5 at random; users 0, 20 and the last, items 0, 10 and the last two have none
    (so that surprise's inner ids differ from our indices)."""
    rng = np.random.default_rng(seed)
    dense = np.where(rng.random((n_users, n_items)) < density, rng.integers(1, 6, (n_users, n_items)), 0)
    dense[[0, 20, n_users - 1]] = 0
    dense[:, [0, 10, n_items - 2, n_items - 1]] = 0
    ratings = sp.csr_matrix(dense.astype(np.float32))
    return Dataset(
        user_items=ratings.copy(),
        users=IdMap(np.arange(n_users).astype(str)),
        items=IdMap(np.arange(n_items).astype(str)),
        ratings=ratings,
    )


@pytest.fixture(scope="module")
def ratings_data() -> Dataset:
    return random_ratings()


def all_pairs(dataset: Dataset) -> tuple[np.ndarray, np.ndarray]:
    users, items = np.meshgrid(np.arange(dataset.n_users), np.arange(dataset.n_items), indexing="ij")
    return users.ravel(), items.ravel()


@pytest.mark.parametrize("biased", [True, False])
def test_predict_equals_surprise_predict(ratings_data: Dataset, biased: bool) -> None:
    model = SVDRecommender(n_factors=5, n_epochs=15, biased=biased, random_state=3).fit(ratings_data)
    users, items = all_pairs(ratings_data)
    ours = model.predict(users, items)
    algo = model.surprise_algo
    theirs = np.array([algo.predict(int(u), int(i)).est for u, i in zip(users, items, strict=True)])
    np.testing.assert_allclose(ours, theirs, atol=1e-5)
    # The pairs include unknown users and items, where surprise falls back to the known parts.
    assert not model.known_users[[0, -1]].any() and not model.known_items[[0, -1]].any()
    unknown_user = users == ratings_data.n_users - 1
    expected = model.global_mean + model.bi[items[unknown_user]] if biased else model.global_mean
    np.testing.assert_allclose(ours[unknown_user], np.clip(expected, *model.rating_scale), atol=1e-6)


def test_independent_surprise_fit_gives_same_model(ratings_data: Dataset) -> None:
    """Surprise fed the same ratings in the same order (its own loading path) learns the same
    numbers, so our Trainset and the inner id -> index remapping are right."""
    params = {"n_factors": 4, "n_epochs": 10, "random_state": 11}
    model = SVDRecommender(params).fit(ratings_data)
    coo = ratings_data.ratings.tocoo()
    triples = sorted(zip(coo.row.tolist(), coo.col.tolist(), coo.data.tolist(), strict=True))
    frame = pd.DataFrame(triples, columns=["u", "i", "r"])
    trainset = SurpriseDataset.load_from_df(frame, Reader(rating_scale=(1, 5))).build_full_trainset()
    algo = SVD(**params).fit(trainset)
    rng = np.random.default_rng(0)
    users = rng.integers(0, ratings_data.n_users, 200)
    items = rng.integers(0, ratings_data.n_items, 200)
    expected = [algo.predict(int(u), int(i)).est for u, i in zip(users, items, strict=True)]
    np.testing.assert_allclose(model.predict(users, items), expected, atol=1e-5)
    for raw_user in (1, 7, 25):
        np.testing.assert_allclose(model.pu[raw_user], algo.pu[trainset.to_inner_uid(raw_user)], atol=1e-6)
        np.testing.assert_allclose(model.bu[raw_user], algo.bu[trainset.to_inner_uid(raw_user)], atol=1e-6)
    for raw_item in (1, 5, 25):
        np.testing.assert_allclose(model.qi[raw_item], algo.qi[trainset.to_inner_iid(raw_item)], atol=1e-6)
        np.testing.assert_allclose(model.bi[raw_item], algo.bi[trainset.to_inner_iid(raw_item)], atol=1e-6)


def test_arrays_follow_our_index_order(ratings_data: Dataset) -> None:
    model = SVDRecommender(n_factors=6, random_state=0).fit(ratings_data)
    n_users, n_items = ratings_data.ratings.shape
    assert model.bu.shape == (n_users,) and model.bi.shape == (n_items,)
    assert model.pu.shape == (n_users, 6) and model.qi.shape == (n_items, 6)
    assert all(a.dtype == np.float32 for a in (model.bu, model.bi, model.pu, model.qi))
    np.testing.assert_array_equal(model.known_users, np.diff(ratings_data.ratings.indptr) > 0)
    np.testing.assert_array_equal(model.known_items, np.diff(ratings_data.ratings.tocsc().indptr) > 0)
    assert not model.pu[~model.known_users].any() and not model.bu[~model.known_users].any()
    assert not model.qi[~model.known_items].any() and not model.bi[~model.known_items].any()
    assert model.global_mean == pytest.approx(ratings_data.ratings.data.mean(), rel=1e-6)


def test_ranking_scores_are_the_estimates(ratings_data: Dataset) -> None:
    # A wide scale so that clipping does not hide the raw estimate.
    model = SVDRecommender(n_factors=5, random_state=1, rating_scale=(-100, 100)).fit(ratings_data)
    users = np.arange(ratings_data.n_users)
    ids, scores = model.recommend(users, 8, exclude_seen=False)
    rows = np.repeat(users, 8)
    np.testing.assert_allclose(scores.ravel(), model.predict(rows, ids.ravel()), rtol=1e-5, atol=1e-5)


def test_rating_scale_inferred_or_given(ratings_data: Dataset) -> None:
    model = SVDRecommender(n_factors=5, random_state=0).fit(ratings_data)
    assert model.rating_scale == (1.0, 5.0)
    estimates = model.predict(*all_pairs(ratings_data))
    assert estimates.min() >= 1.0 and estimates.max() <= 5.0
    wide = SVDRecommender(n_factors=5, random_state=0, rating_scale=(0.0, 10.0)).fit(ratings_data)
    assert wide.rating_scale == (0.0, 10.0) and wide.data_range is None
    # Ratings outside a configured scale are mapped linearly onto it for the fit, and the
    # estimates mapped back: the same fit as on ratings given on that scale.
    narrow = SVDRecommender(n_factors=5, random_state=0, rating_scale=(2.5, 3.5)).fit(ratings_data)
    assert narrow.data_range == (1.0, 5.0)
    estimates = narrow.predict(*all_pairs(ratings_data))
    assert estimates.min() >= 1.0 and estimates.max() <= 5.0
    mapped = ratings_data.ratings.copy()
    mapped.data = 2.5 + (mapped.data - 1.0) / 4.0
    on_scale = SVDRecommender(n_factors=5, random_state=0, rating_scale=(2.5, 3.5)).fit(
        dataclasses.replace(ratings_data, ratings=mapped)
    )
    np.testing.assert_allclose(1.0 + (on_scale.predict(*all_pairs(ratings_data)) - 2.5) * 4.0, estimates, rtol=1e-5)
    with pytest.raises(ModelError, match=r"lie outside models\.svd\.rating_scale \(2\.5, 3\.5\)"):
        SVDRecommender(n_factors=5, rating_scale=(2.5, 3.5), out_of_scale="refuse").fit(ratings_data)


def test_unrated_items_have_no_recommendations_or_neighbours(ratings_data: Dataset) -> None:
    model = SVDRecommender(n_factors=5, random_state=0).fit(ratings_data)
    unrated = np.flatnonzero(~model.known_items)
    assert len(unrated) == 4
    ids, _ = model.recommend(np.arange(ratings_data.n_users), ratings_data.n_items, exclude_seen=False)
    assert not np.isin(ids, unrated).any()
    sim_ids, sim_scores = model.similar_items(unrated, 5)
    assert (sim_ids == -1).all() and np.isneginf(sim_scores).all()
    # A user without ratings still gets the item-bias ranking, like surprise's estimate.
    ids, scores = model.recommend([ratings_data.n_users - 1], 3)
    known = np.flatnonzero(model.known_items)
    best = known[np.argsort(-model.bi[known], kind="stable")[:3]]
    np.testing.assert_array_equal(np.sort(ids[0]), np.sort(best))


def test_similar_items_are_factor_cosines(ratings_data: Dataset) -> None:
    model = SVDRecommender(n_factors=5, random_state=0).fit(ratings_data)
    ids, scores = model.similar_items([1], 3)
    q = model.qi.astype(np.float64)
    cos = q @ q[1] / (np.linalg.norm(q, axis=1).clip(1e-12) * np.linalg.norm(q[1]))
    cos[1] = -np.inf
    cos[~model.known_items] = -np.inf
    np.testing.assert_array_equal(ids[0], np.argsort(-cos)[:3])
    np.testing.assert_allclose(scores[0], cos[ids[0]], rtol=1e-5)


def test_learns_biases_known_answer() -> None:
    """Ratings made of a user and an item bias only: the fitted biases recover them."""
    rng = np.random.default_rng(5)
    n_users, n_items = 120, 40
    user_bias = rng.normal(0, 0.6, n_users)
    item_bias = np.linspace(-1.2, 1.2, n_items)
    mask = rng.random((n_users, n_items)) < 0.5
    values = np.clip(3.0 + user_bias[:, None] + item_bias[None, :] + rng.normal(0, 0.1, mask.shape), 1, 5)
    ratings = sp.csr_matrix(np.where(mask, values, 0.0).astype(np.float32))
    dataset = Dataset(
        user_items=ratings.copy(),
        users=IdMap(np.arange(n_users).astype(str)),
        items=IdMap(np.arange(n_items).astype(str)),
        ratings=ratings,
    )
    model = SVDRecommender(n_factors=2, n_epochs=60, lr_all=0.01, random_state=0).fit(dataset)
    assert np.corrcoef(model.bi, item_bias)[0, 1] > 0.98
    assert np.corrcoef(model.bu, user_bias)[0, 1] > 0.95
    ids, _ = model.recommend(np.arange(n_users), 1, exclude_seen=False)
    assert (ids[:, 0] >= n_items - 3).mean() > 0.9


def test_save_load_keeps_predictions(ratings_data: Dataset, tmp_path: Path) -> None:
    model = SVDRecommender(n_factors=5, random_state=0).fit(ratings_data)
    loaded = Recommender.load(model.save(tmp_path / "svd"))
    assert isinstance(loaded, SVDRecommender)
    users, items = all_pairs(ratings_data)
    np.testing.assert_array_equal(loaded.predict(users, items), model.predict(users, items))
    assert loaded.rating_scale == model.rating_scale and loaded.surprise_algo is None


def test_bad_input(ratings_data: Dataset) -> None:
    with pytest.raises(ConfigError, match="rating_scale"):
        SVDRecommender(rating_scale=(5, 1))
    with pytest.raises(ConfigError, match="n_factors"):
        SVDRecommender(n_factors=0)
    model = SVDRecommender(n_factors=3, random_state=0).fit(ratings_data)
    with pytest.raises(ModelError, match="as many users as items"):
        model.predict([0, 1], [0])
    with pytest.raises(ModelError, match="unknown item index"):
        model.predict([0], [ratings_data.n_items])
    empty = Dataset(
        user_items=ratings_data.user_items,
        users=ratings_data.users,
        items=ratings_data.items,
        ratings=sp.csr_matrix(ratings_data.ratings.shape, dtype=np.float32),
    )
    with pytest.raises(ModelError, match="no ratings"):
        SVDRecommender().fit(empty)
    with pytest.raises(ModelError, match="needs ratings"):
        SVDRecommender().fit(ratings_data.user_items)


@pytest.mark.movielens
def test_movielens_rmse(datasets_dir: Path) -> None:
    """Default parameters on a random 80/20 split of ML-100K: RMSE near surprise's published 0.934."""
    frame = pd.read_csv(
        datasets_dir / "ml-100k" / "u.data", sep="\t", names=["user_id", "item_id", "value", "timestamp"]
    )
    frame["event_type"] = "rating"
    users, items = IdMap.from_values(frame["user_id"]), IdMap.from_values(frame["item_id"])
    train = np.random.default_rng(0).random(len(frame)) < 0.8
    dataset = Dataset.from_interactions(frame[train], users=users, items=items)
    model = SVDRecommender(random_state=0).fit(dataset)
    test = frame[~train]
    u, i = users.to_index(test["user_id"]), items.to_index(test["item_id"])
    rmse = float(np.sqrt(np.mean((model.predict(u, i) - test["value"].to_numpy()) ** 2)))
    assert 0.90 < rmse < 0.96
    sample = np.arange(0, len(u), 97)
    expected = [model.surprise_algo.predict(int(a), int(b)).est for a, b in zip(u[sample], i[sample], strict=True)]
    np.testing.assert_allclose(model.predict(u[sample], i[sample]), expected, atol=1e-5)
