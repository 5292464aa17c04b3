"""Every model's batched top-N path gives the dense reference's lists.

The reference is ``Recommender._recommend_dense`` / ``_similar_dense``: score every item,
mask, :func:`~recsys.models.base.top_n`. A model's ``_recommend_block`` / ``_similar_block``
(a global ranking, sparse products, implicit's top-k...) must return the same items in the
same order, ties aside: scores agree to 1e-5 at every position, and where an item differs
the two items have the same reference score (a tie, which either path may order its way).

Data: ML-100K (skipped when absent) and a small generated shop in the default run; the 1M
generated shop (50k users x 20k items) is marked slow.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import scipy.sparse as sp

from recsys.data.dataset import Dataset
from recsys.data.generate import generate_shop
from recsys.errors import ModelError
from recsys.models.base import Recommender, top_n, top_n_entries, top_n_sparse
from recsys.models.registry import get_model_class, model_names

N = 20
TOLERANCE = 1e-5
# Parameters that keep the fits short; the paths compared do not depend on them.
PARAMS: dict[str, dict[str, Any]] = {
    "als": {"factors": 32, "iterations": 5},
    "bpr": {"factors": 16, "iterations": 10},
    "svd": {"n_factors": 20, "n_epochs": 5, "random_state": 0},
    "blend": {"components": [{"model": "ease"}, {"model": "als", "params": {"factors": 16, "iterations": 3}}]},
}
SLOW_SKIP = {"ease", "blend"}  # dense by nature: their fast path is the reference itself


def masked_dense(model: Recommender, users: np.ndarray, exclude_seen: bool, allowed: np.ndarray | None) -> np.ndarray:
    """The reference's masked dense score block, shape (len(users), n_items)."""
    block = np.asarray(model._score_users(users), dtype=np.float32).copy()
    if exclude_seen:
        seen = model.user_items[users]
        block[np.repeat(np.arange(len(users)), np.diff(seen.indptr)), seen.indices] = -np.inf
    if allowed is not None:
        block[:, ~allowed] = -np.inf
    return block


def assert_same_lists(
    reference: tuple[np.ndarray, np.ndarray], fast: tuple[np.ndarray, np.ndarray], dense: np.ndarray, what: str
) -> None:
    """Same items, same order, ties aside (see the module docstring)."""
    ref_ids, ref_scores = reference
    fast_ids, fast_scores = fast
    assert fast_ids.shape == ref_ids.shape and fast_ids.dtype == np.int32, what
    assert fast_scores.dtype == np.float32, what
    np.testing.assert_array_equal(fast_ids < 0, ref_ids < 0, err_msg=f"{what}: list lengths differ")
    np.testing.assert_allclose(fast_scores, ref_scores, rtol=TOLERANCE, atol=TOLERANCE, err_msg=what)
    rows, cols = np.nonzero(fast_ids != ref_ids)
    # A differing item must be a tie: its reference score equals the score at that position.
    np.testing.assert_allclose(
        dense[rows, fast_ids[rows, cols]], ref_scores[rows, cols], rtol=TOLERANCE, atol=TOLERANCE,
        err_msg=f"{what}: a differing item is not tied",
    )
    listed = np.where(fast_ids >= 0, fast_ids, -1 - np.arange(fast_ids.shape[1]))
    assert all(len(set(row)) == len(row) for row in listed.tolist()), f"{what}: an item is listed twice"


def check_model(model: Recommender, users: np.ndarray, items: np.ndarray, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    allowed = rng.random(model.n_items) < 0.7
    for exclude_seen, mask in ((True, None), (False, None), (True, allowed)):
        what = f"{model.name} recommend(exclude_seen={exclude_seen}, filter={mask is not None})"
        reference = model._recommend_dense(users, N, exclude_seen, mask)
        fast = model.recommend(users, N, exclude_seen=exclude_seen, item_filter=mask)
        assert_same_lists(reference, fast, masked_dense(model, users, exclude_seen, mask), what)
        assert (reference[0] >= 0).any(), f"{what}: the reference lists are empty, the test would prove nothing"
    for mask in (None, allowed):
        what = f"{model.name} similar_items(filter={mask is not None})"
        reference = model._similar_dense(items, N, mask)
        fast = model.similar_items(items, N, item_filter=mask)
        block = np.asarray(model._score_items(items), dtype=np.float32).copy()
        block[np.arange(len(items)), items] = -np.inf
        if mask is not None:
            block[:, ~mask] = -np.inf
        assert_same_lists(reference, fast, block, what)


def fitted(name: str, dataset: Dataset, **extra: Any) -> Recommender:
    model = get_model_class(name)({**PARAMS.get(name, {}), **extra})
    model.threads = 2
    try:
        return model.fit(dataset)
    except ModelError as error:
        pytest.skip(f"{name} cannot fit this data: {error}")


@pytest.fixture(scope="module")
def shop() -> Dataset:
    interactions, catalog = generate_shop(1500, 400, 25_000, seed=3)
    return Dataset.from_interactions(interactions, catalog)


@pytest.fixture(scope="module")
def movielens(datasets_dir: Path) -> Dataset:
    from recsys.data.loaders import load

    data = load(datasets_dir / "ml-100k", format="movielens-100k")
    return Dataset.from_interactions(data.interactions, data.catalog)


@pytest.fixture(scope="module")
def shop_1m() -> Dataset:
    interactions, catalog = generate_shop(50_000, 20_000, 1_000_000, seed=7)
    return Dataset.from_interactions(interactions, catalog)


@pytest.mark.parametrize("name", model_names())
def test_shop(shop: Dataset, name: str) -> None:
    # Rules over pairs and triples here (triples from MovieLens "baskets" take minutes).
    model = fitted(name, shop, **({"max_itemset_size": 3} if name == "rules" else {}))
    check_model(model, np.arange(model.n_users), np.arange(model.n_items))


@pytest.mark.movielens
@pytest.mark.parametrize("name", model_names())
def test_movielens(movielens: Dataset, name: str) -> None:
    model = fitted(name, movielens)
    check_model(model, np.arange(model.n_users), np.arange(model.n_items))


@pytest.mark.slow
@pytest.mark.parametrize("name", [m for m in model_names() if m not in SLOW_SKIP])
def test_shop_1m(shop_1m: Dataset, name: str) -> None:
    model = fitted(name, shop_1m)
    rng = np.random.default_rng(1)
    users = np.sort(rng.choice(model.n_users, 800, replace=False))
    items = np.sort(rng.choice(model.n_items, 300, replace=False))
    check_model(model, users, items)


# ------------------------------------------------------------------ the selections
def test_top_n_entries_orders_by_score_then_column() -> None:
    rng = np.random.default_rng(5)
    dense = np.full((300, 50), -np.inf, dtype=np.float32)
    stored = rng.random(dense.shape) < 0.3
    # Few distinct values, both signs, zeros of both signs: many ties to order by column.
    values = rng.integers(-3, 4, size=dense.shape).astype(np.float32) / 2
    values[values == 0] = np.where(rng.random(int((values == 0).sum())) < 0.5, -0.0, 0.0)
    dense[stored] = values[stored]
    rows, cols = np.nonzero(stored)
    order = rng.permutation(len(rows))
    # Full sort of every dense row: score descending, then column ascending (-0.0 == 0.0).
    columns = np.broadcast_to(np.arange(50), dense.shape)
    full = np.lexsort((columns, -dense), axis=1)
    full_scores = np.take_along_axis(dense, full, axis=1)
    for n in (1, 7, 50, 60):
        got_ids, got_scores = top_n_entries(rows[order], cols[order], dense[rows, cols][order], 300, 50, n)
        k = min(n, 50)
        expected_ids = np.where(np.isfinite(full_scores[:, :k]), full[:, :k], -1)
        np.testing.assert_array_equal(got_ids[:, :k], expected_ids)
        np.testing.assert_array_equal(got_scores[:, :k], full_scores[:, :k])
        assert (got_ids[:, k:] == -1).all() and np.isneginf(got_scores[:, k:]).all()
        # top_n picks the same scores (its tied items at the cut may differ).
        np.testing.assert_array_equal(got_scores, top_n(dense, n)[1])


def test_top_n_entries_splits_rows_that_do_not_fit_one_key() -> None:
    # 2**20 columns leave 12 row bits: 5000 rows go in two chunks.
    rows = np.array([0, 4095, 4096, 4999, 4999])
    cols = np.array([7, 2**20 - 1, 3, 1, 2])
    values = np.array([1.0, 2.0, 3.0, 0.5, 0.5], dtype=np.float32)
    ids, scores = top_n_entries(rows, cols, values, 5000, 2**20, 2)
    assert ids[0].tolist() == [7, -1] and ids[4095].tolist() == [2**20 - 1, -1] and ids[4096].tolist() == [3, -1]
    assert ids[4999].tolist() == [1, 2] and scores[4999].tolist() == [0.5, 0.5]
    assert (ids[1:4095] == -1).all()


def test_top_n_sparse_leaves_out_excluded_cells_and_columns() -> None:
    # An explicit zero at (0, 0) is a score, as in the dense path.
    scores = sp.csr_matrix(
        (np.array([0.0, 3.0, 2.0, 1.0, 5.0, 4.0], dtype=np.float32), ([0, 0, 0, 0, 1, 1], [0, 1, 2, 3, 0, 3])), shape=(2, 4)
    )
    exclude = sp.csr_matrix(np.array([[0, 1, 0, 0], [0, 0, 0, 0]], dtype=np.float32))
    ids, values = top_n_sparse(scores, 3, exclude=exclude, allowed=np.array([True, True, True, False]))
    assert ids.tolist() == [[2, 0, -1], [0, -1, -1]]
    assert values[0, :2].tolist() == [2.0, 0.0] and values[1, 0] == 5.0 and np.isneginf(values[1, 1:]).all()


def test_threads_do_not_change_the_lists(shop: Dataset) -> None:
    model = fitted("itemknn", shop)
    results = []
    for threads in (1, 3):
        model.threads = threads
        # Small blocks, so that several run at once.
        parts = list(model.iter_recommend_all(N, batch_size=97))
        users = np.concatenate([p[0] for p in parts])
        np.testing.assert_array_equal(users, np.arange(model.n_users))
        results.append((np.concatenate([p[1] for p in parts]), np.concatenate([p[2] for p in parts])))
    np.testing.assert_array_equal(results[0][0], results[1][0])
    np.testing.assert_array_equal(results[0][1], results[1][1])
