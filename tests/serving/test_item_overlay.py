"""Item updates between trainings: PATCH /v1/admin/items, the overlay and later publishes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import orjson
import pytest
import redis
from flask import Flask

from recsys.catalog.overlay import apply_updates, parse_updates, read_overlay
from recsys.errors import ConfigError
from recsys.publish.publisher import Publisher
from recsys.store.keys import KeyLayout
from serving.reader import Reader
from tests.publish.synthetic import Synthetic, catalog_table, synthetic_run

ADMIN = "overlay-Admin-7"
AUTH = {"Authorization": f"Bearer {ADMIN}"}
N = 5


@pytest.fixture
def data() -> Synthetic:
    return synthetic_run(n_users=40, n_items=25, n=N)


def publish(client: redis.Redis, layout: KeyLayout, data: Synthetic, on_flush: Callable[[int], None] | None = None) -> str:
    publisher = Publisher(client, layout, show_progress=False, batch_fields=10, commands_per_flush=1)
    publisher.on_flush = on_flush
    return publisher.publish(data.lists, catalog=data.catalog, run_id="run", default_model="als").version


def served(app: Flask, user: str, n: int = N) -> list[str]:
    response = app.test_client().get(f"/v1/users/{user}/recommendations?n={n}&model=als")
    assert response.status_code == 200, response.get_data(as_text=True)
    return [entry["item_id"] for entry in response.get_json()["items"]]


def first_items(data: Synthetic) -> list[str]:
    """The first item of every user's als list (the most served ones)."""
    als = data.arrays[0]
    return [str(data.items.ids[i]) for i in als.ids[:, 0] if i >= 0]


def test_patch_hides_and_restocks_from_the_next_request(
    make_app: Callable[..., Flask], redis_client: redis.Redis, layout: KeyLayout, data: Synthetic
) -> None:
    publish(redis_client, layout, data)
    app = make_app(admin_token=ADMIN)
    user = "user-0"
    before = served(app, user)
    target = before[0]
    response = app.test_client().patch(f"/v1/admin/items/{target}", json={"hidden": True, "price": 9.99}, headers=AUTH)
    assert response.status_code == 200, response.get_data(as_text=True)
    receipt = response.get_json()
    assert receipt["items"] == [{"item_id": target, "overlay": {"hidden": True, "price": 9.99}, "versions_changed": 1}]
    after = served(app, user)
    assert target not in after and len(after) == N  # topped up from popular as for other filters
    assert after[: N - 1] == [i for i in before if i != target][: N - 1]
    # The overlay remembers the catalogue file's value of the price it replaced.
    entry = read_overlay(redis_client, layout)[target]
    position = int(np.flatnonzero(data.catalog_arrays["item_id"] == target)[0])
    prices = data.catalog_arrays["price"]
    assert entry["base"] == {"price": round(float(prices[position]), 2)} or np.isnan(prices[position])
    # Shown again once unhidden; the price stays overridden.
    app.test_client().patch(f"/v1/admin/items/{target}", json={"hidden": False}, headers=AUTH)
    entries = app.test_client().get(f"/v1/users/{user}/recommendations?n={N}&model=als").get_json()["items"]
    assert entries[0]["item_id"] == target and entries[0]["price"] == 9.99 and "hidden" not in entries[0]
    # Out of stock is never served either.
    app.test_client().patch(f"/v1/admin/items/{target}", json={"in_stock": False}, headers=AUTH)
    assert target not in served(app, user)


def test_bulk_update_is_atomic_and_errors_name_the_entry(
    make_app: Callable[..., Flask], redis_client: redis.Redis, layout: KeyLayout, data: Synthetic
) -> None:
    version = publish(redis_client, layout, data)
    app = make_app(admin_token=ADMIN)
    client = app.test_client()
    catalog_before = redis_client.hgetall(layout.catalog(version))
    bad = [{"item_id": "item-1", "hidden": True}, {"item_id": "item-2", "price": -3}]
    response = client.patch("/v1/admin/items", json=bad, headers=AUTH)
    assert response.status_code == 400
    assert "[1].price" in response.get_json()["error"]["message"]
    assert redis_client.hgetall(layout.catalog(version)) == catalog_before and not read_overlay(redis_client, layout)
    for body, message in [({"hidden": True}, "JSON array"), ([{"item_id": "item-1", "colour": "red"}], "unknown field"),
                          ([{"item_id": "item-1"}], "nothing to change")]:
        answer = client.patch("/v1/admin/items", json=body, headers=AUTH)
        assert answer.status_code == 400 and message in answer.get_json()["error"]["message"], answer.get_json()
    assert client.patch("/v1/admin/items", json=[{"item_id": "item-1", "hidden": True}]).status_code == 401
    # An item named twice gets both entries, in order (an upsert): one receipt entry per item.
    good = [{"item_id": "item-1", "hidden": True}, {"item_id": "item-2", "in_stock": False}, {"item_id": "new-item", "price": 5},
            {"item_id": "item-2", "price": 1.5}]
    receipt = client.patch("/v1/admin/items", json=good, headers=AUTH).get_json()
    assert receipt["updated"] == 3 and [i["item_id"] for i in receipt["items"]] == ["item-1", "item-2", "new-item"]
    assert [i["versions_changed"] for i in receipt["items"]] == [1, 1, 0]  # new-item is in no version yet
    assert receipt["items"][1]["overlay"] == {"in_stock": False, "price": 1.5}
    stored = {k.decode(): orjson.loads(v) for k, v in redis_client.hgetall(layout.catalog(version)).items()}
    assert stored["item-1"]["hidden"] is True and stored["item-2"]["in_stock"] is False and stored["item-2"]["price"] == 1.5
    assert set(read_overlay(redis_client, layout)) == {"item-1", "item-2", "new-item"}


def test_no_answer_shows_a_hidden_item_after_the_update_returned(
    redis_url: str, redis_client: redis.Redis, layout: KeyLayout, data: Synthetic
) -> None:
    publish(redis_client, layout, data)
    users = [str(u) for u in data.users.ids]
    targets = list(dict.fromkeys(first_items(data)))[:8]
    stop = threading.Event()
    answers: list[tuple[float, float, frozenset[str]]] = []
    errors: list[BaseException] = []

    def read() -> None:
        reader = Reader(redis.Redis.from_url(redis_url), layout)
        got: list[tuple[float, float, frozenset[str]]] = []
        k = 0
        try:
            while not stop.is_set():
                started = time.monotonic()
                result = reader.user(users[k % len(users)], N, lambda meta: "als")
                got.append((started, time.monotonic(), frozenset(e["item_id"] for e in result.items)))
                k += 1
        except BaseException as error:  # reported below
            errors.append(error)
        answers.extend(got)

    threads = [threading.Thread(target=read) for _ in range(4)]
    for thread in threads:
        thread.start()
    hidden_at: dict[str, float] = {}
    for target in targets:
        time.sleep(0.02)
        apply_updates(redis_client, layout, parse_updates({"item_id": target, "hidden": True}))
        hidden_at[target] = time.monotonic()
    time.sleep(0.05)
    stop.set()
    for thread in threads:
        thread.join()
    assert not errors
    assert len(answers) > 100
    late = 0
    for started, _, items in answers:
        for target, when in hidden_at.items():
            if started > when:
                late += 1
                assert target not in items
    assert late > 0
    # Before the first update, targets were being served: the check above could fail.
    assert any(targets[0] in items for started, _, items in answers if started < hidden_at[targets[0]])


def test_overlay_applies_to_later_versions_until_the_catalogue_changes_the_field(
    redis_client: redis.Redis, layout: KeyLayout, data: Synthetic
) -> None:
    publish(redis_client, layout, data)
    # item-1: in stock in the file. item-3: price overridden.
    apply_updates(redis_client, layout, parse_updates([
        {"item_id": "item-1", "in_stock": False, "hidden": True},
        {"item_id": "item-3", "price": 1.5},
    ]))
    # A later version from the same catalogue keeps the overlay.
    second = publish(redis_client, layout, data)
    entry = orjson.loads(redis_client.hget(layout.catalog(second), "item-1"))
    assert entry["in_stock"] is False and entry["hidden"] is True
    assert orjson.loads(redis_client.hget(layout.catalog(second), "item-3"))["price"] == 1.5
    # The catalogue file changes item-3's price: the file wins, that field leaves the overlay.
    changed = synthetic_run(n_users=40, n_items=25, n=N)
    changed.catalog_arrays["price"] = changed.catalog_arrays["price"].copy()
    changed.catalog_arrays["price"][3] = 77.0
    changed.catalog = catalog_table(changed.catalog_arrays)
    third = publish(redis_client, layout, changed)
    assert orjson.loads(redis_client.hget(layout.catalog(third), "item-3"))["price"] == 77.0
    overlay = read_overlay(redis_client, layout)
    assert "item-3" not in overlay and overlay["item-1"]["set"] == {"in_stock": False, "hidden": True}
    entry = orjson.loads(redis_client.hget(layout.catalog(third), "item-1"))
    assert entry["in_stock"] is False and entry["hidden"] is True


def test_update_during_a_publish_reaches_the_new_version(
    redis_client: redis.Redis, layout: KeyLayout, data: Synthetic
) -> None:
    publish(redis_client, layout, data)
    done: list[bool] = []

    def update_once(_: int) -> None:
        if not done:
            done.append(True)
            apply_updates(redis_client, layout, parse_updates({"item_id": "item-4", "hidden": True}))

    version = publish(redis_client, layout, data, on_flush=update_once)
    assert done
    assert orjson.loads(redis_client.hget(layout.catalog(version), "item-4"))["hidden"] is True


def test_parse_updates_refuses_bad_values() -> None:
    with pytest.raises(ConfigError, match=r"body.in_stock"):
        parse_updates({"item_id": "a", "in_stock": "maybe"})
    with pytest.raises(ConfigError, match="differs from the URL"):
        parse_updates({"item_id": "b", "hidden": True}, item_id="a")
    assert parse_updates({"price": None}, item_id="a")[0].changes() == {"price": None}


def test_cli_items_set_and_overlay(
    tmp_path: Path, redis_url: str, redis_client: redis.Redis, layout: KeyLayout, data: Synthetic
) -> None:
    version = publish(redis_client, layout, data)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2]), "OPENBLAS_NUM_THREADS": "1"}
    common = ["--redis", redis_url, "--prefix", layout.prefix]

    def recsys(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "recsys.cli.main", *args, *common], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=120)

    done = recsys("items", "set", "item-1", "--in-stock", "false", "--price", "9.99", "--hidden", "true", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["items"][0]["overlay"] == {"in_stock": False, "price": 9.99, "hidden": True}
    entry = orjson.loads(redis_client.hget(layout.catalog(version), "item-1"))
    assert entry["in_stock"] is False and entry["price"] == 9.99 and entry["hidden"] is True
    updates = tmp_path / "updates.json"
    updates.write_text(json.dumps([{"item_id": "item-2", "hidden": True}, {"item_id": "item-3", "price": None}]))
    assert recsys("items", "set", "--file", str(updates)).returncode == 0
    shown = json.loads(recsys("items", "overlay", "--json").stdout)["items"]
    assert set(shown) == {"item-1", "item-2", "item-3"}
    bad = recsys("items", "set", "item-1", "--in-stock", "maybe")
    assert bad.returncode == 1 and bad.stderr.strip() == "error: --in-stock: expected true or false, got 'maybe'"
    negative = recsys("items", "set", "item-1", "--price", "-1")
    assert negative.returncode == 1 and negative.stderr.startswith("error: --price: ")
