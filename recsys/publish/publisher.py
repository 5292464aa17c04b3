"""Publish a run's lists to Redis as a new version, then make it live atomically.

Steps, all under the publish lock:

1. delete what killed publishes left in ``pending``;
2. register the new version in ``pending`` and write its hashes with pipelined, batched
   HSETs (``batch_fields`` fields per command, one round trip per ``commands_per_flush``
   commands), renewing the lock as it goes; each list is read from the run folder's
   Parquet files in record batches of ``batch_fields`` rows, never whole;
   user lists of models that explain carry each entry's because item as a short code
   (recsys/store/codec.py), resolved by the version's ``because-items`` hash;
3. check every hash has the expected number of fields, write ``v:{v}:meta`` (with the
   reason type of every user, popular and segment list);
4. one MULTI/EXEC (WATCHing the lock): SET live, ZADD versions, ZREM pending;
5. delete versions beyond ``keep_versions`` (never the live one).

If anything fails before step 4 the live version is untouched and this version's keys are
removed; if the process is killed, the next publish removes them (step 1).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import redis
from tqdm import tqdm

from recsys.catalog.overlay import stage_for_publish
from recsys.data import schema
from recsys.errors import DataError, StoreError
from recsys.privacy.runs import scrub_run
from recsys.privacy.tombstones import read_redis as read_tombstones
from recsys.publish.lock import PublishLock
from recsys.publish.versions import apply_retention, clean_pending, delete_version_keys, switch_live
from recsys.runs.folder import CATALOG_SCHEMA, RunFolder, new_run_id, with_all_columns
from recsys.runs.lists import BECAUSE, CONFIDENCE, ITEM_IDS, KEY, LIFT, READ_BATCH_ROWS, SCORES, RunList
from recsys.store.codec import LIST_REASONS, because_reason, code_width, default_reason, encode_codes, encode_ragged
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


class _Appearances:
    """In how many user lists of each model every item appears, counted batch by batch
    (one ``value_counts`` per batch, summed per model at the end): the console's answer to
    "who gets this item", without a second pass over the lists."""

    def __init__(self) -> None:
        self.parts: dict[str, list[pa.StructArray]] = {}

    def tally(self, model: str) -> Callable[[pa.Array], None]:
        parts = self.parts.setdefault(model, [])
        return lambda item_ids: parts.append(pc.value_counts(item_ids))

    def totals(self) -> dict[str, dict[str, int]]:
        """item id -> {model: count}."""
        out: dict[str, dict[str, int]] = {}
        for model, parts in self.parts.items():
            if not parts:
                continue
            table = pa.Table.from_struct_array(pa.concat_arrays(parts)) if len(parts) > 1 else pa.Table.from_struct_array(parts[0])
            summed = table.group_by("values").aggregate([("counts", "sum")])
            for item, count in zip(summed.column("values").to_pylist(), summed.column("counts_sum").to_pylist()):
                out.setdefault(str(item), {})[model] = int(count)
        return out

    def write(self, writer: _HashWriter, key: str) -> None:
        totals = self.totals()
        items = list(totals)
        for start in range(0, len(items), 1000):
            chunk = items[start : start + 1000]
            writer.hset(key, chunk, [orjson.dumps(totals[i]) for i in chunk])


def run_summary(metadata: dict[str, Any]) -> dict[str, Any]:
    """The run's step times, memory, dropped rows, skipped models and holdout metrics, small
    enough for the version's metadata (the validation's first problems are left out)."""
    validation = metadata.get("validation") or {}
    return {
        "created_at": metadata.get("created_at"),
        "backend": metadata.get("backend"),
        "counts": metadata.get("counts"),
        "timings": metadata.get("timings"),
        "peak_rss_mb": (metadata.get("peak_rss_mb") or {}).get("overall")
        if isinstance(metadata.get("peak_rss_mb"), dict)
        else metadata.get("peak_rss_mb"),
        "validation": {
            "rows": validation.get("rows"),
            "dropped": validation.get("dropped") or {},
            "warnings": validation.get("warnings") or [],
        },
        "skipped": metadata.get("skipped") or {},
        "evaluation": metadata.get("evaluation"),
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


def _catalog_blobs(batch: pa.RecordBatch) -> list[bytes]:
    """One JSON object per item: {title, category, price (null when unknown), in_stock}."""
    prices = batch.column(schema.PRICE).to_numpy(zero_copy_only=False).astype(np.float64)
    price_list = np.where(np.isnan(prices), None, np.round(prices, 2)).tolist()
    titles = pc.fill_null(batch.column(schema.TITLE), "").to_pylist()
    categories = pc.fill_null(batch.column(schema.CATEGORY), "").to_pylist()
    stock = pc.fill_null(batch.column(schema.IN_STOCK), True).to_pylist()
    return [
        orjson.dumps({"title": t, "category": c, "price": p, "in_stock": s})
        for t, c, p, s in zip(titles, categories, price_list, stock)
    ]


@dataclass
class _Catalog:
    """The catalogue to publish: its row count (for progress) and a batch source."""

    rows: int
    batches: Callable[[int], Iterator[pa.RecordBatch]]

    def overlay_fields(self) -> dict[str, np.ndarray]:
        """Every catalogue column as a numpy array (price NaN = unknown, in_stock null =
        True), for the item overlay (recsys.catalog.overlay); the catalogue is small."""
        columns: dict[str, list[np.ndarray]] = {field.name: [] for field in CATALOG_SCHEMA}
        for batch in self.batches(READ_BATCH_ROWS):
            for name in (schema.ITEM_ID, schema.TITLE, schema.CATEGORY):
                columns[name].append(np.asarray(pc.fill_null(batch.column(name), "").to_pylist(), dtype=str))
            columns[schema.PRICE].append(batch.column(schema.PRICE).to_numpy(zero_copy_only=False).astype(np.float64))
            columns[schema.IN_STOCK].append(np.asarray(pc.fill_null(batch.column(schema.IN_STOCK), True).to_pylist(), dtype=bool))
        empty = {schema.PRICE: np.float64, schema.IN_STOCK: bool}
        return {
            name: np.concatenate(parts) if parts else np.array([], dtype=empty.get(name, str))
            for name, parts in columns.items()
        }


@dataclass(frozen=True)
class _Segments:
    """A run's segment table: segment id -> name, and the user -> segment rows in batches."""

    names: dict[str, str]
    batches: Callable[[int], Iterator[pa.RecordBatch]]
    #: Segment id -> number of customers (the console shows them); empty when not recorded.
    sizes: dict[str, int] = field(default_factory=dict)
    #: Segment id -> median recency/frequency/spend/tenure and top categories (the console).
    details: dict[str, Any] = field(default_factory=dict)


#: Parquet list columns -> the field of the Redis blob (recsys/store/codec.py).
_BLOB_FIELDS = {CONFIDENCE: "c", LIFT: "l"}
#: Counts of a version that are not lists.
_NOT_LISTS = frozenset({"catalog", "segment_of", "segment_names", "because_items"})


class _BecauseCodes:
    """Numbers the because items of one version (recsys/store/codec.py): code = the item's
    row in the published catalogue, then ids outside it in order of first appearance.
    Only the codes some list uses go into the ``because-items`` hash, as the characters
    the blobs hold them with (one field per width used) -> the finished reason."""

    def __init__(self) -> None:
        self._ids: list[np.ndarray] = []
        self._titles: list[np.ndarray] = []
        self._index: pd.Index | None = None
        self._catalog_titles = np.array([], dtype=object)
        self._catalog_ids: pa.Array = pa.array([], type=pa.string())
        self._extra: dict[str, int] = {}
        #: width -> which codes are used at that width (a flag per code)
        self.used: dict[int, np.ndarray] = {}

    def add_catalog(self, ids: pa.Array, titles: pa.Array) -> None:
        self._ids.append(np.asarray(ids.to_pylist(), dtype=object))
        self._titles.append(np.asarray(titles.to_pylist(), dtype=object))
        self._index = None

    def _catalog(self) -> pd.Index:
        if self._index is None:
            ids = np.concatenate(self._ids) if self._ids else np.array([], dtype=object)
            titles = np.concatenate(self._titles) if self._titles else np.array([], dtype=object)
            first = ~pd.Index(ids, dtype=object).duplicated()
            self._index = pd.Index(ids[first], dtype=object)
            self._catalog_titles = titles[first]
            self._catalog_ids = pa.array(ids[first].tolist(), type=pa.string())
        return self._index

    def codes(self, because: pa.Array) -> np.ndarray:
        """Codes of a flat string array of because ids (null or "" = none: -1)."""
        catalog = self._catalog()
        because = because.cast(pa.string()) if because.type != pa.string() else because
        present = pc.fill_null(pc.not_equal(because, ""), False).to_numpy(zero_copy_only=False)
        # Arrow's hash lookup: no Python string per entry.
        found = pc.index_in(because, value_set=self._catalog_ids)
        codes = pc.fill_null(found, -1).to_numpy(zero_copy_only=False).astype(np.int64)
        codes[~present] = -1
        missing = present & (codes < 0)
        if missing.any():
            values = because.to_numpy(zero_copy_only=False)
            for value in pd.unique(values[missing]):
                self._extra.setdefault(str(value), len(catalog) + len(self._extra))
            codes[missing] = [self._extra[str(v)] for v in values[missing]]
        return codes

    def width(self, codes: np.ndarray) -> int:
        """Characters a code in a batch of these codes, recorded with the codes used."""
        largest = int(codes.max(initial=0))
        width = code_width(largest)
        used = self.used.get(width, np.zeros(0, dtype=np.bool_))
        if len(used) <= largest:
            used = np.concatenate([used, np.zeros(max(largest + 1, 2 * len(used)) - len(used), dtype=np.bool_)])
            self.used[width] = used
        used[codes[codes >= 0]] = True
        return width

    def write(self, writer: _HashWriter, key: str) -> int:
        """HSET code characters -> reason JSON of every code used; the number of fields."""
        catalog = self._catalog()
        by_code = {code: item for item, code in self._extra.items()}
        written = 0
        for width, used in sorted(self.used.items()):
            codes = np.flatnonzero(used).astype(np.int64)
            if not len(codes):
                continue
            fields = encode_codes(codes, width).tobytes().decode("ascii")
            for start in range(0, len(codes), 1000):
                chunk = codes[start : start + 1000].tolist()
                reasons = []
                for code in chunk:
                    if code < len(catalog):
                        title = self._catalog_titles[code]
                        reasons.append(because_reason(str(catalog[code]), None if title is None else str(title)))
                    else:
                        reasons.append(because_reason(by_code[code], None))
                names = [fields[(start + k) * width : (start + k + 1) * width] for k in range(len(chunk))]
                writer.hset(key, names, reasons)
                written += len(chunk)
        return written


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
        """Publish every list of a run folder (``recsys publish RUN``), read in batches."""
        folder = run if isinstance(run, RunFolder) else RunFolder(run)
        # Users forgotten since the run was trained leave it first (the folder is rewritten).
        tombstones = set(read_tombstones(self.client, self.layout))
        if tombstones and scrub_run(folder.path, tombstones)[0] is not None:
            folder = RunFolder(folder.path)
        lists = folder.lists()
        metadata = folder.metadata
        extra_meta = {
            "fingerprint": metadata.get("fingerprint"),
            "models": sorted(metadata.get("models") or {}),
            # Why the default model is served, and the candidates' holdout scores.
            "default_reason": (metadata.get("selection") or {}).get("reason"),
            "selection": metadata.get("selection"),
            # What the console and the operators look at: how the run went.
            "run_summary": run_summary(metadata),
        }
        catalog = _Catalog(folder.catalog_rows(), folder.catalog_batches) if folder.catalog_path is not None else None
        segments = None
        if folder.segments is not None and any(a.kind == "segment" for a in lists):
            names = {str(k): str(v) for k, v in (folder.segments.get("names") or {}).items()}
            sizes = {str(k): int(v) for k, v in (folder.segments.get("sizes") or {}).items() if isinstance(v, int | float)}
            details = folder.segments.get("details")
            segments = _Segments(names, folder.segment_batches, sizes, details if isinstance(details, dict) else {})
        return self._guarded(lists, catalog, folder.run_id, metadata.get("default_model"), extra_meta, segments)

    def publish(
        self,
        lists: Sequence[RunList],
        *,
        catalog: pa.Table | None = None,
        run_id: str = "",
        default_model: str | None = None,
        extra_meta: dict[str, Any] | None = None,
    ) -> PublishResult:
        """Write ``lists`` (and an in-memory catalogue table) as a new version and make it
        live; see the module docstring."""
        source = None
        if catalog is not None:
            table = catalog

            def batches(size: int) -> Iterator[pa.RecordBatch]:
                for batch in table.to_batches(max_chunksize=size):
                    yield with_all_columns(batch, CATALOG_SCHEMA)

            source = _Catalog(table.num_rows, batches)
        return self._guarded(lists, source, run_id, default_model, extra_meta or {})

    # ------------------------------------------------------------------ internals
    def _guarded(
        self,
        lists: Sequence[RunList],
        catalog: _Catalog | None,
        run_id: str,
        default_model: str | None,
        extra_meta: dict[str, Any],
        segments: _Segments | None = None,
    ) -> PublishResult:
        try:
            return self._publish(lists, catalog, run_id, default_model, extra_meta, segments)
        except (redis.RedisError, OSError) as error:
            raise StoreError(f"Redis at {redact(self.url)} failed during publish: {error}") from None

    def _publish(
        self,
        lists: Sequence[RunList],
        catalog: _Catalog | None,
        run_id: str,
        default_model: str | None,
        extra_meta: dict[str, Any],
        segments: _Segments | None = None,
    ) -> PublishResult:
        started = time.perf_counter()
        self._check_lists(lists)
        user_models = [a.model for a in lists if a.kind == "user" and a.model]
        if default_model is None and user_models:
            default_model = user_models[0]
        if default_model is not None and default_model not in user_models:
            raise StoreError(f"default model {default_model!r} has no user lists in this run (has: {user_models})")
        version = new_run_id()
        total_fields = sum(a.expected_rows or 0 for a in lists) + (catalog.rows if catalog else 0)
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
                    categories: list[str] = []
                    codes = _BecauseCodes()
                    if catalog is not None:
                        counts["catalog"] = self._write_catalog(writer, layout.catalog(version), catalog, codes)
                    appearances = _Appearances()
                    explained = False
                    for run_list in lists:
                        key = self._key(version, run_list)
                        labels = categories if run_list.kind == "popular" else None
                        tally = appearances.tally(str(run_list.model)) if run_list.kind == "user" else None
                        counts[self._count_name(run_list)] = self._write_list(writer, key, run_list, labels, tally, codes)
                        explained = explained or BECAUSE in run_list.columns()
                    appearances.write(writer, layout.appearances(version))
                    if explained:
                        counts["because_items"] = codes.write(writer, layout.because_items(version))
                    if segments is not None:
                        counts["segment_of"] = self._write_segments(writer, layout.segment_of(version), segments)
                        if segments.names:
                            names = list(segments.names)
                            writer.hset(layout.segment_names(version), names, [segments.names[k].encode() for k in names])
                            counts["segment_names"] = len(names)
                        extra_meta = {**extra_meta, "segments": segments.names, "segment_sizes": segments.sizes,
                                      "segment_details": segments.details}
                    writer.flush()
                write_seconds = time.perf_counter() - write_started
                self._verify(version, lists, counts)
                meta = self._meta(version, run_id, lists, counts, categories, default_model, extra_meta)
                client.set(layout.meta(version), orjson.dumps(meta))
                lock.renew(force=True)
                # The item overlay is applied in the switch itself: an update landing meanwhile is kept.
                prepare = (
                    stage_for_publish(catalog.overlay_fields(), layout.catalog(version), layout) if catalog is not None else None
                )
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
        n_lists = sum(v for k, v in counts.items() if k not in _NOT_LISTS)
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

    def _key(self, version: str, run_list: RunList) -> str:
        if run_list.kind == "user":
            return self.layout.user_recs(version, str(run_list.model))
        if run_list.kind == "similar":
            return self.layout.similar(version, str(run_list.model))
        if run_list.kind == "together":
            return self.layout.together(version)
        if run_list.kind == "popular":
            return self.layout.popular(version)
        if run_list.kind == "segment":
            return self.layout.segment_popular(version)
        raise StoreError(f"unknown list kind {run_list.kind!r}")

    @staticmethod
    def _count_name(run_list: RunList) -> str:
        return f"{run_list.kind}:{run_list.model}" if run_list.model else run_list.kind

    @staticmethod
    def _check_lists(lists: Sequence[RunList]) -> None:
        names = [Publisher._count_name(a) for a in lists]
        if len(set(names)) != len(names):
            raise StoreError(f"duplicate lists in one version: {names}")
        for run_list in lists:
            if run_list.kind in ("user", "similar") and not run_list.model:
                raise StoreError(f"{run_list.source}: {run_list.kind} lists need a model name")
        Publisher._reasons(lists)  # an unknown reason type fails before anything is written

    def _write_segments(self, writer: _HashWriter, key: str, segments: _Segments) -> int:
        """HSET user id -> segment id, batch by batch; the number of users written."""
        written = 0
        for batch in segments.batches(self.batch_fields):
            users = batch.column(schema.USER_ID)
            if users.null_count:
                raise DataError(f"segment table: a row has no {schema.USER_ID}")
            writer.hset(key, users.to_pylist(), [str(s).encode() for s in batch.column("segment").to_pylist()])
            written += batch.num_rows
        return written

    def _write_catalog(self, writer: _HashWriter, key: str, catalog: _Catalog, codes: _BecauseCodes) -> int:
        written = 0
        for batch in catalog.batches(self.batch_fields):
            ids = batch.column(schema.ITEM_ID)
            if ids.null_count:
                raise DataError(f"catalogue: an entry has no {schema.ITEM_ID}")
            writer.hset(key, ids.to_pylist(), _catalog_blobs(batch))
            codes.add_catalog(ids, batch.column(schema.TITLE))
            written += batch.num_rows
        return written

    def _write_list(
        self,
        writer: _HashWriter,
        key: str,
        run_list: RunList,
        labels: list[str] | None,
        tally: Callable[[pa.Array], None] | None = None,
        codes: _BecauseCodes | None = None,
    ) -> int:
        """HSET one blob per row, batch by batch; the number of fields written.

        ``labels`` (popular only) collects the keys, which are the category labels;
        ``tally`` (user lists) counts in how many lists each item appears; ``codes``
        numbers the because items of lists that have them.
        """
        written = 0
        for batch in run_list.batches(self.batch_fields):
            lengths = pc.list_value_length(batch.column(ITEM_IDS)).to_numpy(zero_copy_only=False)
            offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
            np.cumsum(lengths, out=offsets[1:])
            extra = {
                field_name: pc.list_flatten(batch.column(name)).to_numpy(zero_copy_only=False)
                for name, field_name in _BLOB_FIELDS.items()
                if name in batch.schema.names
            }
            because, width = None, None
            if BECAUSE in batch.schema.names and codes is not None:
                because = self._because_codes(batch.column(BECAUSE), lengths, codes)
                width = codes.width(because)
            blobs = encode_ragged(
                pc.list_flatten(batch.column(ITEM_IDS)).to_pylist(),
                offsets,
                pc.list_flatten(batch.column(SCORES)).to_numpy(zero_copy_only=False),
                extra or None,
                because,
                width,
            )
            if tally is not None:
                tally(pc.list_flatten(batch.column(ITEM_IDS)))
            keys = batch.column(KEY).to_pylist()
            writer.hset(key, keys, blobs)
            if labels is not None:
                labels.extend(keys)
            written += batch.num_rows
        if run_list.expected_rows is not None and written != run_list.expected_rows:
            raise DataError(f"{run_list.source}: {written} rows read, the run's metadata says {run_list.expected_rows}")
        return written

    @staticmethod
    def _because_codes(column: pa.Array, lengths: np.ndarray, codes: _BecauseCodes) -> np.ndarray:
        """Because codes of a batch's entries, flat like its item ids (-1 = none); a null
        row (none for the whole row) is -1 for each of its entries."""
        flat = codes.codes(pc.list_flatten(column))
        if not column.null_count:
            return flat
        out = np.full(int(lengths.sum()), -1, dtype=np.int64)
        out[np.repeat(column.is_valid().to_numpy(zero_copy_only=False), lengths)] = flat
        return out

    def _verify(self, version: str, lists: Sequence[RunList], counts: dict[str, int]) -> None:
        """Every hash holds exactly the fields written (catches a concurrent delete, and a
        key written twice in one list)."""
        keys = {"catalog": self.layout.catalog(version)} if "catalog" in counts else {}
        if "segment_of" in counts:
            keys["segment_of"] = self.layout.segment_of(version)
        if "segment_names" in counts:
            keys["segment_names"] = self.layout.segment_names(version)
        if "because_items" in counts:
            keys["because_items"] = self.layout.because_items(version)
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
        lists: Sequence[RunList],
        counts: dict[str, int],
        categories: list[str],
        default_model: str | None,
        extra_meta: dict[str, Any],
    ) -> dict[str, Any]:
        """Version metadata as documented in recsys/store/keys.py."""
        lengths: dict[str, int] = {}
        for run_list in lists:
            lengths[run_list.kind] = max(lengths.get(run_list.kind, 0), run_list.n)
        return {
            **extra_meta,
            "version": version,
            "created_at": time.time(),
            "run": run_id,
            "user_models": [a.model for a in lists if a.kind == "user"],
            "similar_models": [a.model for a in lists if a.kind == "similar"],
            "default_model": default_model,
            "has_together": any(a.kind == "together" for a in lists),
            "has_popular": any(a.kind == "popular" for a in lists),
            "categories": sorted(c for c in categories if c != OVERALL),
            "list_length": {kind: lengths.get(kind, 0) for kind in ("user", "similar", "together", "popular")}
            | ({"segment": lengths["segment"]} if "segment" in lengths else {}),
            "reasons": Publisher._reasons(lists),
            "counts": counts,
        }

    @staticmethod
    def _reasons(lists: Sequence[RunList]) -> dict[str, str]:
        """List name -> reason type of its entries without a because item (user, popular
        and segment lists): as the run recorded it, else by model name."""
        out = {}
        for run_list in lists:
            if run_list.kind not in ("user", "popular", "segment"):
                continue
            reason = run_list.reason or default_reason(run_list.kind, run_list.model)
            if reason not in LIST_REASONS:
                raise DataError(f"{run_list.source}: unknown reason type {reason!r} (allowed: {', '.join(LIST_REASONS)})")
            out[Publisher._count_name(run_list)] = reason
        return out
