"""The OpenAPI document says exactly what the API accepts: a value the schema allows is not
refused for its form, and a value the API refuses for its form is outside the schema.
Also: path ids that are not valid UTF-8 or hold line breaks get 400 JSON."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import jsonschema
import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.abtest.published import publish_meta
from tests.serving.fixtures import FakeVersion

ADMIN = "contract-admin"


def parameter(document: dict[str, Any], path: str, name: str) -> dict[str, Any]:
    return next(p for p in document["paths"][path]["get"]["parameters"] if p["name"] == name)["schema"]


def allowed(schema: dict[str, Any], value: object, document: dict[str, Any] | None = None) -> bool:
    resolver_schema = {**schema, "components": (document or {}).get("components", {})}
    try:
        jsonschema.validate(value, resolver_schema, format_checker=jsonschema.FormatChecker())
    except jsonschema.ValidationError:
        return False
    return True


@pytest.fixture
def api(make_app, published: FakeVersion) -> tuple[FlaskClient, dict[str, Any]]:  # noqa: ANN001
    app: Flask = make_app(admin_token=ADMIN)
    client = app.test_client()
    return client, client.get("/openapi.json").json


@pytest.mark.parametrize(
    ("path", "name", "values"),
    [
        ("/v1/users/{user_id}/recommendations", "model", ["", "als", "a\nb"]),
        ("/v1/users/{user_id}/recommendations", "category", ["", "books", "x\x00"]),
        ("/v1/users/{user_id}/recommendations", "exclude", ["", ",", "i1,,i2", "i1, i2", "a\tb", ",".join(["i"] * 101)]),
        ("/v1/users/{user_id}/recommendations", "session_id", ["", "s1", " s1", "s\n1"]),
        ("/v1/users/{user_id}/recommendations", "placement", ["", "home", "no spaces", "x" * 65]),
        ("/v1/baskets/recommendations", "items", ["", ",", "i1", "i1,i2", ",i1", ",".join(["i1"] * 51)]),
        ("/v1/popular", "category", ["", "books"]),
    ],
)
def test_query_parameters(api: tuple[FlaskClient, dict[str, Any]], path: str, name: str, values: list[str]) -> None:
    client, document = api
    schema = parameter(document, path, name)
    url = path.replace("{user_id}", "u1")
    for value in values:
        status = client.get(url, query_string={name: value}).status_code
        if allowed(schema, value):
            assert status == 200, (name, value, status)
        else:
            assert status == 400, (name, value, status)


@pytest.mark.parametrize("user_id", ["u1", "Zoë", " u1", "a\tb", "x" * 257])
def test_path_ids(api: tuple[FlaskClient, dict[str, Any]], user_id: str) -> None:
    client, document = api
    schema = parameter(document, "/v1/users/{user_id}/recommendations", "user_id")
    status = client.get(f"/v1/users/{quote(user_id, safe='')}/recommendations").status_code
    assert status == (200 if allowed(schema, user_id) else 400), (user_id, status)


def test_invalid_utf8_and_newline_in_a_path_are_400_json(api: tuple[FlaskClient, dict[str, Any]]) -> None:
    client, _ = api
    # The failure: %FF%FE was decoded to U+FFFD U+FFFD and answered 200; a newline 404.
    for path, field in (("/v1/users/%FF%FE/recommendations", "user_id"), ("/v1/users/a%0Ab/recommendations", "user_id"),
                        ("/v1/items/%C3%28/similar", "item_id"), ("/v1/items/a%0Db/bought-together", "item_id")):
        response = client.get(path)
        assert response.status_code == 400 and response.is_json, (path, response.status_code)
        assert response.json["error"]["field"] == field


AB = {"control": {"model": "als"}, "b": {"model": "itemknn"}}


@pytest.mark.parametrize(
    "definition",
    [
        {"name": "ok", "variants": AB},
        {"name": "ok", "placement": "home", "variants": {"control": {"model": "als"}, "b": {"model": "itemknn", "weight": 2}}},
        {"name": "ok", "variants": AB, "start": 1_700_000_000, "duration": 86400, "salt": "s", "unit": "session"},
        {"name": "ok", "variants": AB, "duration": None, "description": "x" * 500},
        {"name": "ok", "variants": {"control": {"model": "als", "options": {"exclude_recent": False, "fallback": "none"}}, "b": {"model": "als"}}},
        {"name": "bad name", "variants": AB},
        {"name": "ok", "variants": {"broken": {"model": "als"}, "control": {"model": "itemknn"}}},
        {"name": "ok", "variants": {"a": {"model": "als"}, "b": {"model": "itemknn"}}},
        {"name": "ok", "variants": {"control": {"model": "als"}}},
        {"name": "ok", "variants": {"control": {"model": "als"}, "b b": {"model": "als"}}},
        {"name": "ok", "variants": {"control": {"model": "als"}, "b": {"model": "itemknn", "options": {"colour": "red"}}}},
        {"name": "ok", "variants": {"control": {"model": "als"}, "b": {"model": "itemknn", "options": {"fallback": "popullar"}}}},
        {"name": "ok", "variants": {"control": {"model": "als"}, "b": {"model": "itemknn", "options": {"exclude_recent": "false"}}}},
        {"name": "ok", "status": "stopped", "variants": AB},
        {"name": "ok", "control": "b", "variants": AB},
        {"name": "ok", "end": 2_000_000_000, "variants": AB},
        {"name": "ok", "variants": {"control": {"model": "als"}, "b": {"model": "itemknn", "weight": 0}}},
        {"name": "ok", "variants": {"control": {"model": "als"}, "b": {"model": "itemknn", "weight": "2"}}},
        {"name": "ok", "variants": {"control": {"model": "als"}, "b": {"model": "itemknn", "weight": 1e308}}},
        {"name": "ok", "variants": {"control": {"model": "als", "name": "control"}, "b": {"model": "itemknn"}}},
        {"name": "ok", "placement": "", "variants": AB},
        {"name": "ok", "variants": AB, "start": -1},
        {"name": "ok", "variants": AB, "start": 1e12},
        {"name": "ok", "variants": AB, "duration": 0.5},
        {"name": "ok", "variants": AB, "salt": None},
        {"name": "ok", "variants": [{"name": "control", "model": "als"}, {"name": "b", "model": "itemknn"}]},
    ],
)
def test_experiment_definitions(make_app, published: FakeVersion, definition: dict[str, Any]) -> None:  # noqa: ANN001
    client = make_app(admin_token=ADMIN).test_client()
    document = client.get("/openapi.json").json
    schema = {"$ref": "#/components/schemas/Experiment"}
    status = client.post("/v1/admin/experiments", json=definition, headers={"Authorization": f"Bearer {ADMIN}"}).status_code
    assert status == (201 if allowed(schema, definition, document) else 400), (definition, status)


def test_publish_meta_helper_is_enough_for_experiments(make_app, redis_client, layout) -> None:  # noqa: ANN001
    publish_meta(redis_client, layout, "meta-only", ["als"])
    client = make_app(admin_token=ADMIN).test_client()
    body = {"name": "m", "variants": {"control": {"model": "als"}, "b": {"model": "ease"}}}
    response = client.post("/v1/admin/experiments", json=body, headers={"Authorization": f"Bearer {ADMIN}"})
    # A well-formed definition the live version cannot serve: a conflict with its state.
    assert response.status_code == 409 and response.json["error"]["available"] == ["als"]
