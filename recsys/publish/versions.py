"""Published versions: listing, switching the live one, rollback, retention and clean-up.

A version is *complete* when it is a member of ``{p}versions`` and has its meta key; only
complete versions are ever made live. Everything that changes ``live`` runs as one
MULTI/EXEC guarded by WATCH on the publish lock, so it either happens whole or not at all.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
import redis

from recsys.errors import StoreError
from recsys.publish.lock import PublishLock
from recsys.store.keys import KeyLayout

log = logging.getLogger(__name__)

SCAN_COUNT = 1000
UNLINK_BATCH = 500
SWITCH_ATTEMPTS = 20


@dataclass
class VersionInfo:
    """One row of ``recsys versions``."""

    version: str
    published_at: float
    live: bool
    complete: bool
    meta: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "published_at": self.published_at,
            "live": self.live,
            "complete": self.complete,
            "meta": self.meta,
        }


def _text(value: bytes | str | None) -> str | None:
    if value is None:
        return None
    return value.decode() if isinstance(value, bytes) else value


def live_version(client: redis.Redis, layout: KeyLayout) -> str | None:
    return _text(client.get(layout.live))


def read_meta(client: redis.Redis, layout: KeyLayout, version: str) -> dict[str, Any] | None:
    blob = client.get(layout.meta(version))
    return orjson.loads(blob) if blob is not None else None


def list_versions(client: redis.Redis, layout: KeyLayout, *, include_pending: bool = True) -> list[VersionInfo]:
    """Completed versions newest first, then (optionally) versions still being written."""
    done = [(_text(v), float(s)) for v, s in client.zrevrange(layout.versions, 0, -1, withscores=True)]
    pending = (
        [(_text(v), float(s)) for v, s in client.zrevrange(layout.pending, 0, -1, withscores=True)]
        if include_pending
        else []
    )
    rows = [(v, s, True) for v, s in done] + [(v, s, False) for v, s in pending]
    live = live_version(client, layout)
    with client.pipeline(transaction=False) as pipe:
        for version, _, _ in rows:
            pipe.get(layout.meta(version))
        blobs = pipe.execute()
    out = []
    for (version, score, complete), blob in zip(rows, blobs):
        meta = orjson.loads(blob) if blob is not None else {}
        out.append(VersionInfo(version, score, version == live, complete and blob is not None, meta))
    return out


def _glob_escape(text: str) -> str:
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


def delete_version_keys(client: redis.Redis, layout: KeyLayout, version: str) -> int:
    """UNLINK every key of one version (SCAN in batches, never KEYS); how many were removed."""
    pattern = _glob_escape(layout.version_root(version)) + "*"
    removed = 0
    batch: list[bytes] = []
    for key in client.scan_iter(match=pattern, count=SCAN_COUNT):
        batch.append(key)
        if len(batch) >= UNLINK_BATCH:
            removed += int(client.unlink(*batch))
            batch = []
    if batch:
        removed += int(client.unlink(*batch))
    return removed


def clean_pending(client: redis.Redis, layout: KeyLayout, *, keep: str | None = None) -> list[str]:
    """Remove versions left in ``pending`` by a publish that died (call with the lock held).

    Never touches the live version or a completed one, even if a member of ``pending``.
    """
    live = live_version(client, layout)
    removed = []
    for raw in client.zrange(layout.pending, 0, -1):
        version = _text(raw)
        if version in (keep, None):
            continue
        if version != live and client.zscore(layout.versions, version) is None:
            count = delete_version_keys(client, layout, version)
            log.warning("removed %d keys of unfinished version %s", count, version)
            removed.append(version)
        client.zrem(layout.pending, version)
    return removed


def switch_live(
    client: redis.Redis,
    layout: KeyLayout,
    lock: PublishLock,
    version: str,
    *,
    register: bool,
    prepare: Callable[[Any], Callable[[Any], Any]] | None = None,
) -> None:
    """Make ``version`` live in one MULTI/EXEC, only while ``lock`` is still ours.

    With ``register`` the version also moves from ``pending`` to ``versions`` in the same
    transaction (a new publish); otherwise it must already be complete (a rollback).
    ``prepare(pipe)`` may WATCH and read more keys before the transaction and returns a
    function that queues more writes into it (the item overlay); when a key it watched
    changes meanwhile, the transaction is prepared and tried again.
    """
    for _ in range(SWITCH_ATTEMPTS):
        with client.pipeline(transaction=True) as pipe:
            try:
                pipe.watch(layout.publish_lock)
                if _text(pipe.get(layout.publish_lock)) != lock.token:
                    raise StoreError(f"lost the publish lock {layout.publish_lock}; version {version} was not made live")
                queue = prepare(pipe) if prepare is not None else None
                pipe.multi()
                if queue is not None:
                    queue(pipe)
                pipe.set(layout.live, version)
                if register:
                    pipe.zadd(layout.versions, {version: time.time()})
                    pipe.zrem(layout.pending, version)
                pipe.execute()
                return
            except redis.WatchError:
                if _text(client.get(layout.publish_lock)) == lock.token:
                    continue
                raise StoreError(
                    f"the publish lock {layout.publish_lock} changed hands; version {version} was not made live"
                ) from None
    raise StoreError(f"the item overlay kept changing; version {version} was not made live, publish again")


def apply_retention(client: redis.Redis, layout: KeyLayout, keep_versions: int) -> list[str]:
    """Delete all but the newest ``keep_versions`` completed versions (never the live one).

    A version leaves ``versions`` and enters ``pending`` in one transaction before its keys
    go, so a run killed half-way leaves it for :func:`clean_pending`, never half-listed.
    """
    live = live_version(client, layout)
    newest_first = [_text(v) for v in client.zrevrange(layout.versions, 0, -1)]
    doomed = [v for v in newest_first[keep_versions:] if v != live]
    for version in doomed:
        with client.pipeline(transaction=True) as pipe:
            pipe.zrem(layout.versions, version)
            pipe.zadd(layout.pending, {version: time.time()})
            pipe.execute()
        count = delete_version_keys(client, layout, version)
        client.zrem(layout.pending, version)
        log.info("deleted old version %s (%d keys)", version, count)
    return doomed


def rollback(
    client: redis.Redis,
    layout: KeyLayout,
    to: str | None = None,
    *,
    lock_ttl_seconds: float = 30.0,
    lock_wait_seconds: float = 10.0,
) -> tuple[str | None, str]:
    """Make an earlier completed version live; returns (previous live, new live).

    ``to`` None means the newest completed version published before the live one.
    """
    with PublishLock(client, layout, ttl_seconds=lock_ttl_seconds, wait_seconds=lock_wait_seconds) as lock:
        live = live_version(client, layout)
        if to is None:
            if live is None:
                raise StoreError("nothing is live yet: no version to roll back from")
            live_score = client.zscore(layout.versions, live)
            older = (
                client.zrevrangebyscore(layout.versions, f"({live_score}", "-inf", start=0, num=1)
                if live_score is not None
                else []
            )
            if not older:
                raise StoreError(f"no version older than the live one ({live}) to roll back to")
            target = _text(older[0])
        else:
            target = to
        assert target is not None
        if client.zscore(layout.versions, target) is None:
            state = "still being written or abandoned" if client.zscore(layout.pending, target) is not None else "unknown"
            known = [_text(v) for v in client.zrevrange(layout.versions, 0, 9)]
            raise StoreError(f"version {target!r} is {state} (completed versions: {', '.join(known) or 'none'})")
        if not client.exists(layout.meta(target)):
            raise StoreError(f"version {target!r} is incomplete: its metadata key {layout.meta(target)} is missing")
        if target == live:
            return live, target
        switch_live(client, layout, lock, target, register=False)
        log.info("rolled back: live %s -> %s", live, target)
        return live, target
