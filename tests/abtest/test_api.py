"""The A/B HTTP surface: POST /v1/events, the /v1/admin experiment endpoints, /dashboard,
and the loop back into serving (routing, real-time exclusion of clicked items)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient

from recsys.abtest.assignment import assign
from recsys.abtest.events import MAX_BATCH_EVENTS, MAX_BODY_BYTES
from recsys.abtest.experiments import ExperimentStore
from recsys.abtest.report import build_report
from recsys.errors import ConfigError
from recsys.store.keys import EVENT_FIELDS, KeyLayout
from serving import create_app
from serving.dashboard import COOKIE
from tests.serving.fixtures import publish_fake

ADMIN = "admin-Secret-42"
INGEST = "ingest-Secret-7"
AUTH = {"Authorization": f"Bearer {ADMIN}"}


def make_app(redis_url: str, key_prefix: str, **extra: object) -> Flask:
    config = {"REDIS_URL": redis_url, "KEY_PREFIX": key_prefix, "ROUTER_REFRESH_SECONDS": 0, "INGEST_OPEN": True, **extra}
    app = create_app(config)
    app.testing = True
    return app


@pytest.fixture
def client(redis_url: str, key_prefix: str, redis_client: redis.Redis) -> Iterator[FlaskClient]:
    publish_fake(redis_client, KeyLayout(key_prefix))  # experiments are checked against it
    with make_app(redis_url, key_prefix, ADMIN_TOKEN=ADMIN).test_client() as test_client:
        yield test_client


@pytest.fixture
def layout(key_prefix: str) -> KeyLayout:
    return KeyLayout(key_prefix)


def click(user: str, item: str, **extra: object) -> dict[str, object]:
    return {"type": "click", "user_id": user, "item_id": item, **extra}


# --------------------------------------------------------------------- events
def test_events_one_array_or_wrapped(client: FlaskClient, redis_client: redis.Redis, layout: KeyLayout) -> None:
    for body, count in ((click("u1", "i1"), 1), ([click("u1", "i2"), click("u2", "i3")], 2), ({"events": [click("u3", "i4")] * 3}, 3)):
        response = client.post("/v1/events", json=body)
        assert response.status_code == 202, response.json
        assert response.json == {"accepted": count, "stored": count, "duplicates": 0, "adjusted": 0}
    assert redis_client.xlen(layout.events) == 6
    _, fields = redis_client.xrange(layout.events, count=1)[0]
    assert tuple(k.decode() for k in fields) == (*EVENT_FIELDS, "event_id")


def test_bad_batch_is_rejected_whole_with_indexes(client: FlaskClient, redis_client: redis.Redis, layout: KeyLayout) -> None:
    batch = [click("u1", f"i{k}") for k in range(6)]
    batch[2] = {"type": "purchase", "user_id": "u1", "item_id": "i2", "value": -5}
    batch[4] = {"type": "click", "item_id": "i4"}
    response = client.post("/v1/events", json=batch)
    assert response.status_code == 400
    error = response.json["error"]
    assert {(p["index"], p["field"]) for p in error["problems"]} == {(2, "value"), (4, "user_id")}
    assert error["status"] == 400 and "invalid event" in error["message"]
    assert redis_client.xlen(layout.events) == 0
    assert not redis_client.exists(layout.recent("u1"))


@pytest.mark.parametrize(
    ("data", "status", "fragment"),
    [
        (b"{not json", 400, "not valid JSON"),
        (b"", 400, "empty request body"),
        (b'"click"', 400, "expected an event object"),
        # A count the schema states (maxItems): 400 as any other invalid batch; 413 is the bytes.
        (json.dumps([click("u", "i")] * (MAX_BATCH_EVENTS + 1)).encode(), 400, str(MAX_BATCH_EVENTS)),
        (b"[" + b" " * (MAX_BODY_BYTES + 10) + b"]", 413, str(MAX_BODY_BYTES)),
    ],
)
def test_malformed_and_oversized_bodies(client: FlaskClient, data: bytes, status: int, fragment: str) -> None:
    response = client.post("/v1/events", data=data, content_type="application/json")
    assert response.status_code == status
    assert response.is_json and fragment in response.json["error"]["message"]


def test_ingest_token_when_configured(redis_url: str, key_prefix: str, redis_client: redis.Redis, layout: KeyLayout) -> None:
    client = make_app(redis_url, key_prefix, INGEST_TOKEN=INGEST).test_client()
    assert client.post("/v1/events", json=click("u", "i")).status_code == 401
    wrong = client.post("/v1/events", json=click("u", "i"), headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401 and wrong.headers["WWW-Authenticate"].startswith("Bearer")
    assert client.post("/v1/events", json=click("u", "i"), headers={"Authorization": f"Bearer {INGEST}"}).status_code == 202
    assert redis_client.xlen(layout.events) == 1


def test_views_and_the_shops_mapped_names_are_accepted_and_weighted_by_the_batch_job(
    redis_url: str, key_prefix: str, redis_client: redis.Redis, layout: KeyLayout, monkeypatch: pytest.MonkeyPatch
) -> None:
    # POST /v1/events used to refuse "view", which the batch job weights.
    monkeypatch.setenv("RECSYS_EVENT_TYPES", '{"pv": "view", "basket_remove": "remove_from_cart"}')
    client = make_app(redis_url, key_prefix).test_client()
    batch = [
        {"type": "view", "user_id": "u", "item_id": "a"},
        {"type": "pv", "user_id": "u", "item_id": "b"},
        {"type": "remove_from_cart", "user_id": "u", "item_id": "c"},
        {"type": "basket_remove", "user_id": "u", "item_id": "d"},
    ]
    response = client.post("/v1/events", json=batch)
    assert response.status_code == 202, response.json
    refused = client.post("/v1/events", json={"type": "swipe", "user_id": "u", "item_id": "e"})
    assert refused.status_code == 400 and "unknown type 'swipe'" in refused.json["error"]["problems"][0]["error"]

    from recsys.data.matrix import Weighting, event_weights
    from recsys.pipeline.events import read_events as read_for_training

    frame, report = read_for_training(redis_client, layout)
    assert frame["event_type"].tolist() == ["view", "view", "remove_from_cart", "remove_from_cart"]
    weighting = Weighting()
    assert event_weights(frame, weighting).tolist() == [1.0, 1.0, 0.0, 0.0]
    assert report["used"] == 4


def test_event_type_mapping_onto_an_unknown_type_is_refused_at_start(redis_url: str, key_prefix: str) -> None:
    with pytest.raises(ConfigError, match="RECSYS_EVENT_TYPES.*'swipe' is not an event type"):
        make_app(redis_url, key_prefix, EVENT_TYPES={"s": "swipe"})


# ---------------------------------------------------------------------- admin
DEFINITION = {
    "name": "home",
    "salt": "pepper",
    "variants": {"control": {"model": "als"}, "treatment": {"model": "itemknn"}},
}


def test_admin_is_off_without_a_token(redis_url: str, key_prefix: str, redis_client: redis.Redis) -> None:
    client = make_app(redis_url, key_prefix).test_client()
    for path in ("/v1/admin/experiments", "/v1/admin/experiments/x/report", "/dashboard"):
        assert client.get(path, headers=AUTH).status_code == 404
    assert client.post("/v1/admin/experiments", json=DEFINITION, headers=AUTH).status_code == 404


@pytest.mark.parametrize("header", [None, "Bearer wrong", f"Basic {ADMIN}", f"Bearer {ADMIN}x", "Bearer "])
def test_admin_needs_the_exact_token(client: FlaskClient, header: str | None) -> None:
    headers = {"Authorization": header} if header else {}
    response = client.get("/v1/admin/experiments", headers=headers)
    assert response.status_code == 401 and response.is_json


def test_admin_create_get_list_stop_report(client: FlaskClient, redis_client: redis.Redis, layout: KeyLayout) -> None:
    response = client.post("/v1/admin/experiments", json=DEFINITION, headers=AUTH)
    assert response.status_code == 201, response.json
    assert response.headers["Location"] == "/v1/admin/experiments/home"
    assert response.json["active"] is True and response.json["control"] == "control"
    assert ExperimentStore(redis_client, layout).get("home").salt == "pepper"

    assert client.post("/v1/admin/experiments", json=DEFINITION, headers=AUTH).status_code == 409
    other = {**DEFINITION, "name": "other"}
    assert client.post("/v1/admin/experiments", json=other, headers=AUTH).status_code == 409  # home still runs

    listed = client.get("/v1/admin/experiments", headers=AUTH).json["experiments"]
    assert [e["name"] for e in listed] == ["home"]
    assert client.get("/v1/admin/experiments/home", headers=AUTH).json["salt"] == "pepper"
    assert client.get("/v1/admin/experiments/nope", headers=AUTH).status_code == 404

    users = [f"u{k}" for k in range(60)]
    events = [{"type": "impression", "user_id": u, "item_id": "i1"} for u in users] + [click(u, "i1") for u in users[::3]]
    assert client.post("/v1/events", json=events).status_code == 202
    report = client.get("/v1/admin/experiments/home/report", headers=AUTH).json
    assert sum(v["units"] for v in report["variants"]) == 60 and sum(v["clicks"] for v in report["variants"]) == 20
    experiment = ExperimentStore(redis_client, layout).get("home")
    expected = build_report(redis_client, layout, experiment, now=report["generated_at"])
    assert report["variants"] == expected["variants"] and report["srm"] == expected["srm"]

    stopped = client.post("/v1/admin/experiments/home/stop", headers=AUTH)
    assert stopped.status_code == 200 and stopped.json["status"] == "stopped" and stopped.json["active"] is False
    assert client.post("/v1/admin/experiments/nope/stop", headers=AUTH).status_code == 404
    assert client.get("/v1/admin/experiments/nope/report", headers=AUTH).status_code == 404
    assert client.post("/v1/admin/experiments", json=other, headers=AUTH).status_code == 201


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({**DEFINITION, "variants": {"control": {"model": "als"}}}, "variants"),
        ({**DEFINITION, "variants": {"a": {"model": "als"}, "b": {"model": "x"}}}, "keyed 'control'"),
        ({**DEFINITION, "variants": [{"name": "control", "model": "als"}, {"name": "b", "model": "x"}]}, "an object keyed by variant name"),
        ({**DEFINITION, "color": "red"}, "color"),
        ({**DEFINITION, "status": "stopped"}, "status"),
        ({**DEFINITION, "variants": {"control": {"model": "als", "weight": -1}, "b": {"model": "x"}}}, "weight"),
        ([DEFINITION], "JSON object"),
    ],
)
def test_admin_rejects_invalid_definitions(client: FlaskClient, body: object, fragment: str) -> None:
    response = client.post("/v1/admin/experiments", json=body, headers=AUTH)
    assert response.status_code == 400 and fragment in response.json["error"]["message"]


# ------------------------------------------------------- routing and exclusion
def test_experiment_routes_requests_and_stop_routes_nobody(
    client: FlaskClient, redis_client: redis.Redis, layout: KeyLayout
) -> None:
    assert client.post("/v1/admin/experiments", json=DEFINITION, headers=AUTH).status_code == 201
    experiment = ExperimentStore(redis_client, layout).get("home")
    for user in ("u1", "u2"):
        answer = client.get(f"/v1/users/{user}/recommendations").json
        variant = assign(experiment, user)
        assert answer["experiment"] == "home" and answer["variant"] == variant
        assert answer["model"] == experiment.variant(variant).model
        assert answer["recommendation_id"]
    client.post("/v1/admin/experiments/home/stop", headers=AUTH)
    for user in ("u1", "u2"):
        answer = client.get(f"/v1/users/{user}/recommendations").json
        assert answer["model"] == "als" and "variant" not in answer


def test_a_click_removes_the_item_from_the_next_list(client: FlaskClient, redis_client: redis.Redis, layout: KeyLayout) -> None:
    before = [e["item_id"] for e in client.get("/v1/users/u1/recommendations?model=als").json["items"]]
    clicked, carted = before[0], before[2]
    response = client.post("/v1/events", json=[click("u1", clicked), {"type": "add_to_cart", "user_id": "u1", "item_id": carted}])
    assert response.status_code == 202
    after = [e["item_id"] for e in client.get("/v1/users/u1/recommendations?model=als").json["items"]]
    assert clicked not in after and carted not in after
    assert [i for i in before if i not in (clicked, carted)] == after[: len(before) - 2]
    # An impression is not an interaction: it excludes nothing.
    client.post("/v1/events", json={"type": "impression", "user_id": "u1", "item_id": after[0]})
    assert client.get("/v1/users/u1/recommendations?model=als").json["items"][0]["item_id"] == after[0]


# ------------------------------------------------------------------ dashboard
def test_dashboard_login_cookie_and_content(client: FlaskClient, redis_client: redis.Redis, layout: KeyLayout) -> None:
    definition = {**DEFINITION, "description": "<script>alert(1)</script>"}
    assert client.post("/v1/admin/experiments", json=definition, headers=AUTH).status_code == 201
    client.post("/v1/events", json=[{"type": "impression", "user_id": f"u{k}", "item_id": "i"} for k in range(30)])

    anonymous = client.get("/dashboard")
    assert anonymous.status_code == 401 and b"admin token" in anonymous.data and b"home" not in anonymous.data
    assert b'method="post" action="/dashboard/login"' in anonymous.data
    assert client.post("/dashboard/login", data={"token": "wrong"}).status_code == 401
    # The failure: a token in the URL (written to the access log) logged in.
    in_url = client.get("/dashboard?token=" + ADMIN)
    assert in_url.status_code == 400 and "Set-Cookie" not in in_url.headers

    login = client.post("/dashboard/login", data={"token": ADMIN})
    assert login.status_code == 303 and login.headers["Location"] == "/dashboard"
    cookie = login.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and ADMIN not in cookie

    page = client.get("/dashboard")  # the test client keeps the cookie
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert 'data-experiment="home"' in html and "<svg" in html and "treatment" in html
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert "default-src 'none'" in page.headers["Content-Security-Policy"]
    assert page.headers["Cache-Control"] == "no-store"

    client.delete_cookie(COOKIE, path="/dashboard")
    assert client.get("/dashboard").status_code == 401
    assert client.get("/dashboard", headers=AUTH).status_code == 200


def test_dashboard_marks_srm_red(client: FlaskClient, redis_client: redis.Redis, layout: KeyLayout) -> None:
    client.post("/v1/admin/experiments", json=DEFINITION, headers=AUTH)
    experiment = ExperimentStore(redis_client, layout).get("home")
    users = [f"u{k}" for k in range(2000)]
    kept = [u for k, u in enumerate(users) if assign(experiment, u) == "control" or k % 2]
    events = [{"type": "impression", "user_id": u, "item_id": "i"} for u in kept]
    for start in range(0, len(events), 500):
        assert client.post("/v1/events", json=events[start : start + 500]).status_code == 202
    html = client.get("/dashboard", headers=AUTH).get_data(as_text=True)
    assert 'data-srm="mismatch"' in html and "srm-banner" in html
