"""Experiments checked against what is published; broken experiments; stop, delete, placements."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

import pytest
import redis
from click.testing import CliRunner
from flask.testing import FlaskClient

from recsys.abtest.assignment import assign
from recsys.abtest.experiments import ExperimentRequest, ExperimentStore
from recsys.cli.main import cli
from recsys.store.keys import KeyLayout
from serving import create_app
from tests.serving.fixtures import fake_lists, publish_fake

ADMIN = "admin-Secret-15"
AUTH = {"Authorization": f"Bearer {ADMIN}"}
USERS = [f"u{k}" for k in range(1, 4)] + [f"visitor{k}" for k in range(40)]


@pytest.fixture
def layout(key_prefix: str) -> KeyLayout:
    return KeyLayout(key_prefix)


@pytest.fixture
def client(redis_url: str, key_prefix: str, redis_client: redis.Redis, layout: KeyLayout) -> Iterator[FlaskClient]:
    publish_fake(redis_client, layout, version="v1")  # user models: als, itemknn
    app = create_app({"REDIS_URL": redis_url, "KEY_PREFIX": key_prefix, "ADMIN_TOKEN": ADMIN,
                      "ROUTER_REFRESH_SECONDS": 0, "TESTING": True})
    with app.test_client() as test_client:
        yield test_client


def ab(redis_url: str, key_prefix: str, *args: str):  # noqa: ANN201 - a click Result
    return CliRunner().invoke(cli, ["ab", "--redis-url", redis_url, "--prefix", key_prefix, *args])


def definition(name: str = "home", treatment: str = "itemknn", **extra: object) -> dict[str, object]:
    """An API definition (variants keyed by name, the control under "control")."""
    return {"name": name, "variants": {"control": {"model": "als"}, "treatment": {"model": treatment}}, **extra}


# -------------------------------------------------------------- at creation
def test_cli_refuses_a_model_that_is_not_published(client: FlaskClient, redis_url: str, key_prefix: str,
                                                   redis_client: redis.Redis, layout: KeyLayout) -> None:
    result = ab(redis_url, key_prefix, "create", "exp", "--variant", "a=als", "--variant", "b=nosuchmodel")
    assert result.exit_code != 0
    message = str(result.exception)
    assert "b=nosuchmodel" in message and "available user models: als, itemknn" in message
    assert ExperimentStore(redis_client, layout).list() == []


def test_admin_refuses_a_model_that_is_not_published(client: FlaskClient, redis_client: redis.Redis, layout: KeyLayout) -> None:
    response = client.post("/v1/admin/experiments", json=definition(treatment="svd"), headers=AUTH)
    assert response.status_code == 409
    error = response.json["error"]
    assert error["available"] == ["als", "itemknn"] and "svd" in error["message"]
    assert not redis_client.hlen(layout.experiments)


def test_nothing_published_is_an_error(redis_url: str, key_prefix: str, redis_client: redis.Redis) -> None:
    result = ab(redis_url, key_prefix, "create", "exp", "--variant", "a=als", "--variant", "b=ease")
    assert result.exit_code != 0 and "nothing is published" in str(result.exception)


# -------------------------------------------------------- at a version switch
def test_a_variant_model_that_disappears_breaks_the_experiment(
    client: FlaskClient, redis_url: str, key_prefix: str, redis_client: redis.Redis, layout: KeyLayout
) -> None:
    # A salt that puts u1 or u2 (users with itemknn lists) into the treatment.
    salt = next(f"s{k}" for k in range(100) if "treatment" in
                {assign(ExperimentRequest.model_validate({**definition(), "salt": f"s{k}"}).experiment(), u) for u in ("u1", "u2")})
    assert client.post("/v1/admin/experiments", json=definition(salt=salt), headers=AUTH).status_code == 201
    experiment = ExperimentStore(redis_client, layout).get("home")
    treated = next(u for u in ("u1", "u2") if assign(experiment, u) == "treatment")
    before = client.get(f"/v1/users/{treated}/recommendations").json
    assert before["variant"] == "treatment" and before["model"] == "itemknn"

    without = fake_lists()
    del without.user_lists["itemknn"]
    publish_fake(redis_client, layout, version="v2", fake=without)
    for user in USERS[:10]:
        answer = client.get(f"/v1/users/{user}/recommendations").json
        # The failure: labelled with the variant's name while the default model served it.
        known = user in ("u1", "u2", "u3")
        assert answer["version"] == "v2" and answer["model"] == ("als" if known else "popular"), answer
        assert answer["experiment"] == "home" and answer["variant"] == "broken"

    stored = ExperimentStore(redis_client, layout).get("home")
    assert stored.broken is not None and "itemknn" in stored.broken and "v2" in stored.broken
    metrics = client.get("/metrics").get_data(as_text=True)
    assert re.search(r'^recsys_ab_experiment_broken\{experiment="home"\} 1\.0$', metrics, re.M), metrics
    served = re.search(r'^recsys_ab_broken_requests_total\{experiment="home"\} (\S+)$', metrics, re.M)
    assert served is not None and float(served.group(1)) >= 10

    listed = ab(redis_url, key_prefix, "list")
    assert listed.exit_code == 0 and re.search(r"^home\s+broken\s", listed.output, re.M), listed.output
    assert "itemknn" in listed.output and "default model" in listed.output
    as_json = json.loads(ab(redis_url, key_prefix, "list", "--json").output)
    assert as_json[0]["state"] == "broken"
    assert client.get("/v1/admin/experiments/home", headers=AUTH).json["broken"] == stored.broken
    page = client.get("/dashboard", headers=AUTH).get_data(as_text=True)
    assert 'data-broken="1"' in page and 'class="badge broken"' in page
    report = client.get("/v1/admin/experiments/home/report", headers=AUTH).json
    assert any("broken" in w for w in report["warnings"])

    # Broken stays broken: the model coming back does not mix two kinds of traffic.
    publish_fake(redis_client, layout, version="v3")
    assert client.get(f"/v1/users/{treated}/recommendations").json["variant"] == "broken"


def test_list_marks_broken_without_any_api_request(redis_url: str, key_prefix: str, redis_client: redis.Redis,
                                                    layout: KeyLayout) -> None:
    publish_fake(redis_client, layout, version="v1")
    assert ab(redis_url, key_prefix, "create", "exp", "--variant", "a=als", "--variant", "b=itemknn").exit_code == 0
    without = fake_lists()
    del without.user_lists["itemknn"]
    publish_fake(redis_client, layout, version="v2", fake=without)
    result = ab(redis_url, key_prefix, "list")
    assert re.search(r"^exp\s+broken\s", result.output, re.M), result.output


# ------------------------------------------------------------ stop and delete
def test_stopped_routes_nobody_and_delete_removes(client: FlaskClient, redis_url: str, key_prefix: str,
                                                 redis_client: redis.Redis, layout: KeyLayout) -> None:
    publish_fake(redis_client, layout, version="v1", default_model="itemknn")
    definition_ = definition()
    assert client.post("/v1/admin/experiments", json=definition_, headers=AUTH).status_code == 201
    assert client.post("/v1/admin/experiments/home/stop", headers=AUTH).status_code == 200
    for user in USERS[:10]:
        answer = client.get(f"/v1/users/{user}/recommendations").json
        # The failure: everyone got the control's model (als), overriding the default (itemknn).
        assert "experiment" not in answer, answer
        if user in ("u1", "u2"):
            assert answer["model"] == "itemknn", answer
    assert client.delete("/v1/admin/experiments/home", headers=AUTH).status_code == 204
    assert client.delete("/v1/admin/experiments/home", headers=AUTH).status_code == 404
    assert client.get("/v1/admin/experiments/home", headers=AUTH).status_code == 404

    assert ab(redis_url, key_prefix, "create", "cli-exp", "--variant", "a=als", "--variant", "b=itemknn").exit_code == 0
    deleted = ab(redis_url, key_prefix, "delete", "cli-exp")
    assert deleted.exit_code == 0 and "deleted cli-exp" in deleted.output
    again = ab(redis_url, key_prefix, "delete", "cli-exp")
    assert again.exit_code != 0 and "no experiment named 'cli-exp'" in str(again.exception)


# ------------------------------------------------------------------ placements
def test_placements_route_their_own_experiment(client: FlaskClient, redis_client: redis.Redis, layout: KeyLayout) -> None:
    assert client.post("/v1/admin/experiments", json=definition("home-exp", placement="home"), headers=AUTH).status_code == 201
    assert client.post("/v1/admin/experiments", json=definition("product-exp", placement="product"), headers=AUTH).status_code == 201
    clash = client.post("/v1/admin/experiments", json=definition("home-2", placement="home"), headers=AUTH)
    assert clash.status_code == 409 and "placement 'home'" in clash.json["error"]["message"]

    assert client.get("/v1/users/u1/recommendations?placement=home").json["experiment"] == "home-exp"
    assert client.get("/v1/users/u1/recommendations?placement=product").json["experiment"] == "product-exp"
    assert "experiment" not in client.get("/v1/users/u1/recommendations").json
    assert "experiment" not in client.get("/v1/users/u1/recommendations?placement=basket").json
    bad = client.get("/v1/users/u1/recommendations?placement=no%20spaces")
    assert bad.status_code == 400 and bad.json["error"]["field"] == "placement"


def test_publish_and_rollback_say_which_experiment_broke(redis_url: str, key_prefix: str, redis_client: redis.Redis,
                                                         layout: KeyLayout) -> None:
    from recsys.cli.main import cli as main_cli

    publish_fake(redis_client, layout, version="v1")
    assert ab(redis_url, key_prefix, "create", "exp", "--variant", "a=als", "--variant", "b=itemknn").exit_code == 0
    without = fake_lists()
    del without.user_lists["itemknn"]
    publish_fake(redis_client, layout, version="v2", fake=without)
    redis_client.zadd(layout.versions, {"v1": 1.0, "v2": 2.0})
    result = CliRunner().invoke(main_cli, ["rollback", "--to", "v2", "--redis", redis_url, "--prefix", key_prefix])
    assert result.exit_code == 0, result.output
    assert "WARNING: A/B experiment exp is broken" in result.output
    assert ExperimentStore(redis_client, layout).get("exp").broken is not None
