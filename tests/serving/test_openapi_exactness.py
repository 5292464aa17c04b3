"""Each answer of the API is one its OpenAPI operation documents, with a body of that
response's schema; and the request bodies the API accepts are those the schema allows
(findings of ``schemathesis --checks all``, see docs/api.md)."""

from __future__ import annotations

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
