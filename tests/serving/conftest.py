"""Fixtures of the API tests: apps on the test Redis, a fake published version, a real
gunicorn server (``recsys serve``) and a version published by the real batch job."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient

from recsys.store.keys import KeyLayout
from tests.serving.fixtures import FakeVersion, publish_fake

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def layout(key_prefix: str) -> KeyLayout:
    return KeyLayout(key_prefix)


@pytest.fixture
def make_app(redis_url: str, key_prefix: str) -> Callable[..., Flask]:
    """Builds an app on the test Redis and prefix; keyword arguments override settings."""

    def make(**overrides: Any) -> Flask:
        from serving import create_app

        config = {"REDIS_URL": redis_url, "KEY_PREFIX": key_prefix, "TESTING": True, "INGEST_OPEN": True}
        config.update({k.upper(): v for k, v in overrides.items()})
        return create_app(config)

    return make


@pytest.fixture
def app(make_app: Callable[..., Flask]) -> Flask:
    return make_app()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def published(redis_client: redis.Redis, layout: KeyLayout) -> FakeVersion:
    """The fake version of tests/serving/fixtures.py, live under the test prefix."""
    return publish_fake(redis_client, layout)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def get(url: str, timeout: float = 5.0) -> tuple[int, dict[str, str], bytes]:
    """(status, headers, body) of a GET, errors included (no exception for 4xx/5xx)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


@dataclass
class Server:
    """A running ``recsys serve``: its base URL, process and log file."""

    url: str
    process: subprocess.Popen
    log: Path

    def logs(self) -> str:
        return self.log.read_text(errors="replace")


def start_server(
    env_overrides: dict[str, str], log: Path, workers: int = 2, threads: int = 2, worker_class: str = "gevent"
) -> Server:
    """Start ``recsys serve`` on a free port and wait until /healthz answers (<= 30 s)."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    env.setdefault("RECSYS_INGEST_OPEN", "1")  # servers of the tests take events from anyone
    env.update(env_overrides)
    env["PYTHONPATH"] = str(REPO_ROOT)
    command = [
        sys.executable, "-m", "recsys.cli.main", "serve",
        "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers), "--threads", str(threads),
        "--worker-class", worker_class,
    ]
    with open(log, "wb") as handle:
        process = subprocess.Popen(command, env=env, stdout=handle, stderr=subprocess.STDOUT, cwd=REPO_ROOT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"recsys serve exited with {process.returncode}:\n{log.read_text(errors='replace')}")
        try:
            if get(url + "/healthz", timeout=1)[0] == 200:
                return Server(url, process, log)
        except OSError:
            pass
        time.sleep(0.1)
    stop_server(Server(url, process, log))
    raise RuntimeError(f"recsys serve did not answer within 30 s:\n{log.read_text(errors='replace')}")


def stop_server(server: Server) -> None:
    server.process.terminate()
    try:
        server.process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait(timeout=5)


def delete_prefix(client: redis.Redis, prefix: str) -> None:
    keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
    for start in range(0, len(keys), 1000):
        client.unlink(*keys[start : start + 1000])


@pytest.fixture(scope="module")
def module_prefix(redis_url: str) -> Iterator[str]:
    """A key prefix shared by one test module (for module-scoped servers); cleaned after."""
    prefix = f"recsys-test:{uuid.uuid4().hex[:10]}:"
    yield prefix
    client = redis.Redis.from_url(redis_url, socket_connect_timeout=2, socket_timeout=10)
    delete_prefix(client, prefix)
    client.close()


@dataclass
class PipelineVersion:
    """A version published by the real batch job on a tiny generated shop."""

    prefix: str
    version: str
    meta: dict[str, Any]
    run_dir: Path
    catalog: Any
    events: Any


@pytest.fixture(scope="module")
def pipeline_version(redis_url: str, module_prefix: str, tmp_path_factory: pytest.TempPathFactory) -> PipelineVersion:
    """Train + publish (the real recsys.pipeline) every list kind on a generated shop."""
    import orjson

    from recsys.data.generate import generate_shop
    from recsys.pipeline.config import parse_config
    from recsys.pipeline.run import run_pipeline

    folder = tmp_path_factory.mktemp("shop")
    events, catalog = generate_shop(80, 60, 4000, seed=3)
    events.to_parquet(folder / "interactions.parquet", index=False)
    catalog.to_parquet(folder / "catalog.parquet", index=False)
    config = parse_config(
        {
            "data": {"path": str(folder), "format": "auto", "validation": "lenient"},
            "training": {"out": str(folder / "runs")},
            "models": {
                "popular": {},
                "itemknn": {},
                "als": {"factors": 8, "iterations": 3, "random_state": 1},
                "content": {},
                "rules": {},
            },
            "lists": {"user_n": 20, "similar_n": 10, "together_n": 10, "popular_n": 30},
            "publish": {"default_model": "als"},
        },
        source="test configuration",
    )
    result = run_pipeline(config, redis_url=redis_url, prefix=module_prefix)
    client = redis.Redis.from_url(redis_url)
    layout = KeyLayout(module_prefix)
    meta = orjson.loads(client.get(layout.meta(result.publish.version)))
    client.close()
    return PipelineVersion(module_prefix, result.publish.version, meta, result.run_dir, catalog, events)
