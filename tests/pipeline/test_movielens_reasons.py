"""Acceptance on MovieLens 100K (issue #19, explanations): the pipeline publishes a because
item for the entries of item-based models and the ranker; each one the API can name is in
the user's training history, and removing it from that history lowers the entry's score."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import orjson
import pytest
import redis

from recsys.models.base import Recommender
from recsys.pipeline.config import parse_config
from recsys.pipeline.run import run_pipeline
from recsys.runs.folder import RunFolder
from recsys.store.codec import split_codes
from recsys.store.keys import KeyLayout
from tests.models.test_ranker import scores_without_because

N = 10
RANKER = {
    "candidates": [{"model": "ease"}, {"model": "itemknn"}, {"model": "popular"}],
    "per_model": 30,
    "n_estimators": 40,
}


def published(client: redis.Redis, layout: KeyLayout, version: str, model: str, run: RunFolder) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(user, item, because) index arrays of every published entry of a model (because -1: none)."""
    codes = {k.decode(): orjson.loads(v)["item_id"] for k, v in client.hgetall(layout.because_items(version)).items()}
    users, items = run.users(), run.items()
    rows: list[int] = []
    entries: list[str] = []
    because: list[str | None] = []
    for user, blob in client.hgetall(layout.user_recs(version, model)).items():
        document = orjson.loads(blob)
        rows += [users.index_of(user.decode())] * len(document["i"])
        entries += document["i"]
        found = split_codes(document["b"], len(document["i"])) if "b" in document else [None] * len(document["i"])
        because += [codes[c] if c is not None else None for c in found]
    because_index = np.array([items.index_of(b) if b is not None else -1 for b in because], dtype=np.int64)
    return np.asarray(rows), items.to_index(entries), because_index


@pytest.mark.slow
@pytest.mark.movielens
def test_published_because_items_on_ml100k(datasets_dir: Path, tmp_path: Path, redis_url: str, redis_client: redis.Redis, key_prefix: str) -> None:
    config = parse_config({
        "data": {"path": str(datasets_dir / "ml-100k"), "format": "movielens-100k"},
        "training": {"out": str(tmp_path / "runs")},
        "models": {"itemknn": {}, "ease": {}, "ranker": RANKER, "als": {"factors": 16, "iterations": 4, "random_state": 0}},
        "lists": {"user_n": N, "similar_n": 5, "popular_n": 10},
        "selection": {"enabled": False},
        "publish": {"default_model": "ease"},
    }, source="test configuration")
    result = run_pipeline(config, redis_url=redis_url, prefix=key_prefix)
    run, layout, version = RunFolder(result.run_dir), KeyLayout(key_prefix), result.publish.version
    meta = orjson.loads(redis_client.get(layout.meta(version)))
    assert meta["reasons"]["user:als"] == "personalized"
    for name in ("itemknn", "ease", "ranker"):
        model = Recommender.load(run.path / "models" / name)
        users, items, because = published(redis_client, layout, version, name, run)
        assert len(users) == model.n_users * N
        has = because >= 0
        assert has.mean() > 0.99, name
        # Each because item is in the user's training history ...
        assert np.asarray(model.user_items[users[has], because[has]]).ravel().min() > 0, name
        # ... and removing it lowers the entry's score (the ranker's: its EASE candidate's,
        # the model its because items come from).
        scorer = model._explaining_model() if name == "ranker" else model  # type: ignore[attr-defined]
        assert scorer is not None and scorer.name in ("itemknn", "ease")
        before, after = scores_without_because(scorer, users[has], items[has], because[has])
        assert np.all(np.where(np.isfinite(after), after, -np.inf) < before - 1e-7), name
    assert "b" not in orjson.loads(redis_client.hget(layout.user_recs(version, "als"), "1"))

    # The API names the same items, with their titles from the catalogue.
    from serving import create_app

    client = create_app({"REDIS_URL": redis_url, "KEY_PREFIX": key_prefix, "TESTING": True}).test_client()
    titles = dict(zip(run.catalog()["item_id"].to_pylist(), run.catalog()["title"].to_pylist()))
    users, items, because = published(redis_client, layout, version, "ease", run)
    names = run.items().ids
    for user in ("1", "42", "943"):
        body = client.get(f"/v1/users/{user}/recommendations?n={N}").get_json()
        assert body["model"] == "ease" and not body["topped_up"]
        mine = users == run.users().index_of(user)
        assert [e["item_id"] for e in body["items"]] == [names[i] for i in items[mine]]
        expected = [{"type": "because", "item_id": names[b], "title": titles[names[b]]} for b in because[mine]]
        assert [e["reason"] for e in body["items"]] == expected
