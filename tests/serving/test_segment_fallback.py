"""Segment fallback end to end: a shop of two clearly different tastes goes through the real
pipeline (``[segments]`` on) and publisher into the test Redis; a known user without a list
of their own gets their segment's popular list, an unknown user the global one."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pyarrow.parquet as pq
import pytest
import redis
from flask.testing import FlaskClient

from recsys.store.keys import KeyLayout
from tests.serving.conftest import delete_prefix

DAY = 86_400
END = 1_700_000_000
BOOKS = [f"b{j}" for j in range(10)]
GARDEN = [f"g{j}" for j in range(10)]
#: Readers and gardeners whose last purchase is old: no user list (lists.active_within_days).
LAPSED_READERS = ["reader-lapsed-0", "reader-lapsed-1"]
LAPSED_GARDENERS = ["gardener-lapsed-0"]


def taste_shop(seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """24 readers buy books only, 40 gardeners garden items only (so the overall popular list
    is mostly garden); the lapsed ones bought 100-130 days before the end of the log."""
    rng = np.random.default_rng(seed)
    catalog = pd.DataFrame(
        {
            "item_id": BOOKS + GARDEN,
            "title": [f"Book {j}" for j in range(10)] + [f"Tool {j}" for j in range(10)],
            "category": ["books"] * 10 + ["garden"] * 10,
            "price": [12.0] * 10 + [30.0] * 10,
        }
    )
    users = [(f"reader-{u}", BOOKS, (0, 40)) for u in range(22)]
    users += [(name, BOOKS, (100, 130)) for name in LAPSED_READERS]
    users += [(f"gardener-{u}", GARDEN, (0, 40)) for u in range(39)]
    users += [(name, GARDEN, (100, 130)) for name in LAPSED_GARDENERS]
    rows = []
    for user, items, (near, far) in users:
        for order in range(int(rng.integers(2, 5))):
            when = END - int(rng.uniform(near, far) * DAY)
            for item in rng.choice(items, size=int(rng.integers(1, 4)), replace=False):
                rows.append((user, str(item), "purchase", 1.0, when, f"{user}-{order}"))
    rows.append(("reader-0", "b0", "purchase", 1.0, END, "reader-0-last"))
    frame = pd.DataFrame(rows, columns=["user_id", "item_id", "event_type", "value", "timestamp", "order_id"])
    return frame, catalog


@pytest.fixture(scope="module")
def segmented(redis_url: str, module_prefix: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    from recsys.pipeline.config import parse_config
    from recsys.pipeline.run import run_pipeline

    folder = tmp_path_factory.mktemp("taste-shop")
    events, catalog = taste_shop()
    events.to_parquet(folder / "interactions.parquet", index=False)
    catalog.to_parquet(folder / "catalog.parquet", index=False)
    config = parse_config(
        {
            "data": {"path": str(folder), "format": "auto", "validation": "lenient"},
            "training": {"out": str(folder / "runs")},
            "models": {"popular": {}},
            "lists": {"user_n": 5, "popular_n": 20, "active_within_days": 60},
            "selection": {"enabled": False},
            "segments": {"enabled": True, "k": 2, "min_customers": 10, "popular_n": 10},
        },
        source="test configuration",
    )
    result = run_pipeline(config, redis_url=redis_url, prefix=module_prefix)
    client = redis.Redis.from_url(redis_url)
    meta = orjson.loads(client.get(KeyLayout(module_prefix).meta(result.publish.version)))
    yield {"prefix": module_prefix, "version": result.publish.version, "run": result.run_dir, "meta": meta, "client": client}
    client.close()


@pytest.fixture
def api(segmented: dict[str, Any], redis_url: str) -> FlaskClient:
    from serving import create_app

    app = create_app({"REDIS_URL": redis_url, "KEY_PREFIX": segmented["prefix"], "TESTING": True})
    return app.test_client()


def _segment_of(run: Path) -> dict[str, int]:
    table = pq.read_table(run / "segments.parquet").to_pandas()
    return dict(zip(table["user_id"], table["segment"]))


def test_run_folder_holds_the_segment_table_and_lists(segmented: dict[str, Any]) -> None:
    run = Path(segmented["run"])
    segment_of = _segment_of(run)
    readers = {segment_of[u] for u in segment_of if u.startswith("reader")}
    gardeners = {segment_of[u] for u in segment_of if u.startswith("gardener")}
    assert len(readers) == 1 and len(gardeners) == 1 and readers != gardeners
    lists = pq.read_table(run / "lists" / "segment").to_pylist()
    by_segment = {row["key"]: row["item_ids"] for row in lists}
    assert set(by_segment[str(readers.pop())]) <= set(BOOKS)
    assert set(by_segment[str(gardeners.pop())]) <= set(GARDEN)
    assert set(segmented["meta"]["segments"]) == {"0", "1"}
    assert segmented["meta"]["counts"]["segment_of"] == len(segment_of)


def test_published_mapping_matches_the_run(segmented: dict[str, Any]) -> None:
    layout = KeyLayout(segmented["prefix"])
    stored = segmented["client"].hgetall(layout.segment_of(segmented["version"]))
    assert {k.decode(): int(v) for k, v in stored.items()} == _segment_of(Path(segmented["run"]))
    assert segmented["client"].hlen(layout.segment_popular(segmented["version"])) == 2


def test_known_user_without_a_list_gets_the_segment_list(api: FlaskClient, segmented: dict[str, Any]) -> None:
    layout = KeyLayout(segmented["prefix"])
    for user in LAPSED_READERS:
        assert not segmented["client"].hexists(layout.user_recs(segmented["version"], "popular"), user)
        body = api.get(f"/v1/users/{user}/recommendations?n=5").get_json()
        assert body["fallback"] == "segment", body
        assert body["model"] == "segment"
        assert body["topped_up"] is False
        segment = str(_segment_of(Path(segmented["run"]))[user])
        assert body["segment"] == segmented["meta"]["segments"][segment]
        assert [e["item_id"] for e in body["items"]] and all(e["item_id"] in BOOKS for e in body["items"])
    gardener = api.get(f"/v1/users/{LAPSED_GARDENERS[0]}/recommendations?n=5").get_json()
    assert gardener["fallback"] == "segment"
    assert all(e["item_id"] in GARDEN for e in gardener["items"])


def test_unknown_user_keeps_the_popular_fallback(api: FlaskClient) -> None:
    body = api.get("/v1/users/nobody/recommendations?n=5").get_json()
    assert body["fallback"] == "popular" and body["model"] == "popular"
    assert "segment" not in body
    # The overall list follows the larger group.
    assert sum(e["item_id"] in GARDEN for e in body["items"]) >= 3


def test_short_list_is_topped_up_from_the_segment(api: FlaskClient, segmented: dict[str, Any]) -> None:
    # reader-0 has a list of the popular model (mostly garden: the overall top items it has
    # not bought); asking for more than it holds fills the rest from the readers' list.
    body = api.get("/v1/users/reader-0/recommendations?n=15").get_json()
    assert body["fallback"] is None and body["model"] == "popular"
    assert body["topped_up"] is True
    assert body["segment"] is not None
    served = [e["item_id"] for e in body["items"]]
    own = 5  # user_n
    assert served[own:] and all(item in BOOKS for item in served[own : own + 3])


def test_active_user_with_a_full_list_has_no_segment(api: FlaskClient) -> None:
    body = api.get("/v1/users/gardener-1/recommendations?n=3").get_json()
    assert body["fallback"] is None and body["topped_up"] is False
    assert "segment" not in body


def test_forgetting_a_user_removes_them_from_the_segments(segmented: dict[str, Any]) -> None:
    from recsys.privacy.forget import forget_users

    layout = KeyLayout(segmented["prefix"])
    run = Path(segmented["run"])
    assert "gardener-5" in _segment_of(run)
    forget_users(segmented["client"], layout, ["gardener-5"], runs_root=run.parent, archive_root=None)
    assert not segmented["client"].hexists(layout.segment_of(segmented["version"]), "gardener-5")
    assert "gardener-5" not in _segment_of(run)


def test_segments_config_is_off_by_default_and_strict() -> None:
    from recsys.errors import ConfigError
    from recsys.pipeline.config import parse_config

    assert parse_config({}, source="t").segments.enabled is False
    for bad in ({"segments": {"enabled": True, "kk": 3}}, {"segments": {"k": 1}},
                {"segments": {"enabled": True}, "training": {"backend": "spark"}}):
        with pytest.raises(ConfigError):
            parse_config(bad, source="t")
