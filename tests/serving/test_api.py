"""Recommendation endpoints through Flask's test client, against the fake version of
tests/serving/fixtures.py (every expected answer is derived from the published lists)."""

from __future__ import annotations

import re
import time
from typing import Any

import orjson
import pytest
import redis
from flask.testing import FlaskClient

from recsys.abtest.assignment import assign
from recsys.abtest.experiments import Experiment, ExperimentStore
from recsys.store.codec import encode_list
from recsys.store.keys import OVERALL, KeyLayout
from tests.serving.fixtures import OUT_OF_STOCK, FakeVersion, catalog, expected_items, fake_lists, publish_fake

pytestmark = pytest.mark.usefixtures("published")


def ids(document: dict[str, Any]) -> list[str]:
    return [entry["item_id"] for entry in document["items"]]


def ok(client: FlaskClient, url: str) -> dict[str, Any]:
    response = client.get(url)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.mimetype == "application/json"
    return response.get_json()


def error(client: FlaskClient, url: str, status: int) -> dict[str, Any]:
    response = client.get(url)
    assert response.status_code == status, response.get_data(as_text=True)
    body = response.get_json()
    assert body["error"]["status"] == status and body["error"]["message"]
    return body["error"]


# ---------------------------------------------------------------------------- users
def test_user_list_is_the_published_list_filtered(client: FlaskClient, published: FakeVersion) -> None:
    body = ok(client, "/v1/users/u1/recommendations?n=5")
    assert ids(body) == expected_items(published.user_lists["als"]["u1"], n=5)
    assert "i7" not in ids(body)  # out of stock
    assert body["model"] == "als" and body["version"] == published.version
    assert body["fallback"] is None and body["topped_up"] is False
    assert "experiment" not in body
    first = body["items"][0]
    assert first == {
        "item_id": "i3", "score": 1.0, "reason": {"type": "personalized"}, "title": "Item 3", "category": "books",
        "price": 8.0, "in_stock": True,
    }
    scores = [e["score"] for e in body["items"]]
    assert scores == sorted(scores, reverse=True)


def test_every_answer_has_a_fresh_recommendation_id(client: FlaskClient) -> None:
    urls = [
        "/v1/users/u1/recommendations",
        "/v1/items/i1/similar",
        "/v1/items/i1/bought-together",
        "/v1/baskets/recommendations?items=i1",
        "/v1/popular",
    ]
    seen = set()
    for url in urls * 2:
        rid = ok(client, url)["recommendation_id"]
        assert isinstance(rid, str) and rid and rid not in seen
        seen.add(rid)


def test_explicit_model_and_top_up_from_popular(client: FlaskClient, published: FakeVersion) -> None:
    body = ok(client, "/v1/users/u1/recommendations?model=itemknn&n=6")
    own = published.user_lists["itemknn"]["u1"]
    assert body["model"] == "itemknn" and body["topped_up"] is True
    assert ids(body) == expected_items(own + published.popular[OVERALL], n=6)
    assert ids(body)[:3] == own


def test_unknown_model_is_404_naming_the_available_ones(client: FlaskClient) -> None:
    err = error(client, "/v1/users/u1/recommendations?model=svd", 404)
    assert err["field"] == "model" and err["available"] == ["als", "itemknn"]
    assert "als" in err["message"] and "itemknn" in err["message"]


def test_unknown_user_gets_popular_with_fallback(client: FlaskClient, published: FakeVersion) -> None:
    body = ok(client, "/v1/users/nobody/recommendations?n=4")
    assert body["fallback"] == "popular" and body["model"] == "popular"
    assert ids(body) == expected_items(published.popular[OVERALL], n=4)
    body = ok(client, "/v1/users/nobody/recommendations?n=20&category=garden")
    assert ids(body) == expected_items(published.popular["garden"], n=20)
    assert "i15" not in ids(body)


def test_category_filter_keeps_the_category_and_tops_up(client: FlaskClient, published: FakeVersion) -> None:
    body = ok(client, "/v1/users/u3/recommendations?n=5&category=garden")
    expected = expected_items(published.user_lists["als"]["u3"] + published.popular["garden"], category="garden", n=5)
    assert ids(body) == expected
    assert ids(body)[:2] == ["i11", "i17"]  # the user's own garden items first
    assert body["topped_up"] is True
    assert {e["category"] for e in body["items"]} == {"garden"}
    # u1 has books further down its (longer) list: the whole stored list is filtered.
    body = ok(client, "/v1/users/u1/recommendations?n=3&category=books")
    assert ids(body) == ["i3", "i1", "i5"] and body["topped_up"] is False


def test_unknown_category_is_404(client: FlaskClient) -> None:
    err = error(client, "/v1/users/u1/recommendations?category=toys", 404)
    assert err["field"] == "category" and err["available"] == ["books", "garden"]


def test_exclude_parameter(client: FlaskClient, published: FakeVersion) -> None:
    body = ok(client, "/v1/users/u1/recommendations?n=4&exclude=i3,i12,i3")
    assert ids(body) == expected_items(published.user_lists["als"]["u1"], skip={"i3", "i12"}, n=4)


def test_recent_items_are_excluded_at_once(
    client: FlaskClient, published: FakeVersion, redis_client: redis.Redis, layout: KeyLayout
) -> None:
    before = ids(ok(client, "/v1/users/u1/recommendations?n=3"))
    assert before[:2] == ["i3", "i1"]
    redis_client.zadd(layout.recent("u1"), {"i3": time.time(), "i1": time.time()})
    after = ids(ok(client, "/v1/users/u1/recommendations?n=3"))
    assert after == expected_items(published.user_lists["als"]["u1"], skip={"i3", "i1"}, n=3)
    # ...also for a user served by the fallback
    redis_client.zadd(layout.recent("nobody"), {"i0": time.time()})
    assert "i0" not in ids(ok(client, "/v1/users/nobody/recommendations?n=3"))


def test_default_model_comes_from_the_version(
    client: FlaskClient, redis_client: redis.Redis, layout: KeyLayout
) -> None:
    fake = publish_fake(redis_client, layout, default_model="itemknn")
    body = ok(client, "/v1/users/u2/recommendations?n=2")
    assert body["model"] == "itemknn" and body["version"] == fake.version
    assert ids(body) == fake.user_lists["itemknn"]["u2"]


def test_new_live_version_is_picked_up_without_restart(
    client: FlaskClient, published: FakeVersion, redis_client: redis.Redis, layout: KeyLayout
) -> None:
    assert ok(client, "/v1/popular")["version"] == published.version
    changed = fake_lists()
    changed.popular[OVERALL] = ["i18", "i17"]
    second = publish_fake(redis_client, layout, fake=changed)
    body = ok(client, "/v1/popular")
    assert body["version"] == second.version and ids(body) == ["i18", "i17"]
    # a rollback to the first version is seen as well
    redis_client.set(layout.live, published.version)
    assert ok(client, "/v1/popular")["version"] == published.version


# ---------------------------------------------------------------------------- A/B
def _users_per_variant(experiment: Experiment, count: int = 200) -> dict[str, str]:
    found: dict[str, str] = {}
    for k in range(count):
        found.setdefault(assign(experiment, f"user{k}"), f"user{k}")
    return found


def test_ab_routing_picks_the_variant_model(
    make_app: Any, redis_client: redis.Redis, layout: KeyLayout, published: FakeVersion
) -> None:
    experiment = Experiment(
        name="knn-vs-als",
        variants=[{"name": "control", "model": "als"}, {"name": "treatment", "model": "itemknn"}],
        salt="s1",
    )
    ExperimentStore(redis_client, layout).create(experiment)
    # both known users of the fake version must be in the experiment: add their lists
    users = _users_per_variant(experiment)
    for variant, user in users.items():
        for model in ("als", "itemknn"):
            redis_client.hset(layout.user_recs(published.version, model), user, encode_list([f"i{1 if model == 'als' else 9}"], [1.0]))
    client = make_app().test_client()
    for variant, user in users.items():
        body = ok(client, f"/v1/users/{user}/recommendations?n=1")
        assert body["experiment"] == "knn-vs-als" and body["variant"] == variant
        assert body["model"] == ("als" if variant == "control" else "itemknn")
        assert ids(body) == (["i1"] if variant == "control" else ["i9"])
        # an explicit model wins over the experiment and is not attributed to it
        explicit = ok(client, f"/v1/users/{user}/recommendations?n=1&model=als")
        assert "experiment" not in explicit and explicit["model"] == "als"
    # stopped: everyone gets the control, and the answer names no experiment
    ExperimentStore(redis_client, layout).stop("knn-vs-als")
    client = make_app().test_client()
    body = ok(client, f"/v1/users/{users['treatment']}/recommendations?n=1")
    assert body["model"] == "als" and "experiment" not in body


def test_ab_variant_options(make_app: Any, redis_client: redis.Redis, layout: KeyLayout) -> None:
    experiment = Experiment(
        name="options",
        variants=[
            {"name": "a", "model": "als", "options": {"exclude_recent": False, "fallback": "none"}},
            {"name": "b", "model": "als", "weight": 1e-9},
        ],
        salt="s2",
    )
    ExperimentStore(redis_client, layout).create(experiment)
    assert assign(experiment, "u1") == "a" and assign(experiment, "stranger") == "a"
    redis_client.zadd(layout.recent("u1"), {"i3": time.time()})
    client = make_app().test_client()
    body = ok(client, "/v1/users/u1/recommendations?n=1")
    assert ids(body) == ["i3"] and body["variant"] == "a"  # recent items kept in this variant
    body = ok(client, "/v1/users/stranger/recommendations")
    assert body["items"] == [] and body["fallback"] is None  # no popular fallback in this variant


def test_variant_with_unpublished_model_is_served_by_the_default(
    make_app: Any, redis_client: redis.Redis, layout: KeyLayout
) -> None:
    experiment = Experiment(
        name="missing-model",
        variants=[{"name": "a", "model": "ease"}, {"name": "b", "model": "ease"}],
        salt="s3",
    )
    ExperimentStore(redis_client, layout).create(experiment)
    body = ok(make_app().test_client(), "/v1/users/u1/recommendations?n=2")
    assert body["model"] == "als" and ids(body) == ["i3", "i1"]
    assert body["experiment"] == "missing-model"


# ---------------------------------------------------------------------------- items
def test_similar_items_collaborative_first_content_for_cold_items(client: FlaskClient, published: FakeVersion) -> None:
    body = ok(client, "/v1/items/i1/similar")
    assert body["model"] == "itemknn" and ids(body) == expected_items(published.similar["itemknn"]["i1"])
    assert "i7" not in ids(body)
    cold = ok(client, "/v1/items/i19/similar?n=2")
    assert cold["model"] == "content" and ids(cold) == ["i18", "i17"]
    explicit = ok(client, "/v1/items/i1/similar?model=content")
    assert explicit["model"] == "content" and ids(explicit) == ["i9", "i8"]
    assert ok(client, "/v1/items/i5/similar")["items"] == []  # known item, no list
    assert error(client, "/v1/items/i999/similar", 404)["field"] == "item_id"
    err = error(client, "/v1/items/i1/similar?model=als", 404)
    assert err["available"] == ["itemknn", "content"]


def test_bought_together_with_confidence_and_lift(client: FlaskClient, published: FakeVersion) -> None:
    body = ok(client, "/v1/items/i1/bought-together")
    assert ids(body) == ["i2", "i5", "i12"]
    assert [(e["confidence"], e["lift"]) for e in body["items"]] == [(0.6, 3.0), (0.3, 1.5), (0.2, 1.1)]
    assert body["items"][0]["title"] == "Item 2"
    assert ids(ok(client, "/v1/items/i2/bought-together")) == ["i5", "i3"]  # i7 out of stock
    assert ok(client, "/v1/items/i3/bought-together?n=5")["items"] == []
    error(client, "/v1/items/i999/bought-together", 404)


def test_basket_merges_lists_with_best_confidence(client: FlaskClient) -> None:
    body = ok(client, "/v1/baskets/recommendations?items=i1,i2")
    # i1 -> i2 .6 (in basket), i5 .3, i12 .2; i2 -> i5 .5, i7 .45 (out of stock), i3 .25
    assert [(e["item_id"], e["confidence"], e["lift"]) for e in body["items"]] == [
        ("i5", 0.5, 2.0),
        ("i3", 0.25, 1.2),
        ("i12", 0.2, 1.1),
    ]
    assert body["fallback"] is None and body["model"] == "together" and body["unknown_items"] == []
    assert ids(ok(client, "/v1/baskets/recommendations?items=i1,i2&n=1")) == ["i5"]


def test_basket_without_rules_falls_back_to_popular(client: FlaskClient, published: FakeVersion) -> None:
    body = ok(client, "/v1/baskets/recommendations?items=i0,nope&n=3")
    assert body["fallback"] == "popular" and body["model"] == "popular"
    assert ids(body) == expected_items(published.popular[OVERALL], skip={"i0"}, n=3)
    assert body["unknown_items"] == ["nope"]


def test_basket_parameters(client: FlaskClient) -> None:
    error(client, "/v1/baskets/recommendations", 400)
    error(client, "/v1/baskets/recommendations?items=", 400)
    error(client, "/v1/baskets/recommendations?items=" + ",".join(f"i{k}" for k in range(51)), 400)
    assert ok(client, "/v1/baskets/recommendations?items=" + ",".join(f"i{k}" for k in range(50)))


def test_popular(client: FlaskClient, published: FakeVersion) -> None:
    body = ok(client, "/v1/popular?n=3")
    assert ids(body) == ["i0", "i10", "i1"] and body["category"] is None and body["model"] == "popular"
    assert [e["score"] for e in body["items"]] == [100.0, 95.0, 85.0]
    garden = ok(client, "/v1/popular?category=garden&n=100")
    assert ids(garden) == expected_items(published.popular["garden"], n=100)
    assert not set(ids(garden)) & OUT_OF_STOCK
    error(client, "/v1/popular?category=toys", 404)


def test_entries_without_catalogue_and_ids_needing_escapes(
    client: FlaskClient, redis_client: redis.Redis, layout: KeyLayout, published: FakeVersion
) -> None:
    odd = 'x"\\/\u00e9\n'  # quote, backslash, slash, unicode, newline
    redis_client.hset(layout.user_recs(published.version, "als"), "u9", encode_list([odd, "i1", "ghost"], [3.0, 2.5, 1e-05]))
    redis_client.hset(layout.catalog(published.version), odd, orjson.dumps({"title": 'say "hi"', "category": "books", "price": None, "in_stock": True, "colour": "red"}))
    body = ok(client, "/v1/users/u9/recommendations?n=3")
    reason = {"type": "personalized"}
    assert body["items"] == [
        {"item_id": odd, "score": 3.0, "reason": reason, "title": 'say "hi"', "category": "books", "price": None, "in_stock": True, "colour": "red"},
        {"item_id": "i1", "score": 2.5, "reason": reason, "title": "Item 1", "category": "books", "price": 6.0, "in_stock": True},
        {"item_id": "ghost", "score": 1e-05, "reason": reason, "title": None, "category": None, "price": None},
    ]
    # an item without a catalogue entry has no category: a category filter leaves it out
    assert "ghost" not in ids(ok(client, "/v1/users/u9/recommendations?n=3&category=books"))


def test_catalogue_fields_match_the_catalogue(client: FlaskClient) -> None:
    entries = catalog()
    for entry in ok(client, "/v1/popular?n=100")["items"]:
        published = entries[entry["item_id"]]
        assert (entry["title"], entry["category"], entry["price"]) == (
            published["title"],
            published["category"],
            published["price"],
        )


# ---------------------------------------------------------------------------- one round trip
def test_a_request_is_one_redis_round_trip(make_app: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from serving import services

    app = make_app(router_refresh_seconds=3600)
    client = app.test_client()
    ok(client, "/v1/users/u1/recommendations")  # first request: version metadata, router
    connection_class = services(app).client.connection_pool.connection_class
    calls: list[str] = []
    original = connection_class.send_packed_command

    def counting(self: Any, command: Any, *args: Any, **kwargs: Any) -> Any:
        packed = command.encode() if isinstance(command, str) else b"".join(command)
        calls.append(re.match(rb"\*\d+\r\n\$\d+\r\n(\w+)", packed).group(1).decode().upper())
        return original(self, command, *args, **kwargs)

    # every command, through redis-py or not, is written by send_packed_command
    monkeypatch.setattr(connection_class, "send_packed_command", counting)
    for url in (
        "/v1/users/u1/recommendations?category=books&exclude=i1",
        "/v1/users/nobody/recommendations",
        "/v1/items/i1/similar",
        "/v1/items/i1/bought-together",
        "/v1/baskets/recommendations?items=i1,i2",
        "/v1/popular?category=garden",
    ):
        calls.clear()
        ok(client, url)
        assert calls == ["EVALSHA"], (url, calls)


def test_lua_recent_bound_matches_the_key_layout() -> None:
    from recsys.store.keys import RECENT_MAX_ITEMS
    from serving.reader import SCRIPT_PATH

    assert f"local RECENT_MAX = {RECENT_MAX_ITEMS}\n" in SCRIPT_PATH.read_text()


# ---------------------------------------------------------------------------- faults in data
def test_corrupt_published_data_is_503_not_500(
    client: FlaskClient, redis_client: redis.Redis, layout: KeyLayout, published: FakeVersion
) -> None:
    redis_client.hset(layout.user_recs(published.version, "als"), "broken", b"{not json")
    err = error(client, "/v1/users/broken/recommendations", 503)
    assert "corrupt" in err["message"] and "broken" in err["message"]
    redis_client.hset(layout.catalog(published.version), "i3", b"[[[")
    assert "corrupt catalogue entry i3" in error(client, "/v1/users/u1/recommendations", 503)["message"]


def test_no_live_version_is_503(make_app: Any, redis_client: redis.Redis, layout: KeyLayout) -> None:
    redis_client.delete(layout.live)
    client = make_app().test_client()
    for url in ("/v1/users/u1/recommendations", "/v1/popular", "/v1/items/i1/similar", "/readyz"):
        err = error(client, url, 503)
        assert "no version is published" in err["message"]


def test_missing_metadata_is_503(client: FlaskClient, redis_client: redis.Redis, layout: KeyLayout) -> None:
    redis_client.set(layout.live, "ghost")
    assert "has no metadata" in error(client, "/v1/popular", 503)["message"]


def test_meta_is_read_once_per_version(make_app: Any, published: FakeVersion) -> None:
    from serving import services

    app = make_app()
    client = app.test_client()
    for _ in range(3):
        ok(client, "/v1/popular")
    reader = services(app).reader
    assert reader.hint == published.version and list(reader._meta) == [published.version]


def test_json_bodies_are_plain_json(client: FlaskClient) -> None:
    raw = client.get("/v1/users/u1/recommendations").data
    assert orjson.loads(raw)["user_id"] == "u1"
