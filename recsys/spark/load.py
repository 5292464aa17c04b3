"""Interactions read by Spark, validated on the executors with the local loader's own rules.

CSV is read as text lines and Parquet as rows, each numbered in file order (the header is
line 1, as a text editor shows it). Every chunk of lines is handed, on an executor, to the
local reader and validator (:func:`recsys.data.loaders.read_table`,
:func:`recsys.data.validation.validate_interactions`), so a row is dropped for the same
reason, with the same message, file, line and field as ``recsys data validate`` says. What
one chunk cannot see is checked over the whole table in Spark: exact duplicates across
chunks. The chunks' reports are merged on the driver into one
:class:`~recsys.data.validation.FileReport` (counts by reason, the first problems in file
order, at least one per reason); strict mode raises the first problem of the file.

The catalogue (one row per item: small next to the events) and the MovieLens files
(fixed-size public data sets) are read by the driver with the local loader.
Limitation: a quoted CSV field that holds a line break is split by Spark's line reader.
"""

from __future__ import annotations

import json
import re
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from recsys.data import schema
from recsys.data.loaders import CSV_SUFFIXES, PARQUET_SUFFIXES, ColumnSpec, _warn_dropped_catalog, detect_format, load, read_table
from recsys.data.mapping import DataMapping
from recsys.data.validation import (
    DUPLICATE,
    MAX_ISSUES,
    WHOLE_ROW,
    FileReport,
    Issue,
    ValidationReport,
    validate_catalog,
    validate_interactions,
)
from recsys.errors import ConfigError, DataError

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

# Line (or row) number in the file: the order every "first appearance" follows.
ORDINAL = "ordinal"
REPORT = "report"
CHUNK_ROWS = 200_000
CLEAN_SCHEMA = (
    f"{ORDINAL} long, user_id string, item_id string, event_type string, value double, "
    f"timestamp long, session_id string, order_id string, {REPORT} string"
)
UNKNOWN_TYPES_NOTE = "event types not in the schema"


@dataclass
class SparkInput:
    """Validated interactions as a Spark DataFrame (``ordinal`` + the schema columns the
    data has), the catalogue on the driver, the report and where the data came from."""

    interactions: DataFrame
    columns: list[str]
    catalog: pd.DataFrame | None
    report: ValidationReport
    source: dict[str, Any] = field(default_factory=dict)


def _is_uri(path: str) -> bool:
    return "://" in path


def _table_kind(path: str) -> str:
    name = path.lower().rstrip("/")
    if name.endswith(PARQUET_SUFFIXES):
        return "parquet"
    if name.endswith(CSV_SUFFIXES):
        return "csv"
    raise DataError(f"{path}: cannot tell the format from the name; pass --format csv or parquet")


def resolve_files(path: str, fmt: str, catalog: str | None) -> tuple[str, str, str | None]:
    """(format, interactions path, catalogue path or None) as the local loader finds them;
    a URI names the interactions file itself."""
    if _is_uri(path):
        kind = fmt if fmt in ("csv", "parquet") else _table_kind(path)
        return kind, path, catalog
    local = Path(path)
    if not local.exists():
        raise DataError(f"{local}: no such file or folder")
    kind = detect_format(local) if fmt == "auto" else fmt
    if kind.startswith("movielens"):
        return kind, path, catalog
    if local.is_file():
        return kind, path, catalog
    suffixes = PARQUET_SUFFIXES if kind == "parquet" else CSV_SUFFIXES
    interactions = next((local / f"interactions{s}" for s in suffixes if (local / f"interactions{s}").is_file()), None)
    if interactions is None:
        raise DataError(f"{local}: no interactions{suffixes[0]} in this folder")
    found = next(
        (local / f"catalog{s}" for s in suffixes + CSV_SUFFIXES + PARQUET_SUFFIXES if (local / f"catalog{s}").is_file()),
        None,
    )
    return kind, str(interactions), catalog or (str(found) if found else None)


# ------------------------------------------------------------------ executors
def _chunk_table(path: Path, file: str, sep: str | None, mapping: DataMapping) -> Any:
    """The local reader on a chunk file; its messages name the real file."""
    try:
        raw = read_table(path, "interactions", sep=sep, spec=ColumnSpec.for_interactions(mapping))
    except DataError as error:
        raise DataError(str(error).replace(str(path), file)) from None
    raw.file = file
    return raw


def _validate_chunk(
    lines: np.ndarray,
    payload: pd.DataFrame,
    kind: str,
    file: str,
    header: str,
    sep: str | None,
    now: float,
    mapping: DataMapping,
    strict: bool,
) -> pd.DataFrame:
    """Validate one chunk on an executor: rows in CLEAN_SCHEMA plus one report row."""
    suffix = ".parquet" if kind == "parquet" else (".tsv" if sep == "\t" else ".csv")
    with tempfile.TemporaryDirectory(prefix="recsys-chunk-") as folder:
        path = Path(folder) / f"chunk{suffix}"
        if kind == "parquet":
            payload.to_parquet(path, index=False)
        else:
            with open(path, "w", encoding="utf-8", newline="") as handle:
                handle.write(header + "\n")
                handle.write("\n".join(payload["value"].tolist()) + "\n")
        raw = _chunk_table(path, file, sep, mapping)
    # Chunk positions -> the file's own line (row) numbers.
    offset = 2 if kind == "csv" else 1
    raw.lines = lines[raw.lines - offset]
    raw.malformed_lines = lines[raw.malformed_lines - offset]
    fatal = None
    if strict:
        try:
            validate_interactions(raw, strict=True, now=now, mapping=mapping)
        except DataError as error:
            fatal = str(error)
    clean, report = validate_interactions(raw, strict=False, now=now, mapping=mapping)
    kept = np.asarray(clean.attrs.get("source_rows", np.arange(len(clean))), dtype=np.int64)
    n = len(clean)
    columns: dict[str, pd.Series] = {ORDINAL: pd.Series(raw.lines[kept], dtype="int64")}
    for column in ("user_id", "item_id", "event_type", "session_id", "order_id"):
        columns[column] = _text(clean[column]) if column in clean else pd.Series([None] * n, dtype=object)
    columns["value"] = pd.Series(clean[schema.VALUE].to_numpy(dtype=np.float64) if schema.VALUE in clean else np.full(n, np.nan))
    columns["timestamp"] = (
        pd.Series(clean[schema.TIMESTAMP].to_numpy(dtype=np.int64), dtype="Int64")
        if schema.TIMESTAMP in clean
        else pd.Series([pd.NA] * n, dtype="Int64")
    )
    columns[REPORT] = pd.Series([None] * n, dtype=object)
    out = pd.DataFrame(columns)
    summary = report.to_dict()
    summary["present"] = [c for c in schema.INTERACTION_COLUMNS if c in clean.columns]
    summary["unit"] = raw.unit
    summary["fatal"] = fatal
    tail = {name: pd.Series([None], dtype=series.dtype) for name, series in columns.items() if name != ORDINAL}
    tail[ORDINAL] = pd.Series([-1], dtype="int64")
    tail[REPORT] = pd.Series([json.dumps(summary)], dtype=object)
    return pd.concat([out, pd.DataFrame(tail)], ignore_index=True)


def _text(values: pd.Series) -> pd.Series:
    """Strings as a plain object Series (None where missing), which Arrow converts as one array."""
    array = values.to_numpy(dtype=object, na_value=None)
    return pd.Series(array, dtype=object)


def _chunk_runner(
    kind: str, file: str, header: str, sep: str | None, now: float, columns: list[str], chunk_rows: int, mapping: DataMapping, strict: bool
) -> Any:
    def run(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        pending: list[pd.DataFrame] = []
        size = 0

        def flush() -> pd.DataFrame:
            chunk = pd.concat(pending, ignore_index=True)
            lines = chunk.pop("__line").to_numpy(dtype=np.int64)
            return _validate_chunk(lines, chunk[columns], kind, file, header, sep, now, mapping, strict)

        for batch in batches:
            pending.append(batch)
            size += len(batch)
            if size >= chunk_rows:
                yield flush()
                pending, size = [], 0
        if pending:
            yield flush()

    return run


# ------------------------------------------------------------------ driver
def _read_header(spark: SparkSession, path: str) -> str:
    first = spark.read.text(path).first()
    if first is None or not str(first[0]).strip():
        raise DataError(f"{path}, line 1: the file is empty")
    return str(first[0]).lstrip("\ufeff")


def _sniff(path: str, header: str) -> str:
    if path.lower().endswith((".tsv", ".tsv.gz")):
        return "\t"
    counts = {candidate: header.count(candidate) for candidate in (",", "\t", ";", "|")}
    best = max(counts, key=lambda c: counts[c])
    return best if counts[best] > counts[","] else ","


def numbered(frame: DataFrame, column: str, first: int) -> DataFrame:
    """``frame`` with ``column``: each row's position in the frame's order (partition by
    partition, as a file is read or a sort leaves it), numbered from ``first``.

    One count per partition on the cluster, the offsets on the driver, then a column
    expression: no row goes through Python.
    """
    from pyspark.sql import functions as F

    tagged = frame.withColumn("__part", F.spark_partition_id()).withColumn("__id", F.monotonically_increasing_id()).cache()
    counts = sorted((int(part), int(count)) for part, count in tagged.groupBy("__part").count().collect())
    starts = np.r_[first, first + np.cumsum([count for _, count in counts])][:-1]
    offsets = frame.sparkSession.createDataFrame(
        pd.DataFrame({"__part": [part for part, _ in counts], "__start": starts.astype(np.int64)}), "__part int, __start long"
    )
    # monotonically_increasing_id = partition << 33 | position within the partition
    position = F.col("__id") - F.shiftleft(F.col("__part").cast("long"), 33)
    joined = tagged.join(F.broadcast(offsets), "__part")
    return joined.withColumn(column, (F.col("__start") + position).cast("long")).drop("__part", "__id", "__start")


def read_interactions(
    spark: SparkSession,
    path: str,
    fmt: str = "auto",
    catalog: str | None = None,
    *,
    strict: bool = False,
    now: float | None = None,
    chunk_rows: int = CHUNK_ROWS,
    mapping: DataMapping | None = None,
) -> SparkInput:
    """Read and validate a data set with Spark (see the module docstring); ``chunk_rows``
    lines at most are validated together on an executor."""
    from pyspark.sql import functions as F

    now = time.time() if now is None else now
    mapping = mapping or DataMapping()
    kind, file, catalog_file = resolve_files(path, fmt, catalog)
    if kind.startswith("movielens"):
        loaded = load(path, format=kind, catalog=catalog, strict=strict, now=now, mapping=mapping)
        frame = loaded.interactions.copy()
        frame.insert(0, ORDINAL, np.arange(1, len(frame) + 1, dtype=np.int64))
        return SparkInput(
            interactions=spark.createDataFrame(frame),
            columns=[c for c in schema.INTERACTION_COLUMNS if c in frame],
            catalog=loaded.catalog,
            report=loaded.report,
            source=loaded.source.to_dict(),
        )

    if catalog_file is None and set(mapping.catalog_columns.single()) - {schema.ITEM_ID}:
        raise ConfigError(
            "data.catalog_columns: catalogue fields on the interaction lines are not read by the spark backend "
            "(give a catalogue file: data.catalog)"
        )
    if kind == "parquet":
        table = spark.read.parquet(file)
        header, sep = "", None
        columns = table.columns
        _check_header(table.limit(0).toPandas(), kind, file, "", None, mapping)
        rows_in_order = numbered(table, "__line", 1)
    else:
        header = _read_header(spark, file)
        sep = _sniff(file, header)
        _check_header(None, kind, file, header, sep, mapping)
        rows_in_order = numbered(spark.read.text(file), "__line", 1).where(F.col("__line") > 1)
        columns = ["value"]
    runner = _chunk_runner(kind, file, header, sep, now, columns, chunk_rows, mapping, strict)
    validated = rows_in_order.mapInPandas(runner, CLEAN_SCHEMA).cache()
    summaries = [json.loads(row[0]) for row in validated.where(F.col(ORDINAL) < 0).select(REPORT).collect()]
    rows = validated.where(F.col(ORDINAL) >= 0).drop(REPORT)
    present = [c for c in schema.INTERACTION_COLUMNS if any(c in s["present"] for s in summaries)]
    rows, n_duplicates, duplicates = _drop_cross_duplicates(rows, present)
    report = _merge_reports(file, summaries, n_duplicates, duplicates)
    unknown = (
        rows.where(~F.col(schema.EVENT_TYPE).isin(sorted(schema.KNOWN_EVENT_TYPES)))
        .groupBy(schema.EVENT_TYPE)
        .count()
        .orderBy(F.desc("count"), schema.EVENT_TYPE)
        .limit(8)
        .collect()
        if schema.EVENT_TYPE in present
        else []
    )
    if unknown:
        shown = ", ".join(f"'{row[0]}' ({row[1]})" for row in unknown)
        report.notes.append(f"{UNKNOWN_TYPES_NOTE} (weighted by default_weight): {shown}")
    if strict:
        _raise_first_fatal(file, summaries, report)
    validation = ValidationReport([report])
    if report.kept == 0:
        why = ", ".join(f"{reason}: {count}" for reason, count in report.dropped.items()) or "the file has no data rows"
        raise DataError(f"{file}: no valid interactions ({why})")
    catalog_frame = None
    if catalog_file is not None:
        catalog_frame, catalog_report = read_catalog(spark, catalog_file, strict=strict, mapping=mapping)
        validation.files.append(catalog_report)
    _warn_dropped_catalog(validation, mapping.max_dropped_share)
    source = {"format": kind, "path": path, "interactions": file, "catalog": catalog_file, "extra": [], "backend": "spark"}
    return SparkInput(rows.select(ORDINAL, *present), present, catalog_frame, validation, source)


def _check_header(frame: pd.DataFrame | None, kind: str, file: str, header: str, sep: str | None, mapping: DataMapping) -> None:
    """The local reader on the header alone: a missing or ambiguous column fails on the driver,
    with the local message, before any executor starts."""
    with tempfile.TemporaryDirectory(prefix="recsys-header-") as folder:
        suffix = ".parquet" if kind == "parquet" else (".tsv" if sep == "\t" else ".csv")
        path = Path(folder) / f"header{suffix}"
        if frame is not None:
            frame.to_parquet(path, index=False)
        else:
            with open(path, "w", encoding="utf-8", newline="") as handle:
                handle.write(header + "\n")
        _chunk_table(path, file, sep, mapping)


def _raise_first_fatal(file: str, summaries: list[dict[str, Any]], report: FileReport) -> None:
    """Strict mode: the first error of the file (chunks' first errors and cross-chunk duplicates)."""
    candidates: list[tuple[int, str]] = []
    for summary in summaries:
        if summary.get("fatal"):
            match = re.match(r", (?:line|row) (\d+)", summary["fatal"][len(file) :])
            candidates.append((int(match.group(1)) if match else 0, summary["fatal"]))
    candidates += [(issue.line, str(issue)) for issue in report.issues if issue.reason == DUPLICATE and issue.field == WHOLE_ROW]
    if candidates:
        raise DataError(min(candidates)[1])


def _drop_cross_duplicates(rows: DataFrame, present: list[str]) -> tuple[DataFrame, int, list[tuple[int, int]]]:
    """Exact duplicates the chunks could not see (a row equal to one in another chunk):
    (the rows without them, how many, [(line, line of the first copy)] of the first few)."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    window = Window.partitionBy(*present)
    marked = rows.withColumn("__first", F.min(ORDINAL).over(window))
    duplicate = F.col(ORDINAL) != F.col("__first")
    marked = marked.cache()
    found = [(int(r[0]), int(r[1])) for r in marked.where(duplicate).orderBy(ORDINAL).select(ORDINAL, "__first").limit(MAX_ISSUES).collect()]
    count = marked.where(duplicate).count() if found else 0
    kept = marked.where(~duplicate).drop("__first")
    return kept, count, found


_COUNTED = re.compile(r"^(\d+) (.*)$")
_RENAMED = re.compile(r"'(.*?)' -> '(.*?)' \((\d+)\)")


def _merge_notes(chunks: list[list[str]]) -> list[str]:
    """One chunk's notes each, merged: counts summed where a note starts with a count."""
    order: list[str] = []
    counted: Counter[str] = Counter()
    renamed: Counter[tuple[str, str]] = Counter()
    for notes in chunks:
        for note in notes:
            if note.startswith(UNKNOWN_TYPES_NOTE):
                continue
            if note.startswith("event types renamed: "):
                key = "event types renamed: "
                for old, new, n in _RENAMED.findall(note):
                    renamed[(old, new)] += int(n)
            elif match := _COUNTED.match(note):
                key = "\x00" + match.group(2)
                counted[key] += int(match.group(1))
            else:
                key = note
            if key not in order:
                order.append(key)
    out = []
    for key in order:
        if key == "event types renamed: ":
            pairs = sorted(renamed.items(), key=lambda kv: -kv[1])[:8]
            out.append(key + ", ".join(f"'{a}' -> '{b}' ({n})" for (a, b), n in pairs))
        elif key.startswith("\x00"):
            out.append(f"{counted[key]} {key[1:]}")
        else:
            out.append(key)
    return out


def _merge_reports(
    file: str, summaries: list[dict[str, Any]], n_duplicates: int, duplicates: list[tuple[int, int]]
) -> FileReport:
    """The chunks' reports as one, chosen as the local validator chooses its issues."""
    dropped: Counter[str] = Counter()
    issues: list[Issue] = []
    unit = "line"
    for summary in summaries:
        unit = summary.get("unit", unit)
        dropped.update(summary["dropped"])
        for issue in summary["issues"]:
            where = "line" if "line" in issue else "row"
            issues.append(Issue(issue["file"], int(issue[where]), issue["field"], issue["reason"], issue["message"], where))
    if n_duplicates:
        dropped[DUPLICATE] += n_duplicates
        for line, first in duplicates:
            issues.append(Issue(file, line, WHOLE_ROW, DUPLICATE, f"exact duplicate of {unit} {first}", unit))
    issues.sort(key=lambda issue: issue.line)
    chosen: list[Issue] = []
    reasons: set[str] = set()
    for issue in issues:
        if len(chosen) < MAX_ISSUES or issue.reason not in reasons:
            chosen.append(issue)
            reasons.add(issue.reason)
    first = summaries[0] if summaries else {"columns": {}, "ignored_columns": []}
    rows = sum(int(s["rows"]) for s in summaries)
    return FileReport(
        file=file,
        table="interactions",
        rows=rows,
        kept=rows - sum(dropped.values()),
        dropped={reason: count for reason, count in dropped.items() if count},
        issues=chosen,
        columns=dict(first["columns"]),
        ignored_columns=list(first["ignored_columns"]),
        notes=_merge_notes([s["notes"] for s in summaries]),
    )


def read_catalog(
    spark: SparkSession, path: str, *, strict: bool = False, mapping: DataMapping | None = None
) -> tuple[pd.DataFrame, FileReport]:
    """The catalogue, fetched by Spark (any path Spark reads) and validated on the driver."""
    rows = spark.read.format("binaryFile").load(path).select("content").collect()
    if not rows:
        raise DataError(f"{path}: no such catalogue file")
    suffix = next((s for s in CSV_SUFFIXES + PARQUET_SUFFIXES if path.lower().endswith(s)), ".csv")
    with tempfile.TemporaryDirectory(prefix="recsys-catalog-") as folder:
        local = Path(folder) / f"catalog{suffix}"
        with open(local, "wb") as handle:
            handle.write(bytes(rows[0][0]))
        try:
            raw = read_table(local, "catalog", spec=ColumnSpec.for_catalog(mapping or DataMapping()))
        except DataError as error:
            raise DataError(str(error).replace(str(local), path)) from None
    raw.file = path
    return validate_catalog(raw, strict=strict, mapping=mapping or DataMapping())


def spark_available_reason() -> str | None:
    """Why Spark cannot run here (for test skips), or None."""
    try:
        import pyspark  # noqa: F401
    except ModuleNotFoundError:
        return "pyspark is not installed (pip install 'recsys[spark]')"
    from recsys.spark.session import java_available

    if not java_available():
        return "no Java runtime (java on PATH or JAVA_HOME): the Spark tests need Java 17"
    return None


__all__ = ["ORDINAL", "SparkInput", "read_catalog", "read_interactions", "resolve_files", "spark_available_reason"]
