"""Publish a run's lists to Redis as a new version, then make it live atomically.

Steps, all under the publish lock:

1. delete what killed publishes left in ``pending``;
2. register the new version in ``pending`` and write its hashes with pipelined, batched
   HSETs (``batch_fields`` fields per command, one round trip per ``commands_per_flush``
   commands), renewing the lock as it goes;
3. check every hash has the expected number of fields, write ``v:{v}:meta``;
4. one MULTI/EXEC (WATCHing the lock): SET live, ZADD versions, ZREM pending;
5. delete versions beyond ``keep_versions`` (never the live one).

If anything fails before step 4 the live version is untouched and this version's keys are
removed; if the process is killed, the next publish removes them (step 1).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import redis
from tqdm import tqdm

from recsys.catalog.overlay import stage_for_publish
from recsys.data import schema
from recsys.data.idmap import IdMap
from recsys.errors import StoreError
from recsys.pipeline.artifacts import ListArrays, RunFolder, new_run_id
from recsys.privacy.runs import scrub_run
from recsys.privacy.tombstones import read_redis as read_tombstones
from recsys.publish.lock import PublishLock
from recsys.publish.versions import apply_retention, clean_pending, delete_version_keys, switch_live
from recsys.store.codec import encode_rows
from recsys.store.connection import redact
from recsys.store.keys import OVERALL, KeyLayout

log = logging.getLogger(__name__)


@dataclass
class PublishResult:
    """What one publish did: the version made live and how many fields each hash holds."""

    version: str
    run: str
    previous: str | None
    counts: dict[str, int]
    seconds: float
    write_seconds: float
    lists: int
    cleaned_pending: list[str] = field(default_factory=list)
    deleted_versions: list[str] = field(default_factory=list)

    @property
    def lists_per_second(self) -> float:
        return self.lists / self.write_seconds if self.write_seconds > 0 else float("inf")

    def to_json(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "run": self.run,
            "previous": self.previous,
            "counts": self.counts,
            "seconds": round(self.seconds, 3),
            "write_seconds": round(self.write_seconds, 3),
            "lists": self.lists,
            "lists_per_second": round(self.lists_per_second, 1),
            "cleaned_pending": self.cleaned_pending,
            "deleted_versions": self.deleted_versions,
        }


class _HashWriter:
    """Pipelines HSETs (non-transactional), one round trip per ``commands_per_flush`` commands.

    Commands are packed into the Redis protocol here rather than through redis-py's generic
    ``pipeline()``: its per-argument packing cost about 4 us an argument, more than encoding
    the lists; formatting ``$len\\r\\n<bytes>\\r\\n`` directly is a few hundred ns.
    """

    def __init__(
        self,
        client: redis.Redis,
        lock: PublishLock,
        commands_per_flush: int,
        progress: tqdm,
        on_flush: Callable[[int], None] | None = None,
    ) -> None:
        self.client = client
        self.lock = lock
        self.commands_per_flush = commands_per_flush
        self.progress = progress
        self.on_flush = on_flush
        self.commands: list[bytes] = []
        self.queued_fields = 0
        self.flushed_fields = 0

    def hset(self, key: str, fields: Sequence[str], values: Sequence[bytes]) -> None:
        """Queue ``HSET key field value [field value ...]``; ``fields`` and ``values`` align."""
        if not len(fields):
            return
        name = key.encode()
        parts = [b"*%d\r\n$4\r\nHSET\r\n$%d\r\n%b\r\n" % (2 + 2 * len(fields), len(name), name)]
        for field_name, value in zip(fields, values):
            raw = field_name.encode()
            parts.append(b"$%d\r\n%b\r\n$%d\r\n%b\r\n" % (len(raw), raw, len(value), value))
        self.commands.append(b"".join(parts))
        self.queued_fields += len(fields)
        if len(self.commands) >= self.commands_per_flush:
            self.flush()

    def flush(self) -> None:
        if self.commands:
            pool = self.client.connection_pool
            connection = pool.get_connection()
            try:
                connection.send_packed_command(self.commands)
                for _ in self.commands:
                    connection.read_response()
            except BaseException:
                # Replies may be left unread: never hand this connection out again.
                connection.disconnect()
                raise
            finally:
                pool.release(connection)
            self.progress.update(self.queued_fields)
            self.flushed_fields += self.queued_fields
            self.commands = []
            self.queued_fields = 0
            if self.on_flush is not None:
                self.on_flush(self.flushed_fields)
        self.lock.renew()


def _catalog_blobs(catalog: dict[str, np.ndarray]) -> list[bytes]:
    """One JSON object per item: {title, category, price (null when unknown), in_stock}."""
    prices = catalog[schema.PRICE].astype(np.float64)
    price_list = np.where(np.isnan(prices), None, np.round(prices, 2)).tolist()
    return [
        orjson.dumps({"title": t, "category": c, "price": p, "in_stock": s})
        for t, c, p, s in zip(
            catalog[schema.TITLE].tolist(), catalog[schema.CATEGORY].tolist(), price_list, catalog[schema.IN_STOCK].tolist()
        )
    ]


class Publisher:
    """Writes versions into one Redis under one key layout."""

    def __init__(
        self,
        client: redis.Redis,
        layout: KeyLayout,
        *,
        keep_versions: int = 3,
        batch_fields: int = 1000,
        commands_per_flush: int = 20,
        lock_ttl_seconds: float = 60.0,
        lock_wait_seconds: float = 10.0,
        show_progress: bool | None = None,
    ) -> None:
        if keep_versions < 1:
            raise StoreError(f"keep_versions must be >= 1, got {keep_versions}")
        self.client = client
        self.layout = layout
        self.keep_versions = keep_versions
        self.batch_fields = batch_fields
        self.commands_per_flush = commands_per_flush
        self.lock_ttl_seconds = lock_ttl_seconds
        self.lock_wait_seconds = lock_wait_seconds
        # None: tqdm shows the bar only on a terminal.
        self.disable_progress = None if show_progress is None else not show_progress
        #: Called with the number of fields written so far after every flushed batch.
        self.on_flush: Callable[[int], None] | None = None

    @property
    def url(self) -> str:
        kwargs = self.client.connection_pool.connection_kwargs
        if "path" in kwargs:
            return f"unix://{kwargs['path']}"
        return f"redis://{kwargs.get('host', '?')}:{kwargs.get('port', '?')}/{kwargs.get('db', 0)}"

    # ------------------------------------------------------------------ entry points
    def publish_run(self, run: RunFolder | str | Path) -> PublishResult:
        """Publish every list of a run folder (``recsys publish RUN``)."""
        folder = run if isinstance(run, RunFolder) else RunFolder(run)
        # Users forgotten since the run was trained leave it first (the folder is rewritten).
        tombstones = set(read_tombstones(self.client, self.layout))
        if tombstones and scrub_run(folder.path, tombstones)[0] is not None:
            folder = RunFolder(folder.path)
        lists = [folder.load_list(entry) for entry in folder.list_entries()]
        metadata = folder.metadata
        extra_meta = {
            "fingerprint": metadata.get("fingerprint"),
            "models": sorted(metadata.get("models", {})),
        }
        return self.publish(
            lists,
            folder.users(),
            folder.items(),
            catalog=folder.catalog(),
            run_id=folder.run_id,
            default_model=metadata.get("default_model"),
            extra_meta=extra_meta,
        )

    def publish(
        self,
        lists: Sequence[ListArrays],
        users: IdMap,
        items: IdMap,
        *,
        catalog: dict[str, np.ndarray] | None = None,
        run_id: str = "",
        default_model: str | None = None,
        extra_meta: dict[str, Any] | None = None,
    ) -> PublishResult:
        """Write ``lists`` as a new version and make it live; see the module docstring."""
        try:
            return self._publish(lists, users, items, catalog, run_id, default_model, extra_meta or {})
        except (redis.RedisError, OSError) as error:
            raise StoreError(f"Redis at {redact(self.url)} failed during publish: {error}") from None

    # ------------------------------------------------------------------ internals
    def _publish(
        self,
        lists: Sequence[ListArrays],
        users: IdMap,
        items: IdMap,
        catalog: dict[str, np.ndarray] | None,
        run_id: str,
        default_model: str | None,
        extra_meta: dict[str, Any],
    ) -> PublishResult:
        started = time.perf_counter()
        self._check_lists(lists, users, items, catalog)
        user_models = [a.model for a in lists if a.kind == "user" and a.model]
        if default_model is None and user_models:
            default_model = user_models[0]
        if default_model is not None and default_model not in user_models:
            raise StoreError(f"default model {default_model!r} has no user lists in this run (has: {user_models})")
        version = new_run_id()
        total_fields = sum(a.ids.shape[0] for a in lists) + (len(catalog[schema.ITEM_ID]) if catalog else 0)
        client, layout = self.client, self.layout
        lock = PublishLock(client, layout, ttl_seconds=self.lock_ttl_seconds, wait_seconds=self.lock_wait_seconds)
        with lock:
            cleaned = clean_pending(client, layout)
            previous = client.get(layout.live)
            previous_version = previous.decode() if previous is not None else None
            client.zadd(layout.pending, {version: time.time()})
            try:
                write_started = time.perf_counter()
                with tqdm(
                    total=total_fields, desc=f"publish {version}", unit="list", disable=self.disable_progress, leave=False
                ) as progress:
                    writer = _HashWriter(client, lock, self.commands_per_flush, progress, self.on_flush)
                    counts: dict[str, int] = {}
                    if catalog is not None:
                        counts["catalog"] = self._write_catalog(writer, layout.catalog(version), catalog)
                    for arrays in lists:
                        key = self._key(version, arrays)
                        counts[self._count_name(arrays)] = self._write_list(writer, key, arrays, users, items)
                    writer.flush()
                write_seconds = time.perf_counter() - write_started
                self._verify(version, lists, counts)
                meta = self._meta(version, run_id, lists, counts, catalog, default_model, extra_meta)
                client.set(layout.meta(version), orjson.dumps(meta))
                lock.renew(force=True)
                # The item overlay is applied in the switch itself: an update landing meanwhile is kept.
                prepare = stage_for_publish(catalog, layout.catalog(version), layout) if catalog is not None else None
                switch_live(client, layout, lock, version, register=True, prepare=prepare)
            except BaseException:
                # Best effort; if this fails too (Redis gone), the next publish cleans up.
                try:
                    delete_version_keys(client, layout, version)
                    client.zrem(layout.pending, version)
                except (redis.RedisError, OSError):
                    log.warning("could not remove the keys of failed version %s; the next publish will", version)
                raise
            deleted = apply_retention(client, layout, self.keep_versions)
        n_lists = sum(v for k, v in counts.items() if k != "catalog")
        result = PublishResult(
            version=version,
            run=run_id,
            previous=previous_version,
            counts=counts,
            seconds=time.perf_counter() - started,
            write_seconds=write_seconds,
            lists=n_lists,
            cleaned_pending=cleaned,
            deleted_versions=deleted,
        )
        log.info(
            "published version %s (run %s): %d lists + %d catalogue entries in %.2fs (%.0f lists/s); live was %s",
            version, run_id or "-", n_lists, counts.get("catalog", 0), result.seconds,
            result.lists_per_second, previous_version,
        )
        return result

    def _key(self, version: str, arrays: ListArrays) -> str:
        if arrays.kind == "user":
            return self.layout.user_recs(version, str(arrays.model))
        if arrays.kind == "similar":
            return self.layout.similar(version, str(arrays.model))
        if arrays.kind == "together":
            return self.layout.together(version)
        if arrays.kind == "popular":
            return self.layout.popular(version)
        raise StoreError(f"unknown list kind {arrays.kind!r}")

    @staticmethod
    def _count_name(arrays: ListArrays) -> str:
        return f"{arrays.kind}:{arrays.model}" if arrays.model else arrays.kind

    @staticmethod
    def _check_lists(
        lists: Sequence[ListArrays], users: IdMap, items: IdMap, catalog: dict[str, np.ndarray] | None
    ) -> None:
        names = [Publisher._count_name(a) for a in lists]
        if len(set(names)) != len(names):
            raise StoreError(f"duplicate lists in one version: {names}")
        for arrays in lists:
            expected = {"user": len(users), "similar": len(items), "together": len(items)}.get(arrays.kind)
            if arrays.kind == "popular":
                if arrays.labels is None or len(arrays.labels) != arrays.ids.shape[0]:
                    raise StoreError("popular lists need one category label per row")
            elif expected is None:
                raise StoreError(f"unknown list kind {arrays.kind!r}")
            elif arrays.ids.shape[0] != expected:
                raise StoreError(f"{arrays.name}: {arrays.ids.shape[0]} rows, expected {expected}")
            if arrays.scores.shape != arrays.ids.shape:
                raise StoreError(f"{arrays.name}: ids {arrays.ids.shape} and scores {arrays.scores.shape} differ")
            if arrays.ids.size and int(arrays.ids.max()) >= len(items):
                raise StoreError(f"{arrays.name}: item index {int(arrays.ids.max())} beyond the {len(items)} items")
        if catalog is not None and len(catalog[schema.ITEM_ID]) != len(items):
            raise StoreError(f"catalogue has {len(catalog[schema.ITEM_ID])} rows, the item map {len(items)}")

    def _write_catalog(self, writer: _HashWriter, key: str, catalog: dict[str, np.ndarray]) -> int:
        ids = catalog[schema.ITEM_ID]
        for start in range(0, len(ids), self.batch_fields):
            chunk = slice(start, start + self.batch_fields)
            writer.hset(key, ids[chunk].tolist(), _catalog_blobs({k: v[chunk] for k, v in catalog.items()}))
        return int(len(ids))

    def _write_list(self, writer: _HashWriter, key: str, arrays: ListArrays, users: IdMap, items: IdMap) -> int:
        """HSET one blob per non-empty row; the number of fields written."""
        if arrays.kind == "popular":
            assert arrays.labels is not None
            row_names = np.asarray(arrays.labels, dtype=str)
        else:
            row_names = (users if arrays.kind == "user" else items).ids
        written = 0
        for start in range(0, arrays.ids.shape[0], self.batch_fields):
            ids = arrays.ids[start : start + self.batch_fields]
            keep = ids[:, 0] >= 0 if ids.shape[1] else np.zeros(len(ids), dtype=bool)
            if not keep.any():
                continue
            raw = items.to_raw(ids[keep])
            extra = {k: v[start : start + self.batch_fields][keep] for k, v in arrays.extra.items()}
            blobs = encode_rows(raw, arrays.scores[start : start + self.batch_fields][keep], extra or None)
            writer.hset(key, row_names[start : start + self.batch_fields][keep].tolist(), blobs)
            written += int(keep.sum())
        return written

    def _verify(self, version: str, lists: Sequence[ListArrays], counts: dict[str, int]) -> None:
        """Every hash holds exactly the fields written (catches a concurrent delete)."""
        keys = {"catalog": self.layout.catalog(version)} if "catalog" in counts else {}
        keys.update({self._count_name(a): self._key(version, a) for a in lists})
        with self.client.pipeline(transaction=False) as pipe:
            for key in keys.values():
                pipe.hlen(key)
            lengths = pipe.execute()
        for (name, key), length in zip(keys.items(), lengths):
            if int(length) != counts[name]:
                raise StoreError(f"version {version}: {key} holds {length} fields, {counts[name]} were written")

    @staticmethod
    def _meta(
        version: str,
        run_id: str,
        lists: Sequence[ListArrays],
        counts: dict[str, int],
        catalog: dict[str, np.ndarray] | None,
        default_model: str | None,
        extra_meta: dict[str, Any],
    ) -> dict[str, Any]:
        """Version metadata as documented in recsys/store/keys.py."""
        lengths: dict[str, int] = {}
        for arrays in lists:
            lengths[arrays.kind] = max(lengths.get(arrays.kind, 0), arrays.length)
        popular = next((a for a in lists if a.kind == "popular"), None)
        categories = (
            sorted(str(c) for c in popular.labels if str(c) != OVERALL)
            if popular is not None and popular.labels is not None
            else []
        )
        return {
            **extra_meta,
            "version": version,
            "created_at": time.time(),
            "run": run_id,
            "user_models": [a.model for a in lists if a.kind == "user"],
            "similar_models": [a.model for a in lists if a.kind == "similar"],
            "default_model": default_model,
            "has_together": any(a.kind == "together" for a in lists),
            "has_popular": popular is not None,
            "categories": categories,
            "list_length": {kind: lengths.get(kind, 0) for kind in ("user", "similar", "together", "popular")},
            "counts": counts,
        }
