"""Publishing explanations: because items as codes in the user-list blobs, resolved by the
version's because-items hash; the reason type of every list in the version metadata; and
what that costs in published bytes per entry."""

from __future__ import annotations

import json
from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import redis

from recsys.data.generate import generate_shop
from recsys.errors import DataError
from recsys.pipeline.config import parse_config
from recsys.pipeline.train import LoadedInput, train
from recsys.publish.publisher import Publisher
from recsys.publish.versions import live_version
from recsys.runs.folder import RunFolder
from recsys.runs.lists import RunList
from recsys.store.codec import split_codes
from recsys.store.keys import KeyLayout
from tests.publish.test_run_folder import spark_run

#: Published bytes per user-list entry with because items / without, at most (issue #19).
MAX_GROWTH = 1.30


def published_because(client: redis.Redis, layout: KeyLayout, version: str, model: str) -> dict[str, list[str | None]]:
    """User id -> the because item id of each entry of its published list (None = none)."""
    reasons = {k.decode(): orjson.loads(v) for k, v in client.hgetall(layout.because_items(version)).items()}
    assert all(r["type"] == "because" and set(r) == {"type", "item_id", "title"} for r in reasons.values())
    out = {}
    for user, blob in client.hgetall(layout.user_recs(version, model)).items():
        document = orjson.loads(blob)
        codes = split_codes(document["b"], len(document["i"])) if "b" in document else [None] * len(document["i"])
        out[user.decode()] = [reasons[c]["item_id"] if c is not None else None for c in codes]
    return out


@pytest.fixture(scope="module")
def shop_run(tmp_path_factory: pytest.TempPathFactory) -> RunFolder:
    """A generated shop of 400 items (two-character codes) with item-based and other models."""
    events, catalog = generate_shop(300, 400, 9000, seed=1)
    config = parse_config({
        "models": {"itemknn": {}, "ease": {}, "userknn": {}, "popular": {}},
        "lists": {"user_n": 20, "popular_n": 20},
        "selection": {"enabled": False},
    })
    return RunFolder(train(config, tmp_path_factory.mktemp("runs"), data=LoadedInput(events, catalog), show_progress=False))


def test_blobs_carry_the_runs_because_items(shop_run: RunFolder, redis_client: redis.Redis, key_prefix: str) -> None:
    layout = KeyLayout(key_prefix)
    result = Publisher(redis_client, layout, batch_fields=64, show_progress=False).publish_run(shop_run)
    version = result.version
    for model in ("itemknn", "ease"):
        table = shop_run.find_list("user", model).read_all()
        expected = {row["key"]: row["because"] for row in table.to_pylist()}
        assert published_because(redis_client, layout, version, model) == expected
    # Lists without because items have no "b"; the hash holds exactly the codes in use.
    assert all("b" not in orjson.loads(b) for b in redis_client.hvals(layout.user_recs(version, "userknn")))
    used = {i for model in ("itemknn", "ease") for row in published_because(redis_client, layout, version, model).values() for i in row if i}
    reasons = [orjson.loads(v) for v in redis_client.hvals(layout.because_items(version))]
    assert {r["item_id"] for r in reasons} == used and result.counts["because_items"] == len(reasons) == len(used)
    titles = dict(zip(shop_run.catalog()["item_id"].to_pylist(), shop_run.catalog()["title"].to_pylist()))
    assert all(r["title"] == titles[r["item_id"]] for r in reasons)
    blob = orjson.loads(redis_client.hget(layout.user_recs(version, "itemknn"), next(iter(expected))))
    assert len(blob["b"]) == 2 * len(blob["i"])
    meta = orjson.loads(redis_client.get(layout.meta(version)))
    assert meta["reasons"] == {"user:itemknn": "personalized", "user:ease": "personalized",
                               "user:userknn": "similar_users", "user:popular": "popular", "popular": "popular"}


def bytes_per_entry(client: redis.Redis, layout: KeyLayout, version: str, models: list[str]) -> float:
    """Published bytes of the models' user-list blobs, plus the version's because-items
    hash (fields and values), per list entry."""
    total = entries = 0
    for model in models:
        for blob in client.hvals(layout.user_recs(version, model)):
            total += len(blob)
            entries += len(orjson.loads(blob)["i"])
    total += sum(len(k) + len(v) for k, v in client.hgetall(layout.because_items(version)).items())
    return total / entries


def test_reasons_grow_published_bytes_per_entry_by_at_most_30_percent(
    shop_run: RunFolder, redis_client: redis.Redis, key_prefix: str
) -> None:
    """The same run's lists published with and without their because column."""
    layout = KeyLayout(key_prefix)
    models = ["itemknn", "ease"]
    with_reasons = [shop_run.find_list("user", m) for m in models]
    without = [RunList("user", a.model, a.n, table=a.read_all().drop_columns(["because"])) for a in with_reasons]
    catalog = shop_run.catalog()
    plain = Publisher(redis_client, layout, show_progress=False).publish(without, catalog=catalog)
    before = bytes_per_entry(redis_client, layout, plain.version, models)
    explained = Publisher(redis_client, layout, show_progress=False).publish(with_reasons, catalog=catalog)
    after = bytes_per_entry(redis_client, layout, explained.version, models)
    assert explained.counts["because_items"] > 0 and redis_client.hlen(layout.because_items(plain.version)) == 0
    assert after / before <= MAX_GROWTH, (before, after)
    assert after > before


def test_ids_outside_the_catalogue_empty_and_null_rows(redis_client: redis.Redis, key_prefix: str, tmp_path: Path) -> None:
    """Codes follow the catalogue, then new ids in order of appearance; "" and a null row are none."""
    run = spark_run(tmp_path)
    folder = run / "lists" / "user.itemknn"
    folder.mkdir(parents=True)
    pq.write_table(pa.table({
        "key": ["u0", "u1", "u2"],
        "item_ids": [["i1", "i2"], ["i3"], ["i4", "i5"]],
        "scores": pa.array([[2.0, 1.0], [1.0], [2.0, 1.0]], type=pa.list_(pa.float32())),
        "because": pa.array([["i0", "elsewhere"], None, ["", "elsewhere"]], type=pa.list_(pa.string())),
    }), folder / "part-0.parquet")
    metadata = json.loads((run / "metadata.json").read_text())
    metadata["lists"].append({"kind": "user", "model": "itemknn", "path": "lists/user.itemknn", "rows": 3, "n": 2, "reason": "personalized"})
    (run / "metadata.json").write_text(json.dumps(metadata))
    layout = KeyLayout(key_prefix)
    version = Publisher(redis_client, layout, batch_fields=2, show_progress=False).publish_run(run).version
    assert published_because(redis_client, layout, version, "itemknn") == {
        "u0": ["i0", "elsewhere"], "u1": [None], "u2": [None, "elsewhere"],
    }
    # 6 catalogue items: i0 has code 0 ("!"), the other id code 6 ("("), one character each.
    assert {k: orjson.loads(v) for k, v in redis_client.hgetall(layout.because_items(version)).items()} == {
        b"!": {"type": "because", "item_id": "i0", "title": "Toy 0"},
        b"(": {"type": "because", "item_id": "elsewhere", "title": None},
    }
    assert "b" not in orjson.loads(redis_client.hget(layout.user_recs(version, "itemknn"), "u1"))
    # A run that records no reason types (Spark) gets them by model name.
    meta = orjson.loads(redis_client.get(layout.meta(version)))
    assert meta["reasons"] == {"user:als": "personalized", "popular": "popular", "user:itemknn": "personalized"}


def test_an_unknown_reason_type_fails_before_writing(redis_client: redis.Redis, key_prefix: str, tmp_path: Path) -> None:
    run = spark_run(tmp_path)
    metadata = json.loads((run / "metadata.json").read_text())
    metadata["lists"][0]["reason"] = "because we can"
    (run / "metadata.json").write_text(json.dumps(metadata))
    layout = KeyLayout(key_prefix)
    with pytest.raises(DataError, match="unknown reason type 'because we can'"):
        Publisher(redis_client, layout, show_progress=False).publish_run(run)
    assert live_version(redis_client, layout) is None
    assert list(redis_client.scan_iter(match=f"{layout.prefix}v:*")) == []
