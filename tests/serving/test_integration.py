"""Every endpoint against lists published by the real batch job (recsys.pipeline: train +
publish on a generated shop), through Flask's test client and through a real
``recsys serve`` (gunicorn, 2 workers) over HTTP, with each worker class (gevent: Redis
commands pipelined; gthread: pooled connections)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import orjson
import pytest
import redis

from recsys.store.keys import OVERALL, KeyLayout
from tests.serving.conftest import PipelineVersion, Server, get, start_server, stop_server

pytestmark = pytest.mark.slow

Fetch = Callable[[str], tuple[int, Any]]


def _serve(redis_url: str, version: PipelineVersion, folder: Any, worker_class: str) -> Iterator[Server]:
    log = folder / "serve.log"
    env = {"RECSYS_REDIS_URL": redis_url, "RECSYS_KEY_PREFIX": version.prefix}
    running = start_server(env, log, worker_class=worker_class)
    yield running
    stop_server(running)


@pytest.fixture(scope="module")
def server(redis_url: str, pipeline_version: PipelineVersion, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The default server: gevent workers."""
    yield from _serve(redis_url, pipeline_version, tmp_path_factory.mktemp("gevent"), "gevent")


@pytest.fixture(scope="module")
def threaded_server(redis_url: str, pipeline_version: PipelineVersion, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    yield from _serve(redis_url, pipeline_version, tmp_path_factory.mktemp("gthread"), "gthread")


@pytest.fixture(scope="module")
def flask_app(redis_url: str, pipeline_version: PipelineVersion) -> Any:
    from serving import create_app

    return create_app({"REDIS_URL": redis_url, "KEY_PREFIX": pipeline_version.prefix})


@pytest.fixture(params=["flask", "http", "http-gthread"])
def fetch(request: pytest.FixtureRequest) -> Fetch:
    """GET a path and return (status, parsed JSON), through the test client or HTTP."""
    if request.param == "flask":
        client = request.getfixturevalue("flask_app").test_client()

        def via_flask(path: str) -> tuple[int, Any]:
            response = client.get(path)
            assert response.mimetype == "application/json"
            return response.status_code, response.get_json()

        return via_flask
    base = request.getfixturevalue("server" if request.param == "http" else "threaded_server").url

    def via_http(path: str) -> tuple[int, Any]:
        status, headers, body = get(base + path)
        assert headers["Content-Type"].startswith("application/json"), headers
        return status, orjson.loads(body)

    return via_http


@pytest.fixture(scope="module")
def store(redis_url: str, pipeline_version: PipelineVersion) -> Iterator[tuple[redis.Redis, KeyLayout, str]]:
    client = redis.Redis.from_url(redis_url)
    yield client, KeyLayout(pipeline_version.prefix), pipeline_version.version
    client.close()


def published_list(store: tuple[redis.Redis, KeyLayout, str], key: str, field: str) -> dict[str, list]:
    client, _, _ = store
    return orjson.loads(client.hget(key, field))


def catalog_of(pipeline_version: PipelineVersion) -> dict[str, dict[str, Any]]:
    frame = pipeline_version.catalog
    return {
        str(row.item_id): {"title": row.title, "category": row.category, "in_stock": bool(row.in_stock)}
        for row in frame.itertuples()
    }


def expected(ids: list[str], catalog: dict[str, dict[str, Any]], n: int, skip: set[str] = frozenset(), category: str | None = None) -> list[str]:
    out: list[str] = []
    for item in ids:
        entry = catalog[item]
        if item in skip or item in out or not entry["in_stock"]:
            continue
        if category is not None and entry["category"] != category:
            continue
        out.append(item)
    return out[:n]


def test_user_recommendations(fetch: Fetch, store: Any, pipeline_version: PipelineVersion) -> None:
    client, layout, version = store
    catalog = catalog_of(pipeline_version)
    users = [u.decode() for u in client.hkeys(layout.user_recs(version, "als"))[:5]]
    for user in users:
        published = published_list(store, layout.user_recs(version, "als"), user)
        status, body = fetch(f"/v1/users/{user}/recommendations?n=5")
        assert status == 200, body
        assert body["model"] == "als" and body["version"] == version and body["fallback"] is None
        own = expected(published["i"], catalog, 5)
        assert [e["item_id"] for e in body["items"]][: len(own)] == own
        for entry in body["items"]:
            assert entry["title"] == catalog[entry["item_id"]]["title"]
        status, body = fetch(f"/v1/users/{user}/recommendations?n=3&model=itemknn")
        assert status == 200 and body["model"] == "itemknn"
    category = pipeline_version.meta["categories"][0]
    status, body = fetch(f"/v1/users/{users[0]}/recommendations?n=4&category={category}")
    assert status == 200 and {e["category"] for e in body["items"]} <= {category}
    assert len(body["items"]) == min(4, sum(1 for e in catalog.values() if e["category"] == category and e["in_stock"]))
    status, body = fetch("/v1/users/no-such-user/recommendations?n=5")
    overall = published_list(store, layout.popular(version), OVERALL)
    assert status == 200 and body["fallback"] == "popular"
    assert [e["item_id"] for e in body["items"]] == expected(overall["i"], catalog, 5)


def test_similar_together_basket_popular(fetch: Fetch, store: Any, pipeline_version: PipelineVersion) -> None:
    client, layout, version = store
    catalog = catalog_of(pipeline_version)
    item = client.hkeys(layout.similar(version, "als"))[0].decode()
    status, body = fetch(f"/v1/items/{item}/similar?n=5")
    published = published_list(store, layout.similar(version, "als"), item)
    assert status == 200 and body["model"] == "als"  # the default model comes first
    assert [e["item_id"] for e in body["items"]] == expected(published["i"], catalog, 5, skip={item})
    status, body = fetch(f"/v1/items/{item}/similar?model=content&n=3")
    assert status == 200 and body["model"] == "content"

    rules_item = client.hkeys(layout.together(version))[0].decode()
    rules = published_list(store, layout.together(version), rules_item)
    status, body = fetch(f"/v1/items/{rules_item}/bought-together?n=10")
    assert status == 200
    kept = expected(rules["i"], catalog, 10, skip={rules_item})
    assert [e["item_id"] for e in body["items"]] == kept
    for entry in body["items"]:
        k = rules["i"].index(entry["item_id"])
        assert (entry["confidence"], entry["lift"]) == (rules["c"][k], rules["l"][k])

    status, body = fetch(f"/v1/baskets/recommendations?items={rules_item}&n=5")
    assert status == 200
    if kept:
        assert body["fallback"] is None and [e["item_id"] for e in body["items"]] == kept[:5]
    assert rules_item not in [e["item_id"] for e in body["items"]]

    status, body = fetch("/v1/items/not-an-item/similar")
    assert status == 404 and body["error"]["status"] == 404
    status, body = fetch("/v1/items/not-an-item/bought-together")
    assert status == 404

    category = pipeline_version.meta["categories"][-1]
    status, body = fetch(f"/v1/popular?category={category}&n=3")
    published = published_list(store, layout.popular(version), category)
    assert status == 200 and [e["item_id"] for e in body["items"]] == expected(published["i"], catalog, 3)


def test_errors(fetch: Fetch) -> None:
    assert fetch("/v1/popular?n=abc")[0] == 400
    status, body = fetch("/v1/users/u/recommendations?model=nope")
    assert status == 404 and "als" in body["error"]["available"]
    assert fetch("/v1/nothing/here")[0] == 404
    assert fetch("/readyz")[0] == 200


def test_http_wrong_method_and_metrics_of_all_workers(server: Server) -> None:
    import urllib.request

    request = urllib.request.Request(server.url + "/v1/popular", method="POST", data=b"{}")
    try:
        urllib.request.urlopen(request, timeout=5)
        raise AssertionError("POST /v1/popular should fail")
    except urllib.error.HTTPError as error:
        assert error.code == 405 and orjson.loads(error.read())["error"]["status"] == 405

    def count() -> float:
        text = get(server.url + "/metrics")[2].decode()
        for line in text.splitlines():
            if line.startswith('recsys_api_requests_total{endpoint="/v1/popular",method="GET",status="200"}'):
                return float(line.rsplit(" ", 1)[1])
        return 0.0

    before = count()
    for _ in range(30):  # new connections: spread over both workers
        assert get(server.url + "/v1/popular?n=2")[0] == 200
    assert count() - before == 30
    text = get(server.url + "/metrics")[2].decode()
    assert "recsys_api_request_duration_seconds_bucket" in text
    assert server.process.poll() is None


def test_openapi_over_http(server: Server) -> None:
    status, _, body = get(server.url + "/openapi.json")
    assert status == 200 and "/v1/popular" in orjson.loads(body)["paths"]


def test_concurrent_requests_each_get_their_own_answer(server: Server, store: Any, pipeline_version: PipelineVersion) -> None:
    """Many simultaneous requests on one gevent worker share one pipelined Redis connection:
    every answer must still be the one its own user's list gives."""
    import concurrent.futures

    client, layout, version = store
    catalog = catalog_of(pipeline_version)
    users = [u.decode() for u in client.hkeys(layout.user_recs(version, "als"))][:120]

    def answer(user: str) -> tuple[str, str, list[str]]:
        status, _, body = get(f"{server.url}/v1/users/{user}/recommendations?n=3&model=als")
        assert status == 200
        document = orjson.loads(body)
        return user, document["user_id"], [e["item_id"] for e in document["items"]]

    with concurrent.futures.ThreadPoolExecutor(max_workers=24) as pool:
        answers = list(pool.map(answer, users * 2))
    assert len(answers) == 2 * len(users) > 100
    for user, echoed, items in answers:
        published = published_list(store, layout.user_recs(version, "als"), user)
        assert echoed == user and items == expected(published["i"], catalog, 3)


@pytest.mark.parametrize("which", ["server", "threaded_server"])
def test_server_log_has_no_tracebacks_or_patch_warnings(which: str, request: pytest.FixtureRequest) -> None:
    logs = request.getfixturevalue(which).logs()
    assert "Traceback" not in logs
    assert "MonkeyPatchWarning" not in logs  # gevent patched before redis and ssl were imported



def raw_request(url: str, request: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send bytes as they are (no client library would send these) and read the answer."""
    import socket
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as sock:
        sock.sendall(request)
        data = b""
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
    return int(lines[0].split()[1]), headers, body


@pytest.mark.parametrize("which", ["server", "threaded_server"])
def test_gunicorn_limits_answer_json(which: str, request: pytest.FixtureRequest) -> None:
    url = request.getfixturevalue(which).url
    cases = [
        (b"GET /v1/popular?x=" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),
        (b"GET /v1/popular HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 9000 + b"\r\n\r\n", 431),
        (b"NOT A REQUEST\r\n\r\n", 400),
    ]
    for data, status in cases:
        # The failure: gunicorn's own HTML pages.
        got, headers, body = raw_request(url, data)
        assert got == status, (got, body[:200])
        assert headers.get("Content-Type") == "application/json", headers
        assert orjson.loads(body)["error"]["status"] == status
    # Within the API's own limits a long query reaches Flask (its answer is JSON too).
    exclude = ",".join(f"item-{k:04d}" for k in range(100))
    got, headers, body = raw_request(url, f"GET /v1/users/u1/recommendations?exclude={exclude} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
    assert got == 200 and headers.get("Content-Type") == "application/json"


def test_invalid_utf8_path_over_http(server: Server) -> None:
    for path in ("/v1/users/%FF%FE/recommendations", "/v1/users/a%0Ab/recommendations"):
        status, headers, body = get(server.url + path)
        assert status == 400 and orjson.loads(body)["error"]["field"] == "user_id", (path, status, body[:200])
