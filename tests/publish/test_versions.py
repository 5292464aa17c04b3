"""Listing versions and rolling back."""

from __future__ import annotations

import pytest
import redis

from recsys.errors import StoreError
from recsys.publish.publisher import Publisher
from recsys.publish.versions import clean_pending, list_versions, live_version, rollback
from recsys.store.keys import KeyLayout
from tests.publish.synthetic import synthetic_run


@pytest.fixture
def layout(key_prefix: str) -> KeyLayout:
    return KeyLayout(key_prefix)


def publish_n(client: redis.Redis, layout: KeyLayout, count: int) -> list[str]:
    data = synthetic_run(n_users=20, n_items=10)
    publisher = Publisher(client, layout, keep_versions=5, show_progress=False)
    return [publisher.publish(data.lists, run_id=f"run-{k}").version for k in range(count)]


def test_list_versions_newest_first_marks_live(redis_client: redis.Redis, layout: KeyLayout) -> None:
    versions = publish_n(redis_client, layout, 3)
    redis_client.zadd(layout.pending, {"half-written": 1.0})
    rows = list_versions(redis_client, layout)
    assert [r.version for r in rows] == versions[::-1] + ["half-written"]
    assert [r.live for r in rows] == [True, False, False, False]
    assert [r.complete for r in rows] == [True, True, True, False]
    assert rows[0].meta["run"] == "run-2"
    assert rows[0].published_at >= rows[1].published_at >= rows[2].published_at


def test_rollback_to_previous_then_older(redis_client: redis.Redis, layout: KeyLayout) -> None:
    v1, v2, v3 = publish_n(redis_client, layout, 3)
    assert rollback(redis_client, layout) == (v3, v2)
    assert live_version(redis_client, layout) == v2
    assert rollback(redis_client, layout) == (v2, v1)
    with pytest.raises(StoreError, match="no version older than the live one"):
        rollback(redis_client, layout)
    assert rollback(redis_client, layout, v3) == (v1, v3)
    assert not redis_client.exists(layout.publish_lock)


def test_rollback_refuses_unknown_and_incomplete(redis_client: redis.Redis, layout: KeyLayout) -> None:
    with pytest.raises(StoreError, match="nothing is live yet"):
        rollback(redis_client, layout)
    (v1,) = publish_n(redis_client, layout, 1)
    with pytest.raises(StoreError, match=r"version 'nope' is unknown \(completed versions: " + v1):
        rollback(redis_client, layout, "nope")
    redis_client.zadd(layout.pending, {"partial": 1.0})
    with pytest.raises(StoreError, match="'partial' is still being written or abandoned"):
        rollback(redis_client, layout, "partial")
    redis_client.zadd(layout.versions, {"no-meta": 1.0})
    with pytest.raises(StoreError, match="'no-meta' is incomplete: its metadata key"):
        rollback(redis_client, layout, "no-meta")
    assert live_version(redis_client, layout) == v1


def test_rollback_waits_for_publisher_lock(redis_client: redis.Redis, layout: KeyLayout) -> None:
    publish_n(redis_client, layout, 2)
    redis_client.set(layout.publish_lock, "busy", px=10_000)
    with pytest.raises(StoreError, match="another publish holds"):
        rollback(redis_client, layout, lock_wait_seconds=0.2)


def test_clean_pending_never_touches_live(redis_client: redis.Redis, layout: KeyLayout) -> None:
    (v1,) = publish_n(redis_client, layout, 1)
    redis_client.zadd(layout.pending, {v1: 1.0})
    redis_client.zrem(layout.versions, v1)  # inconsistent registry: live but not listed
    assert clean_pending(redis_client, layout) == []
    assert redis_client.exists(layout.meta(v1))
