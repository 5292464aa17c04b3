"""Tuning: the grid is scored on a validation split of train only; the test split only by --final."""

from __future__ import annotations

import json

import numpy as np
import pytest

from recsys.errors import ConfigError
from recsys.evaluation.splits import SplitSpec, split_data
from recsys.evaluation.tuning import expand_grid, parse_metric, parse_value, parse_values, tune
from recsys.models import registry
from tests.evaluation.fakes import SpyRecommender
from tests.models.contract import cluster_interactions


@pytest.fixture
def spy(monkeypatch: pytest.MonkeyPatch) -> type[SpyRecommender]:
    monkeypatch.setitem(registry.MODELS, "spy", "tests.evaluation.fakes:SpyRecommender")
    SpyRecommender.fitted.clear()
    return SpyRecommender


def pairs_of(dataset) -> set[tuple[str, str]]:
    coo = dataset.user_items.tocoo()
    return set(zip(dataset.users.to_raw(coo.row).tolist(), dataset.items.to_raw(coo.col).tolist(), strict=True))


def test_grid_fitted_on_train_prime_only(spy: type[SpyRecommender]) -> None:
    data = cluster_interactions()[0]
    spec = SplitSpec(test_size=0.25, seed=4)
    result = tune("spy", {"boost": [1.0, 2.0, 3.0]}, data, "ndcg@5", split=spec, final=True)
    (outer,) = split_data(data, spec)
    (inner,) = split_data(outer.train, spec)
    test_pairs = set(zip(outer.test["user_id"], outer.test["item_id"], strict=True))
    validation_pairs = set(zip(inner.test["user_id"], inner.test["item_id"], strict=True))
    assert len(spy.fitted) == 4  # three configurations, then the final refit
    for dataset, _ in spy.fitted[:3]:
        seen = pairs_of(dataset)
        assert not seen & test_pairs and not seen & validation_pairs
    final_seen = pairs_of(spy.fitted[3][0])
    assert validation_pairs <= final_seen and not final_seen & test_pairs
    assert [t["params"] for t in result.trials] == [{"boost": 1.0}, {"boost": 2.0}, {"boost": 3.0}]
    assert result.validation_split["train_rows"] + result.validation_split["test_rows"] == result.split["train_rows"]
    assert result.test is not None and result.test["params"] == result.best_params
    assert "ndcg@5" in result.test["metrics"]


def test_best_is_argmax_of_validation() -> None:
    data = cluster_interactions()[0]
    result = tune("popular", {"mode": ["users", "weight", "trending"]}, data, "recall@5")
    values = [t["validation"]["recall@5"] for t in result.trials]
    assert result.best_value == max(values)
    assert result.best_params == result.trials[int(np.argmax(values))]["params"]
    assert result.test is None
    document = json.loads(json.dumps(result.to_dict(), allow_nan=False))
    assert document["best"] == {"params": result.best_params, "validation": {"recall@5": result.best_value}}
    assert document["test"] is None


def test_lower_is_better_for_rmse() -> None:
    assert parse_metric("rmse") == ("rmse", None, False)
    assert parse_metric("ndcg@10") == ("ndcg", 10, True)
    for bad in ("ndcg", "ndcg@0", "rmse@5", "auc@10"):
        with pytest.raises(ConfigError):
            parse_metric(bad)


def test_svd_tuned_on_rmse() -> None:
    data = cluster_interactions()[0]
    data = data[data["event_type"] == "rating"]
    result = tune("svd", {"n_factors": [2, 4], "n_epochs": [1]}, data, "rmse", base_params={"random_state": 0})
    values = [t["validation"]["rmse"] for t in result.trials]
    assert result.best_value == min(values)


def test_bad_grid_fails_before_fitting(spy: type[SpyRecommender]) -> None:
    data = cluster_interactions()[0]
    with pytest.raises(ConfigError, match="popular: unknown parameter 'factors'"):
        tune("popular", {"factors": [1, 2]}, data)
    with pytest.raises(ConfigError, match="kfold"):
        tune("popular", {"mode": ["users"]}, data, split=SplitSpec(method="kfold"))
    with pytest.raises(ConfigError, match="non-empty list"):
        expand_grid({"mode": []})
    assert spy.fitted == []


def test_temporal_cut_applies_to_test_only() -> None:
    data = cluster_interactions()[0]
    cut = int(np.quantile(data["timestamp"], 0.8))
    result = tune("popular", {"mode": ["users"]}, data, "ndcg@5", split=SplitSpec(method="temporal", cut=cut))
    assert result.split["cut"] == cut
    assert result.validation_split["cut"] < cut
    assert result.validation_split["test_rows"] > 0


def test_value_parsing() -> None:
    assert parse_values("32,64,128") == [32, 64, 128]
    assert parse_values("0.01,0.1") == [0.01, 0.1]
    assert parse_values("users,weight") == ["users", "weight"]
    assert parse_values("true,false") == [True, False]
    assert parse_values("[1,5],[0,10]") == [[1, 5], [0, 10]]
    assert parse_value("64") == 64 and parse_value("users") == "users" and parse_value("null") is None
    with pytest.raises(ConfigError, match="empty value"):
        parse_values("1,,2")
