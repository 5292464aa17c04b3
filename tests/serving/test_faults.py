"""Redis down or hung: 503 JSON within the timeout, and recovery without a restart.

Uses a private redis-server started for the test (never the shared one): it is stopped,
paused (SIGSTOP: accepts connections, never answers) and started again.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from recsys.store.connection import EmbeddedRedis
from recsys.store.keys import KeyLayout
from tests.serving.conftest import free_port
from tests.serving.fixtures import publish_fake

PREFIX = "faults:"


class PrivateRedis:
    """A redis-server on a free loopback port, owned by this test."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = free_port()
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        command = [
            EmbeddedRedis.executable(), "--port", str(self.port), "--bind", "127.0.0.1",
            "--save", "", "--appendonly", "no", "--dir", str(self.folder),
        ]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                if redis.Redis.from_url(self.url, socket_connect_timeout=0.2).ping():
                    return
            except redis.RedisError:
                time.sleep(0.05)
        raise RuntimeError("private redis-server did not start")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGCONT)
            self.process.terminate()
            self.process.wait(timeout=10)
        self.process = None


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    server = PrivateRedis(tmp_path)
    server.start()
    yield server
    server.stop()


def timed_get(client, url: str) -> tuple[int, dict, float]:
    started = time.perf_counter()
    response = client.get(url)
    return response.status_code, response.get_json(), time.perf_counter() - started


def test_dead_port_is_a_quick_503(make_app) -> None:
    app = make_app(redis_url=f"redis://127.0.0.1:{free_port()}/0")
    client = app.test_client()
    for url in ("/v1/users/u1/recommendations", "/v1/popular", "/v1/items/i1/similar", "/readyz"):
        status, body, seconds = timed_get(client, url)
        assert status == 503 and body["error"]["status"] == 503, body
        assert seconds < 2.0


def test_redis_stopped_then_back(make_app, private_redis: PrivateRedis) -> None:
    layout = KeyLayout(PREFIX)
    publish_fake(redis.Redis.from_url(private_redis.url), layout, version="v1")
    app = make_app(redis_url=private_redis.url, key_prefix=PREFIX, redis_timeout=0.5)
    client = app.test_client()
    assert client.get("/v1/users/u1/recommendations").status_code == 200

    private_redis.stop()
    for url in ("/v1/users/u1/recommendations", "/v1/baskets/recommendations?items=i1", "/readyz"):
        status, body, seconds = timed_get(client, url)
        assert status == 503 and "Redis" in body["error"]["message"], body
        assert seconds < 2.0

    private_redis.start()  # a new server: no data, no cached script (NOSCRIPT -> reload)
    status, body, _ = timed_get(client, "/v1/popular")
    assert status == 503 and "no version is published" in body["error"]["message"]
    publish_fake(redis.Redis.from_url(private_redis.url), layout, version="v2")
    status, body, _ = timed_get(client, "/v1/users/u1/recommendations")
    assert status == 200 and body["version"] == "v2"  # same app, no restart, script re-loaded


def test_hung_redis_times_out_with_503(make_app, private_redis: PrivateRedis) -> None:
    layout = KeyLayout(PREFIX)
    publish_fake(redis.Redis.from_url(private_redis.url), layout, version="v1")
    app = make_app(redis_url=private_redis.url, key_prefix=PREFIX, redis_timeout=0.5)
    client = app.test_client()
    assert client.get("/v1/popular").status_code == 200
    assert private_redis.process is not None
    os.kill(private_redis.process.pid, signal.SIGSTOP)
    try:
        status, body, seconds = timed_get(client, "/v1/users/u1/recommendations")
        assert status == 503 and "in time" in body["error"]["message"], body
        assert 0.4 < seconds < 2.0
        status, _, seconds = timed_get(client, "/readyz")
        assert status == 503 and seconds < 2.0
    finally:
        os.kill(private_redis.process.pid, signal.SIGCONT)
    status, body, _ = timed_get(client, "/v1/users/u1/recommendations")
    assert status == 200 and body["version"] == "v1"


@pytest.mark.slow
def test_gevent_server_redis_stopped_hung_and_back(private_redis: PrivateRedis, tmp_path: Path) -> None:
    """The same faults through a real ``recsys serve`` with gevent workers, whose requests
    share one pipelined Redis connection per worker: every waiting request gets its 503."""
    import concurrent.futures

    from tests.serving.conftest import get, start_server, stop_server

    layout = KeyLayout(PREFIX)
    publish_fake(redis.Redis.from_url(private_redis.url), layout, version="v1")
    env = {"RECSYS_REDIS_URL": private_redis.url, "RECSYS_KEY_PREFIX": PREFIX, "RECSYS_REDIS_TIMEOUT": "0.5"}
    server = start_server(env, tmp_path / "serve.log", worker_class="gevent")
    url = server.url + "/v1/users/u1/recommendations"

    def timed(target: str) -> tuple[int, dict, float]:
        started = time.perf_counter()
        status, _, body = get(target, timeout=10)
        return status, json.loads(body), time.perf_counter() - started

    def burst() -> list[tuple[int, dict, float]]:
        with concurrent.futures.ThreadPoolExecutor(max_workers=12) as pool:
            return list(pool.map(timed, [url] * 24))

    try:
        assert all(status == 200 for status, _, _ in burst())
        assert private_redis.process is not None
        os.kill(private_redis.process.pid, signal.SIGSTOP)  # hung: accepts, never answers
        try:
            answers = burst()
        finally:
            os.kill(private_redis.process.pid, signal.SIGCONT)
        assert all(status == 503 and body["error"]["status"] == 503 for status, body, _ in answers), answers
        assert max(seconds for _, _, seconds in answers) < 3.0
        assert all(status == 200 for status, _, _ in burst())  # the same workers recover

        private_redis.stop()
        answers = burst()
        assert all(status == 503 and "Redis" in body["error"]["message"] for status, body, _ in answers), answers
        assert max(seconds for _, _, seconds in answers) < 3.0
        private_redis.start()
        publish_fake(redis.Redis.from_url(private_redis.url), layout, version="v2")
        status, body, _ = timed(url)
        assert status == 200 and body["version"] == "v2"
        assert "Traceback" not in server.logs()
    finally:
        stop_server(server)
