from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from recsys.errors import ModelError
from recsys.models import ease
from recsys.models.ease import EASERecommender
from tests.models.contract import RecommenderContract, cluster_dataset
from tests.models.test_itemknn import movielens_100k_ndcg


class TestEASE(RecommenderContract):
    model_name = "ease"
    params = {"l2": 10.0}


def reference_weights(dense: np.ndarray, l2: float, binarize: bool = True) -> np.ndarray:
    """Steck's formula, literally, in float64 with np.linalg.inv."""
    x = (dense > 0).astype(np.float64) if binarize else dense.astype(np.float64)
    inverse = np.linalg.inv(x.T @ x + l2 * np.eye(x.shape[1]))
    weights = np.eye(x.shape[1]) - inverse / np.diag(inverse)[None, :]
    np.fill_diagonal(weights, 0.0)
    return weights


@pytest.mark.parametrize("precision", ["float32", "float64", "auto"])
def test_weights_match_closed_form(precision: str, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(5)
    dense = (rng.random((80, 37)) < 0.2) * rng.integers(1, 5, (80, 37))
    # Several blocks with a partial last one, for the Gram and the symmetrising loops.
    monkeypatch.setattr(ease, "SYMMETRISE_BLOCK", 8)
    monkeypatch.setattr(ease, "GRAM_BLOCK_CELLS", 37 * 5)
    model = EASERecommender(l2=3.0, precision=precision).fit(sp.csr_matrix(dense, dtype=np.float32))
    expected = reference_weights(dense, 3.0)
    active = dense.any(axis=0)
    np.testing.assert_allclose(model.weights, expected[np.ix_(active, active)], atol=2e-5)
    assert model.weights.dtype == np.float32 and model.weights.flags["C_CONTIGUOUS"]
    assert np.all(np.diag(model.weights) == 0)


def test_scores_are_x_times_b() -> None:
    dataset = cluster_dataset()
    model = EASERecommender(l2=10.0).fit(dataset)
    dense = dataset.user_items.toarray()
    weights = reference_weights(dense, 10.0)
    expected = (dense > 0).astype(np.float64) @ weights
    scores = model._score_users(np.arange(dataset.n_users))
    warm = dense.any(axis=0)
    np.testing.assert_allclose(scores[:, warm], expected[:, warm], rtol=1e-4, atol=1e-5)
    assert np.isneginf(scores[:, ~warm]).all()
    # similar_items ranks row B[i]: the scores of a user who has only item i.
    similar = model._score_items(np.array([3, 31]))
    np.testing.assert_allclose(similar[0, warm], weights[3, warm], rtol=1e-4, atol=1e-5)
    assert np.isneginf(similar[1]).all()


def test_binarize_off_uses_weights() -> None:
    rng = np.random.default_rng(1)
    dense = (rng.random((60, 20)) < 0.3) * rng.integers(1, 6, (60, 20))
    matrix = sp.csr_matrix(dense, dtype=np.float32)
    weighted = EASERecommender(l2=2.0, binarize=False).fit(matrix)
    np.testing.assert_allclose(weighted.weights, reference_weights(dense, 2.0, binarize=False), atol=2e-5)
    binary = EASERecommender(l2=2.0).fit(matrix)
    assert not np.allclose(weighted.weights, binary.weights, atol=1e-3)


def test_float64_when_float32_is_not_safe() -> None:
    rng = np.random.default_rng(2)
    matrix = sp.csr_matrix((rng.random((400, 30)) < 0.5).astype(np.float32))
    assert EASERecommender(l2=100.0).fit(matrix).solve_dtype == "float32"
    # Gershgorin bound (max row sum of X^T X + l2) / l2 is far above 1e4 with a tiny l2.
    tiny = EASERecommender(l2=0.001).fit(matrix)
    assert tiny.solve_dtype == "float64"
    np.testing.assert_allclose(tiny.weights, reference_weights(matrix.toarray(), 0.001), rtol=1e-4, atol=1e-4)


def test_gram_and_condition_bound() -> None:
    rng = np.random.default_rng(4)
    dense = (rng.random((50, 23)) < 0.3) * rng.integers(1, 4, (50, 23)).astype(np.float64)
    matrix = sp.csr_matrix(dense)
    np.testing.assert_allclose(ease.gram_matrix(matrix, np.float64), dense.T @ dense)
    true_condition = np.linalg.cond(dense.T @ dense + 2.0 * np.eye(23))
    bound = ease.condition_bound(matrix, 2.0)
    # ||G||_inf <= sqrt(n) ||G||_2, so the bound is never far above (lambda_max + l2) / l2.
    lambda_bound = (np.linalg.eigvalsh(dense.T @ dense).max() + 2.0) / 2.0
    assert true_condition <= lambda_bound <= bound <= np.sqrt(23) * lambda_bound


def test_max_items_guard() -> None:
    dataset = cluster_dataset()
    with pytest.raises(ModelError, match=r"30 items .* max_items=20 .*'itemknn' or 'als'"):
        EASERecommender(max_items=20).fit(dataset)
    # Items without interactions do not count against the limit.
    EASERecommender(max_items=30).fit(dataset)


@pytest.mark.movielens
def test_movielens_quality(datasets_dir: Path) -> None:
    # Measured 0.476 with the defaults; popularity scores 0.246, published SAR 0.394.
    assert movielens_100k_ndcg(datasets_dir, "ease") > 0.465
