"""``train``: the run folder, lists equal to the models' own answers, failures leave nothing."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import redis

from recsys.data.dataset import Dataset
from recsys.errors import DataError
from recsys.models.base import Recommender
from recsys.models.registry import get_model_class
from recsys.data.idmap import IdMap
from recsys.pipeline.config import PipelineConfig, parse_config
from recsys.pipeline.train import LoadedInput, popular_lists, train
from recsys.runs.folder import RunFolder
from recsys.runs.lists import RunList
from recsys.store.keys import KeyLayout
from tests.models.contract import cluster_interactions

MODELS = {"popular": {}, "itemknn": {"k": 20}, "rules": {}, "content": {}}


def config_for(**sections: object) -> PipelineConfig:
    document: dict[str, object] = {"models": MODELS, "lists": {"user_n": 6, "similar_n": 4, "together_n": 3, "popular_n": 5}}
    document.update(sections)
    return parse_config(document)


def dense(run_list: RunList, keys: IdMap, items: IdMap) -> dict[str, np.ndarray]:
    """A stored list back as index arrays of shape (len(keys), n): -1 / -inf padding, and
    rows absent from the file (no item) all padding, as the models answer."""
    table = run_list.read_all()
    out = {"ids": np.full((len(keys), run_list.n), -1, dtype=np.int64)}
    for column in ("scores", "confidence", "lift"):
        if column in table.column_names:
            out[column] = np.full((len(keys), run_list.n), -np.inf if column == "scores" else 0, dtype=np.float32)
    rows = keys.to_index(table["key"].to_pylist())
    assert (rows >= 0).all()
    for position, row in enumerate(rows):
        ids = table["item_ids"][position].as_py()
        assert 0 < len(ids) <= run_list.n
        out["ids"][row, : len(ids)] = items.to_index(ids)
        for column in out.keys() - {"ids"}:
            out[column][row, : len(ids)] = table[column][position].as_py()
    return out


@pytest.fixture(scope="module")
def frames() -> tuple[pd.DataFrame, pd.DataFrame]:
    return cluster_interactions()


@pytest.fixture(scope="module")
def run_dir(frames: tuple[pd.DataFrame, pd.DataFrame], tmp_path_factory: pytest.TempPathFactory) -> Path:
    interactions, catalog = frames
    return train(config_for(), tmp_path_factory.mktemp("runs"), data=LoadedInput(interactions, catalog), show_progress=False)


def test_run_folder_layout_and_metadata(run_dir: Path, frames: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    interactions, catalog = frames
    assert [p.name for p in run_dir.parent.iterdir()] == [run_dir.name]  # no temp folder left
    run = RunFolder(run_dir)
    meta = run.metadata
    dataset = Dataset.from_interactions(interactions, catalog)
    assert meta["fingerprint"] == dataset.fingerprint()
    assert meta["counts"]["users"] == dataset.n_users and meta["counts"]["items"] == dataset.n_items
    assert meta["counts"]["interactions"] == len(interactions)
    assert run.users() == dataset.users and run.items() == dataset.items
    assert {"load", "dataset", "fit.popular", "fit.itemknn", "lists.user.itemknn", "lists.together", "lists.popular"} <= set(meta["timings"])
    names = [(e["kind"], e["model"]) for e in meta["lists"]]
    assert names == [
        ("user", "popular"), ("user", "itemknn"), ("similar", "itemknn"), ("user", "rules"),
        ("together", None), ("user", "content"), ("similar", "content"), ("popular", None),
    ]
    assert meta["default_model"] == "popular" and meta["skipped"] == {}
    assert meta["config"]["models"] == MODELS
    for name in MODELS:
        assert (run_dir / "models" / name / "model.json").exists()
    saved = run.catalog()
    assert saved is not None
    assert saved["item_id"].to_pylist() == dataset.items.ids.tolist()
    assert saved["category"][dataset.items.index_of("i31")].as_py() == "cat1"
    assert meta["catalog"] == "catalog.parquet" and meta["backend"] == "local" and meta["format_version"] == 2
    assert meta["counts"]["list_users"] == dataset.n_users and meta["counts"]["inactive_users"] == 0
    # Seconds and peak memory per step, and for the whole run.
    peaks = meta["peak_rss_mb"]
    assert set(peaks["steps"]) == set(meta["timings"])
    assert all(0 < peak <= peaks["overall"] for peak in peaks["steps"].values())
    # metadata.json is strict JSON (no NaN).
    json.loads((run_dir / "metadata.json").read_text(), parse_constant=lambda c: pytest.fail(f"non-standard JSON {c}"))


def test_lists_equal_the_models_answers(run_dir: Path) -> None:
    run = RunFolder(run_dir)
    users, items = run.users(), run.items()
    for name in ("itemknn", "content", "rules", "popular"):
        model = Recommender.load(run_dir / "models" / name)
        ids, scores = model.recommend(np.arange(model.n_users), 6)
        saved = dense(run.find_list("user", name), users, items)
        np.testing.assert_array_equal(saved["ids"], ids)
        np.testing.assert_allclose(saved["scores"], scores, rtol=1e-6)
        assert run.find_list("user", name).expected_rows == int((ids[:, 0] >= 0).sum())
    for name in ("itemknn", "content"):
        model = Recommender.load(run_dir / "models" / name)
        ids, _ = model.similar_items(np.arange(model.n_items), 4)
        np.testing.assert_array_equal(dense(run.find_list("similar", name), items, items)["ids"], ids)
    rules = Recommender.load(run_dir / "models" / "rules")
    ids, confidence, lift = rules.bought_together(np.arange(rules.n_items), 3)  # type: ignore[attr-defined]
    together = dense(run.find_list("together"), items, items)
    np.testing.assert_array_equal(together["ids"], ids)
    listed = ids >= 0
    np.testing.assert_allclose(together["confidence"][listed], confidence[listed])
    np.testing.assert_allclose(together["lift"][listed], lift[listed])
    np.testing.assert_allclose(together["scores"][listed], confidence[listed])  # ranked by confidence
    assert (together["ids"] >= 0).any()


def test_popular_lists_per_category(run_dir: Path) -> None:
    run = RunFolder(run_dir)
    stored = run.find_list("popular")
    labels = stored.read_all()["key"].to_pylist()
    assert labels == ["", "cat0", "cat1", "cat2"]
    popular = dense(stored, IdMap(labels), run.items())
    model = Recommender.load(run_dir / "models" / "popular")
    catalog = run.catalog()
    assert catalog is not None
    categories = np.asarray(catalog["category"].to_pylist())
    filters = [None] + [np.flatnonzero(categories == label) for label in labels[1:]]
    for row, allowed in enumerate(filters):
        # Same scores as the model's own top_items; among equal scores any order is right.
        _, expected = model.top_items(5, item_filter=allowed)  # type: ignore[attr-defined]
        np.testing.assert_array_equal(popular["scores"][row], expected)
        np.testing.assert_array_equal(model.popularity[popular["ids"][row]], expected)  # type: ignore[attr-defined]
        if allowed is not None:
            assert set(popular["ids"][row].tolist()) <= set(allowed.tolist())


def test_popular_lists_known_answer() -> None:
    popularity = np.array([5, 0, 7, 7, 1, 3, 2], dtype=np.float32)
    categories = np.array(["b", "a", "a", "", "b", "b", "a"])
    lists = popular_lists(popularity, categories, 2)
    assert lists.labels.tolist() == ["", "a", "b"]  # type: ignore[union-attr]
    assert lists.ids.tolist() == [[2, 3], [2, 6], [0, 5]]  # ties: lower index first
    assert lists.scores.tolist() == [[7, 7], [7, 2], [5, 3]]
    short = popular_lists(popularity, categories, 4)
    assert short.ids[1].tolist() == [2, 6, -1, -1]  # item 1 has popularity 0: never listed
    assert np.isneginf(short.scores[1, 2:]).all()
    overall_only = popular_lists(popularity, None, 3)
    assert overall_only.ids.tolist() == [[2, 3, 0]] and overall_only.labels.tolist() == [""]  # type: ignore[union-attr]


def test_failed_training_leaves_no_folder(
    frames: tuple[pd.DataFrame, pd.DataFrame], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    interactions, catalog = frames
    rules = get_model_class("rules")

    def broken(self: Recommender, dataset: Dataset, *, show_progress: bool = False) -> None:
        raise MemoryError("out of memory in the middle of training")

    monkeypatch.setattr(rules, "_fit", broken)
    with pytest.raises(MemoryError):
        train(config_for(), tmp_path, data=LoadedInput(interactions, catalog), show_progress=False)
    assert list(tmp_path.iterdir()) == []


def test_model_without_its_data_is_skipped_or_fails(frames: tuple[pd.DataFrame, pd.DataFrame], tmp_path: Path) -> None:
    interactions, catalog = frames
    no_orders = interactions.drop(columns=["order_id"])
    run_dir = train(config_for(), tmp_path / "skip", data=LoadedInput(no_orders, catalog), show_progress=False)
    meta = RunFolder(run_dir).metadata
    assert meta["skipped"] == {"rules": "needs baskets, which the data has none of"}
    assert not any(e["kind"] == "together" or e["model"] == "rules" for e in meta["lists"])

    strict = config_for(training={"if_data_missing": "fail"})
    with pytest.raises(DataError, match=r"models\.rules: needs baskets"):
        train(strict, tmp_path / "fail", data=LoadedInput(no_orders, catalog), show_progress=False)
    assert list((tmp_path / "fail").iterdir()) == []

    with pytest.raises(DataError, match="no configured model can train"):
        train(parse_config({"models": {"rules": {}}}), tmp_path / "none", data=LoadedInput(no_orders), show_progress=False)


def test_empty_data_is_an_error(tmp_path: Path) -> None:
    empty = pd.DataFrame({"user_id": pd.Series(dtype="string"), "item_id": pd.Series(dtype="string")})
    with pytest.raises(DataError, match="no interactions to train on"):
        train(config_for(), tmp_path, data=LoadedInput(empty), show_progress=False)


def test_old_runs_pruned_and_stale_temp_removed(frames: tuple[pd.DataFrame, pd.DataFrame], tmp_path: Path) -> None:
    interactions, _ = frames
    stale = tmp_path / ".tmp-20200101T000000.000Z-abcdef"
    stale.mkdir()
    (stale / ".owner").write_text(f"{os.uname().nodename}:999999999")
    alive = tmp_path / ".tmp-20200101T000000.000Z-123456"
    alive.mkdir()
    (alive / ".owner").write_text(f"{os.uname().nodename}:{os.getpid()}")
    config = parse_config({"models": {"popular": {}}, "training": {"keep_runs": 2}})
    runs = [train(config, tmp_path, data=LoadedInput(interactions), show_progress=False) for _ in range(3)]
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".")) == sorted(r.name for r in runs[1:])
    assert not stale.exists() and alive.exists()


def test_holdout_evaluation_in_metadata(frames: tuple[pd.DataFrame, pd.DataFrame], tmp_path: Path) -> None:
    interactions, catalog = frames
    config = parse_config({"models": {"popular": {}, "itemknn": {"k": 20}}, "evaluation": {"enabled": True, "k": 5}})
    meta = RunFolder(train(config, tmp_path, data=LoadedInput(interactions, catalog), show_progress=False)).metadata
    evaluation = meta["evaluation"]
    assert evaluation["k"] == 5 and set(evaluation["models"]) == {"popular", "itemknn"}
    assert 0 <= evaluation["models"]["itemknn"]["ndcg@5"] <= 1
    # The cluster data has a clear structure: item-kNN beats popularity.
    assert evaluation["models"]["itemknn"]["ndcg@5"] > evaluation["models"]["popular"]["ndcg@5"]
    assert "evaluate" in meta["timings"]


def test_events_from_redis_close_the_loop(
    frames: tuple[pd.DataFrame, pd.DataFrame], tmp_path: Path, redis_client: redis.Redis, key_prefix: str
) -> None:
    interactions, catalog = frames
    layout = KeyLayout(key_prefix)
    good = {"type": "purchase", "user_id": "new-user", "session_id": "s1", "item_id": "i5", "value": "1",
            "timestamp": "1700000500", "recommendation_id": "r1"}
    redis_client.xadd(layout.events, good)
    redis_client.xadd(layout.events, {**good, "type": "click", "item_id": "i6", "value": "", "timestamp": ""})
    bad_id = redis_client.xadd(layout.events, {**good, "user_id": ""})
    redis_client.xadd(layout.events, {**good, "value": "lots"})
    config = config_for(models={"popular": {}}, data={"events": {"from_redis": True}}, redis={"key_prefix": key_prefix})
    meta = RunFolder(
        train(config, tmp_path, data=LoadedInput(interactions, catalog), events_client=redis_client, show_progress=False)
    ).metadata
    events = meta["events"]
    assert (events["read"], events["used"]) == (4, 2)
    assert events["dropped"] == {"missing user_id": 1, "value not a number": 1}
    assert events["examples"][0] == {"entry": bad_id.decode(), "field": "user_id", "reason": "missing user_id"}
    assert meta["counts"]["events"] == 2 and meta["counts"]["interactions"] == len(interactions) + 2
    users = RunFolder(tmp_path / meta["run"]).users()
    assert "new-user" in users

    strict = config_for(models={"popular": {}}, data={"validation": "strict", "events": {"from_redis": True}},
                        redis={"key_prefix": key_prefix})
    with pytest.raises(DataError, match=rf"{key_prefix}events: entry {bad_id.decode()}: field 'user_id'"):
        train(strict, tmp_path / "strict", data=LoadedInput(interactions, catalog), events_client=redis_client)


@pytest.mark.parametrize("policy", ["drop", "keep"])
def test_events_of_items_outside_the_catalogue(
    frames: tuple[pd.DataFrame, pd.DataFrame], tmp_path: Path, redis_client: redis.Redis, key_prefix: str, policy: str
) -> None:
    """2,000 events from 1,000 invented users on an invented item: stored by the API, but
    neither trained on nor counted into popularity unless unknown_items = "keep"."""
    from recsys.abtest.events import validate_events, write_events

    interactions, catalog = frames
    layout = KeyLayout(key_prefix)
    flood = [{"type": "purchase", "user_id": f"bot{k % 1000}", "item_id": "invented", "value": 1} for k in range(2000)]
    for start in range(0, len(flood), 500):
        write_events(redis_client, layout, validate_events(flood[start : start + 500]))
    known = catalog["item_id"].astype(str).iloc[0]
    write_events(redis_client, layout, validate_events({"type": "click", "user_id": "real", "item_id": known}))
    config = config_for(models={"popular": {}}, data={"events": {"from_redis": True, "unknown_items": policy}},
                        redis={"key_prefix": key_prefix})
    run = RunFolder(train(config, tmp_path, data=LoadedInput(interactions, catalog), events_client=redis_client, show_progress=False))
    items = run.items()
    if policy == "drop":
        assert "invented" not in items and "real" in run.users()
        assert run.metadata["events"]["dropped"] == {"item not in the catalogue": 2000}
        assert run.metadata["events"]["used"] == 1
    else:
        assert "invented" in items
        assert run.metadata["events"]["used"] == 2001


def test_events_newest_n(redis_client: redis.Redis, key_prefix: str) -> None:
    from recsys.pipeline.events import read_events

    layout = KeyLayout(key_prefix)
    for k in range(25):
        redis_client.xadd(layout.events, {"type": "view", "user_id": f"u{k}", "item_id": "i1", "timestamp": str(1_700_000_000 + k)})
    frame, report = read_events(redis_client, layout, max_events=10)
    assert frame["user_id"].tolist() == [f"u{k}" for k in range(15, 25)]
    assert frame["timestamp"].tolist() == list(range(1_700_000_015, 1_700_000_025))
    everything, _ = read_events(redis_client, layout)
    assert len(everything) == 25 and everything["user_id"].iloc[0] == "u0"


def test_redis_password_never_stored(frames: tuple[pd.DataFrame, pd.DataFrame], tmp_path: Path) -> None:
    from recsys.pipeline.run import run_config

    interactions, _ = frames
    config = parse_config({"models": {"popular": {}}, "redis": {"url": "redis://app:s3cret@cache:6379/0"}})
    run_dir = train(config, tmp_path, data=LoadedInput(interactions), show_progress=False)
    text = (run_dir / "metadata.json").read_text()
    assert "s3cret" not in text and "redis://app:***@cache:6379/0" in text
    assert run_config(RunFolder(run_dir)).redis.url is None


def test_training_writes_each_batch_as_it_comes(
    frames: tuple[pd.DataFrame, pd.DataFrame], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One row group per batch the model yields: the writer never gathers a model's lists."""
    import pyarrow.parquet as pq

    interactions, catalog = frames
    model_class = get_model_class("itemknn")
    original = model_class.iter_recommend_all
    yielded: list[int] = []

    def small_batches(self: Recommender, n: int, **kwargs: object):  # type: ignore[no-untyped-def]
        kwargs["batch_size"] = 5
        for rows, ids, scores in original(self, n, **kwargs):  # type: ignore[arg-type]
            yielded.append(int((ids[:, 0] >= 0).sum()))
            yield rows, ids, scores

    monkeypatch.setattr(model_class, "iter_recommend_all", small_batches)
    config = parse_config({"models": {"itemknn": {"k": 20}}, "lists": {"user_n": 3}})
    run = RunFolder(train(config, tmp_path, data=LoadedInput(interactions, catalog), show_progress=False))
    files = list((run.path / "lists" / "user.itemknn").glob("*.parquet"))
    metadata = pq.read_metadata(files[0])
    sizes = [metadata.row_group(g).num_rows for g in range(metadata.num_row_groups)]
    assert len(yielded) > 3 and sizes == [size for size in yielded if size]


def test_user_lists_carry_because_items_and_reason_types(run_dir: Path) -> None:
    """Models that explain write each entry's because item (their own ``explain``); every
    user list and the popular list record the reason type of entries without one."""
    run = RunFolder(run_dir)
    users, items = run.users(), run.items()
    entries = {(e["kind"], e["model"]): e for e in run.metadata["lists"]}
    assert entries[("user", "popular")]["reason"] == "popular" and entries[("popular", None)]["reason"] == "popular"
    for name in ("itemknn", "rules", "content"):
        assert entries[("user", name)]["reason"] == "personalized" and entries[("user", name)]["because_seconds"] >= 0
        model = Recommender.load(run_dir / "models" / name)
        table = run.find_list("user", name).read_all()
        rows = users.to_index(table["key"].to_pylist())
        lengths = [len(v) for v in table["item_ids"].to_pylist()]
        flat_items = items.to_index([i for row in table["item_ids"].to_pylist() for i in row])
        expected = model.explain(np.repeat(rows, lengths), flat_items)
        stored = [b for row in table["because"].to_pylist() for b in row]
        assert stored == [items.ids[b] if b >= 0 else None for b in expected], name
        assert sum(b is not None for b in stored) > 0.9 * len(stored), name
    popular = run.find_list("user", "popular")
    assert "because" not in popular.columns()


def test_reasons_off_writes_no_because_column(frames: tuple[pd.DataFrame, pd.DataFrame], tmp_path: Path) -> None:
    interactions, catalog = frames
    config = config_for(models={"itemknn": {"k": 20}, "popular": {"mode": "trending"}}, lists={"user_n": 4, "reasons": False})
    run = RunFolder(train(config, tmp_path, data=LoadedInput(interactions, catalog), show_progress=False))
    assert "because" not in run.find_list("user", "itemknn").columns()
    entries = {(e["kind"], e["model"]): e for e in run.metadata["lists"]}
    assert "because_seconds" not in entries[("user", "itemknn")]
    # The cluster data has timestamps: the popular model ranks by trending alone.
    assert entries[("user", "popular")]["reason"] == "trending" and entries[("popular", None)]["reason"] == "trending"
