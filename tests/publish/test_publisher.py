"""Publishing a version: content of every hash, metadata, atomic switch, lock, retention, failures."""

from __future__ import annotations

import time

import numpy as np
import orjson
import pytest
import redis

from recsys.errors import StoreError
from recsys.publish.lock import PublishLock
from recsys.publish.publisher import Publisher
from recsys.publish.versions import apply_retention, list_versions, live_version, rollback
from recsys.store.codec import decode_list
from recsys.store.keys import OVERALL, KeyLayout
from tests.publish.synthetic import Synthetic, synthetic_run


@pytest.fixture
def layout(key_prefix: str) -> KeyLayout:
    return KeyLayout(key_prefix)


@pytest.fixture
def data() -> Synthetic:
    return synthetic_run()


def publish(client: redis.Redis, layout: KeyLayout, data: Synthetic, **kwargs: object) -> object:
    publisher = Publisher(client, layout, show_progress=False, **kwargs)  # type: ignore[arg-type]
    return publisher.publish(data.lists, catalog=data.catalog, run_id="run-1", default_model="als")


def version_keys(client: redis.Redis, layout: KeyLayout, version: str) -> list[bytes]:
    return list(client.scan_iter(match=f"{layout.version_root(version)}*", count=1000))


def test_every_list_written_as_computed(redis_client: redis.Redis, layout: KeyLayout, data: Synthetic) -> None:
    result = publish(redis_client, layout, data, batch_fields=7, commands_per_flush=3)
    version = result.version
    user = data.arrays[0]
    blobs = redis_client.hgetall(layout.user_recs(version, "als"))
    assert len(blobs) == len(data.users) - 1  # the user with an empty list gets no field
    assert b"user-2" not in blobs
    for row in (0, 1, 39):
        decoded = decode_list(blobs[f"user-{row}".encode()])
        keep = user.ids[row] >= 0
        assert decoded["i"] == [f"item-{i}" for i in user.ids[row][keep]]
        np.testing.assert_allclose(decoded["s"], user.scores[row][keep], atol=1e-5)
    assert len(decode_list(blobs[b"user-1"])["i"]) == 3

    similar = data.arrays[2]
    item7 = decode_list(redis_client.hget(layout.similar(version, "als"), "item-7"))
    assert item7["i"] == [f"item-{i}" for i in similar.ids[7]]

    together = data.arrays[3]
    item3 = decode_list(redis_client.hget(layout.together(version), "item-3"))
    np.testing.assert_allclose(item3["c"], together.extra["confidence"][3], atol=1e-5)
    np.testing.assert_allclose(item3["l"], together.extra["lift"][3], atol=1e-5)
    assert item3["i"] == [f"item-{i}" for i in together.ids[3]]

    popular = redis_client.hgetall(layout.popular(version))
    assert set(popular) == {OVERALL.encode(), b"books", b"garden"}
    assert decode_list(popular[b"books"])["i"] == [f"item-{i}" for i in data.arrays[4].ids[1]]

    catalog = redis_client.hgetall(layout.catalog(version))
    assert len(catalog) == len(data.items)
    assert orjson.loads(catalog[b"item-0"]) == {
        "title": "Item número 0", "category": "books", "price": None, "in_stock": False,
    }
    assert orjson.loads(catalog[b"item-1"])["price"] == pytest.approx(float(data.catalog_arrays["price"][1]))


def test_meta_and_registry(redis_client: redis.Redis, layout: KeyLayout, data: Synthetic) -> None:
    result = publish(redis_client, layout, data)
    meta = orjson.loads(redis_client.get(layout.meta(result.version)))
    assert meta["version"] == result.version and meta["run"] == "run-1"
    assert meta["user_models"] == ["als", "popular"]
    assert meta["similar_models"] == ["als"]
    assert meta["default_model"] == "als"
    assert meta["has_together"] is True and meta["has_popular"] is True
    assert meta["categories"] == ["books", "garden"]
    assert meta["list_length"] == {"user": 5, "similar": 5, "together": 5, "popular": 5}
    assert meta["counts"]["user:als"] == 39 and meta["counts"]["catalog"] == 25
    assert abs(meta["created_at"] - time.time()) < 60
    assert live_version(redis_client, layout) == result.version
    assert redis_client.zscore(layout.versions, result.version) is not None
    assert redis_client.zcard(layout.pending) == 0
    assert not redis_client.exists(layout.publish_lock)
    assert result.lists == sum(v for k, v in result.counts.items() if k != "catalog")


def test_bad_default_model_rejected_before_writing(redis_client: redis.Redis, layout: KeyLayout, data: Synthetic) -> None:
    publisher = Publisher(redis_client, layout, show_progress=False)
    with pytest.raises(StoreError, match="default model 'ease' has no user lists"):
        publisher.publish(data.lists, default_model="ease")
    with pytest.raises(StoreError, match="duplicate lists"):
        publisher.publish([data.lists[0], data.lists[0]])
    assert list(redis_client.scan_iter(match=f"{layout.prefix}*")) == []


def test_retention_keeps_newest_and_never_live(redis_client: redis.Redis, layout: KeyLayout, data: Synthetic) -> None:
    versions = [publish(redis_client, layout, data, keep_versions=2).version for _ in range(4)]
    listed = [v.version for v in list_versions(redis_client, layout)]
    assert listed == versions[:1:-1]  # the newest two, newest first
    for gone in versions[:2]:
        assert version_keys(redis_client, layout, gone) == []
    assert version_keys(redis_client, layout, versions[2])

    # After a rollback the live version is not the newest; retention must still keep it.
    rollback(redis_client, layout, versions[2])
    assert apply_retention(redis_client, layout, 1) == []
    newest = publish(redis_client, layout, data, keep_versions=1).version
    assert [v.version for v in list_versions(redis_client, layout)] == [newest]
    assert version_keys(redis_client, layout, versions[2]) == []
    assert version_keys(redis_client, layout, versions[3]) == []


def test_failure_mid_publish_leaves_live_and_cleans_up(
    redis_client: redis.Redis, layout: KeyLayout, data: Synthetic
) -> None:
    good = publish(redis_client, layout, data).version
    publisher = Publisher(redis_client, layout, batch_fields=5, commands_per_flush=2, show_progress=False)
    written: list[int] = []

    def explode(fields: int) -> None:
        written.append(fields)
        if len(written) == 3:
            raise RuntimeError("disk on fire")

    publisher.on_flush = explode
    with pytest.raises(RuntimeError, match="disk on fire"):
        publisher.publish(data.lists, catalog=data.catalog)
    assert written[-1] > 0
    assert live_version(redis_client, layout) == good
    assert [v.version for v in list_versions(redis_client, layout)] == [good]
    keys = {k.decode() for k in redis_client.scan_iter(match=f"{layout.prefix}v:*")}
    assert keys and all(k.startswith(layout.version_root(good)) for k in keys)
    assert redis_client.zcard(layout.pending) == 0
    assert not redis_client.exists(layout.publish_lock)


def test_stale_pending_removed_but_complete_versions_kept(
    redis_client: redis.Redis, layout: KeyLayout, data: Synthetic
) -> None:
    good = publish(redis_client, layout, data).version
    redis_client.zadd(layout.pending, {"dead-1": 1.0, good: 2.0})
    redis_client.hset(layout.user_recs("dead-1", "als"), mapping={"u": "x"})
    redis_client.hset(layout.catalog("dead-1"), mapping={"i": "x"})
    result = publish(redis_client, layout, data)
    assert result.cleaned_pending == ["dead-1"]
    assert version_keys(redis_client, layout, "dead-1") == []
    assert redis_client.exists(layout.meta(good))  # listed in pending by mistake, but complete
    assert redis_client.zcard(layout.pending) == 0


def test_lock_held_by_another_publisher(redis_client: redis.Redis, layout: KeyLayout, data: Synthetic) -> None:
    redis_client.set(layout.publish_lock, "otherhost:123:abc", px=30_000)
    publisher = Publisher(redis_client, layout, lock_wait_seconds=0.3, show_progress=False)
    started = time.monotonic()
    with pytest.raises(StoreError, match="another publish holds .*otherhost:123:abc"):
        publisher.publish(data.lists)
    assert time.monotonic() - started < 3
    assert redis_client.get(layout.publish_lock) == b"otherhost:123:abc"  # not released by us
    assert redis_client.zcard(layout.pending) == 0 and live_version(redis_client, layout) is None


def test_lost_lock_never_switches(redis_client: redis.Redis, layout: KeyLayout, data: Synthetic) -> None:
    good = publish(redis_client, layout, data).version
    publisher = Publisher(redis_client, layout, batch_fields=10, commands_per_flush=1, show_progress=False)

    def steal(fields: int) -> None:
        redis_client.set(layout.publish_lock, "thief")

    publisher.on_flush = steal
    with pytest.raises(StoreError, match="lost the publish lock"):
        publisher.publish(data.lists, catalog=data.catalog)
    assert live_version(redis_client, layout) == good
    assert redis_client.get(layout.publish_lock) == b"thief"


def test_lock_release_is_compare_and_delete(redis_client: redis.Redis, layout: KeyLayout) -> None:
    lock = PublishLock(redis_client, layout, ttl_seconds=0.2, wait_seconds=0)
    lock.acquire()
    assert 0 < redis_client.pttl(layout.publish_lock) <= 200
    time.sleep(0.3)  # expired; someone else takes it
    assert redis_client.set(layout.publish_lock, "other", nx=True)
    lock.release()
    assert redis_client.get(layout.publish_lock) == b"other"
    with pytest.raises(StoreError, match="lost the publish lock"):
        lock.renew(force=True)


def test_redis_error_reply_aborts_publish(
    redis_client: redis.Redis, layout: KeyLayout, data: Synthetic, monkeypatch: pytest.MonkeyPatch
) -> None:
    good = publish(redis_client, layout, data).version
    import recsys.publish.publisher as publisher_module

    monkeypatch.setattr(publisher_module, "new_run_id", lambda: "fixed")
    redis_client.set(layout.user_recs("fixed", "popular"), "not a hash")
    with pytest.raises(StoreError, match="failed during publish: WRONGTYPE"):
        publish(redis_client, layout, data)
    assert live_version(redis_client, layout) == good
    assert version_keys(redis_client, layout, "fixed") == []
    assert redis_client.zcard(layout.pending) == 0 and not redis_client.exists(layout.publish_lock)
