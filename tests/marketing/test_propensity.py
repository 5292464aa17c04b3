"""Propensity: a planted signal is recovered and beats the recency-frequency baseline."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from recsys.errors import ConfigError, DataError
from recsys.marketing.features import purchase_lines
from recsys.marketing.propensity import (
    PropensityConfig,
    baseline_scores,
    fit_propensity,
    labels_after,
    parse_target,
    ranking_metrics,
    target_mask,
)
from tests.marketing.fixtures import DAY, END, planted_propensity


@pytest.fixture(scope="module")
def shop() -> tuple[pd.DataFrame, pd.DataFrame, set[str]]:
    return planted_propensity()


def test_planted_signal_beats_baseline(shop) -> None:
    interactions, catalog, fans = shop
    result = fit_propensity(purchase_lines(interactions, catalog), interactions, PropensityConfig(target="category=tea", k=100), catalog)
    assert result.model["auc"] > result.baseline["auc"] + 0.02
    assert result.model["auc"] > 0.8
    # The model learned that browsing tea matters.
    assert result.coefficients["target_events"] > 0
    # The audience is mostly the planted fans.
    assert np.mean([u in fans for u in result.audience["user_id"]]) > 0.8
    assert result.chosen_c in PropensityConfig(target="category=tea").c_grid
    assert len(result.validation) == 4  # every C was scored on the newest training cut-off


def test_title_and_item_targets(shop) -> None:
    interactions, catalog, _ = shop
    purchases = purchase_lines(interactions, catalog)
    by_title = target_mask(purchases, "title=GREEN TEA", catalog)
    by_category = target_mask(purchases, "category=tea", catalog)
    assert (by_title == by_category).all()
    assert target_mask(purchases, "item=i3", catalog).sum() == (purchases.lines["item_id"] == "i3").sum()
    with pytest.raises(DataError, match="no purchase"):
        target_mask(purchases, "item=nope", catalog)


def test_labels_never_look_past_the_horizon() -> None:
    interactions = pd.DataFrame(
        {"user_id": ["a", "b", "c"], "item_id": ["x", "x", "x"], "event_type": "purchase",
         "timestamp": [END + 1, END + 3 * DAY, END + 20 * DAY]}
    )
    purchases = purchase_lines(interactions)
    labels = labels_after(purchases, np.ones(3, bool), pd.Index(["a", "b", "c"]), float(END), 14 * DAY)
    assert labels.tolist() == [1, 1, 0]


def test_baseline_orders_by_target_then_recency() -> None:
    features = pd.DataFrame({"target_lines": [0.0, 2.0, 2.0, 0.0], "recency_days": [1.0, 50.0, 5.0, 1.0]})
    scores = baseline_scores(features)
    assert np.argsort(-scores, kind="stable").tolist() == [2, 1, 0, 3]
    assert scores[0] == scores[3]


def test_metrics_known_answer() -> None:
    labels = np.array([1, 0, 1, 0, 0])
    scores = np.array([0.9, 0.8, 0.7, 0.1, 0.2])
    metrics = ranking_metrics(labels, scores, k=2)
    assert metrics["auc"] == pytest.approx(roc_auc_score(labels, scores))
    assert metrics["precision_at_k"] == 0.5 and metrics["lift_at_k"] == pytest.approx(0.5 / 0.4)


def test_bad_targets_and_short_logs(shop) -> None:
    interactions, catalog, _ = shop
    with pytest.raises(ConfigError, match="category=NAME"):
        parse_target("tea")
    short = interactions[interactions["timestamp"] > interactions["timestamp"].max() - 30 * DAY]
    with pytest.raises(DataError, match="too short"):
        fit_propensity(purchase_lines(short, catalog), short, PropensityConfig(target="category=tea"), catalog)
