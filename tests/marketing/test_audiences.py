"""Published audiences: ``recsys propensity --publish NAME`` into the test Redis, read back
through ``GET /v1/admin/audiences/{name}`` (admin token), paged, replaced whole."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import orjson
import pytest
import redis
from click.testing import CliRunner

from recsys.cli.main import cli
from recsys.marketing.audiences import publish_audience, read_audience
from recsys.store.keys import KeyLayout
from tests.marketing.fixtures import planted_propensity

ADMIN = "audience-admin"


@pytest.fixture
def layout(key_prefix: str) -> KeyLayout:
    return KeyLayout(key_prefix)


@pytest.fixture
def api(redis_url: str, key_prefix: str) -> Any:
    from serving import create_app

    return create_app({"REDIS_URL": redis_url, "KEY_PREFIX": key_prefix, "TESTING": True, "ADMIN_TOKEN": ADMIN}).test_client()


def _get(api: Any, url: str, token: str | None = ADMIN) -> Any:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return api.get(url, headers=headers)


def test_publish_replaces_the_audience_whole(redis_client: redis.Redis, layout: KeyLayout) -> None:
    publish_audience(redis_client, layout, "tea", ["a", "b", "c"], [0.9, 0.5, 0.7], {"target": "category=tea"})
    first = read_audience(redis_client, layout, "tea")
    assert [u["user_id"] for u in first["users"]] == ["a", "c", "b"] and first["size"] == 3
    publish_audience(redis_client, layout, "tea", ["d"], [0.4], {"target": "category=tea"})
    second = read_audience(redis_client, layout, "tea")
    assert second["users"] == [{"user_id": "d", "score": 0.4}] and second["size"] == 1
    # no temporary key is left behind
    assert not list(redis_client.scan_iter(match=layout.audience_tmp("tea", "*")))
    assert read_audience(redis_client, layout, "nope") is None


def test_cli_publishes_and_the_api_serves_it(tmp_path: Path, redis_url: str, redis_client: redis.Redis, layout: KeyLayout,
                                             api: Any) -> None:
    interactions, catalog, fans = planted_propensity(users=1500)
    shop = tmp_path / "shop"
    shop.mkdir()
    interactions.to_csv(shop / "interactions.csv", index=False)
    catalog.to_csv(shop / "catalog.csv", index=False)
    result = CliRunner().invoke(
        cli,
        ["propensity", "--data", str(shop), "--target", "category=tea", "--k", "40", "--publish", "tea-buyers",
         "--redis", redis_url, "--prefix", layout.prefix, "--json"],
    )
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["published"]["size"] == 40

    raw = orjson.loads(redis_client.get(layout.audience_meta("tea-buyers")))
    assert raw["target"] == "category=tea" and raw["horizon_days"] == 14.0
    assert raw["auc"] == document["model"]["auc"] and raw["cutoff"] == document["cutoffs"]["end"]
    assert raw["created_at"] > 0 and redis_client.zcard(layout.audience("tea-buyers")) == 40

    response = _get(api, "/v1/admin/audiences/tea-buyers?limit=10")
    assert response.status_code == 200, response.get_data(as_text=True)
    body = response.get_json()
    assert body["size"] == 40 and body["limit"] == 10 and len(body["users"]) == 10
    expected = [a["user_id"] for a in document["audience"]]
    assert [u["user_id"] for u in body["users"]] == expected[:10]
    scores = [u["score"] for u in body["users"]]
    assert scores == sorted(scores, reverse=True)
    page = _get(api, "/v1/admin/audiences/tea-buyers?limit=10&offset=35").get_json()
    assert [u["user_id"] for u in page["users"]] == expected[35:]
    assert sum(u in fans for u in expected) >= 30  # the planted tea fans

    spec = api.get("/openapi.json").get_json()
    jsonschema.validate(body, {**spec["components"]["schemas"]["Audience"], "components": spec["components"]})
    assert "/v1/admin/audiences/{name}" in spec["paths"]


def test_audience_endpoint_needs_the_token_and_knows_the_name(redis_client: redis.Redis, layout: KeyLayout, api: Any) -> None:
    publish_audience(redis_client, layout, "vip", ["a"], [0.5], {"target": "item=x"})
    assert _get(api, "/v1/admin/audiences/vip", token=None).status_code == 401
    assert _get(api, "/v1/admin/audiences/vip", token="wrong").status_code == 401
    missing = _get(api, "/v1/admin/audiences/nobody")
    assert missing.status_code == 404 and missing.mimetype == "application/json"
    assert "nobody" in missing.get_json()["error"]["message"]
    for bad in ("limit=0", "limit=1001", "limit=x", "offset=-1", "page=2"):
        response = _get(api, f"/v1/admin/audiences/vip?{bad}")
        assert response.status_code == 400, bad
        assert response.get_json()["error"]["status"] == 400


def test_admin_off_hides_audiences(redis_url: str, key_prefix: str, redis_client: redis.Redis, layout: KeyLayout) -> None:
    from serving import create_app

    publish_audience(redis_client, layout, "vip", ["a"], [0.5], {"target": "item=x"})
    app = create_app({"REDIS_URL": redis_url, "KEY_PREFIX": key_prefix, "TESTING": True})
    assert app.test_client().get("/v1/admin/audiences/vip", headers={"Authorization": "Bearer x"}).status_code == 404


def test_publish_name_is_checked_before_any_work(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["propensity", "--data", str(tmp_path), "--target", "category=tea", "--publish", "bad name"])
    assert result.exit_code != 0 and "--publish" in str(result.exception)  # main() prints it as one line


def test_forgotten_users_leave_published_audiences(redis_client: redis.Redis, layout: KeyLayout, tmp_path: Path) -> None:
    from recsys.privacy.forget import forget_users

    publish_audience(redis_client, layout, "vip", ["a", "b"], [0.5, 0.4], {"target": "item=x"})
    forget_users(redis_client, layout, ["a"], runs_root=tmp_path / "runs", archive_root=None)
    assert [u["user_id"] for u in read_audience(redis_client, layout, "vip")["users"]] == ["b"]
