"""The console: access, what each page shows against what the API serves, rollback."""

from __future__ import annotations

import re
import time
from typing import Any

import pytest
import redis
from flask.testing import FlaskClient

from recsys.pipeline.run import publish_run
from recsys.pipeline.config import parse_config
from recsys.store.keys import KeyLayout
from serving.console import COOKIE, cookie_value, csrf_token
from tests.serving.conftest import PipelineVersion

ADMIN = "console-test-token"
AUTH = {"Authorization": f"Bearer {ADMIN}"}


@pytest.fixture
def console(make_app: Any, pipeline_version: PipelineVersion) -> FlaskClient:
    return make_app(admin_token=ADMIN, key_prefix=pipeline_version.prefix).test_client()


def test_closed_without_admin_token(make_app: Any) -> None:
    client = make_app().test_client()
    for path in ("/console", "/console/users", "/console/login"):
        response = client.get(path)
        assert response.status_code == 404 and b"RECSYS_ADMIN_TOKEN" not in response.data


def test_login_form_sets_cookie_and_keeps_token_out_of_urls(console: FlaskClient) -> None:
    page = console.get("/console")
    assert page.status_code == 401 and b'action="/console/login"' in page.data and b'method="post"' in page.data
    assert console.post("/console/login", data={"token": "wrong"}).status_code == 401
    response = console.post("/console/login", data={"token": ADMIN})
    assert response.status_code == 303 and response.headers["Location"] == "/console"
    cookie = response.headers["Set-Cookie"]
    assert f"{COOKIE}={cookie_value(ADMIN)}" in cookie and "HttpOnly" in cookie and "SameSite=Strict" in cookie
    assert ADMIN not in cookie
    overview = console.get("/console")
    assert overview.status_code == 200 and ADMIN.encode() not in overview.data
    assert "frame-ancestors 'none'" in overview.headers["Content-Security-Policy"]
    assert "render;dur=" in overview.headers["Server-Timing"]
    assert console.get("/console?token=" + ADMIN).status_code == 200  # cookie, not the query, let it in
    console.post("/console/logout", data={"csrf": csrf_token(ADMIN)})
    assert console.get("/console").status_code == 401


def test_overview_shows_the_live_version(console: FlaskClient, pipeline_version: PipelineVersion) -> None:
    html = console.get("/console", headers=AUTH).get_data(as_text=True)
    assert f'id="live-version">{pipeline_version.version}<' in html
    assert pipeline_version.meta["default_model"] in html
    assert 'id="versions"' in html and 'id="steps"' in html
    # A version without segments, and no audience published: neither section is shown.
    assert "segments" not in pipeline_version.meta
    assert 'id="segments"' not in html and 'id="audiences"' not in html


def test_user_page_lists_what_the_api_serves(console: FlaskClient, pipeline_version: PipelineVersion) -> None:
    user = str(pipeline_version.events["user_id"].iloc[0])
    html = console.get(f"/console/users?user_id={user}", headers=AUTH).get_data(as_text=True)
    for model in pipeline_version.meta["user_models"]:
        served = console.get(f"/v1/users/{user}/recommendations?model={model}&n=10").get_json()
        column = re.search(rf'data-model="{model}">(.*?)</div>\s*(?=<div class="card list-column"|</section>)', html, re.S)
        assert column is not None, model
        shown = re.findall(r'<li data-item="([^"]+)"', column.group(1))
        assert shown == [entry["item_id"] for entry in served["items"]], model
    assert 'id="events"' in html and 'id="routing"' in html
    assert 'id="segment"' not in html  # the version has no segments
    unknown = console.get("/console/users?user_id=nobody-here", headers=AUTH).get_data(as_text=True)
    assert 'data-fallback="popular"' in unknown


def test_item_page(console: FlaskClient, pipeline_version: PipelineVersion) -> None:
    item = str(pipeline_version.catalog["item_id"].iloc[0])
    html = console.get(f"/console/items?item_id={item}", headers=AUTH).get_data(as_text=True)
    title = str(pipeline_version.catalog["title"].iloc[0])
    assert title in html and 'id="together"' in html
    served = console.get(f"/v1/items/{item}/similar?model=itemknn&n=10").get_json()
    column = re.search(r'data-model="itemknn"><h2>similar: itemknn</h2>(.*?)</ol>', html, re.S)
    assert re.findall(r'<li data-item="([^"]+)"', column.group(1)) == [e["item_id"] for e in served["items"]]


def test_rollback_needs_csrf_and_confirmation(
    console: FlaskClient, pipeline_version: PipelineVersion, redis_url: str
) -> None:
    client = redis.Redis.from_url(redis_url)
    layout = KeyLayout(pipeline_version.prefix)
    config = parse_config({"models": {"popular": {}}})
    second = publish_run(pipeline_version.run_dir, config=config, redis_url=redis_url, prefix=pipeline_version.prefix)
    try:
        assert client.get(layout.live).decode() == second.version
        # Logged in by cookie: a form without the CSRF token is refused.
        console.post("/console/login", data={"token": ADMIN})
        refused = console.post("/console/rollback", data={"version": second.previous, "confirm": "yes"})
        assert refused.status_code == 403
        asked = console.post("/console/rollback", data={"version": second.previous, "csrf": csrf_token(ADMIN)})
        assert asked.status_code == 200 and b'id="confirm-rollback"' in asked.data
        assert client.get(layout.live).decode() == second.version  # not yet
        done = console.post(
            "/console/rollback", data={"version": second.previous, "confirm": "yes", "csrf": csrf_token(ADMIN)}
        )
        assert done.status_code == 303
        assert client.get(layout.live).decode() == second.previous
        assert second.previous.encode() in console.get(done.headers["Location"]).data
    finally:
        client.close()


def test_experiments_page(console: FlaskClient, pipeline_version: PipelineVersion, redis_url: str) -> None:
    from recsys.abtest.experiments import Experiment, ExperimentStore, Variant

    client = redis.Redis.from_url(redis_url)
    store = ExperimentStore(client, KeyLayout(pipeline_version.prefix))
    store.create(Experiment(name="console-exp", salt="s", start=time.time() - 10,
                            variants=[Variant(name="control", model="als"), Variant(name="b", model="itemknn")]))
    html = console.get("/console/experiments", headers=AUTH).get_data(as_text=True)
    assert 'data-experiment="console-exp"' in html and "itemknn" in html
    client.close()


def test_item_page_counts_the_user_lists_holding_it(
    console: FlaskClient, pipeline_version: PipelineVersion, redis_url: str
) -> None:
    import collections

    import pyarrow.parquet as pq

    client = redis.Redis.from_url(redis_url)
    live = client.get(KeyLayout(pipeline_version.prefix).live).decode()
    meta = __import__("orjson").loads(client.get(KeyLayout(pipeline_version.prefix).meta(live)))
    client.close()
    model = meta["default_model"]
    files = sorted((pipeline_version.run_dir / "lists" / f"user.{model}").glob("*.parquet"))
    counted = collections.Counter(i for f in files for row in pq.read_table(f).column("item_ids").to_pylist() for i in row)
    item, expected = counted.most_common(1)[0]
    html = console.get(f"/console/items?item_id={item}", headers=AUTH).get_data(as_text=True)
    row = re.search(rf'<tr data-model="{model}"><td>{model}</td><td class="num">([\d,]+)</td>', html)
    assert row is not None and int(row.group(1).replace(",", "")) == expected


def test_overview_warns_of_a_broken_experiment(console: FlaskClient, pipeline_version: PipelineVersion, redis_url: str) -> None:
    from recsys.abtest.experiments import Experiment, ExperimentStore, Variant

    client = redis.Redis.from_url(redis_url)
    store = ExperimentStore(client, KeyLayout(pipeline_version.prefix))
    store.create(Experiment(name="gone-model", salt="g", placement="console-test", start=time.time() - 10,
                            variants=[Variant(name="control", model="als"), Variant(name="b", model="itemknn")]))
    store.set_broken("gone-model", "v-test", ["itemknn"])
    html = console.get("/console", headers=AUTH).get_data(as_text=True)
    assert "experiment gone-model is broken" in html
    store.delete("gone-model")
    client.close()
