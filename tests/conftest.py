"""Shared fixtures: a real Redis (never a mock) and the reference datasets.

Redis: ``RECSYS_TEST_REDIS_URL`` when set; else the server at 127.0.0.1:6379 (database 13)
when one answers; else an embedded redis-server started for this test session. Each test
gets its own key prefix and deletes only the keys under it.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from recsys.store.connection import EmbeddedRedis

REPO_ROOT = Path(__file__).resolve().parents[1]
LOCAL_TEST_URL = "redis://127.0.0.1:6379/13"


def _answers(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=0.5).ping())
    except (redis.ConnectionError, redis.TimeoutError, OSError):
        return False


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """URL of a real Redis for this test session."""
    configured = os.environ.get("RECSYS_TEST_REDIS_URL")
    if configured:
        if not _answers(configured):
            pytest.fail(f"RECSYS_TEST_REDIS_URL={configured} does not answer")
        yield configured
        return
    if _answers(LOCAL_TEST_URL):
        yield LOCAL_TEST_URL
        return
    # Short path: unix socket paths are limited to ~107 bytes.
    home = Path("/tmp") / f"recsys-test-{uuid.uuid4().hex[:8]}"
    server = EmbeddedRedis(home)
    url = server.ensure_running()
    yield url
    server.stop()


@pytest.fixture
def key_prefix() -> str:
    """A key prefix no other test (or deployment) uses."""
    return f"recsys-test:{uuid.uuid4().hex[:10]}:"


@pytest.fixture
def redis_client(redis_url: str, key_prefix: str) -> Iterator[redis.Redis]:
    """A client on the test Redis; removes every key under ``key_prefix`` afterwards."""
    client = redis.Redis.from_url(redis_url, socket_connect_timeout=2, socket_timeout=10)
    yield client
    keys = list(client.scan_iter(match=f"{key_prefix}*", count=1000))
    for start in range(0, len(keys), 1000):
        client.unlink(*keys[start : start + 1000])
    client.close()


@pytest.fixture(scope="session")
def datasets_dir() -> Path:
    """``../shared/datasets`` beside the repository (or ``RECSYS_DATASETS``); skips when absent."""
    folder = Path(os.environ.get("RECSYS_DATASETS") or REPO_ROOT.parent / "shared" / "datasets")
    if not (folder / "ml-100k" / "u.data").exists():
        pytest.skip(f"reference datasets not found at {folder}")
    return folder
