"""Segments: planted customer groups are recovered, named, stable, drawn and written."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import adjusted_rand_score

from recsys.errors import DataError
from recsys.marketing.features import customer_features, purchase_lines
from recsys.marketing.segments import SegmentsConfig, describe, plot_segments, segment_customers
from tests.marketing.fixtures import DAY, END, planted_segments


def test_features_known_answer() -> None:
    interactions = pd.DataFrame(
        {
            "user_id": ["a", "a", "a", "b"],
            "item_id": ["x", "y", "x", "y"],
            "event_type": ["purchase", "purchase", "view", "purchase"],
            "value": [2.0, 1.0, 1.0, 3.0],
            "timestamp": [END - 10 * DAY, END - 10 * DAY, END, END - 2 * DAY],
            "order_id": ["o1", "o1", None, "o2"],
        }
    )
    catalog = pd.DataFrame({"item_id": ["x", "y"], "price": [5.0, 10.0], "category": ["c1", "c2"]})
    purchases = purchase_lines(interactions, catalog)
    assert purchases.source_events == "purchase" and purchases.has_prices
    features = customer_features(purchases, cutoff=float(END), categories=["c1"])
    assert features.loc["a", "frequency"] == 1  # two lines of one order
    assert features.loc["a", "monetary"] == pytest.approx(2 * 5 + 1 * 10)
    assert features.loc["a", "recency_days"] == pytest.approx(10)
    assert features.loc["b", "monetary"] == pytest.approx(30)
    assert features.loc["a", "share_c1"] == pytest.approx(0.5)
    assert features.loc["b", "share_other"] == pytest.approx(1.0)
    # The view is not a purchase and the cut-off excludes later lines.
    assert customer_features(purchases, cutoff=float(END - 5 * DAY)).index.tolist() == ["a"]


def test_order_log_without_event_types_is_all_purchases() -> None:
    interactions = pd.DataFrame({"user_id": ["a", "b"], "item_id": ["x", "x"], "timestamp": [END, END - DAY]})
    purchases = purchase_lines(interactions)
    assert purchases.source_events == "all" and not purchases.has_prices
    assert customer_features(purchases)["monetary"].tolist() == [1.0, 1.0]


def test_planted_groups_recovered_and_named() -> None:
    interactions, catalog, truth = planted_segments()
    result = segment_customers(purchase_lines(interactions, catalog), SegmentsConfig(k="auto", categories=3))
    assert result.k == 3
    labels = result.labels.reindex(list(truth))
    assert adjusted_rand_score(list(truth.values()), labels.to_numpy()) > 0.95
    names = {truth[u]: result.names[int(labels[u])] for u in ("vip0", "lapsed0", "new0")}
    assert "recent" in names["vip"] and "frequent" in names["vip"] and "high spend" in names["vip"]
    assert "lapsed" in names["lapsed"] and "low spend" in names["lapsed"]
    assert names["new"].startswith("new")
    assert result.stability["adjusted_rand_min"] > 0.95
    sizes = [s["size"] for s in result.summary]
    assert sizes == sorted(sizes, reverse=True) and sum(sizes) == len(truth)
    vip = next(s for s in result.summary if s["id"] == int(labels["vip0"]))
    assert vip["top_categories"][0]["category"] == "hifi"


def test_fixed_k_and_too_few_customers() -> None:
    interactions, catalog, _ = planted_segments()
    result = segment_customers(purchase_lines(interactions, catalog), SegmentsConfig(k=5))
    assert result.k == 5 and len(result.summary) == 5
    assert len({s["name"] for s in result.summary}) == 5  # names are unique
    with pytest.raises(DataError, match="at least 20"):
        segment_customers(purchase_lines(interactions.head(5), catalog))


def test_describe_words() -> None:
    assert describe({"recency_days": -1, "frequency": 1, "monetary": 1, "tenure_days": 0}) == "recent, frequent, high spend"
    assert describe({"recency_days": 1, "frequency": -1, "monetary": 0, "tenure_days": 0}) == "lapsed, one-off, average spend"
    assert "tea lovers" in describe({"share_tea": 2.0, "share_other": 3.0})


def test_plot_and_table(tmp_path) -> None:
    interactions, catalog, truth = planted_segments()
    result = segment_customers(purchase_lines(interactions, catalog), SegmentsConfig(k=3))
    png = plot_segments(result, tmp_path / "s.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = result.table()
    assert set(table["user_id"]) == set(truth) and table["segment_name"].notna().all()
    json.dumps(result.to_json())  # serialisable as is
    assert np.isfinite(table["monetary"]).all()
