"""The evaluation runner: aligned matrices, known-answer metrics, cold counts, JSON layout."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from recsys.errors import ConfigError, DataError
from recsys.evaluation.runner import EvaluationSettings, evaluate, load_input, model_factories, parse_relevance
from recsys.evaluation.splits import SplitSpec, split_data
from recsys.models.registry import create_model
from tests.evaluation.fakes import BrokenRecommender, MeanRatingRecommender, OracleRecommender
from tests.models.contract import cluster_interactions

METRICS = ("precision@5", "recall@5", "ndcg@5", "map@5", "hit_rate@5", "mrr@5", "coverage@5", "popularity_bias@5")


@pytest.fixture(scope="module")
def interactions() -> pd.DataFrame:
    return cluster_interactions()[0]


def oracle_for(data: pd.DataFrame, spec: SplitSpec):
    (split,) = split_data(data, spec)
    return lambda: OracleRecommender(split.test)


def test_oracle_scores_perfectly(interactions: pd.DataFrame) -> None:
    spec = SplitSpec(method="stratified", test_size=0.3, seed=1)
    models = {"oracle": oracle_for(interactions, spec), "popular": lambda: create_model("popular")}
    result = evaluate(interactions, models, split=spec, settings=EvaluationSettings(k=5))
    oracle = result.models["oracle"]
    assert oracle["ndcg@5"] == pytest.approx(1.0)
    assert oracle["map@5"] == pytest.approx(1.0)
    assert oracle["hit_rate@5"] == oracle["mrr@5"] == pytest.approx(1.0)
    assert oracle["recall@5"] == pytest.approx(1.0)  # nobody has more than 5 test pairs here
    (split,) = split_data(interactions, spec)
    n_test = split.test.drop_duplicates(["user_id", "item_id"]).groupby("user_id").size()
    assert oracle["precision@5"] == pytest.approx((np.minimum(n_test, 5) / 5).mean())
    popular = result.models["popular"]
    assert 0 < popular["ndcg@5"] < 1
    for name in ("oracle", "popular"):
        assert set(METRICS) <= set(result.models[name])
        assert result.models[name]["fit_seconds"] >= 0 and result.models[name]["recommend_seconds"] >= 0


def test_json_layout(interactions: pd.DataFrame) -> None:
    result = evaluate(interactions, ["popular"], split=SplitSpec(seed=3), settings=EvaluationSettings(k=5))
    document = json.loads(json.dumps(result.to_dict(), allow_nan=False))
    assert set(document) == {"dataset", "split", "k", "models"}
    assert document["k"] == 5
    assert document["dataset"]["interactions"] == len(interactions)
    split = document["split"]
    for key in ("method", "seed", "test_size", "train_rows", "test_rows", "cold_users", "cold_items", "cold_test_rows", "evaluated_users"):
        assert key in split, key
    assert split["train_rows"] + split["test_rows"] == len(interactions)
    assert set(document["models"]["popular"]) == {*METRICS, "fit_seconds", "recommend_seconds"}


def test_cold_users_counted_and_excluded(interactions: pd.DataFrame) -> None:
    spec = SplitSpec(method="temporal", test_size=0.3)
    (split,) = split_data(interactions, spec)
    cold = set(split.test["user_id"]) - set(split.train["user_id"])
    assert cold, "the temporal split of this data has users first seen after the cut"
    excluded = evaluate(interactions, ["popular"], split=spec, settings=EvaluationSettings(k=5)).split
    included = evaluate(interactions, ["popular"], split=spec, settings=EvaluationSettings(k=5, cold_users="include")).split
    assert excluded["cold_users"] == included["cold_users"] == len(cold)
    assert excluded["cold_users_not_scored"] == len(cold)
    assert included["evaluated_users"] == excluded["evaluated_users"] + len(cold)


def test_pairs_seen_in_train_are_not_relevant() -> None:
    data = pd.DataFrame(
        {
            "user_id": ["a", "a", "a", "b", "b", "a"],
            "item_id": ["1", "2", "3", "1", "2", "1"],
            "event_type": ["view"] * 6,
            "timestamp": [1, 2, 3, 4, 5, 6],
        }
    )
    result = evaluate(data, ["popular"], split=SplitSpec(method="temporal", cut=5), settings=EvaluationSettings(k=2))
    # Test rows: (b,2) new pair and (a,1) a repeat of a training pair (never recommendable).
    assert result.split["test_pairs_in_train"] == 1
    assert result.split["relevant_pairs"] == 1
    assert result.split["evaluated_users"] == 1


def test_relevance_threshold(interactions: pd.DataFrame) -> None:
    everything = evaluate(interactions, ["popular"], settings=EvaluationSettings(k=5)).split
    good_only = evaluate(interactions, ["popular"], settings=EvaluationSettings(k=5, relevance_threshold=5)).split
    (split,) = split_data(interactions, SplitSpec())
    low = split.test[(split.test["event_type"] == "rating") & (split.test["value"] < 5)]
    assert good_only["relevance"] == "threshold:5"
    assert everything["relevant_pairs"] - good_only["relevant_pairs"] == len(low.drop_duplicates(["user_id", "item_id"]))
    assert parse_relevance("all") is None and parse_relevance("threshold:3.5") == 3.5
    with pytest.raises(ConfigError, match="--relevance"):
        parse_relevance("above:4")


def test_kfold_means_and_rating_metrics(interactions: pd.DataFrame) -> None:
    spec = SplitSpec(method="kfold", folds=3, seed=0)
    result = evaluate(
        interactions, {"mean": MeanRatingRecommender}, split=spec, settings=EvaluationSettings(k=5, rating_metrics=True)
    )
    document = result.to_dict()
    assert len(document["per_fold"]) == 3 and len(document["split"]["per_fold"]) == 3
    folds = [fold["mean"]["rmse"] for fold in document["per_fold"]]
    assert document["models"]["mean"]["rmse"] == pytest.approx(np.mean(folds))
    # Known answer for fold 0: RMSE of the training mean against the test ratings.
    split = split_data(interactions, spec)[0]
    train_r = split.train[split.train["event_type"] == "rating"]["value"]
    test_r = split.test[split.test["event_type"] == "rating"]["value"]
    assert folds[0] == pytest.approx(np.sqrt(np.mean((test_r - train_r.mean()) ** 2)), rel=1e-6)
    assert document["per_fold"][0]["mean"]["mae"] == pytest.approx(np.mean(np.abs(test_r - train_r.mean())), rel=1e-6)


def test_rating_metrics_none_without_predict(interactions: pd.DataFrame) -> None:
    result = evaluate(interactions, ["popular"], settings=EvaluationSettings(rating_metrics=True))
    assert result.models["popular"]["rmse"] is None and result.models["popular"]["mae"] is None


def test_failing_model_reported_others_run(interactions: pd.DataFrame) -> None:
    result = evaluate(interactions, {"broken": BrokenRecommender, "mean": MeanRatingRecommender})
    assert result.errors() == {"broken": "broken: needs baskets in the training data, which has none"}
    assert "ndcg@10" in result.models["mean"]


def test_model_parameters_validated_first() -> None:
    with pytest.raises(ConfigError, match="popular: unknown parameter 'factors'"):
        model_factories(["popular"], {"popular": {"factors": 3}})
    with pytest.raises(ConfigError, match="als"):
        model_factories(["popular"], {"als": {"factors": 3}})
    with pytest.raises(ConfigError, match="unknown model 'nope'"):
        model_factories(["nope"])
    assert model_factories(["popular"], {"popular": {"mode": "weight"}})["popular"]().config.mode == "weight"


def test_empty_data() -> None:
    with pytest.raises(DataError, match="no interactions"):
        evaluate(pd.DataFrame({"user_id": [], "item_id": []}), ["popular"])


def test_load_input_movielens_100k_layout(tmp_path) -> None:
    (tmp_path / "u.data").write_text("1\t10\t5\t881250949\n2\t10\t3\t881250950\n1\t20\t4\t881250951\n")
    loaded = load_input(tmp_path, "movielens-100k")
    frame = loaded.interactions
    assert len(frame) == 3
    assert frame["user_id"].astype(str).tolist() == ["1", "2", "1"]
    assert frame["value"].astype(float).tolist() == [5.0, 3.0, 4.0]
    assert set(frame["event_type"].astype(str)) == {"rating"}


def test_load_input_unknown_format(tmp_path) -> None:
    with pytest.raises(ConfigError, match="unknown data format"):
        load_input(tmp_path, "xlsx")
