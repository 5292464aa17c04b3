"""The because kernels against a brute-force reference: every (pair, seen item) term written out."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import scipy.sparse as sp

from recsys.models.explain import because_dense, because_dot, because_sparse
from recsys.models.registry import get_model_class
from tests.models.contract import cluster_dataset


def reference(x: sp.csr_matrix, users: np.ndarray, items: np.ndarray, weight_of: Any, count: Any) -> np.ndarray:
    """argmax over the user's seen items i of count(x_ui) * W[i, j]; ties to the lower i; -1 if none > 0."""
    x = sp.csr_matrix(x)
    x.sort_indices()
    out = np.full(len(users), -1, dtype=np.int64)
    for k, (user, item) in enumerate(zip(users, items, strict=True)):
        if item < 0:
            continue
        row = slice(x.indptr[user], x.indptr[user + 1])
        seen, values = x.indices[row], x.data[row]
        if not len(seen):
            continue
        terms = np.array([count(v) * float(weight_of(i, item)) for i, v in zip(seen, values, strict=True)])
        terms = np.where(np.isfinite(terms), terms, -np.inf)
        if terms.max() > 0:
            out[k] = seen[int(np.argmax(terms))]
    return out


def random_pairs(rng: np.random.Generator, x: sp.csr_matrix, per_user: int) -> tuple[np.ndarray, np.ndarray]:
    users = np.repeat(np.arange(x.shape[0]), per_user)
    items = rng.integers(-1, x.shape[1], size=len(users))
    return users, items


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sparse_weights_with_ties_padding_and_odd_values(dtype: type) -> None:
    rng = np.random.default_rng(3)
    # Few distinct values: many ties between seen items.
    x = sp.random(60, 40, density=0.2, random_state=1, format="csr", dtype=dtype)
    x.data = np.round(x.data * 3) + 1
    x.data[::7] = -1.0  # a negative weight makes a negative contribution
    w = sp.random(40, 40, density=0.3, random_state=2, format="csr", dtype=dtype)
    w.data = np.round(w.data * 4) / 4
    w.data[::11] = np.inf
    w.data[::13] = np.nan
    users, items = random_pairs(rng, x, 30)
    dense = w.toarray()
    for weighting, count in [
        ("stored", float),
        ("positive", lambda v: 1.0 if v > 0 else 0.0),
        ("nonzero", lambda v: 1.0 if v != 0 else 0.0),
        ("ones", lambda v: 1.0),
    ]:
        expected = reference(x, users, items, lambda i, j: dense[i, j], count)
        np.testing.assert_array_equal(because_sparse(x, users, items, w, weighting), expected)  # type: ignore[arg-type]


def test_unsorted_rows_give_the_lower_item_on_ties() -> None:
    x = sp.csr_matrix((np.ones(3, dtype=np.float32), np.array([4, 1, 2]), np.array([0, 3])), shape=(1, 6))
    w = sp.csr_matrix((np.full(3, 0.5, dtype=np.float32), np.array([5, 5, 5]), np.array([0, 0, 1, 2, 2, 3, 3])), shape=(6, 6))
    assert not x.has_sorted_indices
    assert because_sparse(x, np.array([0]), np.array([5]), w).tolist() == [1]


def test_dense_weights_over_a_subset_of_items() -> None:
    rng = np.random.default_rng(4)
    x = sp.random(50, 30, density=0.25, random_state=5, format="csr", dtype=np.float32)
    active = np.sort(rng.choice(30, size=20, replace=False))
    position = np.full(30, -1, dtype=np.int64)
    position[active] = np.arange(20)
    weights = np.round(rng.normal(size=(20, 20)), 1).astype(np.float32)
    users, items = random_pairs(rng, x, 20)

    def weight_of(i: int, j: int) -> float:
        return 0.0 if position[i] < 0 or position[j] < 0 else float(weights[position[i], position[j]])

    expected = reference(x, users, items, weight_of, float)
    np.testing.assert_array_equal(because_dense(x, users, items, weights, position), expected)


def test_dot_weights_equal_scipys_float32_cosines() -> None:
    rng = np.random.default_rng(6)
    x = sp.random(40, 35, density=0.2, random_state=7, format="csr", dtype=np.float32)
    rows = sp.random(35, 50, density=0.1, random_state=8, format="csr", dtype=np.float32)
    rows.data = np.round(rows.data * 4) / 4  # equal cosines between different seen items
    cosines = sp.csr_matrix(rows @ rows.T).toarray()  # scipy's float32 sums, the reference's
    users, items = random_pairs(rng, x, 25)
    expected = reference(x, users, items, lambda i, j: cosines[i, j], float)
    np.testing.assert_array_equal(because_dot(x, users, items, rows), expected)


def test_mismatched_pairs_are_refused() -> None:
    x = sp.csr_matrix(np.eye(3, dtype=np.float32))
    with pytest.raises(ValueError, match="alike"):
        because_sparse(x, np.array([0, 1]), np.array([1]), x)


@pytest.mark.parametrize("name", ["itemknn", "ease", "rules", "content"])
def test_models_explain_as_the_reference(name: str) -> None:
    """Each item-based model's explain equals the brute force over its own W and input weighting."""
    dataset = cluster_dataset()
    model = get_model_class(name)({"l2": 10.0} if name == "ease" else {}).fit(dataset)
    users = np.repeat(np.arange(model.n_users), 5)
    items, _ = model.recommend(np.arange(model.n_users), 5)
    items = items.ravel()
    if name == "itemknn":
        dense, count = model.similarity.toarray(), float
    elif name == "rules":
        dense, count = model.rules[model.config.rank_by].toarray(), lambda v: 1.0 if v != 0 else 0.0
    elif name == "ease":
        dense = np.zeros((model.n_items, model.n_items))
        dense[np.ix_(model.active, model.active)] = model.weights
        count = lambda v: 1.0 if v > 0 else 0.0  # noqa: E731
    else:
        dense, count = sp.csr_matrix(model.item_tfidf @ model.item_tfidf.T).toarray(), float
    expected = reference(model.user_items, users, items, lambda i, j: dense[i, j], count)
    got = model.explain(users, items)
    np.testing.assert_array_equal(got, expected)
    assert (got >= 0).mean() > 0.9
