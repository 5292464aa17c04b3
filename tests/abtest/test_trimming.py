"""The "events stream trimmed" warning appears only when trimming really happened, on the
embedded Redis 6.2 (no XINFO entries-added) and on the system Redis 7.x."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from recsys.abtest.events import validate_events, write_events
from recsys.abtest.experiments import Experiment, Variant
from recsys.abtest.report import build_report
from recsys.store.connection import EmbeddedRedis
from recsys.store.keys import KeyLayout

SYSTEM_URL = "redis://127.0.0.1:6379/13"
NOW = 1_750_000_000.0


def _system() -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(SYSTEM_URL, socket_connect_timeout=0.5)
    try:
        client.ping()
    except redis.RedisError:
        pytest.skip("no Redis at 127.0.0.1:6379")
    yield client


def _embedded() -> Iterator[redis.Redis]:
    home = Path("/tmp") / f"recsys-trim-{uuid.uuid4().hex[:8]}"
    server = EmbeddedRedis(home)
    client = redis.Redis.from_url(server.ensure_running())
    yield client
    client.close()
    server.stop()


@pytest.fixture(params=["embedded-6.2", "system-7"])
def server(request: pytest.FixtureRequest) -> Iterator[tuple[redis.Redis, str]]:
    maker = _embedded if request.param.startswith("embedded") else _system
    for client in maker():
        expected = "6.2" if request.param.startswith("embedded") else "7."
        version = client.info("server")["redis_version"]
        if not version.startswith(expected):
            pytest.skip(f"{request.param}: the server is Redis {version}")
        yield client, version


@pytest.fixture
def layout() -> Iterator[KeyLayout]:
    yield KeyLayout(f"recsys-test:{uuid.uuid4().hex[:10]}:")


def fill(client: redis.Redis, layout: KeyLayout, count: int) -> None:
    events = [{"type": "impression", "user_id": f"u{k}", "item_id": "i", "timestamp": NOW - 50} for k in range(count)]
    for start in range(0, count, 500):
        write_events(client, layout, validate_events(events[start : start + 500], now=NOW))


def experiment() -> Experiment:
    # Started long before the first event arrived: the stream's oldest entry is after it.
    return Experiment(name="exp", salt="s", start=NOW - 86400 * 30,
                      variants=[Variant(name="a", model="m1"), Variant(name="b", model="m2")])


def trimmed_warnings(report: dict) -> list[str]:
    return [w for w in report["warnings"] if "trimmed" in w]


def test_no_warning_without_trimming(server: tuple[redis.Redis, str], layout: KeyLayout) -> None:
    client, _ = server
    try:
        fill(client, layout, 300)
        report = build_report(client, layout, experiment(), now=NOW)
        # The failure on Redis 6.2: this warning on every report.
        assert trimmed_warnings(report) == []
        assert sum(v["units"] for v in report["variants"]) == 300
    finally:
        client.delete(*client.scan_iter(match=f"{layout.prefix}*"))


def test_warning_after_real_trimming(server: tuple[redis.Redis, str], layout: KeyLayout) -> None:
    client, _ = server
    try:
        fill(client, layout, 300)
        client.xtrim(layout.events, maxlen=100, approximate=False)
        report = build_report(client, layout, experiment(), now=NOW)
        assert len(trimmed_warnings(report)) == 1
    finally:
        client.delete(*client.scan_iter(match=f"{layout.prefix}*"))
