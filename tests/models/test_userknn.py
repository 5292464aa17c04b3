from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from recsys.models import userknn
from recsys.models.userknn import UserKNNRecommender, top_k_neighbours
from tests.models.contract import RecommenderContract, cluster_dataset
from tests.models.test_itemknn import movielens_100k_ndcg


class TestUserKNN(RecommenderContract):
    model_name = "userknn"
    params = {"k": 10}


class TestUserKNNShrunk(RecommenderContract):
    model_name = "userknn"
    params = {"k": 10, "shrinkage": 5.0}


def dense_reference(matrix: np.ndarray, k: int, shrinkage: float) -> np.ndarray:
    """Top-k shrunk cosine neighbours, the obvious dense way (float64)."""
    norms = np.linalg.norm(matrix, axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        sims = np.nan_to_num((matrix @ matrix.T) / (np.outer(norms, norms) + shrinkage))
    np.fill_diagonal(sims, 0)
    out = np.zeros_like(sims)
    for row in range(len(sims)):
        best = np.argsort(-sims[row], kind="stable")[:k]
        out[row, best] = np.maximum(sims[row, best], 0)
    return out


def test_neighbours_match_dense_reference(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(3)
    dense = (rng.random((57, 40)) < 0.15) * rng.integers(1, 4, (57, 40)).astype(np.float64)
    dense[5] = 0  # a user with nothing has no neighbours
    # Small blocks, so the block loop of the shrunk path and its edges are exercised.
    monkeypatch.setattr(userknn, "NEIGHBOUR_BLOCK_ROWS", 8)
    for k, shrinkage in ((5, 0.0), (12, 3.0)):
        ours = top_k_neighbours(sp.csr_matrix(dense), k, shrinkage).toarray()
        expected = dense_reference(dense, k, shrinkage)
        assert np.all((ours > 0).sum(axis=1) <= k)
        assert not ours[5].any() and not ours[:, 5].any()
        assert np.all(np.diag(ours) == 0)
        # Same k-th best value per row (ties may pick different neighbours), same kept values.
        np.testing.assert_allclose(np.sort(ours, axis=1), np.sort(expected, axis=1), rtol=1e-5, atol=1e-7)
        kept = ours > 0
        full = dense_reference(dense, len(dense), shrinkage)
        np.testing.assert_allclose(ours[kept], full[kept], rtol=1e-5)


def test_scores_are_neighbour_weighted_items() -> None:
    dataset = cluster_dataset()
    model = UserKNNRecommender(k=4).fit(dataset)
    users = np.arange(dataset.n_users)
    scores = model._score_users(users)
    expected = model.neighbours.toarray() @ dataset.user_items.toarray()
    reached = expected > 0
    np.testing.assert_array_equal(np.isfinite(scores), reached)
    np.testing.assert_allclose(scores[reached], expected[reached], rtol=1e-5)
    assert np.all((model.neighbours > 0).sum(axis=1) <= 4)


def test_similar_items_is_item_cosine() -> None:
    dataset = cluster_dataset()
    model = UserKNNRecommender().fit(dataset)
    dense = dataset.user_items.toarray().astype(np.float64)
    norms = np.linalg.norm(dense, axis=0)
    norms[norms == 0] = 1
    cosine = (dense.T @ dense) / np.outer(norms, norms)
    scores = model._score_items(np.arange(dataset.n_items))
    np.testing.assert_array_equal(np.isfinite(scores), cosine > 0)
    np.testing.assert_allclose(scores[cosine > 0], cosine[cosine > 0], rtol=1e-5)


def test_no_neighbours_no_recommendations() -> None:
    user_items = sp.csr_matrix(np.array([[1, 1, 0], [0, 0, 1], [1, 0, 0]], dtype=np.float32))
    model = UserKNNRecommender(k=5).fit(user_items)
    ids, _ = model.recommend([1, 2], 2)
    assert ids[0].tolist() == [-1, -1]  # shares nothing with anyone
    assert ids[1].tolist() == [1, -1]  # its only neighbour is user 0


@pytest.mark.movielens
def test_movielens_quality(datasets_dir: Path) -> None:
    # Measured 0.429 with the defaults; popularity scores 0.246.
    assert movielens_100k_ndcg(datasets_dir, "userknn") > 0.415


def test_pair_budget_leaves_out_the_most_popular_items_only_when_it_binds() -> None:
    rng = np.random.default_rng(5)
    dense = (rng.random((80, 30)) < 0.1).astype(np.float64)
    dense[:70, 0] = 1  # item 0: 70 users, 4,900 pairs
    dense[:40, 1] = 1  # item 1: 40 users
    matrix = sp.csr_matrix(dense)
    counts = (dense > 0).sum(axis=0)
    pairs = int((counts.astype(np.int64) ** 2).sum())
    assert userknn.similarity_items(matrix, None).all()
    assert userknn.similarity_items(matrix, pairs).all()
    # One pair short: the most popular item goes, nothing else.
    kept = userknn.similarity_items(matrix, pairs - 1)
    assert np.flatnonzero(~kept).tolist() == [0]
    # Below what the two most popular items alone bring: both go, and the rest fits the budget.
    budget = pairs - 4_900 - 1
    kept = userknn.similarity_items(matrix, budget)
    assert set(np.flatnonzero(~kept).tolist()) >= {0, 1}
    assert (counts[kept].astype(np.int64) ** 2).sum() <= budget
    assert counts[~kept].min() > counts[kept].max()

    exact = UserKNNRecommender(k=5, max_pair_products=None).fit(matrix)
    default = UserKNNRecommender(k=5).fit(matrix)  # the default budget does not bind here
    assert default.items_left_out == 0
    assert (exact.neighbours != default.neighbours).nnz == 0
    bounded = UserKNNRecommender(k=5, max_pair_products=budget).fit(matrix)
    assert bounded.items_left_out == int((~kept).sum())
    # Neighbours are the cosine over the kept items; the left-out items are still recommended.
    reference = top_k_neighbours(sp.csr_matrix(dense * kept), 5).toarray()
    np.testing.assert_allclose(bounded.neighbours.toarray(), reference, rtol=1e-6)
    ids, _ = bounded.recommend(np.arange(70, 80), n=30)
    assert 0 in set(ids.ravel().tolist())
    restored = UserKNNRecommender(k=5, max_pair_products=budget)
    state, arrays = bounded._get_state()
    restored.user_items, restored.n_users, restored.n_items = bounded.user_items, 80, 30
    restored._set_state(state, arrays)
    assert restored.items_left_out == bounded.items_left_out
