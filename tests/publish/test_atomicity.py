"""Readers never see a mixed or missing version; a killed publish leaves live as it was."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import orjson
import pytest
import redis

from recsys.errors import StoreError
from recsys.publish.publisher import Publisher
from recsys.publish.versions import list_versions, live_version
from recsys.store.connection import connect
from recsys.store.keys import KeyLayout
from tests.publish.synthetic import synthetic_run

REPO_ROOT = Path(__file__).resolve().parents[2]

# What the API does: read `live`, then that version's lists, in one atomic script.
READ_LIVE = """
local live = redis.call('GET', KEYS[1])
if not live then return {''} end
local root = ARGV[1] .. 'v:' .. live .. ':'
return {
    live,
    redis.call('GET', root .. 'meta') or '',
    redis.call('HGET', root .. 'user:als', ARGV[2]) or '',
    redis.call('HGET', root .. 'similar:als', ARGV[3]) or '',
    redis.call('HGET', root .. 'popular', '') or '',
    redis.call('HLEN', root .. 'catalog'),
}
"""


def test_readers_see_whole_versions_during_publishes(redis_url: str, redis_client: redis.Redis, key_prefix: str) -> None:
    layout = KeyLayout(key_prefix)
    publisher = Publisher(redis_client, layout, keep_versions=1, batch_fields=50, commands_per_flush=2, show_progress=False)
    runs = [synthetic_run(n_users=600, n_items=200, seed=seed) for seed in range(6)]
    expected: dict[str, bytes] = {}

    def publish(seed: int) -> None:
        data = runs[seed]
        result = publisher.publish(data.lists, catalog=data.catalog, default_model="als")
        expected[result.version] = redis_client.hget(layout.user_recs(result.version, "als"), "user-0")

    publish(0)
    stop = threading.Event()
    reads: list[list[object]] = []
    errors: list[BaseException] = []

    def reader() -> None:
        client = redis.Redis.from_url(redis_url, socket_timeout=10)
        script = client.register_script(READ_LIVE)
        try:
            while not stop.is_set():
                reads.append(script(keys=[layout.live], args=[layout.prefix, "user-0", "item-3"]))
        except BaseException as error:  # surfaced in the main thread
            errors.append(error)
        finally:
            client.close()

    threads = [threading.Thread(target=reader) for _ in range(3)]
    for thread in threads:
        thread.start()
    try:
        for seed in range(1, len(runs)):
            publish(seed)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=10)
    assert not errors, errors
    assert len(reads) > 100
    seen = set()
    for live, meta, user, similar, popular, catalog_size in reads:
        assert live, "live key missing during a publish"
        assert orjson.loads(meta)["version"] == live.decode()
        assert user and similar and popular, f"version {live!r} incomplete in a read"
        assert catalog_size == 200
        if live.decode() in expected:
            assert user == expected[live.decode()]
        seen.add(live)
    assert len(seen) >= 2  # the readers really saw versions change
    assert len(list_versions(redis_client, layout)) == 1


KILLABLE_PUBLISH = textwrap.dedent(
    """
    import sys, time
    import redis
    from recsys.publish.publisher import Publisher
    from recsys.store.keys import KeyLayout
    from tests.publish.synthetic import synthetic_run

    url, prefix = sys.argv[1], sys.argv[2]
    data = synthetic_run(n_users=3000, n_items=300, seed=5)
    publisher = Publisher(redis.Redis.from_url(url), KeyLayout(prefix), batch_fields=50,
                          commands_per_flush=1, lock_ttl_seconds=1.0, show_progress=False)

    def slowly(fields):
        print(fields, flush=True)
        time.sleep(0.02)

    publisher.on_flush = slowly
    publisher.publish(data.lists, catalog=data.catalog, default_model="als")
    print("finished", flush=True)
    """
)


def test_killed_publish_leaves_live_and_next_publish_cleans(
    redis_url: str, redis_client: redis.Redis, key_prefix: str
) -> None:
    layout = KeyLayout(key_prefix)
    data = synthetic_run(n_users=100, n_items=50, seed=1)
    good = Publisher(redis_client, layout, show_progress=False).publish(
        data.lists, catalog=data.catalog
    ).version

    process = subprocess.Popen(
        [sys.executable, "-c", KILLABLE_PUBLISH, redis_url, key_prefix],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
    )
    try:
        assert process.stdout is not None
        for line in process.stdout:
            if line.strip().isdigit() and int(line) >= 1000:
                break
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == -signal.SIGKILL

    # Killed half-way: live untouched, the half-written version registered as pending.
    assert live_version(redis_client, layout) == good
    orphans = [v.decode() for v in redis_client.zrange(layout.pending, 0, -1)]
    assert len(orphans) == 1
    orphan_keys = list(redis_client.scan_iter(match=f"{layout.version_root(orphans[0])}*"))
    assert orphan_keys and not redis_client.exists(layout.meta(orphans[0]))

    # The next publish waits for the dead publisher's lock to expire, then removes the orphan.
    result = Publisher(redis_client, layout, lock_wait_seconds=5, show_progress=False).publish(
        data.lists, catalog=data.catalog
    )
    assert result.cleaned_pending == orphans
    assert list(redis_client.scan_iter(match=f"{layout.version_root(orphans[0])}*")) == []
    assert live_version(redis_client, layout) == result.version
    assert redis_client.zcard(layout.pending) == 0


def test_unreachable_redis_fails_fast_naming_url() -> None:
    started = time.monotonic()
    with pytest.raises(StoreError, match=r"redis://127\.0\.0\.1:1\b"):
        connect("redis://127.0.0.1:1/0")
    assert time.monotonic() - started < 5


def test_redis_lost_mid_publish_is_a_store_error(redis_client: redis.Redis, key_prefix: str) -> None:
    layout = KeyLayout(key_prefix)
    data = synthetic_run(n_users=200, n_items=40)
    publisher = Publisher(redis_client, layout, batch_fields=20, commands_per_flush=1, show_progress=False)

    def drop_connection(fields: int) -> None:
        raise redis.ConnectionError("connection reset by peer")

    publisher.on_flush = drop_connection
    with pytest.raises(StoreError, match="failed during publish: connection reset"):
        publisher.publish(data.lists)
    assert live_version(redis_client, layout) is None
    assert list(redis_client.scan_iter(match=f"{key_prefix}*")) == []
