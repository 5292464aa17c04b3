"""Forgetting a user: nowhere in Redis, the stream, the archive or the run folders afterwards;
a retrain does not bring them back; the API serves them the fallback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import redis
from flask import Flask

from recsys.data.generate import generate_shop
from recsys.runs.folder import RunFolder, completed_runs
from recsys.pipeline.config import PipelineConfig, parse_config
from recsys.pipeline.run import run_pipeline
from recsys.pipeline.train import LoadedInput
from recsys.privacy.forget import forget_users
from recsys.privacy.tombstones import TOMBSTONE_FILE, hash_user_id
from recsys.store.keys import KeyLayout

REPO_ROOT = Path(__file__).resolve().parents[2]
TARGET = "forget-me-Zq81"
OTHER = "keep-me-Wx42"
ADMIN = "forget-Admin-3"
AUTH = {"Authorization": f"Bearer {ADMIN}"}


def shop() -> LoadedInput:
    interactions, catalog = generate_shop(80, 40, 4000, seed=3)
    users = interactions["user_id"].astype(str)
    interactions["user_id"] = users.replace({"u1": TARGET, "u2": OTHER})
    return LoadedInput(interactions, catalog)


def config(tmp_path: Path, redis_url: str, prefix: str) -> PipelineConfig:
    return parse_config({
        "models": {"popular": {}, "itemknn": {"k": 10}, "als": {"factors": 8, "iterations": 3}},
        "lists": {"user_n": 8, "similar_n": 5, "popular_n": 20},
        "data": {"events": {"from_redis": True}},
        "training": {"out": str(tmp_path / "runs"), "keep_runs": 2},
        "events": {"archive": str(tmp_path / "events"), "batch": 25},
        "redis": {"url": redis_url, "key_prefix": prefix},
        "publish": {"default_model": "als"},
    })


def app_for(redis_url: str, prefix: str, tmp_path: Path | None = None) -> Flask:
    from serving import create_app

    settings = {"REDIS_URL": redis_url, "KEY_PREFIX": prefix, "TESTING": True, "ADMIN_TOKEN": ADMIN}
    if tmp_path is not None:
        settings.update({"FORGET_RUNS": str(tmp_path / "runs"), "FORGET_ARCHIVE": str(tmp_path / "events")})
    return create_app(settings)


def post_events(app: Flask, user: str, items: list[str], start: int) -> None:
    body = [{"type": "click", "user_id": user, "item_id": item, "timestamp": 1_760_000_000 + start + k}
            for k, item in enumerate(items)]
    response = app.test_client().post("/v1/events", json=body)
    assert response.status_code == 202, response.get_data(as_text=True)


def redis_mentions(client: redis.Redis, prefix: str, text: str) -> list[str]:
    """Every key under ``prefix`` whose name, field, member or value contains ``text``."""
    needle = text.encode()
    found = []
    for key in client.scan_iter(match=f"{prefix}*", count=1000):
        kind = client.type(key).decode()
        if kind == "string":
            parts = [client.get(key) or b""]
        elif kind == "hash":
            parts = [b for pair in client.hgetall(key).items() for b in pair]
        elif kind == "zset":
            parts = list(client.zrange(key, 0, -1))
        elif kind == "set":
            parts = list(client.smembers(key))
        elif kind == "list":
            parts = list(client.lrange(key, 0, -1))
        elif kind == "stream":
            parts = [b for _, fields in client.xrange(key) for pair in fields.items() for b in pair]
        else:
            raise AssertionError(f"unexpected key type {kind} of {key!r}")
        if needle in key or any(needle in p for p in parts):
            found.append(key.decode())
    return found


def disk_mentions(root: Path, text: str) -> list[str]:
    """Every file under ``root`` holding ``text``: .npz arrays and Parquet read, others as bytes."""
    found = []
    for path in root.rglob("*"):
        if not path.is_file():
            continue
        if path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as data:
                hit = any(a.dtype.kind in "US" and np.char.find(a.astype(str), text).max(initial=-1) >= 0 for a in (data[k] for k in data.files))
        elif path.suffix == ".parquet":
            hit = any(text in str(v) for column in pq.read_table(path).columns for v in column.to_pylist())
        else:
            raw = path.read_bytes()
            hit = text.encode() in raw or text.encode("utf-32-le") in raw
        if hit:
            found.append(str(path.relative_to(root)))
    return found


@pytest.fixture
def deployment(tmp_path: Path, redis_url: str, redis_client: redis.Redis, key_prefix: str) -> tuple[PipelineConfig, Flask, LoadedInput]:
    """Two trainings and publishes (two run folders, two versions), events in the archive
    and in the stream, a recent set: the user is everywhere."""
    settings = config(tmp_path, redis_url, key_prefix)
    data = shop()
    app = app_for(redis_url, key_prefix)
    post_events(app, TARGET, ["i3", "i4", "i5"], 0)
    post_events(app, OTHER, ["i3", "i6"], 10)
    run_pipeline(settings, data=data, show_progress=False)  # archives, then trains on archive + data
    post_events(app, TARGET, ["i7", "i8"], 20)
    post_events(app, OTHER, ["i9"], 30)
    run_pipeline(settings, data=data, show_progress=False)
    post_events(app, TARGET, ["i9"], 40)  # still in the stream
    layout = KeyLayout(key_prefix)
    assert redis_client.zcard(layout.versions) == 2
    assert redis_mentions(redis_client, key_prefix, TARGET)
    assert disk_mentions(tmp_path / "runs", TARGET) and disk_mentions(tmp_path / "events", TARGET)
    return settings, app, data


def test_forget_through_the_api_leaves_the_id_nowhere_and_a_retrain_keeps_it_out(
    tmp_path: Path, redis_url: str, redis_client: redis.Redis, key_prefix: str,
    deployment: tuple[PipelineConfig, Flask, LoadedInput],
) -> None:
    settings, _, data = deployment
    layout = KeyLayout(key_prefix)
    before = app_for(redis_url, key_prefix).test_client().get(f"/v1/users/{TARGET}/recommendations?n=5").get_json()
    assert before["fallback"] is None
    app = app_for(redis_url, key_prefix, tmp_path)
    response = app.test_client().delete(f"/v1/admin/users/{TARGET}", headers=AUTH)
    assert response.status_code == 200, response.get_data(as_text=True)
    receipt = response.get_json()
    [user] = receipt["users"]
    assert user["tombstone"] == hash_user_id(TARGET)
    assert user["lists"] == 2 * 3  # three user-list models in each of the two versions
    assert user["keys"] == 1  # the recent set
    assert user["stream_events"] == 1 and user["archived_events"] == 5
    assert user["runs"] == 2 and sorted(receipt["runs"]["rewritten"]) == [p.name for p in completed_runs(tmp_path / "runs")]
    assert receipt["disk_pending"] is False and TARGET not in json.dumps(receipt)

    assert redis_mentions(redis_client, key_prefix, TARGET) == []
    assert disk_mentions(tmp_path / "runs", TARGET) == []
    assert disk_mentions(tmp_path / "events", TARGET) == []
    # The others are untouched.
    assert redis_mentions(redis_client, key_prefix, OTHER) and disk_mentions(tmp_path / "events", OTHER)
    # The rewritten runs still publish (rollback material), without the user.
    for folder in completed_runs(tmp_path / "runs"):
        run = RunFolder(folder)
        assert TARGET not in run.users() and OTHER in run.users()
        assert run.metadata["erasures"]["users_removed"] == 1 and not (folder / "models" / "als").exists()
        assert all(e["rows"] == len(run.users()) for e in run.list_entries() if e["kind"] == "user")

    answer = app.test_client().get(f"/v1/users/{TARGET}/recommendations?n=5").get_json()
    assert answer["fallback"] == "popular" and len(answer["items"]) == 5

    # A retrain on the same input (which still holds the user's rows) leaves them out.
    run_pipeline(settings, data=data, show_progress=False)
    newest = RunFolder(completed_runs(tmp_path / "runs")[-1])
    forgotten = newest.metadata["forgotten"]
    assert forgotten["tombstones"] == 1 and forgotten["users_dropped"] == 1
    assert forgotten["rows_dropped"] == int((data.interactions["user_id"] == TARGET).sum())
    assert len(completed_runs(tmp_path / "runs")) == settings.training.keep_runs
    assert redis_mentions(redis_client, key_prefix, TARGET) == []
    assert disk_mentions(tmp_path / "runs", TARGET) == []
    assert disk_mentions(tmp_path / "events", TARGET) == []
    answer = app.test_client().get(f"/v1/users/{TARGET}/recommendations?n=5").get_json()
    assert answer["fallback"] == "popular"
    assert json.loads((tmp_path / "runs" / TOMBSTONE_FILE).read_text())["tombstones"].keys() == {hash_user_id(TARGET)}
    assert app.test_client().delete(f"/v1/admin/users/{TARGET}").status_code == 401


def test_api_without_folders_queues_the_disk_part_for_the_next_run(
    tmp_path: Path, redis_url: str, redis_client: redis.Redis, key_prefix: str,
    deployment: tuple[PipelineConfig, Flask, LoadedInput],
) -> None:
    settings, app, data = deployment
    receipt = app.test_client().delete(f"/v1/admin/users/{TARGET}", headers=AUTH).get_json()
    assert receipt["disk_pending"] is True and receipt["runs"]["pending"] is True
    assert redis_mentions(redis_client, key_prefix, TARGET) == []
    assert disk_mentions(tmp_path / "runs", TARGET)  # not yet
    run_pipeline(settings, data=data, show_progress=False)  # scrubs the folders first
    assert disk_mentions(tmp_path / "runs", TARGET) == [] and disk_mentions(tmp_path / "events", TARGET) == []
    assert redis_client.scard(KeyLayout(key_prefix).forgotten_disk) == 0


def test_unknown_user_is_no_error(redis_client: redis.Redis, key_prefix: str, tmp_path: Path) -> None:
    receipt = forget_users(redis_client, KeyLayout(key_prefix), ["nobody-here"], runs_root=tmp_path / "runs", archive_root=None)
    assert receipt["totals"] == {"lists": 0, "keys": 0, "stream_events": 0, "archived_events": 0, "runs": 0}
    assert receipt["runs"]["rewritten"] == [] and receipt["runs"]["untouched"] == 0


def test_cli_forget_with_receipt_and_delete_mode(
    tmp_path: Path, redis_url: str, redis_client: redis.Redis, key_prefix: str,
    deployment: tuple[PipelineConfig, Flask, LoadedInput],
) -> None:
    config_file = tmp_path / "recsys.toml"
    config_file.write_text(
        f'[training]\nout = "runs"\nkeep_runs = 2\n[events]\narchive = "events"\n[redis]\nurl = "{redis_url}"\nkey_prefix = "{key_prefix}"\n',
        encoding="utf-8",
    )
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "OPENBLAS_NUM_THREADS": "1"}
    env.pop("RECSYS_REDIS_URL", None)
    env.pop("RECSYS_KEY_PREFIX", None)
    done = subprocess.run(
        [sys.executable, "-m", "recsys.cli.main", "forget", TARGET, "nobody-here", "--runs", "delete", "--config", str(config_file), "--json"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr
    receipt = json.loads(done.stdout)
    assert [u["lists"] > 0 for u in receipt["users"]] == [True, False]
    assert len(receipt["runs"]["deleted"]) == 2 and completed_runs(tmp_path / "runs") == []
    assert receipt["users"][0]["archived_events"] == 5 and receipt["users"][1]["archived_events"] == 0
    assert redis_mentions(redis_client, key_prefix, TARGET) == [] and disk_mentions(tmp_path, TARGET) == []
    bad = subprocess.run([sys.executable, "-m", "recsys.cli.main", "forget", "--config", str(config_file)],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 1 and bad.stderr.strip() == "error: give at least one user id to forget (or --pending)"
