"""The Spark twins against the local models on the same data."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from recsys.data import schema
from recsys.data.dataset import Dataset
from recsys.data.loaders import load
from recsys.data.matrix import Weighting
from recsys.errors import ConfigError
from recsys.models.popular import PopularRecommender
from recsys.models.rules import RulesConfig, RulesRecommender
from recsys.pipeline.config import load_config, parse_config
from recsys.pipeline.train import popular_lists
from recsys.spark.dataset import build_dataset
from recsys.spark.load import ORDINAL
from recsys.spark.models import fit_rules
from recsys.spark.train import train_spark
from tests.spark.conftest import TEST_CONF


def basket_frame(seed: int = 3) -> pd.DataFrame:
    """Orders of 80 users over 40 items (Zipf-like popularity), some items bought twice."""
    rng = np.random.default_rng(seed)
    rows = []
    weights = 1.0 / np.arange(1, 41) ** 0.8
    weights /= weights.sum()
    for order in range(400):
        user = f"u{rng.integers(80)}"
        size = int(rng.integers(1, 9))
        for item in rng.choice(40, size=size, p=weights):
            kind = "purchase" if rng.random() < 0.8 else "view"
            rows.append((user, f"i{item}", kind, f"o{order}", 1_700_000_000 + order * 60))
    return pd.DataFrame(rows, columns=[schema.USER_ID, schema.ITEM_ID, schema.EVENT_TYPE, schema.ORDER_ID, schema.TIMESTAMP])


def spark_frame(spark: Any, frame: pd.DataFrame) -> Any:
    numbered = frame.copy()
    numbered.insert(0, ORDINAL, np.arange(1, len(frame) + 1, dtype=np.int64))
    return spark.createDataFrame(numbered)


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"min_support": 0.005, "min_confidence": 0.05, "min_lift": 1.0, "max_rules_per_item": 4, "rank_by": "lift"},
        {"max_rules_per_item": 3, "rank_by": "confidence"},
    ],
)
def test_rules_identical_to_the_local_model(spark: Any, params: dict[str, Any]) -> None:
    frame = basket_frame()
    local_data = Dataset.from_interactions(frame, basket_event_types=("purchase",))
    local = RulesRecommender(params).fit(local_data)
    remote_data = build_dataset(
        spark_frame(spark, frame), list(frame.columns), None, Weighting(), basket_event_types=("purchase",)
    )
    assert list(remote_data.items.ids) == list(local_data.items.ids)
    assert remote_data.n_baskets == local.n_baskets
    remote = fit_rules(remote_data, RulesConfig(**params))
    table = remote.table.toPandas().sort_values(["i", "j"]).reset_index(drop=True)
    expected = local.confidence.tocoo()
    order = np.lexsort((expected.col, expected.row))
    assert len(table) == local.confidence.nnz > 50
    np.testing.assert_array_equal(table["i"], expected.row[order])
    np.testing.assert_array_equal(table["j"], expected.col[order])
    for metric in ("support", "confidence", "lift"):
        values = np.asarray(local.rules[metric][table["i"].to_numpy(), table["j"].to_numpy()]).ravel()
        np.testing.assert_allclose(table[metric].to_numpy(dtype=np.float64), values, rtol=0, atol=1e-9)
    np.testing.assert_array_equal(remote.item_counts, local.item_counts)


@pytest.fixture(scope="module")
def shop_run(spark: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A generated shop trained on Spark with every model Spark runs."""
    from recsys.data.generate import generate_shop

    folder = tmp_path_factory.mktemp("spark-shop")
    interactions, catalog = generate_shop(250, 90, 4000, seed=5)
    (folder / "data").mkdir()
    interactions.to_parquet(folder / "data" / "interactions.parquet")
    catalog.to_parquet(folder / "data" / "catalog.parquet")
    config = parse_config(
        {
            "data": {"path": str(folder / "data")},
            "training": {"backend": "spark", "out": str(folder / "runs")},
            "spark": {"master": "local[2]", "conf": TEST_CONF},
            "models": {"popular": {}, "als": {"factors": 8, "iterations": 4}, "rules": {}, "itemknn": {"similarity": "cosine", "k": 20}},
            "lists": {"user_n": 10, "popular_n": 15},
        }
    )
    run = train_spark(config, spark=spark)
    return {"run": run, "config": config, "data": load(folder / "data")}


def read_list(run: Path, name: str) -> pd.DataFrame:
    return pq.read_table(run / "lists" / name).to_pandas()


def test_popular_lists_identical(shop_run: dict[str, Any]) -> None:
    data = shop_run["data"]
    dataset = Dataset.from_interactions(data.interactions, data.catalog, Weighting())
    model = PopularRecommender().fit(dataset)
    expected = popular_lists(model.popularity, dataset.catalog[schema.CATEGORY].to_numpy(dtype=str), 15)
    lists = read_list(shop_run["run"], "popular").set_index("key")
    assert sorted(lists.index) == sorted(expected.labels.tolist()) and "" in lists.index and len(lists) > 3
    for label, ids, scores in zip(expected.labels, expected.ids, expected.scores, strict=True):
        keep = ids >= 0
        assert list(lists.loc[label, "item_ids"]) == list(dataset.items.ids[ids[keep]]), label
        np.testing.assert_array_equal(np.asarray(lists.loc[label, "scores"], dtype=np.float32), scores[keep])

    # Per user: the same ranking minus each user's items.
    users = read_list(shop_run["run"], "user.popular").set_index("key")
    local_ids, _ = model.recommend(np.arange(dataset.n_users), 10)
    assert len(users) == dataset.n_users
    for row in range(0, dataset.n_users, 7):
        wanted = dataset.items.ids[local_ids[row][local_ids[row] >= 0]]
        assert list(users.loc[dataset.users.ids[row], "item_ids"]) == list(wanted)


def test_als_lists_have_no_seen_item(shop_run: dict[str, Any]) -> None:
    data = shop_run["data"]
    weights = Weighting()
    seen = data.interactions.assign(w=data.interactions[schema.EVENT_TYPE].map(weights.event_weights).fillna(1.0))
    seen = seen[seen["w"] > 0].groupby(schema.USER_ID)[schema.ITEM_ID].agg(set)
    lists = read_list(shop_run["run"], "user.als")
    assert len(lists) == len(seen)
    assert all(len(ids) == 10 for ids in lists["item_ids"])
    overlap = sum(len(set(ids) & seen[key]) for key, ids in zip(lists["key"], lists["item_ids"], strict=True))
    assert overlap == 0
    # Best first.
    assert all(np.all(np.diff(np.asarray(s)) <= 0) for s in lists["scores"])


def test_run_folder_follows_format_2(shop_run: dict[str, Any]) -> None:
    import json

    run: Path = shop_run["run"]
    with open(run / "metadata.json", encoding="utf-8") as handle:
        meta = json.load(handle)
    assert meta["format_version"] == 2 and meta["backend"] == "spark" and meta["catalog"] == "catalog.parquet"
    names = {entry["path"] for entry in meta["lists"]}
    assert names == {
        "lists/user.popular", "lists/user.als", "lists/user.rules", "lists/user.itemknn",
        "lists/similar.als", "lists/similar.itemknn", "lists/together", "lists/popular",
    }  # fmt: skip
    catalog = pq.read_table(run / "catalog.parquet")
    assert [(f.name, str(f.type)) for f in catalog.schema] == [
        ("item_id", "string"), ("title", "string"), ("category", "string"), ("price", "double"), ("in_stock", "bool"),
    ]  # fmt: skip
    known = set(catalog.column("item_id").to_pylist())
    for entry in meta["lists"]:
        folder = run / entry["path"]
        parts = sorted(folder.glob("*.parquet"))
        assert parts, entry
        table = pq.read_table(folder)
        types = {f.name: str(f.type) for f in table.schema}
        assert types["key"] == "string" and types["item_ids"] == "list<element: string>", entry
        assert types["scores"] == "list<element: float>", entry
        assert table.num_rows == entry["rows"] > 0
        lengths = [len(ids) for ids in table.column("item_ids").to_pylist()]
        assert min(lengths) >= 1 and max(lengths) <= entry["n"]
        assert [len(s) for s in table.column("scores").to_pylist()] == lengths
        if entry["kind"] == "together":
            assert types["confidence"] == types["lift"] == "list<element: float>"
        assert {i for ids in table.column("item_ids").to_pylist() for i in ids} <= known


def test_other_models_refused_before_work(tmp_path: Path) -> None:
    path = tmp_path / "recsys.toml"
    path.write_text('[training]\nbackend = "spark"\n[models.ease]\n[models.als]\n')
    with pytest.raises(ConfigError, match=r"models.ease: not run by .*Spark runs: als, rules, popular, itemknn"):
        load_config(path)
    with pytest.raises(ConfigError, match="similarity"):
        parse_config({"training": {"backend": "spark"}, "models": {"itemknn": {}}})
    with pytest.raises(ConfigError, match="max_itemset_size"):
        parse_config({"training": {"backend": "spark"}, "models": {"rules": {"max_itemset_size": 3}}})


def test_forgotten_users_dropped_as_hashed_locally(spark: Any) -> None:
    from recsys.privacy.tombstones import drop_forgotten, hash_user_id
    from recsys.spark.train import drop_forgotten_users

    frame = basket_frame()
    stones = {hash_user_id("u3"), hash_user_id("u17"), hash_user_id("nobody")}
    expected, rows, users = drop_forgotten(frame, schema.USER_ID, stones)
    kept, spark_rows, spark_users = drop_forgotten_users(spark_frame(spark, frame), stones)
    assert (spark_rows, spark_users) == (rows, users) and users == 2
    assert kept.count() == len(expected)
