"""Publishing a format-2 run folder: one the local trainer wrote, and one written by hand
with pyarrow as Spark's ``df.write.parquet`` leaves it (part-*.snappy.parquet + _SUCCESS)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import redis

from recsys.errors import DataError
from recsys.models.base import Recommender
from recsys.pipeline.config import parse_config
from recsys.pipeline.train import LoadedInput, train
from recsys.publish.publisher import Publisher
from recsys.publish.versions import live_version
from recsys.runs.folder import RunFolder
from recsys.store.codec import decode_list, encode_list
from recsys.store.keys import KeyLayout
from tests.models.contract import cluster_interactions

ELEMENT = pa.list_(pa.field("element", pa.string()))
FLOATS = pa.list_(pa.field("element", pa.float32()))


def spark_part(folder: Path, name: str, rows: list[dict], extra: tuple[str, ...] = ()) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    columns = {
        "key": pa.array([r["key"] for r in rows], type=pa.string()),
        "item_ids": pa.array([r["item_ids"] for r in rows], type=ELEMENT),
        "scores": pa.array([r["scores"] for r in rows], type=FLOATS),
    }
    for column in extra:
        columns[column] = pa.array([r[column] for r in rows], type=FLOATS)
    pq.write_table(pa.table(columns), folder / name, compression="snappy")
    (folder / "_SUCCESS").write_text("")


def spark_run(root: Path) -> Path:
    run = root / "20260101T000000.000Z-abcdef"
    users = [{"key": f"u{k}", "item_ids": [f"i{(k + j) % 6}" for j in range(3)], "scores": [3.0, 2.0, 1.0]} for k in range(5)]
    spark_part(run / "lists" / "user.als", "part-00000-9f1e-c000.snappy.parquet", users[:3])
    spark_part(run / "lists" / "user.als", "part-00001-9f1e-c000.snappy.parquet", users[3:])
    together = [{"key": "i0", "item_ids": ["i1", "i2"], "scores": [0.5, 0.25], "confidence": [0.5, 0.25], "lift": [2.0, 1.5]}]
    spark_part(run / "lists" / "together", "part-00000-77aa-c000.snappy.parquet", together, ("confidence", "lift"))
    popular = [{"key": "", "item_ids": ["i0", "i1"], "scores": [9.0, 8.0]}, {"key": "toys", "item_ids": ["i1"], "scores": [8.0]}]
    spark_part(run / "lists" / "popular", "part-00000-01bc-c000.snappy.parquet", popular)
    catalog = pa.table({
        "item_id": [f"i{k}" for k in range(6)],
        "title": [f"Toy {k}" for k in range(6)],
        "category": ["toys"] * 6,
        "price": pa.array([1.5, None, 3.0, 4.0, 5.0, 6.0], type=pa.float64()),
        "in_stock": [True, True, False, True, True, None],
    })
    pq.write_table(catalog, run / "catalog.parquet")
    metadata = {
        "format_version": 2, "run": run.name, "backend": "spark", "catalog": "catalog.parquet",
        "default_model": "als", "models": {"als": {}},
        "lists": [
            {"kind": "user", "model": "als", "path": "lists/user.als", "rows": 5, "n": 3},
            {"kind": "together", "model": None, "path": "lists/together", "rows": 1, "n": 2},
            {"kind": "popular", "model": None, "path": "lists/popular", "rows": 2, "n": 2},
        ],
    }
    (run / "metadata.json").write_text(json.dumps(metadata))
    return run


def test_publish_a_spark_written_run(redis_client: redis.Redis, key_prefix: str, tmp_path: Path) -> None:
    layout = KeyLayout(key_prefix)
    run = spark_run(tmp_path)
    result = Publisher(redis_client, layout, batch_fields=2, show_progress=False).publish_run(run)
    assert result.counts == {"catalog": 6, "user:als": 5, "together": 1, "popular": 2}
    version = result.version
    assert live_version(redis_client, layout) == version
    assert decode_list(redis_client.hget(layout.user_recs(version, "als"), "u4")) == {"i": ["i4", "i5", "i0"], "s": [3.0, 2.0, 1.0]}
    # The blobs are byte for byte what the codec encodes.
    assert redis_client.hget(layout.together(version), "i0") == encode_list(["i1", "i2"], [0.5, 0.25], {"c": [0.5, 0.25], "l": [2.0, 1.5]})
    assert orjson.loads(redis_client.hget(layout.catalog(version), "i1")) == {"title": "Toy 1", "category": "toys", "price": None, "in_stock": True}
    assert orjson.loads(redis_client.hget(layout.catalog(version), "i5"))["in_stock"] is True  # null = in stock
    meta = orjson.loads(redis_client.get(layout.meta(version)))
    assert meta["categories"] == ["toys"] and meta["user_models"] == ["als"] and meta["default_model"] == "als"
    assert meta["list_length"] == {"user": 3, "similar": 0, "together": 2, "popular": 2}


def test_row_count_mismatch_fails_and_leaves_live(redis_client: redis.Redis, key_prefix: str, tmp_path: Path) -> None:
    layout = KeyLayout(key_prefix)
    run = spark_run(tmp_path)
    good = Publisher(redis_client, layout, show_progress=False).publish_run(run).version
    (run / "lists" / "user.als" / "part-00001-9f1e-c000.snappy.parquet").unlink()  # a lost partition
    with pytest.raises(DataError, match=r"user\.als: 3 rows read, the run's metadata says 5"):
        Publisher(redis_client, layout, show_progress=False).publish_run(run)
    assert live_version(redis_client, layout) == good
    assert [k for k in redis_client.scan_iter(match=f"{layout.prefix}v:*") if not k.decode().startswith(layout.version_root(good))] == []


def test_publish_a_trained_run_equals_the_files(redis_client: redis.Redis, key_prefix: str, tmp_path: Path) -> None:
    interactions, catalog = cluster_interactions()
    config = parse_config({"models": {"popular": {}, "itemknn": {"k": 20}, "rules": {}},
                           "lists": {"user_n": 4, "similar_n": 3, "together_n": 2, "popular_n": 5}})
    run = RunFolder(train(config, tmp_path, data=LoadedInput(interactions, catalog), show_progress=False))
    layout = KeyLayout(key_prefix)
    result = Publisher(redis_client, layout, batch_fields=7, show_progress=False).publish_run(run)
    for entry in run.list_entries():
        stored = run.list(entry).read_all().to_pylist()
        key = {"user": lambda: layout.user_recs(result.version, entry["model"]),
               "similar": lambda: layout.similar(result.version, entry["model"]),
               "together": lambda: layout.together(result.version),
               "popular": lambda: layout.popular(result.version)}[entry["kind"]]()
        blobs = redis_client.hgetall(key)
        assert len(blobs) == len(stored) == entry["rows"]
        for row in stored:
            decoded = decode_list(blobs[row["key"].encode()])
            assert decoded["i"] == row["item_ids"]
            np.testing.assert_allclose(decoded["s"], row["scores"], atol=1e-5)
            if entry["kind"] == "together":
                np.testing.assert_allclose(decoded["c"], row["confidence"], atol=1e-5)
                np.testing.assert_allclose(decoded["l"], row["lift"], atol=1e-5)
    assert result.counts["catalog"] == run.catalog_rows() == len(run.items())


def test_active_within_days_counts(tmp_path: Path) -> None:
    interactions, catalog = cluster_interactions()
    interactions = interactions.copy()
    users = interactions["user_id"].astype(str).unique()
    newest = 1_700_000_000
    # Half of the users were last seen 30 days before the newest event, the rest within a day.
    old = set(users[::2])
    interactions["timestamp"] = np.where(interactions["user_id"].astype(str).isin(old), newest - 30 * 86_400, newest - 3_600)
    interactions.loc[interactions.index[-1], "timestamp"] = newest
    interactions.loc[interactions.index[-1], "user_id"] = users[1]
    config = parse_config({"models": {"popular": {}, "itemknn": {"k": 20}},
                           "lists": {"user_n": 4, "active_within_days": 7, "together": False}})
    run = RunFolder(train(config, tmp_path, data=LoadedInput(interactions, catalog), show_progress=False))
    meta = run.metadata
    active = set(users) - old
    assert meta["counts"]["list_users"] == len(active) and meta["counts"]["inactive_users"] == len(old)
    assert meta["active_users"]["within_days"] == 7 and meta["active_users"]["reference"].startswith("2023-11-14T22:13:20")
    for model in ("popular", "itemknn"):
        keys = set(run.find_list("user", model).read_all()["key"].to_pylist())
        assert keys <= active and len(keys) >= len(active) - 1
    # Similar lists are for every item whatever the users.
    model = Recommender.load(run.path / "models" / "itemknn")
    ids, _ = model.similar_items(np.arange(model.n_items), 20)
    assert run.find_list("similar", "itemknn").expected_rows == int((ids[:, 0] >= 0).sum()) > len(run.items()) // 2

    undated = interactions.drop(columns=["timestamp"])
    with pytest.raises(DataError, match="lists.active_within_days: the interactions have no 'timestamp'"):
        train(config, tmp_path / "undated", data=LoadedInput(undated, catalog), show_progress=False)
    pd.testing.assert_frame_equal(undated, interactions.drop(columns=["timestamp"]))
