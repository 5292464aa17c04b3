"""Explanations end to end: every entry the API serves from a user list carries a ``reason``.

A two-taste shop goes through the real pipeline (item-based, user-based, factor and popular
models, customer segments) and publisher into the test Redis; every way the user endpoint
fills a list (the model's own list, explicit model, A/B variant, top-up from the segment
and popular lists, the unknown-user and segment fallbacks) is asked, and each answer is
checked against the OpenAPI schema. A fake version checks the exact answers of the script
(escapes, unresolved codes, items without a catalogue entry, trending, similar users).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson
import pytest
import redis
from flask.testing import FlaskClient

from recsys.abtest.experiments import ExperimentStore, parse_experiment
from recsys.store.codec import because_reason, encode_codes, encode_list
from recsys.store.keys import KeyLayout
from tests.serving.fixtures import FakeVersion, publish_fake
from tests.serving.test_openapi_contract import allowed
from tests.serving.test_segment_fallback import BOOKS, LAPSED_READERS, taste_shop

USER_MODELS = ["itemknn", "ease", "userknn", "als", "popular"]
EXPLAINING = ("itemknn", "ease")


@pytest.fixture(scope="module")
def explained(redis_url: str, module_prefix: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    from recsys.pipeline.config import parse_config
    from recsys.pipeline.run import run_pipeline

    folder = tmp_path_factory.mktemp("reasons-shop")
    events, catalog = taste_shop()
    events.to_parquet(folder / "interactions.parquet", index=False)
    catalog.to_parquet(folder / "catalog.parquet", index=False)
    config = parse_config(
        {
            "data": {"path": str(folder), "format": "auto", "validation": "lenient"},
            "training": {"out": str(folder / "runs")},
            "models": {
                "itemknn": {},
                "ease": {},
                "userknn": {},
                "als": {"factors": 4, "iterations": 3, "random_state": 1},
                "popular": {},
            },
            "lists": {"user_n": 5, "popular_n": 20, "active_within_days": 60},
            "selection": {"enabled": False},
            "publish": {"default_model": "itemknn"},
            "segments": {"enabled": True, "k": 2, "min_customers": 10, "popular_n": 10},
        },
        source="test configuration",
    )
    result = run_pipeline(config, redis_url=redis_url, prefix=module_prefix)
    client = redis.Redis.from_url(redis_url)
    meta = orjson.loads(client.get(KeyLayout(module_prefix).meta(result.publish.version)))
    history = events.groupby("user_id")["item_id"].agg(set).to_dict()
    titles = dict(zip(catalog["item_id"], catalog["title"]))
    yield {"prefix": module_prefix, "version": result.publish.version, "meta": meta, "client": client,
           "history": history, "titles": titles}
    client.close()


@pytest.fixture
def api(explained: dict[str, Any], redis_url: str) -> tuple[FlaskClient, dict[str, Any]]:
    from serving import create_app

    client = create_app({"REDIS_URL": redis_url, "KEY_PREFIX": explained["prefix"], "TESTING": True}).test_client()
    return client, client.get("/openapi.json").get_json()


def answer(api: tuple[FlaskClient, dict[str, Any]], url: str) -> dict[str, Any]:
    """The answer, which must fit the documented schema and give every entry a reason."""
    client, document = api
    response = client.get(url)
    assert response.status_code == 200, response.get_data(as_text=True)
    body = response.get_json()
    schema = document["paths"]["/v1/users/{user_id}/recommendations"]["get"]["responses"]["200"]["content"]
    assert allowed(schema["application/json"]["schema"], body, document), body
    assert body["items"] and all("reason" in entry for entry in body["items"]), body
    return body


def check_because(entries: list[dict[str, Any]], user: str, explained: dict[str, Any]) -> int:
    """Because entries name an item of the user's history with its catalogue title; their count."""
    count = 0
    for entry in entries:
        reason = entry["reason"]
        if reason["type"] == "because":
            assert reason["item_id"] in explained["history"][user], (user, entry)
            assert reason["title"] == explained["titles"][reason["item_id"]]
            count += 1
    return count


def test_the_version_publishes_because_codes_and_reason_types(explained: dict[str, Any]) -> None:
    meta, layout = explained["meta"], KeyLayout(explained["prefix"])
    assert meta["reasons"] == {
        "user:itemknn": "personalized", "user:ease": "personalized", "user:userknn": "similar_users",
        "user:als": "personalized", "user:popular": "popular", "popular": "popular", "segment": "popular",
    }
    client, version = explained["client"], explained["version"]
    reasons = [orjson.loads(v) for v in client.hvals(layout.because_items(version))]
    assert reasons and meta["counts"]["because_items"] == len(reasons)
    assert all(r == {"type": "because", "item_id": r["item_id"], "title": explained["titles"][r["item_id"]]} for r in reasons)
    blob = orjson.loads(client.hget(layout.user_recs(version, "itemknn"), "reader-0"))
    assert len(blob["b"]) == 1 * len(blob["i"])  # 20 catalogue items: one character a code
    assert "b" not in orjson.loads(client.hget(layout.user_recs(version, "als"), "reader-0"))
    assert client.hgetall(layout.segment_names(version)) == {k.encode(): v.encode() for k, v in meta["segments"].items()}


def own_entries(explained: dict[str, Any], model: str, user: str) -> int:
    """How many entries the user's published list of ``model`` holds (all in stock here)."""
    layout = KeyLayout(explained["prefix"])
    blob = explained["client"].hget(layout.user_recs(explained["version"], model), user)
    return len(orjson.loads(blob)["i"]) if blob else 0


@pytest.mark.parametrize("model", USER_MODELS)
def test_each_model_list_explains_its_entries(api, explained: dict[str, Any], model: str) -> None:  # noqa: ANN001
    expected = {"userknn": "similar_users", "als": "personalized", "popular": "popular"}
    because = 0
    for user in ("reader-0", "reader-3", "gardener-1", "gardener-7"):
        body = answer(api, f"/v1/users/{user}/recommendations?model={model}&n=5")
        assert body["model"] == model, body
        own = own_entries(explained, model, user)
        assert own > 0 and body["topped_up"] == (own < 5)
        if model in EXPLAINING:
            because += check_because(body["items"][:own], user, explained)
            assert all(e["reason"]["type"] in ("because", "personalized") for e in body["items"][:own])
        else:
            wanted = {"type": expected[model]} | ({"category": None} if model == "popular" else {})
            assert [e["reason"] for e in body["items"][:own]] == [wanted] * own
        # Top-ups: the segment's list first, then the popular list.
        assert all(e["reason"]["type"] == "popular" for e in body["items"][own:])
    if model in EXPLAINING:
        assert because >= 10, because


def test_the_default_model_and_a_category_filter(api, explained: dict[str, Any]) -> None:  # noqa: ANN001
    body = answer(api, "/v1/users/reader-2/recommendations?n=5")
    assert body["model"] == "itemknn" and check_because(body["items"], "reader-2", explained) >= 3
    # A gardener's list holds no books: the books come from the segment's or popular list.
    body = answer(api, "/v1/users/gardener-2/recommendations?n=4&category=books")
    assert body["topped_up"] is True
    for entry in body["items"]:
        assert entry["reason"]["type"] == "because" or entry["reason"]["category"] == "books", entry


def test_top_ups_from_the_segment_and_popular_lists(api, explained: dict[str, Any]) -> None:  # noqa: ANN001
    body = answer(api, "/v1/users/reader-0/recommendations?model=itemknn&n=18")
    assert body["topped_up"] is True and body["segment"]
    count = own_entries(explained, "itemknn", "reader-0")
    own, rest = body["items"][:count], body["items"][count:]
    assert check_because(own, "reader-0", explained) == count
    segment = [e for e in rest if "segment" in e["reason"]]
    assert segment and all(e["reason"] == {"type": "popular", "category": None, "segment": body["segment"]} for e in segment)
    popular = rest[len(segment):]
    assert popular and all(e["reason"] == {"type": "popular", "category": None} for e in popular)


def test_fallbacks_for_unknown_users_and_users_without_a_list(api, explained: dict[str, Any]) -> None:  # noqa: ANN001
    body = answer(api, "/v1/users/nobody/recommendations?n=5")
    assert body["fallback"] == "popular"
    assert [e["reason"] for e in body["items"]] == [{"type": "popular", "category": None}] * 5
    body = answer(api, "/v1/users/nobody/recommendations?n=3&category=books")
    assert [e["reason"] for e in body["items"]] == [{"type": "popular", "category": "books"}] * 3
    body = answer(api, f"/v1/users/{LAPSED_READERS[0]}/recommendations?n=5")
    assert body["fallback"] == "segment" and all(e["item_id"] in BOOKS for e in body["items"])
    assert all(e["reason"] == {"type": "popular", "category": None, "segment": body["segment"]} for e in body["items"])


def test_an_ab_routed_model_explains_its_own_entries(api, explained: dict[str, Any]) -> None:  # noqa: ANN001
    store = ExperimentStore(explained["client"], KeyLayout(explained["prefix"]))
    definition = {"name": "why", "variants": [{"name": "items", "model": "ease"}, {"name": "users", "model": "userknn"}]}
    store.create(parse_experiment(definition))
    try:
        seen = set()
        for k in range(12):
            user = f"gardener-{k}"
            body = answer(api, f"/v1/users/{user}/recommendations?n=5")
            assert body["experiment"] == "why" and body["model"] in ("ease", "userknn")
            seen.add(body["model"])
            if body["model"] == "userknn":
                assert all(e["reason"] == {"type": "similar_users"} for e in body["items"][:5] if "category" not in e["reason"])
            else:
                assert check_because(body["items"], user, explained) >= 1
        assert seen == {"ease", "userknn"}
    finally:
        store.delete("why")


# ---------------------------------------------------------------------------- fake version
def _explained_fake(redis_client: redis.Redis, layout: KeyLayout, reasons: dict[str, str] | None = None) -> FakeVersion:
    fake = publish_fake(redis_client, layout)
    v = fake.version
    odd = 'x"\\/\u00e9'
    # u5's itemknn list: i1 because of i2 (code 0), i3 because of the odd id (code 93, two
    # characters), i4 without one, i5 because of code 7, which the version does not resolve,
    # i6 because of q1 (a title with escapes).
    codes = encode_codes([0, 93, -1, 7, 94], 2).tobytes().decode()
    blob = orjson.loads(encode_list(["i1", "i3", "i4", "i5", "i6"], [0.9, 0.8, 0.7, 0.6, 0.5]))
    redis_client.hset(layout.user_recs(v, "itemknn"), "u5", orjson.dumps({**blob, "b": codes}))
    fields = encode_codes([0, 93, 94], 2).tobytes().decode()
    redis_client.hset(layout.because_items(v), mapping={
        fields[0:2]: because_reason("i2", "Item 2"), fields[2:4]: because_reason(odd, None),
        fields[4:6]: because_reason("q1", 'a "quoted" \\ title\\'),
    })
    meta = orjson.loads(redis_client.get(layout.meta(v)))
    if reasons is not None:
        meta["reasons"] = reasons
        redis_client.set(layout.meta(v), orjson.dumps(meta))
    return fake


def test_exact_reasons_of_a_fake_version(make_app, redis_client: redis.Redis, layout: KeyLayout) -> None:  # noqa: ANN001
    _explained_fake(redis_client, layout)
    client = make_app().test_client()
    body = client.get("/v1/users/u5/recommendations?model=itemknn&n=7").get_json()
    assert [e["reason"] for e in body["items"]] == [
        {"type": "because", "item_id": "i2", "title": "Item 2"},
        {"type": "because", "item_id": 'x"\\/\u00e9', "title": None},  # no catalogue entry
        {"type": "personalized"},
        {"type": "personalized"},  # code 7 unresolved: the list's reason
        {"type": "because", "item_id": "q1", "title": 'a "quoted" \\ title\\'},
        {"type": "popular", "category": None},  # topped up from the popular list
        {"type": "popular", "category": None},
    ]
    assert body["topped_up"] is True
    # Filters keep each entry's own reason.
    body = client.get("/v1/users/u5/recommendations?model=itemknn&n=2&exclude=i1").get_json()
    assert body["items"][0]["reason"] == {"type": "because", "item_id": 'x"\\/\u00e9', "title": None}


def test_published_reason_types_replace_the_assumed_ones(make_app, redis_client: redis.Redis, layout: KeyLayout) -> None:  # noqa: ANN001
    _explained_fake(redis_client, layout, {"user:als": "similar_users", "popular": "trending"})
    client = make_app().test_client()
    body = client.get("/v1/users/u3/recommendations?n=5&category=garden").get_json()
    assert body["topped_up"] is True
    assert [e["reason"] for e in body["items"]] == [{"type": "similar_users"}] * 2 + [{"type": "trending", "category": "garden"}] * 3


def test_a_because_code_that_does_not_fit_the_list_is_corrupt(make_app, redis_client: redis.Redis, layout: KeyLayout) -> None:  # noqa: ANN001
    fake = publish_fake(redis_client, layout)
    redis_client.hset(layout.user_recs(fake.version, "als"), "u1", orjson.dumps({"i": ["i1", "i2"], "s": [1.0, 0.5], "b": "abc"}))
    response = make_app().test_client().get("/v1/users/u1/recommendations")
    assert response.status_code == 503 and "corrupt" in response.get_json()["error"]["message"]


def test_the_schema_requires_a_reason_on_user_entries(api) -> None:  # noqa: ANN001
    client, document = api
    schema = {"$ref": "#/components/schemas/UserEntry"}
    entry = {"item_id": "i1", "score": 1.0, "title": "t", "category": "c", "price": None}
    assert not allowed(schema, entry, document)
    assert allowed(schema, {**entry, "reason": {"type": "because", "item_id": "i2", "title": None}}, document)
    assert not allowed(schema, {**entry, "reason": {"type": "because", "item_id": "i2"}}, document)
    assert not allowed(schema, {**entry, "reason": {"type": "popular"}}, document)
    assert not allowed(schema, {**entry, "reason": {"type": "why not"}}, document)


def test_the_console_user_page_shows_the_reasons(explained: dict[str, Any], redis_url: str) -> None:
    from serving import create_app

    app = create_app({"REDIS_URL": redis_url, "KEY_PREFIX": explained["prefix"], "TESTING": True, "ADMIN_TOKEN": "why"})
    html = app.test_client().get("/console/users?user_id=reader-0", headers={"Authorization": "Bearer why"}).get_data(as_text=True)
    assert 'data-reason="because"' in html and "because of <a href=\"/console/items?item_id=b" in html
    assert 'data-reason="similar_users"' in html and 'data-reason="personalized"' in html
    assert 'data-reason="popular"' in html
