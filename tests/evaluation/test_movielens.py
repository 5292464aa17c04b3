"""Cross-checks on MovieLens 100K against surprise and implicit (slow; need ../shared/datasets)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from recsys.data.loaders import load
from recsys.evaluation import metrics
from recsys.evaluation.runner import EvaluationSettings, id_maps, prepare_split, score_model
from recsys.evaluation.splits import SplitSpec, split_data
from recsys.models.registry import create_model

pytestmark = [pytest.mark.slow, pytest.mark.movielens]


@pytest.mark.timeout(120)
def test_svd_kfold_rmse_matches_surprise_cross_validate(datasets_dir: Path) -> None:
    """Same folds as surprise's KFold(random_state=0); our SVD (default parameters,
    random_state=0) against surprise's own cross_validate on them."""
    from surprise import SVD, Reader, accuracy
    from surprise import Dataset as SurpriseDataset
    from surprise.model_selection import KFold, cross_validate

    data = load(datasets_dir / "ml-100k").interactions
    folds = 3
    reference = SurpriseDataset.load_from_df(data[["user_id", "item_id", "value"]], Reader(rating_scale=(1, 5)))
    theirs = cross_validate(SVD(random_state=0), reference, measures=["rmse"], cv=KFold(folds, random_state=0))["test_rmse"]
    testsets = [testset for _, testset in KFold(folds, random_state=0).split(reference)]

    users, items = id_maps(data)
    settings = EvaluationSettings(rating_metrics=True)
    ours = []
    for fold, (split, testset) in enumerate(zip(split_data(data, SplitSpec(method="kfold", folds=folds, seed=0)), testsets, strict=True)):
        assert [(u, i) for u, i, _ in testset] == list(zip(split.test["user_id"], split.test["item_id"], strict=True)), fold
        model = create_model("svd", {"random_state": 0})
        scores = score_model(model, prepare_split(split, users, items, settings), settings)
        ours.append(scores["rmse"])
        # Our RMSE arithmetic equals surprise's accuracy.rmse on the same fitted model.
        rows = users.to_index(split.test["user_id"].to_numpy()).tolist()
        cols = items.to_index(split.test["item_id"].to_numpy()).tolist()
        inner_test = list(zip(rows, cols, split.test["value"].tolist(), strict=True))
        assert accuracy.rmse(model.surprise_algo.test(inner_test), verbose=False) == pytest.approx(scores["rmse"], abs=1e-9)

    # Per fold, the two fits differ only in the order surprise's SGD visits the ratings
    # (ours: by user and item index) and so in the random start of each row.
    differences = np.abs(np.array(ours) - np.array(theirs))
    assert differences.max() < 3e-3, (ours, list(theirs))
    assert abs(np.mean(ours) - np.mean(theirs)) < 1e-3, (ours, list(theirs))
    assert 0.92 < np.mean(ours) < 0.96


@pytest.mark.filterwarnings("ignore:Method expects CSR input")
def test_ranking_metrics_match_implicit_on_our_split(datasets_dir: Path) -> None:
    """implicit's ALS on our stratified ML-100K split: NDCG and MAP from implicit's
    ranking_metrics_at_k equal ours on the same top-10 lists."""
    from implicit.cpu.als import AlternatingLeastSquares
    from implicit.evaluation import ranking_metrics_at_k

    data = load(datasets_dir / "ml-100k").interactions
    users, items = id_maps(data)
    (split,) = split_data(data, SplitSpec(test_size=0.25, seed=42))
    prepared = prepare_split(split, users, items, EvaluationSettings())
    assert prepared.info["cold_users"] == 0 and prepared.eval_users.size == 943
    train, test = prepared.train.user_items, prepared.relevant.astype(np.float32)
    model = AlternatingLeastSquares(factors=32, iterations=10, random_state=0, num_threads=1)
    model.fit(train, show_progress=False)
    theirs = ranking_metrics_at_k(model, train, test, K=10, show_progress=False)
    ids, _ = model.recommend(prepared.eval_users, train[prepared.eval_users], N=10, filter_already_liked_items=True)
    relevant = test[prepared.eval_users]
    assert metrics.ndcg_at_k(ids, relevant, 10) == pytest.approx(theirs["ndcg"], rel=1e-9)
    assert metrics.map_at_k(ids, relevant, 10) == pytest.approx(theirs["map"], rel=1e-9)
    per_user = metrics.per_user_ranking(ids, relevant, 10)
    assert per_user.hits.sum() / np.minimum(per_user.n_relevant, 10).sum() == pytest.approx(theirs["precision"], rel=1e-9)
