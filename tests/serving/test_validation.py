"""Bad input gets a JSON error with the right status; configuration comes from RECSYS_*."""

from __future__ import annotations

from typing import Any

import pytest
from flask.testing import FlaskClient

from recsys.errors import ConfigError

pytestmark = pytest.mark.usefixtures("published")


def error_of(client: FlaskClient, url: str, status: int, method: str = "GET") -> dict[str, Any]:
    response = client.open(url, method=method)
    assert response.status_code == status, (url, response.status_code, response.get_data(as_text=True))
    assert response.mimetype == "application/json"
    body = response.get_json()
    assert set(body) == {"error"} and body["error"]["status"] == status
    return body["error"]


@pytest.mark.parametrize("n", ["abc", "0", "-1", "101", "1.5", "+5", "5_0", "", " 5", "1e2", "99999999999"])
def test_bad_n_is_400(client: FlaskClient, n: str) -> None:
    for url in ("/v1/users/u1/recommendations", "/v1/popular", "/v1/items/i1/similar", "/v1/items/i1/bought-together"):
        err = error_of(client, f"{url}?n={n}", 400)
        assert err["field"] == "n" and "between 1 and 100" in err["message"]


def test_n_bounds_are_inclusive(client: FlaskClient) -> None:
    assert client.get("/v1/popular?n=1").status_code == 200
    assert client.get("/v1/popular?n=100").status_code == 200


@pytest.mark.parametrize(
    ("url", "field"),
    [
        ("/v1/users/u1/recommendations?nn=5", "nn"),
        ("/v1/popular?n=1&n=2", "n"),
        ("/v1/users/u1/recommendations?model=", "model"),
        ("/v1/users/u1/recommendations?exclude=" + ",".join(f"x{k}" for k in range(101)), "exclude"),
        ("/v1/users/u1/recommendations?exclude=ok," + "x" * 257, "exclude"),
        ("/v1/users/u1/recommendations?session_id=" + "s" * 257, "session_id"),
        ("/v1/users/" + "u" * 257 + "/recommendations", "user_id"),
        ("/v1/users/a%01b/recommendations", "user_id"),
        ("/v1/items/" + "i" * 257 + "/similar", "item_id"),
        ("/v1/items/i%7F/bought-together", "item_id"),
        ("/v1/popular?category=%00", "category"),
    ],
)
def test_bad_parameters_name_the_field(client: FlaskClient, url: str, field: str) -> None:
    assert error_of(client, url, 400)["field"] == field


def test_ids_may_hold_unicode_and_slashes(client: FlaskClient) -> None:
    for user in ("Zoë-ünïcode", "a/b", "a%2Fb", "%F0%9F%9B%92", "x" * 256):
        response = client.get(f"/v1/users/{user}/recommendations?n=2")
        assert response.status_code == 200, (user, response.get_data(as_text=True))
        assert response.get_json()["fallback"] == "popular"


def test_unknown_route_and_wrong_method_are_json(client: FlaskClient) -> None:
    assert "openapi" in error_of(client, "/v2/whatever", 404)["message"]
    error_of(client, "/v1/users/u1", 404)
    err = error_of(client, "/v1/users/u1/recommendations", 405, method="POST")
    assert "GET" in err["message"]
    error_of(client, "/v1/popular", 405, method="DELETE")
    response = client.post("/v1/popular", data=b"x" * 2_000_000)
    assert response.status_code in (405, 413) and response.get_json()["error"]


def test_head_and_options_work(client: FlaskClient) -> None:
    assert client.head("/v1/popular").status_code == 200
    assert client.options("/v1/popular").status_code == 200


def test_configuration_from_environment(make_app: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECSYS_MAX_N", "5")
    monkeypatch.setenv("RECSYS_DEFAULT_N", "3")
    monkeypatch.setenv("RECSYS_ADMIN_TOKEN", "0123")
    monkeypatch.setenv("RECSYS_INGEST_TOKEN", "12345")
    from serving import services

    app = make_app()
    settings = services(app).settings
    assert (settings.max_n, settings.default_n) == (5, 3)
    assert settings.admin_token == "0123" and settings.ingest_token == "12345"  # text, not numbers
    client = app.test_client()
    assert len(client.get("/v1/popular").get_json()["items"]) == 3
    assert "between 1 and 5" in error_of(client, "/v1/popular?n=6", 400)["message"]


@pytest.mark.parametrize(
    ("variable", "value", "named"),
    [
        ("RECSYS_MAX_N", "many", "RECSYS_MAX_N"),
        ("RECSYS_MAX_N", "0", "RECSYS_MAX_N"),
        ("RECSYS_REDIS_TIMEOUT", "-1", "RECSYS_REDIS_TIMEOUT"),
        ("RECSYS_DEFAULT_N", "500", "DEFAULT_N"),
    ],
)
def test_bad_configuration_is_a_config_error(
    make_app: Any, monkeypatch: pytest.MonkeyPatch, variable: str, value: str, named: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError, match=named):
        make_app()
