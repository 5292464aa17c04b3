"""Trustworthy ingestion: idempotent retries (a real Redis hung by SIGSTOP), Retry-After on
every 503, closed by default, JSON bodies only."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from flask import Flask

from recsys.abtest.events import validate_events, write_events
from recsys.store.keys import KeyLayout
from serving import create_app
from tests.serving.conftest import REPO_ROOT, free_port
from tests.serving.fixtures import publish_fake
from tests.serving.test_faults import PrivateRedis

PREFIX = "ingest:"
TOKEN = "ingest-Secret-9"


def app_on(url: str, prefix: str, **extra: object) -> Flask:
    app = create_app({"REDIS_URL": url, "KEY_PREFIX": prefix, "REDIS_TIMEOUT": 0.5, **extra})
    app.testing = True
    return app


def batch(tag: str, size: int = 5) -> list[dict[str, object]]:
    return [
        {"type": "click", "user_id": f"u{k}", "item_id": f"i{k}", "event_id": f"{tag}-{k}"} for k in range(size)
    ]


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    server = PrivateRedis(tmp_path)
    server.start()
    yield server
    server.stop()


def test_the_same_batch_posted_twice_is_stored_once(redis_url: str, key_prefix: str, redis_client: redis.Redis) -> None:
    client = app_on(redis_url, key_prefix, INGEST_TOKEN=TOKEN).test_client()
    auth = {"Authorization": f"Bearer {TOKEN}"}
    first = client.post("/v1/events", json=batch("b1"), headers=auth)
    assert first.status_code == 202 and first.json == {"accepted": 5, "stored": 5, "duplicates": 0, "adjusted": 0}
    again = client.post("/v1/events", json=batch("b1") + batch("b2", 2), headers=auth)
    assert again.status_code == 202 and again.json == {"accepted": 7, "stored": 2, "duplicates": 5, "adjusted": 0}
    assert redis_client.xlen(KeyLayout(key_prefix).events) == 7
    # Events without an id are stored each time (the client gave no way to tell them apart).
    plain = [{"type": "click", "user_id": "u", "item_id": "i"}]
    for _ in range(2):
        assert client.post("/v1/events", json=plain, headers=auth).json["stored"] == 1
    assert redis_client.xlen(KeyLayout(key_prefix).events) == 9


def test_an_event_id_twice_in_one_batch_is_stored_once(redis_url: str, key_prefix: str, redis_client: redis.Redis) -> None:
    # It was a 400, a rule the OpenAPI schema cannot state; now the later one is a duplicate,
    # as it would be in a later request (the first one wins).
    client = app_on(redis_url, key_prefix, INGEST_OPEN=True).test_client()
    body = batch("x", 2) + [{"type": "purchase", "user_id": "u0", "item_id": "i9", "event_id": "x-0", "value": 3}]
    response = client.post("/v1/events", json=body)
    assert response.status_code == 202 and response.json == {"accepted": 3, "stored": 2, "duplicates": 1, "adjusted": 0}
    entries = redis_client.xrange(KeyLayout(key_prefix).events)
    assert [(f[b"event_id"], f[b"item_id"]) for _, f in entries] == [(b"x-0", b"i0"), (b"x-1", b"i1")]


def test_retries_after_a_hang_store_every_batch_once(private_redis: PrivateRedis) -> None:
    """Redis paused (SIGSTOP) while batches are posted: each gets 503 + Retry-After, yet Redis
    runs the queued writes when it resumes. Retrying as told must not store them twice."""
    layout = KeyLayout(PREFIX)
    direct = redis.Redis.from_url(private_redis.url)
    client = app_on(private_redis.url, PREFIX, INGEST_OPEN=True).test_client()
    assert client.post("/v1/events", json=batch("warm", 1)).status_code == 202  # script loaded
    batches = [batch(f"b{n}") for n in range(6)]
    assert private_redis.process is not None
    os.kill(private_redis.process.pid, signal.SIGSTOP)
    try:
        for events in batches:
            response = client.post("/v1/events", json=events)
            assert response.status_code == 503, response.json
            assert response.headers["Retry-After"] == "1"
            assert "send the same batch again" in response.json["error"]["message"]
    finally:
        os.kill(private_redis.process.pid, signal.SIGCONT)
    time.sleep(0.3)
    stored_while_hung = direct.xlen(layout.events) - 1
    assert stored_while_hung > 0  # the failure: batches answered 503 had been stored
    for events in batches:
        response = client.post("/v1/events", json=events)
        assert response.status_code == 202, response.json
    assert direct.xlen(layout.events) == 1 + 6 * 5
    ids = [fields[b"event_id"] for _, fields in direct.xrange(layout.events)]
    assert len(set(ids)) == len(ids)


def test_every_503_carries_retry_after() -> None:
    client = app_on(f"redis://127.0.0.1:{free_port()}/0", PREFIX, ADMIN_TOKEN="a", INGEST_OPEN=True).test_client()
    for method, url in (
        ("GET", "/v1/users/u1/recommendations"),
        ("GET", "/v1/popular"),
        ("GET", "/readyz"),
        ("GET", "/v1/admin/experiments"),
        ("POST", "/v1/events"),
    ):
        response = client.open(url, method=method, json=batch("r", 1), headers={"Authorization": "Bearer a"})
        assert response.status_code == 503, (url, response.json)
        assert response.headers.get("Retry-After") == "1", url


def test_ingestion_is_closed_without_a_token(redis_url: str, key_prefix: str, redis_client: redis.Redis) -> None:
    closed = app_on(redis_url, key_prefix).test_client()
    response = closed.post("/v1/events", json=batch("c", 1))
    assert response.status_code == 403 and "RECSYS_INGEST_TOKEN" in response.json["error"]["message"]
    guarded = app_on(redis_url, key_prefix, INGEST_TOKEN=TOKEN).test_client()
    assert guarded.post("/v1/events", json=batch("c", 1)).status_code == 401
    assert guarded.post("/v1/events", json=batch("c", 1), headers={"Authorization": "Bearer nope"}).status_code == 401
    assert redis_client.xlen(KeyLayout(key_prefix).events) == 0


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", None])
def test_only_json_bodies_are_read(redis_url: str, key_prefix: str, redis_client: redis.Redis, content_type: str | None) -> None:
    client = app_on(redis_url, key_prefix, INGEST_OPEN=True).test_client()
    headers = {"Content-Type": content_type} if content_type else {}
    response = client.post("/v1/events", data=b'{"type": "click", "user_id": "u", "item_id": "i"}', headers=headers)
    assert response.status_code == 415, response.json
    assert redis_client.xlen(KeyLayout(key_prefix).events) == 0
    ok = client.post("/v1/events", data=b'{"type": "click", "user_id": "u", "item_id": "i"}',
                     headers={"Content-Type": "application/json; charset=utf-8"})
    assert ok.status_code == 202


def test_serve_refuses_to_start_with_open_ingestion(redis_url: str) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("PROMETHEUS_MULTIPROC_DIR", "RECSYS_INGEST_TOKEN", "RECSYS_INGEST_OPEN")}
    env.update(RECSYS_REDIS_URL=redis_url, PYTHONPATH=str(REPO_ROOT))
    result = subprocess.run(
        [sys.executable, "-m", "recsys.cli.main", "serve", "--port", str(free_port())],
        env=env, capture_output=True, text=True, timeout=60, cwd=REPO_ROOT,
    )
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "RECSYS_INGEST_TOKEN" in lines[0] and "RECSYS_INGEST_OPEN=1" in lines[0], result.stderr


def test_write_events_twice_directly(redis_client: redis.Redis, key_prefix: str) -> None:
    layout = KeyLayout(key_prefix)
    events = validate_events(batch("d", 3) + [{"type": "impression", "user_id": "u9", "item_id": "i9"}])
    first = write_events(redis_client, layout, events)
    second = write_events(redis_client, layout, events)
    assert (first.stored, first.duplicates, second.stored, second.duplicates) == (4, 0, 1, 3)
    assert int(redis_client.get(layout.events_added)) == 5
    assert redis_client.ttl(layout.event_id("d-0")) > 0
    # The recent set of a user is updated once per stored click, not per retry.
    assert redis_client.zrange(layout.recent("u0"), 0, -1) == [b"i0"]


def test_fake_version_unaffected(redis_client: redis.Redis, key_prefix: str) -> None:
    """Publishing stays independent of ingestion keys (no event key in a version namespace)."""
    layout = KeyLayout(key_prefix)
    publish_fake(redis_client, layout)
    write_events(redis_client, layout, validate_events(batch("f", 2)))
    assert not any(k.startswith(layout.version_root("").encode()) for k in redis_client.scan_iter(match=f"{key_prefix}event*"))
