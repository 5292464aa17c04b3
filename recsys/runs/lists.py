"""Precomputed lists as Parquet: the schema, a writer that appends batches, a batch reader.

One list (``lists/<name>/`` in a run folder) is one or more Parquet files with the columns

    key        string         raw user id (user lists), raw item id (similar, together),
                              category label (popular; "" = overall), segment id
                              (segment: the popular list of one customer segment)
    item_ids   list<string>   raw item ids, best first, no padding
    scores     list<float32>  same length as item_ids
    confidence list<float32>  optional (together), same length
    lift       list<float32>  optional (together), same length
    because    list<string>   optional (user lists of models that explain): raw id of the
                              seen item that contributes most to each entry's score, null
                              or "" = none; same length (a null row = none for every entry)

Rows with no item are not written. Further columns are allowed and ignored by the reader.
Files are read in sorted name order; names starting with ``_`` or ``.`` (Spark's
``_SUCCESS``, checksum files) are skipped. The writer turns each computed batch into one
row group at once, so that neither side holds all lists of a model in memory.
See docs/run-format.md.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from recsys.errors import DataError

ListKind = Literal["user", "similar", "together", "popular", "segment"]
LIST_KINDS: tuple[ListKind, ...] = ("user", "similar", "together", "popular", "segment")

KEY = "key"
ITEM_IDS = "item_ids"
SCORES = "scores"
CONFIDENCE = "confidence"
LIFT = "lift"
BECAUSE = "because"
#: Optional list<float32> columns beside the scores.
FLOAT_COLUMNS = (CONFIDENCE, LIFT)
#: Optional columns beside the scores, in this order: the float ones, then ``because``
#: (list<string>, written from item indices, -1 = none).
EXTRA_COLUMNS = (*FLOAT_COLUMNS, BECAUSE)
LIST_COLUMNS = (KEY, ITEM_IDS, SCORES, *EXTRA_COLUMNS)
LISTS_FOLDER = "lists"
#: Rows per batch when reading.
READ_BATCH_ROWS = 8192
#: Bytes read from a file at a time.
READ_BUFFER_BYTES = 1 << 20


def string_array(values: pa.Array | pa.ChunkedArray | np.ndarray | Sequence[str]) -> pa.Array:
    """One contiguous Arrow string array (``pa.array`` of a large numpy unicode array comes
    back in chunks, which ``take`` would carry into every batch)."""
    array = values if isinstance(values, (pa.Array, pa.ChunkedArray)) else pa.array(np.asarray(values, dtype=str))
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    return array


def list_name(kind: str, model: str | None) -> str:
    """``user.als``, ``similar.itemknn``, ``together``, ``popular``."""
    return f"{kind}.{model}" if model else kind


def list_schema(extra: Sequence[str] = ()) -> pa.Schema:
    """The Arrow schema of a list file with the given optional columns."""
    unknown = [c for c in extra if c not in EXTRA_COLUMNS]
    if unknown:
        raise ValueError(f"unknown list columns {unknown} (allowed: {', '.join(EXTRA_COLUMNS)})")
    fields = [
        pa.field(KEY, pa.string()),
        pa.field(ITEM_IDS, pa.list_(pa.string())),
        pa.field(SCORES, pa.list_(pa.float32())),
    ]
    fields += [pa.field(column, pa.list_(pa.float32())) for column in FLOAT_COLUMNS if column in extra]
    if BECAUSE in extra:
        fields.append(pa.field(BECAUSE, pa.list_(pa.string())))
    return pa.schema(fields)


def rows_to_batch(
    keys: pa.Array | pa.ChunkedArray,
    item_index: np.ndarray,
    scores: np.ndarray,
    item_names: pa.Array | pa.ChunkedArray,
    extra: dict[str, np.ndarray] | None = None,
) -> pa.RecordBatch:
    """One record batch from index rows: ``item_index`` (rows, n) int, -1 = padding.

    ``keys`` (rows,) names each row, ``item_names`` maps item index -> raw id; ``scores`` and
    every ``extra`` array have the shape of ``item_index``: float values for confidence and
    lift, item indices (-1 = none, written as null) for ``because``. Padding is dropped, and
    rows left with no item are not in the batch. Vectorised: one Arrow ``take`` for all ids.
    """
    keys, item_names = string_array(keys), string_array(item_names)
    item_index = np.asarray(item_index)
    if item_index.ndim != 2:
        raise ValueError(f"item_index must be (rows, n), got shape {item_index.shape}")
    if len(keys) != item_index.shape[0]:
        raise ValueError(f"{len(keys)} keys for {item_index.shape[0]} rows")
    extra = extra or {}
    for name, values in {SCORES: scores, **extra}.items():
        if np.shape(values) != item_index.shape:
            raise ValueError(f"{name} has shape {np.shape(values)}, item_index {item_index.shape}")
    valid = item_index >= 0
    lengths = valid.sum(axis=1)
    keep = lengths > 0
    offsets = np.zeros(int(keep.sum()) + 1, dtype=np.int32)
    np.cumsum(lengths[keep], out=offsets[1:])
    flat = item_index[keep][valid[keep]]
    offsets_array = pa.array(offsets, type=pa.int32())
    columns: dict[str, pa.Array] = {
        KEY: pc.filter(keys, pa.array(keep)),
        ITEM_IDS: pa.ListArray.from_arrays(offsets_array, pc.take(item_names, pa.array(flat, type=pa.int64()))),
        SCORES: pa.ListArray.from_arrays(
            offsets_array, pa.array(np.asarray(scores)[keep][valid[keep]].astype(np.float32, copy=False))
        ),
    }
    for name in FLOAT_COLUMNS:
        if name in extra:
            values = np.asarray(extra[name])[keep][valid[keep]].astype(np.float32, copy=False)
            columns[name] = pa.ListArray.from_arrays(offsets_array, pa.array(values))
    if BECAUSE in extra:
        because = np.asarray(extra[BECAUSE])[keep][valid[keep]].astype(np.int64, copy=False)
        indices = pa.array(because, mask=because < 0, type=pa.int64())
        columns[BECAUSE] = pa.ListArray.from_arrays(offsets_array, pc.take(item_names, indices))
    return pa.RecordBatch.from_arrays(list(columns.values()), schema=list_schema(tuple(extra)))


class ListWriter:
    """Appends batches of one list to ``lists/<name>/part-00000.parquet`` of a run folder.

    Each :meth:`write` turns one computed batch into one Parquet row group and hands it to
    the file, so memory holds one batch at a time whatever the number of rows.
    ``key_names`` maps row index -> key (user ids, item ids or category labels) and
    ``item_names`` item index -> raw item id.
    """

    def __init__(
        self,
        run_folder: Path,
        kind: ListKind,
        model: str | None,
        n: int,
        *,
        key_names: pa.Array | pa.ChunkedArray | np.ndarray,
        item_names: pa.Array | pa.ChunkedArray | np.ndarray,
        extra: Sequence[str] = (),
    ) -> None:
        if kind not in LIST_KINDS:
            raise ValueError(f"unknown list kind {kind!r} (allowed: {', '.join(LIST_KINDS)})")
        self.kind, self.model, self.n = kind, model, int(n)
        self.relative = Path(LISTS_FOLDER) / list_name(kind, model)
        self.directory = Path(run_folder) / self.relative
        self.directory.mkdir(parents=True, exist_ok=True)
        self.path = self.directory / "part-00000.parquet"
        self.key_names = string_array(key_names)
        self.item_names = string_array(item_names)
        self.extra = tuple(c for c in EXTRA_COLUMNS if c in extra)
        self.schema = list_schema(self.extra)
        self.rows = 0
        self.row_groups = 0
        self._writer: pq.ParquetWriter | None = pq.ParquetWriter(self.path, self.schema, compression="snappy")

    def write(
        self,
        rows: np.ndarray,
        item_index: np.ndarray,
        scores: np.ndarray,
        extra: dict[str, np.ndarray] | None = None,
    ) -> int:
        """Write the lists of row indices ``rows`` (see :func:`rows_to_batch`); rows written."""
        keys = pc.take(self.key_names, pa.array(np.asarray(rows, dtype=np.int64)))
        missing = [c for c in self.extra if c not in (extra or {})]
        if missing:
            raise ValueError(f"{self.relative}: batch lacks the columns {missing}")
        return self.write_batch(rows_to_batch(keys, item_index, scores, self.item_names, extra))

    def write_batch(self, batch: pa.RecordBatch) -> int:
        """Append a batch already in the list schema (one row group); rows written."""
        if self._writer is None:
            raise ValueError(f"{self.relative}: writer is closed")
        if batch.num_rows == 0:
            return 0
        self._writer.write_batch(batch.select(self.schema.names), row_group_size=batch.num_rows)
        self.rows += batch.num_rows
        self.row_groups += 1
        return batch.num_rows

    def close(self) -> dict[str, Any]:
        """Finish the file; the metadata.json entry of this list."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        return {"kind": self.kind, "model": self.model, "path": self.relative.as_posix(), "rows": self.rows, "n": self.n}

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()


# ---------------------------------------------------------------------------- reading
def data_files(directory: Path) -> list[Path]:
    """The Parquet files of one list or table folder, in sorted name order."""
    if not directory.is_dir():
        raise DataError(f"{directory}: list folder not found")
    return sorted(
        p for p in directory.iterdir() if p.is_file() and p.suffix == ".parquet" and not p.name.startswith(("_", "."))
    )


def _check_columns(file: Path, schema: pa.Schema, wanted: pa.Schema, required: Sequence[str]) -> list[str]:
    missing = [c for c in required if c not in schema.names]
    if missing:
        raise DataError(f"{file}: column {missing[0]!r} missing (has: {', '.join(schema.names)})")
    present = [f.name for f in wanted if f.name in schema.names]
    for name in present:
        have, want = schema.field(name).type, wanted.field(name).type
        if pa.types.is_list(want) and not (pa.types.is_list(have) or pa.types.is_large_list(have)):
            raise DataError(f"{file}: column {name!r} is {have}, expected {want}")
    return present


def read_parquet_batches(
    files: Sequence[Path], wanted: pa.Schema, required: Sequence[str], batch_size: int = READ_BATCH_ROWS
) -> Iterator[pa.RecordBatch]:
    """Batches of the ``wanted`` columns of ``files`` (one after the other), cast to ``wanted``.

    Columns not in ``wanted`` are not read; a missing ``required`` column or a type that
    cannot be cast raises :class:`DataError` naming the file and the column.
    """
    for file in files:
        try:
            # Streamed: pre-buffering keeps the column chunks already read for the life of
            # the file (memory grew with the rows read, about 20 MB per 100k lists).
            parquet = pq.ParquetFile(file, pre_buffer=False, buffer_size=READ_BUFFER_BYTES)
        except (OSError, pa.ArrowInvalid) as error:
            raise DataError(f"{file}: not a readable Parquet file ({error})") from None
        schema = parquet.schema_arrow
        present = _check_columns(file, schema, wanted, required)
        target = pa.schema([wanted.field(name) for name in present])
        with parquet:
            for batch in parquet.iter_batches(batch_size=batch_size, columns=present):
                try:
                    yield batch.select(present).cast(target)
                except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as error:
                    raise DataError(f"{file}: cannot read columns {present} as {target.types} ({error})") from None


class RunList:
    """One list of a run (kind, model, configured length ``n``), read in record batches.

    Either stored (Parquet files in a folder, as the local or the Spark backend wrote
    them) or held in memory as an Arrow table (tests, benchmarks). Batches come out in
    the list schema: key, item_ids, scores and the optional columns present, with empty
    rows dropped and every list column checked to be as long as item_ids.
    """

    def __init__(
        self,
        kind: ListKind,
        model: str | None,
        n: int,
        *,
        directory: Path | None = None,
        table: pa.Table | None = None,
        rows: int | None = None,
        reason: str | None = None,
    ) -> None:
        if kind not in LIST_KINDS:
            raise DataError(f"unknown list kind {kind!r} (allowed: {', '.join(LIST_KINDS)})")
        if (directory is None) == (table is None):
            raise ValueError("a RunList reads a directory or a table, exactly one of them")
        self.kind, self.model, self.n = kind, model, int(n)
        self.directory = directory
        self.table = table
        self.expected_rows = rows if rows is not None else (table.num_rows if table is not None else None)
        #: The reason type of entries without a because item, as the run recorded it (None: not recorded).
        self.reason = reason

    @property
    def name(self) -> str:
        return list_name(self.kind, self.model)

    @property
    def source(self) -> str:
        return str(self.directory) if self.directory is not None else f"in-memory list {self.name}"

    @classmethod
    def from_indices(
        cls,
        kind: ListKind,
        model: str | None,
        keys: np.ndarray | Sequence[str],
        item_index: np.ndarray,
        scores: np.ndarray,
        item_names: np.ndarray | Sequence[str],
        extra: dict[str, np.ndarray] | None = None,
    ) -> RunList:
        """An in-memory list from index rows (``-1`` padding), as :func:`rows_to_batch`."""
        batch = rows_to_batch(string_array(keys), item_index, scores, string_array(item_names), extra)
        return cls(kind, model, int(np.shape(item_index)[1]), table=pa.Table.from_batches([batch]))

    def columns(self) -> list[str]:
        """The list columns this list has (key, item_ids, scores and optional ones)."""
        if self.table is not None:
            return [c for c in LIST_COLUMNS if c in self.table.column_names]
        assert self.directory is not None
        files = data_files(self.directory)
        if not files:
            return [KEY, ITEM_IDS, SCORES]
        names = pq.read_schema(files[0]).names
        return [c for c in LIST_COLUMNS if c in names]

    def batches(self, batch_size: int = READ_BATCH_ROWS) -> Iterator[pa.RecordBatch]:
        """Record batches of at most ``batch_size`` rows; see the class docstring."""
        wanted = list_schema(EXTRA_COLUMNS)
        if self.table is not None:
            present = [c for c in LIST_COLUMNS if c in self.table.column_names]
            raw: Iterator[pa.RecordBatch] = iter(
                self.table.select(present).cast(pa.schema([wanted.field(c) for c in present])).to_batches(batch_size)
            )
        else:
            assert self.directory is not None
            raw = read_parquet_batches(data_files(self.directory), wanted, (KEY, ITEM_IDS, SCORES), batch_size)
        for batch in raw:
            yield self._clean(batch)

    def _clean(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        lengths = pc.fill_null(pc.list_value_length(batch.column(ITEM_IDS)), 0)
        for name in batch.schema.names:
            if name in (KEY, ITEM_IDS):
                continue
            other = pc.list_value_length(batch.column(name))
            # A null because row is "no because item" for the whole row.
            other = pc.fill_null(other, lengths) if name == BECAUSE else pc.fill_null(other, 0)
            if not pc.all(pc.equal(lengths, other)).as_py():
                row = int(pc.index(pc.equal(lengths, other), False).as_py())
                raise DataError(
                    f"{self.source}: key {batch.column(KEY)[row].as_py()!r}: {name} has {other[row].as_py()} "
                    f"values, item_ids {lengths[row].as_py()}"
                )
        if batch.column(KEY).null_count:
            raise DataError(f"{self.source}: a row has no key")
        keep = pc.greater(lengths, 0)
        if not pc.all(keep).as_py():
            batch = batch.filter(keep)
        if pc.list_flatten(batch.column(ITEM_IDS)).null_count:
            raise DataError(f"{self.source}: a list holds a null item id")
        return batch

    def read_all(self) -> pa.Table:
        """Every row at once (tests, small lists only)."""
        batches = list(self.batches())
        if batches:
            return pa.Table.from_batches(batches)
        return list_schema([c for c in self.columns() if c in EXTRA_COLUMNS]).empty_table()
