"""The run folder: what training writes (local or Spark backend) and ``recsys publish`` reads.

Layout of ``runs/<run id>/`` (format version 2, docs/run-format.md)::

    metadata.json        format_version, run id, backend, counts, timings, peak memory,
                         configuration, the index of lists ("lists") and "catalog"
    catalog.parquet      item_id, title, category (strings), price (float64, null =
                         unknown), in_stock (bool): one row per item the run knows
    lists/<name>/        one list as Parquet files (recsys.runs.lists)
    segments.parquet     optional (``[segments]``): user_id, segment (int32), segment_name;
                         named by metadata "segments" "table", with ``lists/segment/``
                         holding one popular list per segment (key = segment id)
    models/              local backend only: fitted models (``<name>/``, .npz + JSON) and
                         the id maps ``users.npz`` / ``items.npz`` their indices refer to

Nothing here imports a model or the training code: the publisher reads a run without them.
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from recsys.data import schema
from recsys.data.idmap import IdMap
from recsys.errors import DataError
from recsys.runs.lists import LIST_KINDS, READ_BATCH_ROWS, RunList, read_parquet_batches, string_array

METADATA_FILE = "metadata.json"
CATALOG_FILE = "catalog.parquet"
#: The segment table (user_id, segment, segment_name) when the run computed segments.
SEGMENTS_FILE = "segments.parquet"
MODELS_FOLDER = "models"
USERS_FILE = "users.npz"
ITEMS_FILE = "items.npz"
RUN_FORMAT_VERSION = 2
RUN_ID_PATTERN = re.compile(r"^\d{8}T\d{6}\.\d{3}Z-[0-9a-f]{6}$")

CATALOG_SCHEMA = pa.schema(
    [
        pa.field(schema.ITEM_ID, pa.string()),
        pa.field(schema.TITLE, pa.string()),
        pa.field(schema.CATEGORY, pa.string()),
        pa.field(schema.PRICE, pa.float64()),
        pa.field(schema.IN_STOCK, pa.bool_()),
    ]
)


def new_run_id(now: datetime | None = None) -> str:
    """Sortable, unique id: UTC time to the millisecond plus a random suffix."""
    moment = now or datetime.now(UTC)
    return f"{moment:%Y%m%dT%H%M%S}.{moment.microsecond // 1000:03d}Z-{secrets.token_hex(3)}"


def catalog_table(catalog: pd.DataFrame) -> pa.Table:
    """The catalogue fields the API returns as an Arrow table in :data:`CATALOG_SCHEMA`.

    Unknown titles and categories become "", unknown prices null, unknown stock True.
    """
    prices = pd.to_numeric(catalog[schema.PRICE], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    return pa.table(
        {
            schema.ITEM_ID: string_array(catalog[schema.ITEM_ID].to_numpy(dtype=str)),
            schema.TITLE: string_array(catalog[schema.TITLE].astype("string").fillna("").to_numpy(dtype=str)),
            schema.CATEGORY: string_array(catalog[schema.CATEGORY].astype("string").fillna("").to_numpy(dtype=str)),
            schema.PRICE: pa.array(prices, from_pandas=True),
            schema.IN_STOCK: pa.array(catalog[schema.IN_STOCK].astype("boolean").fillna(True).to_numpy(dtype=bool)),
        },
        schema=CATALOG_SCHEMA,
    )


def write_catalog(catalog: pd.DataFrame, path: Path) -> int:
    """Write ``catalog.parquet``; the number of items."""
    table = catalog_table(catalog)
    pq.write_table(table, path, compression="snappy")
    return table.num_rows


class RunFolder:
    """A completed run folder of format version 2, read lazily."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        meta_file = self.path / METADATA_FILE
        if not self.path.is_dir():
            raise DataError(f"{self.path}: run folder not found")
        try:
            with open(meta_file, encoding="utf-8") as handle:
                self.metadata: dict[str, Any] = json.load(handle)
        except FileNotFoundError:
            raise DataError(f"{self.path}: not a completed run (no {METADATA_FILE})") from None
        except json.JSONDecodeError as error:
            raise DataError(f"{meta_file}: invalid JSON at line {error.lineno}: {error.msg}") from None
        if not isinstance(self.metadata, dict):
            raise DataError(f"{meta_file}: expected a JSON object")
        version = self.metadata.get("format_version")
        if version != RUN_FORMAT_VERSION:
            hint = " (written by an older version: train again to get a run this version reads)" if isinstance(version, int) and version < RUN_FORMAT_VERSION else ""
            raise DataError(f"{meta_file}: run format version {version!r}, this version reads {RUN_FORMAT_VERSION}{hint}")

    @property
    def run_id(self) -> str:
        return str(self.metadata.get("run", self.path.name))

    # ------------------------------------------------------------------ lists
    def list_entries(self) -> list[dict[str, Any]]:
        entries = self.metadata.get("lists", [])
        if not isinstance(entries, list):
            raise DataError(f"{self.path / METADATA_FILE}: 'lists' must be a list of entries")
        return list(entries)

    def list(self, entry: dict[str, Any]) -> RunList:
        """The list of one metadata.json entry, checked: kind, path inside the folder, n."""
        where = f"{self.path / METADATA_FILE}: list entry {entry!r}"
        kind = entry.get("kind")
        if kind not in LIST_KINDS:
            raise DataError(f"{where}: kind must be one of {', '.join(LIST_KINDS)}")
        path = entry.get("path")
        if not isinstance(path, str) or not path:
            raise DataError(f"{where}: no 'path'")
        directory = (self.path / path).resolve()
        if self.path.resolve() not in directory.parents:
            raise DataError(f"{where}: path leaves the run folder")
        n = entry.get("n")
        if not isinstance(n, int) or n < 1:
            raise DataError(f"{where}: 'n' must be a positive integer")
        rows = entry.get("rows")
        reason = entry.get("reason")
        if reason is not None and not isinstance(reason, str):
            raise DataError(f"{where}: 'reason' must be a string")
        return RunList(
            kind, entry.get("model"), n, directory=directory, rows=rows if isinstance(rows, int) else None, reason=reason
        )

    def lists(self) -> list[RunList]:
        return [self.list(entry) for entry in self.list_entries()]

    def find_list(self, kind: str, model: str | None = None) -> RunList:
        for entry in self.list_entries():
            if entry.get("kind") == kind and entry.get("model") == model:
                return self.list(entry)
        raise DataError(f"{self.path}: no {kind} list{f' of model {model}' if model else ''} in this run")

    # ------------------------------------------------------------------ segments
    @property
    def segments(self) -> dict[str, Any] | None:
        """metadata "segments" when this run wrote a segment table, else None."""
        value = self.metadata.get("segments")
        return value if isinstance(value, dict) and value.get("table") else None

    def segment_batches(self, batch_size: int = READ_BATCH_ROWS) -> Iterator[pa.RecordBatch]:
        """The segment table (user_id, segment as text) in record batches."""
        info = self.segments
        if info is None:
            return
        path = self.path / str(info["table"])
        if not path.is_file():
            raise DataError(f"{path}: segment table named in {METADATA_FILE} not found")
        wanted = pa.schema([pa.field(schema.USER_ID, pa.string()), pa.field("segment", pa.int64())])
        for batch in read_parquet_batches([path], wanted, (schema.USER_ID, "segment"), batch_size):
            yield batch

    # ------------------------------------------------------------------ catalogue
    @property
    def catalog_path(self) -> Path | None:
        name = self.metadata.get("catalog")
        return self.path / str(name) if name else None

    def catalog_rows(self) -> int:
        path = self.catalog_path
        if path is None:
            return 0
        try:
            return int(pq.read_metadata(path).num_rows)
        except (OSError, pa.ArrowInvalid) as error:
            raise DataError(f"{path}: not a readable Parquet file ({error})") from None

    def catalog_batches(self, batch_size: int = READ_BATCH_ROWS) -> Iterator[pa.RecordBatch]:
        """The catalogue in record batches of :data:`CATALOG_SCHEMA` (missing optional columns null)."""
        path = self.catalog_path
        if path is None:
            return
        if not path.is_file():
            raise DataError(f"{path}: catalogue file named in {METADATA_FILE} not found")
        for batch in read_parquet_batches([path], CATALOG_SCHEMA, (schema.ITEM_ID,), batch_size):
            yield with_all_columns(batch, CATALOG_SCHEMA)

    def catalog(self) -> pa.Table | None:
        """The whole catalogue as one table (small; tests and tools)."""
        if self.catalog_path is None:
            return None
        batches = list(self.catalog_batches())
        return pa.Table.from_batches(batches, schema=CATALOG_SCHEMA) if batches else CATALOG_SCHEMA.empty_table()

    # ------------------------------------------------------------------ local backend
    def users(self) -> IdMap:
        """User id map of the fitted models (local backend)."""
        return self._id_map(USERS_FILE)

    def items(self) -> IdMap:
        """Item id map of the fitted models (local backend)."""
        return self._id_map(ITEMS_FILE)

    def _id_map(self, name: str) -> IdMap:
        path = self.path / MODELS_FOLDER / name
        if not path.is_file():
            raise DataError(f"{path}: not found (only runs of the local backend keep id maps)")
        return IdMap.load(path)


def with_all_columns(batch: pa.RecordBatch, wanted: pa.Schema) -> pa.RecordBatch:
    """``batch`` with every field of ``wanted``, missing ones as nulls, in ``wanted`` order."""
    columns = [
        batch.column(f.name) if f.name in batch.schema.names else pa.nulls(batch.num_rows, type=f.type) for f in wanted
    ]
    return pa.RecordBatch.from_arrays(columns, schema=wanted)


def completed_runs(root: Path) -> list[Path]:
    """Run folders under ``root`` that finished (have metadata), oldest first."""
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and RUN_ID_PATTERN.match(p.name) and (p / METADATA_FILE).exists())
