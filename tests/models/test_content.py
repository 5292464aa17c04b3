from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.preprocessing import normalize

from recsys.data.dataset import Dataset, align_catalog
from recsys.data.idmap import IdMap
from recsys.errors import ConfigError, ModelError
from recsys.models.base import Recommender
from recsys.models.content import ContentRecommender
from tests.models.contract import (
    ITEMS_PER_CLUSTER,
    N_CLUSTERS,
    RecommenderContract,
    cluster_dataset,
    cluster_of_item,
    user_cluster,
)


class TestContent(RecommenderContract):
    model_name = "content"
    fits_bare_matrix = False


def shop(titles: list[str], user_items: np.ndarray, **columns: list[str]) -> Dataset:
    """A Dataset whose item k has title ``titles[k]``; ``user_items`` dense (n_users, n_items)."""
    items = IdMap([f"p{k}" for k in range(len(titles))])
    catalog = pd.DataFrame({"item_id": items.ids, "title": titles, **columns})
    matrix = sp.csr_matrix(np.asarray(user_items, dtype=np.float32))
    return Dataset(
        user_items=matrix,
        users=IdMap([f"u{k}" for k in range(matrix.shape[0])]),
        items=items,
        catalog=align_catalog(catalog, items),
    )


SHOES = [
    "red running shoes",
    "blue running shoes",
    "red wine glass",
    "espresso machine",
    "trail running shoes for the mountains",
]


def test_cold_items_get_neighbours_and_reach_their_cluster() -> None:
    dataset = cluster_dataset()
    model = ContentRecommender().fit(dataset)
    cold = np.arange(N_CLUSTERS * ITEMS_PER_CLUSTER, dataset.n_items)
    assert len(cold) == N_CLUSTERS and dataset.user_items[:, cold].nnz == 0
    ids, scores = model.similar_items(cold, 3)
    assert (cluster_of_item(ids) == cluster_of_item(cold)[:, None]).all()
    assert np.isfinite(scores).all()
    clusters = user_cluster(dataset)
    top_ids, _ = model.recommend(np.arange(dataset.n_users), 5)
    for item in cold:
        own = clusters == cluster_of_item(item)
        # Score of this one item for every user: its own cluster's users like it most.
        _, score = model.recommend(np.arange(dataset.n_users), 1, item_filter=[int(item)])
        assert score[own, 0].min() > score[~own, 0].max()
        assert (top_ids[own] == item).any(axis=1).mean() >= 0.8
        assert not (top_ids[~own] == item).any()


def test_similar_items_known_answer() -> None:
    dataset = shop(SHOES, np.eye(5))
    model = ContentRecommender(fields={"title": 1.0}).fit(dataset)
    ids, scores = model.similar_items([0, 3], 4)
    # "red running shoes": the other running shoes first, then the other red thing; the
    # espresso machine shares no word and is never similar.
    assert ids[0].tolist() == [1, 4, 2, -1]
    assert ids[1].tolist() == [-1, -1, -1, -1] and np.isneginf(scores[1]).all()
    vectorizer = TfidfVectorizer(sublinear_tf=True, stop_words="english")
    tfidf = vectorizer.fit_transform(SHOES)
    cosine = (tfidf @ tfidf.T).toarray()
    np.testing.assert_allclose(scores[0, :3], cosine[0, [1, 4, 2]], rtol=1e-6)


def test_fields_are_weighted_blocks() -> None:
    categories = ["shoes", "shoes", "kitchen", "kitchen", "shoes"]
    dataset = shop(SHOES, np.eye(5), category=categories)
    model = ContentRecommender(fields={"title": 1.0, "category": 3.0}, stop_words=None).fit(dataset)
    title = TfidfVectorizer(sublinear_tf=True).fit_transform(SHOES)
    category = TfidfVectorizer(sublinear_tf=True).fit_transform(categories)
    expected = normalize(sp.hstack([title, np.sqrt(3.0) * category]))
    np.testing.assert_allclose(model.item_tfidf.toarray(), expected.toarray(), rtol=1e-6, atol=1e-7)
    # Both fields present everywhere: cosine = weight-averaged field cosines.
    cos_title = (title @ title.T).toarray()
    cos_category = (category @ category.T).toarray()
    _, score = model.similar_items([0], 1, item_filter=[2])
    assert score[0, 0] == pytest.approx((1 * cos_title[0, 2] + 3 * cos_category[0, 2]) / 4, rel=1e-6)
    assert model.similar_items([0], 1)[0][0, 0] == 1


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"ngram_range": (1, 2), "sublinear_tf": False, "stop_words": None},
        {"min_df": 2, "max_features": 5},
    ],
)
def test_transform_text_equals_fitted_vectorizer(params: dict[str, Any], tmp_path: Path) -> None:
    dataset = shop(SHOES, np.eye(5))
    model = ContentRecommender(fields={"title": 1.0}, **params).fit(dataset)
    vectorizer = TfidfVectorizer(
        ngram_range=model.config.ngram_range,
        min_df=model.config.min_df,
        max_features=model.config.max_features,
        sublinear_tf=model.config.sublinear_tf,
        stop_words=model.config.stop_words,
    ).fit(SHOES)
    new = ["red running shoes shoes", "the blue wine for the trail", "", "unknown words only", "Running SHOES!"]
    expected = vectorizer.transform(new).toarray()
    loaded = Recommender.load(model.save(tmp_path / "content"))
    for fitted in (model, loaded):
        got = fitted.transform_text(new)
        assert isinstance(got, sp.csr_matrix) and got.shape == (len(new), len(vectorizer.vocabulary_))
        np.testing.assert_allclose(got.toarray(), expected, rtol=1e-6, atol=1e-7)
        np.testing.assert_array_equal(fitted.vocabularies["title"], vectorizer.get_feature_names_out())


def test_transform_text_rebuilds_the_item_matrix(tmp_path: Path) -> None:
    dataset = cluster_dataset()
    model = ContentRecommender().fit(dataset)
    loaded = Recommender.load(model.save(tmp_path / "content"))
    assert isinstance(loaded, ContentRecommender)
    for fitted in (model, loaded):
        rebuilt = fitted.transform_text(dataset.catalog)
        np.testing.assert_allclose(rebuilt.toarray(), model.item_tfidf.toarray(), rtol=1e-6, atol=1e-7)
    # A mapping with only some fields works too (missing ones are empty).
    partial = model.transform_text({"title": ["espresso grinder"]})
    assert partial.shape == (1, model.item_tfidf.shape[1]) and partial.nnz == 2
    with np.load(tmp_path / "content" / "arrays.npz", allow_pickle=False) as arrays:
        assert arrays["vocabulary__title"].dtype.kind == "U"


@pytest.mark.parametrize("profile", ["mean", "weighted"])
def test_user_profile(profile: str) -> None:
    weights = np.array([[5.0, 0, 1.0, 0, 0]])
    dataset = shop(SHOES, weights)
    model = ContentRecommender(fields={"title": 1.0}, profile=profile).fit(dataset)
    tfidf = model.item_tfidf.toarray().astype(np.float64)
    used = weights[0] if profile == "weighted" else (weights[0] > 0).astype(float)
    user = used @ tfidf
    user /= np.linalg.norm(user)
    expected = tfidf @ user
    ids, scores = model.recommend([0], 3)
    assert ids[0].tolist() == [1, 4, -1]  # the espresso machine shares no word
    np.testing.assert_allclose(scores[0, :2], expected[[1, 4]], rtol=1e-5)


def test_bad_input() -> None:
    with pytest.raises(ConfigError, match="fields"):
        ContentRecommender(fields={"title": -1.0})
    with pytest.raises(ConfigError, match="fields"):
        ContentRecommender(fields={"colour": 1.0})
    with pytest.raises(ConfigError, match="at least one field"):
        ContentRecommender(fields={"title": 0.0})
    with pytest.raises(ConfigError, match="ngram_range"):
        ContentRecommender(ngram_range=(2, 1))
    with pytest.raises(ModelError, match="no usable text"):
        ContentRecommender().fit(shop(["", "the", ""], np.eye(3)))
    model = ContentRecommender(fields={"title": 1.0}).fit(shop(SHOES, np.eye(5)))
    with pytest.raises(ModelError, match="not one string"):
        model.transform_text("red shoes")
    with pytest.raises(ModelError, match="none of the fitted fields"):
        model.transform_text({"colour": ["red"]})
