import numpy as np

from recsys.models.popular import PopularRecommender
from tests.models.contract import RecommenderContract, cluster_dataset


class TestPopular(RecommenderContract):
    model_name = "popular"
    personalised = False


def test_top_items_by_category() -> None:
    dataset = cluster_dataset()
    model = PopularRecommender(trending_weight=0.0).fit(dataset)
    in_cat1 = np.flatnonzero(dataset.catalog["category"].to_numpy() == "cat1")
    ids, scores = model.top_items(3, item_filter=in_cat1)
    assert set(ids.tolist()) <= set(in_cat1.tolist())
    users_per_item = (dataset.user_items > 0).sum(axis=0).A1
    assert scores[0] == users_per_item[in_cat1].max()


def test_trending_mode_prefers_recent_items() -> None:
    dataset = cluster_dataset()
    model = PopularRecommender(mode="trending").fit(dataset)
    ids, _ = model.top_items(1)
    assert ids[0] == int(np.argmax(dataset.trending))


def test_default_mixes_users_and_trending_half_and_half() -> None:
    dataset = cluster_dataset()
    users_per_item = (dataset.user_items > 0).sum(axis=0).A1.astype(np.float64)
    assert dataset.trending is not None and dataset.trending.max() > 0
    expected = 0.5 * users_per_item / users_per_item.max() + 0.5 * dataset.trending / dataset.trending.max()
    np.testing.assert_allclose(PopularRecommender().fit(dataset).popularity, expected, rtol=1e-6)
