"""Metrics: hand-computed answers, a per-user loop reference, and implicit's own evaluation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from recsys.errors import ModelError
from recsys.evaluation import metrics


def relevant_matrix(rows: list[list[int]], n_items: int) -> sp.csr_matrix:
    indptr = np.cumsum([0] + [len(r) for r in rows])
    indices = np.array([i for r in rows for i in r], dtype=np.int32)
    return sp.csr_matrix((np.ones(len(indices), dtype=np.float32), indices, indptr), shape=(len(rows), n_items))


RECS = np.array([[3, 1, 7, 2], [5, -1, -1, -1], [0, 1, 2, 3], [0, 1, 2, 3]], dtype=np.int32)
TRUTH = relevant_matrix([[1, 2, 9], [5], [], [8]], n_items=10)


def test_known_answers() -> None:
    log2 = math.log2
    per_user = {
        "precision": [2 / 4, 1 / 4, 0.0],
        "recall": [2 / 3, 1.0, 0.0],
        "ndcg": [(1 / log2(3) + 1 / log2(5)) / (1 + 1 / log2(3) + 1 / log2(4)), 1.0, 0.0],
        "map": [(1 / 2 + 2 / 4) / 3, 1.0, 0.0],
        "hit_rate": [1.0, 1.0, 0.0],
        "mrr": [1 / 2, 1.0, 0.0],
    }
    summary = metrics.ranking_summary(RECS, TRUTH, 4, n_items=10, popularity=np.arange(10) / 10)
    for name, values in per_user.items():
        assert summary[f"{name}@4"] == pytest.approx(np.mean(values)), name
    assert summary["users"] == 3  # the user without test items is left out
    assert metrics.precision_at_k(RECS, TRUTH, 4) == pytest.approx(np.mean(per_user["precision"]))
    assert metrics.ndcg_at_k(RECS, TRUTH, 4) == pytest.approx(np.mean(per_user["ndcg"]))
    assert metrics.map_at_k(RECS, TRUTH, 4) == pytest.approx(np.mean(per_user["map"]))
    # coverage: items {0,1,2,3,5,7} of 10; popularity bias: mean of item/10 over the 13 filled slots
    assert summary["coverage@4"] == pytest.approx(0.6)
    filled = RECS[RECS >= 0]
    assert summary["popularity_bias@4"] == pytest.approx(filled.mean() / 10)


def test_cut_to_k_and_short_lists() -> None:
    # Cutting to k=2 keeps the first two slots; a list shorter than k scores as padded.
    assert metrics.precision_at_k(RECS, TRUTH, 2) == pytest.approx(np.mean([1 / 2, 1 / 2, 0]))
    short = RECS[:, :2]
    assert metrics.precision_at_k(short, TRUTH, 4) == pytest.approx(np.mean([1 / 4, 1 / 4, 0]))
    assert metrics.map_at_k(RECS, TRUTH, 1) == pytest.approx(np.mean([0, 1, 0]))


def test_idcg_uses_min_k_relevant() -> None:
    recs = np.array([[0, 1, 2]])
    truth = relevant_matrix([[0, 1, 2, 3, 4]], 6)  # 5 relevant, k=3: a perfect list has NDCG 1
    assert metrics.ndcg_at_k(recs, truth, 3) == pytest.approx(1.0)
    assert metrics.map_at_k(recs, truth, 3) == pytest.approx(1.0)
    assert metrics.recall_at_k(recs, truth, 3) == pytest.approx(3 / 5)


def test_hit_matrix_unsorted_and_duplicate_entries() -> None:
    truth = sp.csr_matrix((np.array([1.0, 1.0, 2.0, 0.0]), np.array([4, 1, 4, 2]), np.array([0, 3, 4])), shape=(2, 5))
    hits = metrics.hit_matrix(np.array([[1, 4, 2], [2, 0, -1]]), truth)
    np.testing.assert_array_equal(hits, [[True, True, False], [False, False, False]])  # explicit 0 is not relevant


def test_input_errors() -> None:
    with pytest.raises(ModelError, match="rows"):
        metrics.precision_at_k(RECS[:2], TRUTH, 4)
    with pytest.raises(ModelError, match="out of range"):
        metrics.precision_at_k(np.array([[11]]), relevant_matrix([[1]], 10), 1)
    with pytest.raises(ModelError, match="integer"):
        metrics.precision_at_k(RECS.astype(float), TRUTH, 4)
    with pytest.raises(ModelError, match="2 predictions for 3"):
        metrics.rmse(np.zeros(2), np.zeros(3))
    with pytest.raises(ModelError, match="not finite"):
        metrics.mae(np.array([np.nan]), np.array([1.0]))


def test_rating_errors() -> None:
    assert metrics.rmse(np.array([1.0, 2.0, 3.0]), np.array([1.0, 3.0, 5.0])) == pytest.approx(math.sqrt(5 / 3))
    assert metrics.mae(np.array([1.0, 2.0, 3.0]), np.array([1.0, 3.0, 5.0])) == pytest.approx(1.0)


def test_item_popularity_share_of_active_users() -> None:
    train = sp.csr_matrix(np.array([[1, 0, 2], [0, 0, 1], [0, 0, 0], [3, 0, 1]], dtype=np.float32))
    np.testing.assert_allclose(metrics.item_popularity(train), [2 / 3, 0.0, 1.0])


def loop_reference(recs: np.ndarray, rows: list[set[int]], k: int) -> dict[str, float]:
    """Plain per-user Python definitions, for comparison with the vectorised code."""
    sums = dict.fromkeys(("precision", "recall", "ndcg", "map", "hit_rate", "mrr"), 0.0)
    users = 0
    for rec, rel in zip(recs, rows, strict=True):
        if not rel:
            continue
        users += 1
        top = [int(i) for i in rec[:k]]
        hits = [i >= 0 and i in rel for i in top]
        sums["precision"] += sum(hits) / k
        sums["recall"] += sum(hits) / len(rel)
        dcg = sum(1 / math.log2(j + 2) for j, h in enumerate(hits) if h)
        idcg = sum(1 / math.log2(j + 2) for j in range(min(k, len(rel))))
        sums["ndcg"] += dcg / idcg
        sums["map"] += sum(sum(hits[: j + 1]) / (j + 1) for j, h in enumerate(hits) if h) / min(k, len(rel))
        sums["hit_rate"] += float(any(hits))
        sums["mrr"] += next((1 / (j + 1) for j, h in enumerate(hits) if h), 0.0)
    return {name: value / users for name, value in sums.items()} if users else {}


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 10_000), st.integers(1, 12), st.integers(2, 30))
def test_vectorised_equals_loop(seed: int, k: int, n_items: int) -> None:
    rng = np.random.default_rng(seed)
    n_users = int(rng.integers(1, 25))
    width = int(rng.integers(1, 15))
    recs = np.full((n_users, width), -1, dtype=np.int32)
    rows: list[set[int]] = []
    for u in range(n_users):
        filled = int(rng.integers(0, min(width, n_items) + 1))
        recs[u, :filled] = rng.choice(n_items, size=filled, replace=False)
        rows.append(set(rng.choice(n_items, size=int(rng.integers(0, n_items + 1)), replace=False).tolist()))
    truth = relevant_matrix([sorted(r) for r in rows], n_items)
    expected = loop_reference(np.pad(recs, ((0, 0), (0, max(0, k - width))), constant_values=-1), rows, k)
    got = metrics.ranking_summary(recs, truth, k)
    for name, value in expected.items():
        assert got[f"{name}@{k}"] == pytest.approx(value, abs=1e-12), name


@pytest.mark.filterwarnings("ignore:Method expects CSR input")
@pytest.mark.parametrize("kind", ["als", "cosine"])
def test_agrees_with_implicit_ranking_metrics(kind: str) -> None:
    """Same model, same split: our NDCG and MAP equal implicit's; implicit's "precision" is
    sum(hits) / sum(min(K, n_test)) over users, which our per-user hits reproduce."""
    from implicit.evaluation import ranking_metrics_at_k, train_test_split
    from implicit.nearest_neighbours import CosineRecommender

    rng = np.random.default_rng(0)
    n_users, n_items = 300, 120
    taste = rng.integers(0, 4, n_users)
    probs = np.where((np.arange(n_items) % 4)[None, :] == taste[:, None], 0.25, 0.03)
    matrix = sp.csr_matrix((rng.random((n_users, n_items)) < probs).astype(np.float32))
    train, test = train_test_split(matrix, train_percentage=0.75, random_state=0)
    train, test = sp.csr_matrix(train), sp.csr_matrix(test)
    if kind == "als":
        from implicit.cpu.als import AlternatingLeastSquares

        model = AlternatingLeastSquares(factors=8, iterations=5, random_state=0, num_threads=1)
    else:
        model = CosineRecommender(K=20)
    model.fit(train, show_progress=False)
    k = 10
    theirs = ranking_metrics_at_k(model, train, test, K=k, show_progress=False)

    users = np.flatnonzero(np.diff(test.indptr) > 0)
    ids, _ = model.recommend(users, train[users], N=k, filter_already_liked_items=True)
    per_user = metrics.per_user_ranking(np.asarray(ids, dtype=np.int64), test[users], k)
    assert per_user.users.size == users.size
    assert metrics.ndcg_at_k(ids, test[users], k) == pytest.approx(theirs["ndcg"], rel=1e-9)
    assert metrics.map_at_k(ids, test[users], k) == pytest.approx(theirs["map"], rel=1e-9)
    implicit_precision = per_user.hits.sum() / np.minimum(per_user.n_relevant, k).sum()
    assert implicit_precision == pytest.approx(theirs["precision"], rel=1e-9)
    # Where the definitions differ: ours divides every user's hits by k.
    ours = metrics.precision_at_k(ids, test[users], k)
    assert ours <= implicit_precision + 1e-12
