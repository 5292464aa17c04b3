from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from recsys.data.dataset import Dataset
from recsys.data.idmap import IdMap
from recsys.models.itemknn import ItemKNNRecommender, implicit_item_knn
from recsys.models.registry import get_model_class
from tests.models.contract import RecommenderContract, cluster_dataset


class TestItemKNN(RecommenderContract):
    model_name = "itemknn"
    params = {"similarity": "cosine", "k": 20}


class TestItemKNNBM25(RecommenderContract):
    model_name = "itemknn"
    params = {"similarity": "bm25", "k": 20}


def assert_same_top_n(ours: tuple[np.ndarray, np.ndarray], theirs: tuple[np.ndarray, np.ndarray]) -> None:
    """Same scores position by position, and the same items except where scores tie."""
    ids, scores = ours
    their_ids, their_scores = theirs
    np.testing.assert_allclose(scores, their_scores, rtol=1e-4, atol=1e-6)
    for row in range(len(ids)):
        cutoff = scores[row, -1]
        strictly_above = scores[row] > cutoff + 1e-5
        their_above = their_scores[row] > cutoff + 1e-5
        assert set(ids[row][strictly_above]) == set(their_ids[row][their_above]), row
        # Within a run of tied scores the order may differ, not the scores.
        for value in np.unique(scores[row][strictly_above]):
            same = np.isclose(scores[row], value, rtol=1e-5)
            assert set(ids[row][same]) == set(their_ids[row][np.isclose(their_scores[row], value, rtol=1e-5)])


@pytest.mark.parametrize("similarity", ["cosine", "tfidf", "bm25"])
def test_recommend_equals_implicit(similarity: str) -> None:
    dataset = cluster_dataset()
    model = ItemKNNRecommender(similarity=similarity, k=8).fit(dataset)
    reference = implicit_item_knn(model.config)  # type: ignore[arg-type]
    user_items = sp.csr_matrix(dataset.user_items, dtype=np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reference.fit(user_items, show_progress=False)
    users = np.arange(dataset.n_users)
    their_ids, their_scores = reference.recommend(users, user_items[users], N=6, filter_already_liked_items=True)
    # implicit zeroes seen items but may still return them at the end of short lists;
    # ours leaves such slots empty.
    seen = np.array([np.isin(row, user_items[user].indices) for user, row in enumerate(their_ids)])
    their_ids = np.where(seen, -1, their_ids)
    their_scores = np.where(seen, -np.inf, their_scores).astype(np.float32)
    assert seen.sum() < seen.size / 4
    assert_same_top_n(model.recommend(users, 6), (their_ids, their_scores))

    # implicit's similar_items include the item itself (similarity 1); ours never do.
    items = np.arange(30)
    their_ids, their_scores = reference.similar_items(items, N=5)
    not_self = their_ids != items[:, None]
    their_ids = np.stack([row[keep][:4] for row, keep in zip(their_ids, not_self)])
    their_scores = np.stack([row[keep][:4] for row, keep in zip(their_scores, not_self)])
    assert_same_top_n(model.similar_items(items, 4), (their_ids, their_scores))


def test_similarity_orientation_and_k() -> None:
    """Row i of the similarity holds item i's k nearest neighbours (cosine, by hand), and a
    user's scores are the sum of the rows of the items they have."""
    dataset = cluster_dataset()
    model = ItemKNNRecommender(similarity="cosine", k=5).fit(dataset)
    dense = dataset.user_items.toarray().astype(np.float64)
    norms = np.linalg.norm(dense, axis=0)
    norms[norms == 0] = 1
    cosine = (dense.T @ dense) / np.outer(norms, norms)
    similarity = model.similarity.toarray()
    assert np.all((similarity > 0).sum(axis=1) <= 5)
    for item in range(30):
        kept = np.flatnonzero(similarity[item])
        np.testing.assert_allclose(similarity[item, kept], cosine[item, kept], rtol=1e-5)
        assert cosine[item, kept].min() >= np.sort(cosine[item])[-5] - 1e-6
    # A user holding one item gets exactly that item's similarity row.
    one_item = sp.csr_matrix(([1.0], ([0], [4])), shape=(1, dataset.n_items), dtype=np.float32)
    model.user_items = sp.vstack([one_item, dataset.user_items[1:]]).tocsr()
    scores = model._score_users(np.array([0]))[0]
    reached = np.isfinite(scores)
    np.testing.assert_array_equal(reached, similarity[4] > 0)
    np.testing.assert_allclose(scores[reached], similarity[4][reached], rtol=1e-6)


def test_unreached_items_are_left_out() -> None:
    """Items no neighbour reaches are not padded in with a made-up score."""
    user_items = sp.csr_matrix(np.array([[1, 1, 0, 0], [1, 1, 0, 0], [0, 0, 1, 1], [0, 1, 0, 0]], dtype=np.float32))
    model = ItemKNNRecommender().fit(user_items)
    ids, scores = model.recommend([3], 3)
    assert ids[0].tolist() == [0, -1, -1]
    assert scores[0, 0] > 0 and np.isneginf(scores[0, 1:]).all()


def movielens_100k_ndcg(datasets_dir: Path, model_name: str, params: dict[str, Any] | None = None) -> float:
    """nDCG@10 on ML-100K: per-user 75/25 random split (seed 42), every test rating relevant,
    training items excluded, binary relevance, IDCG over min(10, test items)."""
    frame = pd.read_csv(
        datasets_dir / "ml-100k" / "u.data", sep="\t", names=["user_id", "item_id", "value", "timestamp"]
    )
    frame = frame.astype({"user_id": str, "item_id": str}).sample(frac=1.0, random_state=42)
    per_user = frame.groupby("user_id", sort=False)
    train_mask = (per_user.cumcount() + 1 <= np.round(0.75 * per_user["user_id"].transform("count"))).to_numpy()
    users, items = IdMap.from_values(frame["user_id"]), IdMap.from_values(frame["item_id"])
    train = Dataset.from_interactions(frame[train_mask].drop(columns="value"), users=users, items=items)
    test = frame[~train_mask]
    relevant = sp.csr_matrix(
        (np.ones(len(test)), (users.to_index(test["user_id"]), items.to_index(test["item_id"]))),
        shape=(train.n_users, train.n_items),
    )
    model = get_model_class(model_name)(params or {}).fit(train)
    ids, _ = model.recommend(np.arange(train.n_users), 10)
    hits = np.asarray(relevant[np.arange(train.n_users)[:, None], np.maximum(ids, 0)].todense()) * (ids >= 0)
    discount = 1.0 / np.log2(np.arange(2, 12))
    ideal = np.cumsum(discount)[np.minimum(np.diff(relevant.indptr), 10) - 1]
    return float(((hits * discount).sum(axis=1) / ideal).mean())


@pytest.mark.movielens
def test_movielens_quality(datasets_dir: Path) -> None:
    # Measured 0.388 with the defaults (cosine: 0.376); popularity scores 0.246.
    assert movielens_100k_ndcg(datasets_dir, "itemknn") > 0.375
