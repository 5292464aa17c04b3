from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import scipy.sparse as sp
from threadpoolctl import threadpool_limits

from recsys.models.als import ALSRecommender, BPRRecommender, FactorRecommender, weight_input
from tests.models.contract import RecommenderContract, cluster_dataset
from tests.models.test_itemknn import assert_same_top_n, movielens_100k_ndcg


class TestALS(RecommenderContract):
    model_name = "als"
    params = {"factors": 4, "regularization": 1.0, "iterations": 10, "random_state": 0}


class TestALSUnweighted(RecommenderContract):
    model_name = "als"
    params = {"factors": 4, "regularization": 1.0, "iterations": 10, "random_state": 0, "weighting": "none", "alpha": 5.0}


class TestBPR(RecommenderContract):
    model_name = "bpr"
    params = {"factors": 8, "iterations": 60, "learning_rate": 0.05, "random_state": 0}


def implicit_reference(model: FactorRecommender, matrix: sp.csr_matrix) -> Any:
    """implicit's own model with the same config, fitted on the same (weighted) matrix."""
    reference = model._implicit_model()
    with threadpool_limits(1, "blas"):
        reference.fit(matrix, show_progress=False)
    return reference


@pytest.mark.parametrize(
    ("model_class", "params"),
    [
        (ALSRecommender, {"factors": 8, "iterations": 10, "random_state": 0, "weighting": "bm25"}),
        (ALSRecommender, {"factors": 8, "iterations": 10, "random_state": 0, "weighting": "tfidf"}),
        (BPRRecommender, {"factors": 8, "iterations": 40, "random_state": 0}),
    ],
)
def test_recommend_equals_implicit(model_class: type[FactorRecommender], params: dict[str, Any]) -> None:
    dataset = cluster_dataset()
    model = model_class(params).fit(dataset)
    reference = implicit_reference(model, model._training_matrix())
    np.testing.assert_allclose(model.user_factors, reference.user_factors, rtol=1e-6)
    np.testing.assert_allclose(model.item_factors, reference.item_factors, rtol=1e-6)

    users = np.arange(dataset.n_users)
    seen = sp.csr_matrix(dataset.user_items, dtype=np.float32)
    # Items nobody interacted with are ours to leave out; implicit would rank them.
    warm = np.flatnonzero(np.diff(seen.tocsc().indptr) > 0)
    theirs = reference.recommend(users, seen[users], N=6, filter_already_liked_items=True, items=warm)
    assert_same_top_n(model.recommend(users, 6), (theirs[0], theirs[1].astype(np.float32)))

    items = np.arange(30)
    their_ids, their_scores = reference.similar_items(items, N=5, items=warm)
    not_self = their_ids != items[:, None]
    their_ids = np.stack([row[keep][:4] for row, keep in zip(their_ids, not_self)])
    their_scores = np.stack([row[keep][:4] for row, keep in zip(their_scores, not_self)])
    assert_same_top_n(model.similar_items(items, 4), (their_ids, their_scores.astype(np.float32)))


def test_bpr_scores_use_the_bias_column() -> None:
    dataset = cluster_dataset()
    model = BPRRecommender(factors=8, iterations=20, random_state=0).fit(dataset)
    assert model.user_factors.shape == (dataset.n_users, 9)
    assert model.item_factors.shape == (dataset.n_items, 9)
    np.testing.assert_array_equal(model.user_factors[:, -1], 1.0)
    scores = model._score_users(np.arange(3))
    warm = np.isfinite(scores[0])
    expected = model.user_factors[:3] @ model.item_factors.T
    np.testing.assert_allclose(scores[:, warm], expected[:, warm], rtol=1e-6)


def test_fit_is_reproducible_and_seeded() -> None:
    dataset = cluster_dataset()
    for model_class in (ALSRecommender, BPRRecommender):
        first = model_class(factors=8, iterations=5, random_state=1).fit(dataset)
        again = model_class(factors=8, iterations=5, random_state=1).fit(dataset)
        other = model_class(factors=8, iterations=5, random_state=2).fit(dataset)
        np.testing.assert_array_equal(first.item_factors, again.item_factors)
        assert not np.allclose(first.item_factors, other.item_factors)


def test_cold_items_never_recommended() -> None:
    dataset = cluster_dataset()
    model = ALSRecommender(factors=8, iterations=5).fit(dataset)
    cold = np.flatnonzero(np.diff(dataset.user_items.tocsc().indptr) == 0)
    assert len(cold) == 3
    ids, _ = model.recommend(np.arange(dataset.n_users), dataset.n_items)
    assert not np.isin(ids, cold).any()
    sim_ids, _ = model.similar_items(cold, 3)
    assert np.all(sim_ids == -1)


def test_weighting_matches_implicit_helpers() -> None:
    from implicit.nearest_neighbours import bm25_weight, tfidf_weight

    dataset = cluster_dataset()
    weighted = weight_input(dataset.user_items, "bm25", 100.0, 0.8)
    expected = sp.csr_matrix(bm25_weight(dataset.user_items, K1=100.0, B=0.8))
    np.testing.assert_allclose(weighted.toarray(), expected.toarray(), rtol=1e-5)
    assert weighted.dtype == np.float32
    tfidf = weight_input(dataset.user_items, "tfidf", 100.0, 0.8)
    expected = sp.csr_matrix(tfidf_weight(dataset.user_items.T).T)
    np.testing.assert_allclose(tfidf.toarray(), expected.toarray(), rtol=1e-5)
    # Weighted input changes the model, so the weighting is really applied.
    plain = ALSRecommender(factors=8, iterations=5, weighting="none").fit(dataset)
    for weighting in ("bm25", "tfidf"):
        weighted_model = ALSRecommender(factors=8, iterations=5, weighting=weighting).fit(dataset)
        assert not np.allclose(plain.item_factors, weighted_model.item_factors)


@pytest.mark.movielens
@pytest.mark.parametrize(("model_name", "params", "floor"), [("als", {}, 0.47), ("als", {"weighting": "bm25"}, 0.455), ("bpr", {}, 0.37)])
def test_movielens_quality(datasets_dir: Path, model_name: str, params: dict[str, Any], floor: float) -> None:
    # Measured: als 0.484 (tfidf, the default), 0.469 (bm25); bpr 0.384; popularity 0.246.
    assert movielens_100k_ndcg(datasets_dir, model_name, params) > floor
