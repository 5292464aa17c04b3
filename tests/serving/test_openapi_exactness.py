"""Each answer of the API is one its OpenAPI operation documents, with a body of that
response's schema; and the request bodies the API accepts are those the schema allows
(findings of ``schemathesis --checks all``, see docs/api.md)."""

from __future__ import annotations

import time
from typing import Any

import pytest
from flask.testing import FlaskClient

from tests.serving.fixtures import FakeVersion
from tests.serving.test_openapi_contract import ADMIN, allowed

AUTH = {"Authorization": f"Bearer {ADMIN}"}


@pytest.fixture
def api(make_app, published: FakeVersion) -> tuple[FlaskClient, dict[str, Any]]:  # noqa: ANN001
    client = make_app(admin_token=ADMIN).test_client()
    return client, client.get("/openapi.json").json


def documented(document: dict[str, Any], path: str, method: str, response: Any) -> None:
    """The status is among the operation's responses, and a JSON body fits its schema."""
    responses = document["paths"][path][method]["responses"]
    status = str(response.status_code)
    assert status in responses, (path, method, status, response.get_data(as_text=True)[:200])
    content = responses[status].get("content", {}).get("application/json")
    if content is not None:
        assert response.is_json
        assert allowed(content["schema"], response.json, document), (path, status, response.json)


def request_body(document: dict[str, Any], path: str, method: str) -> dict[str, Any]:
    return document["paths"][path][method]["requestBody"]["content"]["application/json"]["schema"]


@pytest.mark.parametrize(
    ("url", "path", "field"),
    [
        ("/v1/users/u1/recommendations?model=svd", "/v1/users/{user_id}/recommendations", "model"),
        ("/v1/users/u1/recommendations?category=toys", "/v1/users/{user_id}/recommendations", "category"),
        ("/v1/items/i1/similar?model=als", "/v1/items/{item_id}/similar", "model"),
        ("/v1/popular?category=toys", "/v1/popular", "category"),
    ],
)
def test_an_unpublished_model_or_list_is_a_documented_404(api, url: str, path: str, field: str) -> None:  # noqa: ANN001
    client, document = api
    # Schema-valid names: the failure was a 400, the answer to a malformed request.
    response = client.get(url)
    assert response.status_code == 404
    assert response.json["error"]["field"] == field and response.json["error"]["available"]
    documented(document, path, "get", response)


@pytest.mark.parametrize("body", [[], {"events": []}])
def test_an_empty_batch_is_outside_the_schema_and_refused(api, body: Any) -> None:  # noqa: ANN001
    client, document = api
    assert not allowed(request_body(document, "/v1/events", "post"), body, document)
    response = client.post("/v1/events", json=body)
    assert response.status_code == 400
    documented(document, "/v1/events", "post", response)


@pytest.mark.parametrize(
    ("method", "path", "url"),
    [
        ("get", "/v1/admin/experiments/{name}", "/v1/admin/experiments/%C2%84"),
        ("delete", "/v1/admin/experiments/{name}", "/v1/admin/experiments/a%0Ab"),
        ("post", "/v1/admin/experiments/{name}/stop", "/v1/admin/experiments/%C2%84/stop"),
        ("get", "/v1/admin/experiments/{name}/report", "/v1/admin/experiments/%C2%84/report"),
        ("delete", "/v1/admin/users/{user_id}", "/v1/admin/users/a%C2%8Cb"),
        ("patch", "/v1/admin/items/{item_id}", "/v1/admin/items/a%0Db"),
    ],
)
def test_a_control_character_in_an_admin_path_is_a_documented_400(api, method: str, path: str, url: str) -> None:  # noqa: ANN001
    client, document = api
    response = client.open(url, method=method.upper(), headers=AUTH, json={"hidden": True} if method == "patch" else None)
    assert response.status_code == 400
    assert response.json["error"]["field"] == path.rsplit("{", 1)[1].split("}")[0]
    documented(document, path, method, response)
    parameter = next(p for p in document["paths"][path][method]["parameters"] if p["in"] == "path")
    assert not allowed(parameter["schema"], "a\u0084b")


@pytest.mark.parametrize(
    ("path", "url", "body", "field"),
    [
        ("/v1/admin/items/{item_id}", "/v1/admin/items/i1", {"hidden": None, "price": 1.0}, "hidden"),
        ("/v1/admin/items/{item_id}", "/v1/admin/items/i1", {"in_stock": None, "price": 1.0}, "in_stock"),
        ("/v1/admin/items/{item_id}", "/v1/admin/items/i1", {"hidden": 0}, "hidden"),
        ("/v1/admin/items/{item_id}", "/v1/admin/items/i1", {"price": "1.5"}, "price"),
        ("/v1/admin/items", "/v1/admin/items", [{"item_id": "i1", "hidden": None, "in_stock": False}], "hidden"),
    ],
)
def test_item_updates_the_schema_forbids_are_400_naming_the_field(api, path: str, url: str, body: Any, field: str) -> None:  # noqa: ANN001
    client, document = api
    assert not allowed(request_body(document, path, "patch"), body, document)
    response = client.patch(url, json=body, headers=AUTH)
    assert response.status_code == 400 and response.json["error"]["field"] == field, response.json
    documented(document, path, "patch", response)


def test_a_bulk_entry_without_a_change_is_outside_the_schema(api) -> None:  # noqa: ANN001
    client, document = api
    body = [{"item_id": "i1"}]
    assert not allowed(request_body(document, "/v1/admin/items", "patch"), body, document)
    assert client.patch("/v1/admin/items", json=body, headers=AUTH).status_code == 400


@pytest.mark.parametrize(
    "event",
    [
        {"type": "view", "item_id": "i1", "user_id": "u1", "timestamp": None},
        {"type": "view", "item_id": "i1", "user_id": "u1", "value": None, "event_id": None, "recommendation_id": None},
        {"type": "view", "item_id": 7, "user_id": 42, "session_id": None},
        {"type": "rating", "item_id": "i1", "session_id": "s1", "value": 4},
    ],
)
def test_events_the_api_stores_are_schema_valid(api, event: dict[str, Any]) -> None:  # noqa: ANN001
    client, document = api
    # The failure: null (= left out) and whole-number ids were accepted but outside the schema.
    assert allowed(request_body(document, "/v1/events", "post"), [event], document)
    response = client.post("/v1/events", json=[event])
    assert response.status_code == 202
    documented(document, "/v1/events", "post", response)


@pytest.mark.parametrize(
    "event",
    [
        {"type": "view", "item_id": "i1"},
        {"type": "view", "item_id": "i1", "user_id": None, "session_id": None},
        {"type": "rating", "item_id": "i1", "user_id": "u1"},
        {"type": "rating", "item_id": "i1", "user_id": "u1", "value": 11},
        {"type": "view", "item_id": "i1", "user_id": "u1", "timestamp": 1000.0},
    ],
)
def test_events_the_api_refuses_are_outside_the_schema(api, event: dict[str, Any]) -> None:  # noqa: ANN001
    client, document = api
    assert not allowed(request_body(document, "/v1/events", "post"), [event], document)
    response = client.post("/v1/events", json=[event])
    assert response.status_code == 400
    documented(document, "/v1/events", "post", response)


@pytest.mark.parametrize("value", ["", "no such experiment", "a b"])
def test_dashboard_experiment_filter_takes_any_text(api, value: str) -> None:  # noqa: ANN001
    client, document = api
    schema = next(p for p in document["paths"]["/dashboard"]["get"]["parameters"] if p["name"] == "experiment")["schema"]
    assert allowed(schema, value)
    assert client.get("/dashboard", query_string={"experiment": value}, headers=AUTH).status_code == 200


# ------------------------------------------- rules JSON Schema could not state, reshaped
EXPERIMENTS = "/v1/admin/experiments"
ARMS = {"control": {"model": "als"}, "treatment": {"model": "itemknn", "weight": 3}}


def test_an_event_stamped_ahead_of_the_clock_is_stored_at_its_arrival(api, redis_client, layout) -> None:  # noqa: ANN001
    # The failure: more than 5 minutes ahead was a 400 (a rule about the server's clock that
    # no schema can state). The event is stored with the time it arrived, and counted.
    client, document = api
    now = time.time()
    events = [
        {"type": "click", "user_id": "u1", "item_id": "i1", "timestamp": now + 3600},
        {"type": "click", "user_id": "u1", "item_id": "i2", "timestamp": now * 1000},  # milliseconds
        {"type": "click", "user_id": "u1", "item_id": "i3", "timestamp": "9999-12-31T23:59:59Z"},
        {"type": "click", "user_id": "u1", "item_id": "i4", "timestamp": now - 60},
    ]
    assert allowed(request_body(document, "/v1/events", "post"), events, document)
    response = client.post("/v1/events", json=events)
    assert response.status_code == 202 and response.json["adjusted"] == 3, response.json
    documented(document, "/v1/events", "post", response)
    stored = [float(f[b"timestamp"]) for _, f in redis_client.xrange(layout.events)]
    assert all(now - 1 <= t <= time.time() + 1 for t in stored[:3]) and stored[3] == pytest.approx(now - 60, abs=0.001)
    metrics = client.get("/metrics").get_data(as_text=True)
    assert "recsys_events_adjusted_total 3.0" in metrics


@pytest.mark.parametrize(
    ("value", "stored"),
    [(42.0, "42"), (-(2**53 - 1), str(-(2**53 - 1))), (float(2**53 - 1), str(2**53 - 1)), (0, "0")],
)
def test_whole_number_ids_are_exact_within_the_schemas_bounds(api, redis_client, layout, value: float, stored: str) -> None:  # noqa: ANN001
    # The failure: 42.0 is an integer to JSON Schema but was refused as a float, and the
    # schema allowed integers up to 2**64, which a parser holding doubles cannot keep exact.
    client, document = api
    event = {"type": "view", "user_id": value, "item_id": value, "event_id": value}
    assert allowed(request_body(document, "/v1/events", "post"), event, document)
    response = client.post("/v1/events", json=event)
    assert response.status_code == 202, response.json
    (_, fields), = redis_client.xrange(layout.events)
    assert (fields[b"user_id"], fields[b"item_id"], fields[b"event_id"]) == (stored.encode(),) * 3


@pytest.mark.parametrize("value", [2**53, -(2**53), 2**63, 1e19, 7.5])
def test_ids_beyond_the_exact_range_are_outside_the_schema_and_refused(api, value: float) -> None:  # noqa: ANN001
    client, document = api
    event = {"type": "view", "user_id": "u1", "item_id": value}
    assert not allowed(request_body(document, "/v1/events", "post"), event, document)
    response = client.post("/v1/events", json=event)
    assert response.status_code == 400 and response.json["error"]["problems"][0]["field"] == "item_id"


@pytest.mark.parametrize(
    ("stamp", "ok"),
    [
        ("2026-12-02T13:45:00Z", True), ("2026-12-02t13:45:00.123z", True), ("2026-12-02 13:45", True),
        ("2026-12-02T13:45:00+05:30", True), ("2024-02-29", True), ("2000-01-01T00:00:00-01:00", True),
        ("1750000000", True), ("946684800.5", True),
        ("yesterday", False), ("2025-02-29", False), ("2026-04-31T00:00Z", False), ("1999-12-31T23:59:59Z", False),
        ("2000-01-01T00:30:00+01:00", False), ("946684799", False), ("1.75e9", False), (" 1750000000", False),
        ("2026-12-02T24:00:00Z", False), ("", False),
    ],
)
def test_timestamp_strings_the_schema_allows_are_stored_and_the_others_refused(api, stamp: str, ok: bool) -> None:  # noqa: ANN001
    # The failure: any string was schema-valid, and most were refused.
    client, document = api
    event = {"type": "view", "user_id": "u1", "item_id": "i1", "timestamp": stamp}
    assert allowed(request_body(document, "/v1/events", "post"), event, document) is ok
    response = client.post("/v1/events", json=event)
    assert response.status_code == (202 if ok else 400), response.json
    documented(document, "/v1/events", "post", response)


def test_the_timestamp_pattern_holds_exactly_the_real_dates_from_2000() -> None:
    import datetime as dt
    import re

    from recsys.abtest.events import TIMESTAMP_PATTERN

    pattern = re.compile(TIMESTAMP_PATTERN)
    for year in (*range(2000, 2030), 2100, 2400, 2800, 2900, 9996, 9999):
        for month in range(1, 13):
            for day in range(1, 32):
                text = f"{year:04d}-{month:02d}-{day:02d}"
                try:
                    real = dt.date(year, month, day) is not None
                except ValueError:
                    real = False
                assert bool(pattern.fullmatch(text + "T12:00:00Z")) is real, text


def test_an_event_id_twice_in_a_batch_stores_the_first(api, redis_client, layout) -> None:  # noqa: ANN001
    client, document = api
    events = [{"type": "view", "user_id": "u1", "item_id": f"i{k}", "event_id": "e1"} for k in range(2)]
    assert allowed(request_body(document, "/v1/events", "post"), events, document)
    response = client.post("/v1/events", json=events)
    assert response.status_code == 202 and response.json == {"accepted": 2, "stored": 1, "duplicates": 1, "adjusted": 0}
    documented(document, "/v1/events", "post", response)


@pytest.mark.parametrize(
    "body",
    [
        [{"type": "view", "user_id": "u1", "item_id": "i1"}] * 501,
        {"events": [{"type": "view", "user_id": "u1", "item_id": "i1"}], "source": "web"},
    ],
)
def test_batches_the_schema_excludes_are_400(api, body: Any) -> None:  # noqa: ANN001
    # The failures: more than 500 events was schema-valid (and a 413); an extra key beside
    # "events" was schema-valid (and read as one unknown event).
    client, document = api
    assert not allowed(request_body(document, "/v1/events", "post"), body, document)
    response = client.post("/v1/events", json=body)
    assert response.status_code == 400
    documented(document, "/v1/events", "post", response)


def test_a_bulk_update_naming_an_item_twice_applies_its_entries_in_order(api) -> None:  # noqa: ANN001
    # The failure: a duplicate item_id was a 400 the schema could not state. Now an upsert:
    # the later entry overrides the fields it gives, as a second call would.
    client, document = api
    body = [
        {"item_id": "i1", "price": 9.5, "in_stock": False},
        {"item_id": "i2", "hidden": True},
        {"item_id": "i1", "in_stock": True, "hidden": True},
        {"item_id": "i1", "price": 12.0},
    ]
    assert allowed(request_body(document, "/v1/admin/items", "patch"), body, document)
    response = client.patch("/v1/admin/items", json=body, headers=AUTH)
    assert response.status_code == 200, response.json
    documented(document, "/v1/admin/items", "patch", response)
    receipt = response.json
    assert receipt["updated"] == 2 and [i["item_id"] for i in receipt["items"]] == ["i1", "i2"]
    assert receipt["items"][0]["overlay"] == {"price": 12.0, "hidden": True}  # in_stock back to the file's true
    assert client.get("/v1/items/i2/similar").status_code == 200  # served, never listed
    assert all(e["item_id"] not in ("i1", "i2") for e in client.get("/v1/popular?n=20").json["items"])


def test_experiment_variants_are_keyed_by_name_with_the_control_under_control(api, redis_client, layout) -> None:  # noqa: ANN001
    # The failure: variants as an array let a schema-valid body repeat a name or name a
    # control that is no variant (400). Keyed by name, with the control's key required,
    # both hold by construction.
    client, document = api
    schema = request_body(document, EXPERIMENTS, "post")
    body = {"name": "exp", "variants": {"treatment": ARMS["treatment"], "control": ARMS["control"]}, "duration": 600}
    assert allowed(schema, body, document)
    response = client.post(EXPERIMENTS, json=body, headers=AUTH)
    assert response.status_code == 201, response.json
    documented(document, EXPERIMENTS, "post", response)
    stored = response.json
    # Stored control first, then by name, whatever order the encoder wrote the keys in.
    assert [(v["name"], v["model"], v["weight"]) for v in stored["variants"]] == [("control", "als", 1.0), ("treatment", "itemknn", 3.0)]
    assert stored["control"] == "control" and stored["end"] == stored["start"] + 600

    for refused in (
        {"name": "x", "variants": {"a": {"model": "als"}, "b": {"model": "itemknn"}}},  # no control
        {"name": "x", "variants": [{"name": "a", "model": "als"}, {"name": "a", "model": "itemknn"}]},  # the old form
        {"name": "x", "variants": ARMS, "control": "treatment"},
        {"name": "x", "variants": ARMS, "end": 2_000_000_000},  # "duration" (end before start: no such body)
    ):
        assert not allowed(schema, refused, document), refused
        answer = client.post(EXPERIMENTS, json=refused, headers=AUTH)
        assert answer.status_code == 400, (refused, answer.json)
        documented(document, EXPERIMENTS, "post", answer)


def test_a_variant_model_the_live_version_lacks_is_a_documented_409(api) -> None:  # noqa: ANN001
    client, document = api
    body = {"name": "exp", "variants": {"control": {"model": "als"}, "b": {"model": "svd"}}}
    assert allowed(request_body(document, EXPERIMENTS, "post"), body, document)
    response = client.post(EXPERIMENTS, json=body, headers=AUTH)
    assert response.status_code == 409 and response.json["error"]["available"] == ["als", "itemknn"]
    documented(document, EXPERIMENTS, "post", response)


@pytest.mark.parametrize(("query", "status"), [("offset=10000000", 404), ("offset=10000001", 400), ("offset=%C2%B2", 400)])
def test_audience_paging_bounds_are_the_schemas(api, query: str, status: int) -> None:  # noqa: ANN001
    # The failures: offsets over 10,000,000 were schema-valid and refused; "²" (a digit to
    # str.isdigit, not to int) was a 500.
    client, document = api
    path = "/v1/admin/audiences/{name}"
    schema = next(p for p in document["paths"][path]["get"]["parameters"] if p["name"] == "offset")["schema"]
    assert allowed(schema, 10_000_000) and not allowed(schema, 10_000_001)
    response = client.get(f"/v1/admin/audiences/nobody?{query}", headers=AUTH)
    assert response.status_code == status
    documented(document, path, "get", response)
