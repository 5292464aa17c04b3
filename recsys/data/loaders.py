"""Read interaction logs and item catalogues from CSV, Parquet and MovieLens, validated.

One entry point, :func:`load`, takes a file or a folder and returns a :class:`LoadedData`:
clean tables in the schema of :mod:`recsys.data.schema`, the validation report, and where
the data came from. A folder holds ``interactions.csv|parquet`` and optionally
``catalog.csv|parquet`` (what ``recsys data generate`` writes); MovieLens folders are
recognised by their files.

CSV files are read whole into memory and scanned once with numpy to find every record's
line number and number of fields (quotes respected), so that malformed rows are caught
(pandas would silently pad short rows) and every problem is reported with the line a text
editor shows (header = line 1).
"""

from __future__ import annotations

import csv
import gzip
import io
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from recsys.data import schema
from recsys.data.mapping import DataMapping
from recsys.data.validation import (
    CATALOG_ALIASES,
    UNPARSEABLE,
    ID_COLUMNS,
    INTERACTION_ALIASES,
    FileReport,
    RawTable,
    ValidationReport,
    normalised_name,
    require_column,
    resolve_columns,
    strings_from_codes,
    validate_catalog,
    validate_interactions,
    validate_tags,
)
from recsys.errors import ConfigError, DataError

log = logging.getLogger(__name__)

FORMATS: Final = ("auto", "csv", "parquet", "movielens-100k", "movielens-latest")
CSV_SUFFIXES: Final = (".csv", ".tsv", ".txt", ".csv.gz", ".tsv.gz", ".txt.gz")
PARQUET_SUFFIXES: Final = (".parquet", ".pq")
ML100K_GENRES: Final = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary", "Drama",
    "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller", "War", "Western",
)  # fmt: skip
NO_GENRES: Final = frozenset({"unknown", "(no genres listed)"})
TAG_ALIASES: Final = {
    "movieid": schema.ITEM_ID,
    "itemid": schema.ITEM_ID,
    "tag": "tag",
    "userid": schema.USER_ID,
    "timestamp": schema.TIMESTAMP,
}


@dataclass(frozen=True)
class ColumnSpec:
    """Columns named by the configuration for one file (see :class:`~recsys.data.mapping.DataMapping`).

    Attributes:
        explicit: schema name -> the file's column.
        keys: schema name -> the configuration key that named it (for messages).
        combined: schema name -> the file's columns whose values joined by ``|`` make it.
    """

    explicit: dict[str, str] = field(default_factory=dict)
    keys: dict[str, str] = field(default_factory=dict)
    combined: dict[str, list[str]] = field(default_factory=dict)

    @classmethod
    def for_interactions(cls, mapping: DataMapping, with_catalog_fields: bool = False) -> ColumnSpec:
        """``[data.columns]``, plus ``[data.catalog_columns]`` when the lines carry the catalogue."""
        explicit = mapping.columns.single()
        keys = {name: f"data.columns.{name}" for name in explicit}
        if with_catalog_fields:
            for name, column in mapping.catalog_columns.single().items():
                if name == schema.ITEM_ID:
                    continue
                if column in explicit.values():
                    used = next(k for k, v in explicit.items() if v == column)
                    raise ConfigError(f"data.catalog_columns.{name}: column {column!r} is already data.columns.{used}")
                explicit[name] = column
                keys[name] = f"data.catalog_columns.{name}"
        return cls(explicit, keys, mapping.columns.combined())

    @classmethod
    def for_catalog(cls, mapping: DataMapping) -> ColumnSpec:
        explicit = mapping.catalog_columns.single()
        return cls(explicit, {name: f"data.catalog_columns.{name}" for name in explicit})


@dataclass
class DataSource:
    """Where a data set came from: the resolved format and the files read."""

    format: str
    path: str
    interactions: str
    catalog: str | None = None
    extra: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": self.format,
            "path": self.path,
            "interactions": self.interactions,
            "catalog": self.catalog,
            "extra": list(self.extra),
        }


@dataclass
class LoadedData:
    """Validated data.

    Attributes:
        interactions: one row per event; user_id, item_id (str) and the optional columns
            event_type, value, timestamp (int64 unix seconds), session_id, order_id.
        catalog: one row per item (unique item_id) or None.
        report: what validation found and dropped, per file.
        source: the format and files.
    """

    interactions: pd.DataFrame
    catalog: pd.DataFrame | None
    report: ValidationReport
    source: DataSource


def load(
    path: str | Path,
    format: str = "auto",
    catalog: str | Path | None = None,
    strict: bool = False,
    *,
    now: float | None = None,
    mapping: DataMapping | None = None,
) -> LoadedData:
    """Read and validate a data set.

    ``path`` is a file or a folder; ``format`` one of :data:`FORMATS`; ``catalog`` an item
    catalogue file that replaces the one found beside the interactions. ``strict`` raises
    :class:`DataError` on the first bad row instead of dropping bad rows. ``now`` (unix
    seconds) is the reference for "timestamp in the future" (default: the clock).
    ``mapping`` (the ``[data]`` mapping keys) names the shop's columns, event names, date
    pattern and cancellation marks for CSV and Parquet files. When it maps catalogue
    fields and no catalogue file is given or found, the interactions' lines make the
    catalogue (:func:`catalog_from_lines`).
    """
    mapping = mapping or DataMapping()
    if format not in FORMATS:
        raise ConfigError(f"unknown data format '{format}' (allowed: {', '.join(FORMATS)})")
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such file or folder")
    fmt = detect_format(path) if format == "auto" else format
    if fmt == "movielens-100k":
        data = _load_movielens_100k(path, strict=strict, now=now, with_catalog=catalog is None)
    elif fmt == "movielens-latest":
        data = _load_movielens_latest(path, strict=strict, now=now, with_catalog=catalog is None)
    else:
        interactions_file, catalog_file = _table_files(path, fmt)
        from_lines = catalog is None and catalog_file is None and bool(set(mapping.catalog_columns.single()) - {schema.ITEM_ID})
        raw = read_table(interactions_file, "interactions", spec=ColumnSpec.for_interactions(mapping, from_lines))
        line_fields = [c for c in schema.CATALOG_OPTIONAL if c in raw.frame]
        lines_raw = None
        if from_lines:
            lines_raw = RawTable(
                frame=raw.frame[[schema.ITEM_ID, *line_fields]],
                file=raw.file,
                lines=raw.lines,
                unit=raw.unit,
                fields=raw.fields,
                header=raw.header,
            )
            raw.frame = raw.frame.drop(columns=line_fields)
        interactions, report = validate_interactions(raw, strict=strict, now=now, mapping=mapping)
        data = LoadedData(interactions, None, ValidationReport([report]), DataSource(fmt, str(path), str(interactions_file)))
        if lines_raw is not None:
            data.catalog, lines_report = catalog_from_lines(lines_raw, strict=strict, mapping=mapping)
            data.report.files.append(lines_report)
            data.source.catalog = f"{interactions_file} (catalogue fields on its lines)"
        if catalog is None and catalog_file is not None:
            data.catalog = _load_catalog(catalog_file, data, strict, mapping)
    if catalog is not None:
        catalog_path = Path(catalog)
        if not catalog_path.is_file():
            raise DataError(f"{catalog_path}: no such catalogue file")
        data.catalog = _load_catalog(catalog_path, data, strict, mapping)
    _require_rows(data)
    _warn_dropped_catalog(data.report, mapping.max_dropped_share)
    return data


def load_frames(
    interactions: pd.DataFrame,
    catalog: pd.DataFrame | None = None,
    *,
    strict: bool = False,
    now: float | None = None,
    name: str = "<interactions>",
    mapping: DataMapping | None = None,
) -> LoadedData:
    """Validate tables already in memory (rows are numbered from 1 in messages)."""
    mapping = mapping or DataMapping()
    raw = _raw_from_frame(interactions, name, "interactions", spec=ColumnSpec.for_interactions(mapping))
    clean, report = validate_interactions(raw, strict=strict, now=now, mapping=mapping)
    data = LoadedData(clean, None, ValidationReport([report]), DataSource("frame", name, name))
    if catalog is not None:
        raw_catalog = _raw_from_frame(catalog, "<catalog>", "catalog", spec=ColumnSpec.for_catalog(mapping))
        clean_catalog, catalog_report = validate_catalog(raw_catalog, strict=strict, mapping=mapping)
        data.catalog = clean_catalog
        data.report.files.append(catalog_report)
        data.source.catalog = "<catalog>"
    _require_rows(data)
    _warn_dropped_catalog(data.report, mapping.max_dropped_share)
    return data


def detect_format(path: Path) -> str:
    """The format of a file or folder, from its name or the files it holds."""
    if path.is_dir():
        if (path / "u.data").is_file():
            return "movielens-100k"
        if (path / "ratings.csv").is_file() and (path / "movies.csv").is_file():
            return "movielens-latest"
        if _first_existing(path, "interactions", PARQUET_SUFFIXES):
            return "parquet"
        if _first_existing(path, "interactions", CSV_SUFFIXES):
            return "csv"
        raise DataError(
            f"{path}: folder holds no interactions.csv or interactions.parquet, "
            "nor MovieLens files (u.data, or ratings.csv + movies.csv)"
        )
    name = path.name.lower()
    if name == "u.data":
        return "movielens-100k"
    if name == "ratings.csv" and (path.parent / "movies.csv").is_file():
        return "movielens-latest"
    if name.endswith(PARQUET_SUFFIXES):
        return "parquet"
    if name.endswith(CSV_SUFFIXES):
        return "csv"
    raise DataError(f"{path}: cannot tell the format from the name; pass --format csv or parquet")


def _first_existing(folder: Path, stem: str, suffixes: tuple[str, ...]) -> Path | None:
    return next((folder / f"{stem}{suffix}" for suffix in suffixes if (folder / f"{stem}{suffix}").is_file()), None)


def _table_files(path: Path, fmt: str) -> tuple[Path, Path | None]:
    """(interactions file, catalogue file or None) for a csv/parquet file or folder."""
    if path.is_file():
        return path, None
    suffixes = PARQUET_SUFFIXES if fmt == "parquet" else CSV_SUFFIXES
    interactions = _first_existing(path, "interactions", suffixes)
    if interactions is None:
        raise DataError(f"{path}: no interactions{suffixes[0]} in this folder")
    catalog = _first_existing(path, "catalog", suffixes) or _first_existing(path, "catalog", CSV_SUFFIXES + PARQUET_SUFFIXES)
    return interactions, catalog


def _load_catalog(path: Path, data: LoadedData, strict: bool, mapping: DataMapping) -> pd.DataFrame:
    raw = read_table(path, "catalog", spec=ColumnSpec.for_catalog(mapping))
    clean, report = validate_catalog(raw, strict=strict, mapping=mapping)
    data.report.files.append(report)
    data.source.catalog = str(path)
    return clean


def catalog_from_lines(raw: RawTable, *, strict: bool, mapping: DataMapping) -> tuple[pd.DataFrame, FileReport]:
    """A catalogue from catalogue fields found on the lines of an interactions file.

    The fields are validated per line (a bad price drops that line's fields, counted by
    reason); then per item: title, description and category are the **most frequent**
    non-empty value over the item's lines (a tie goes to the later line), price and
    in_stock the value on the item's **last** line in the file (the current one, for logs
    written in time order). Returns (catalogue, its report).
    """
    clean, report = validate_catalog(raw, strict=strict, mapping=mapping, per_line=True)
    position = np.arange(len(clean))
    codes, items = pd.factorize(clean[schema.ITEM_ID])
    out = pd.DataFrame({schema.ITEM_ID: pd.Series(np.asarray(items, dtype=object), dtype="str")})
    for column in (schema.TITLE, schema.DESCRIPTION, schema.CATEGORY):
        if column not in clean:
            continue
        text = clean[column].astype("str").fillna("")
        given = text.ne("").to_numpy()
        votes = pd.DataFrame({"item": codes[given], "value": text[given].to_numpy(), "position": position[given]})
        counted = votes.groupby(["item", "value"], sort=False).agg(count=("position", "size"), last=("position", "max"))
        winners = counted.reset_index().sort_values(["item", "count", "last"]).drop_duplicates("item", keep="last")
        values = np.full(len(items), "", dtype=object)
        values[winners["item"].to_numpy()] = winners["value"].to_numpy()
        out[column] = pd.Series(values, dtype="str")
    for column in (schema.PRICE, schema.IN_STOCK):
        if column not in clean:
            continue
        known = clean[column].notna().to_numpy()
        latest = pd.DataFrame({"item": codes[known], "value": clean[column][known].to_numpy()}).drop_duplicates("item", keep="last")
        if column == schema.PRICE:
            values = np.full(len(items), np.nan)
            values[latest["item"].to_numpy()] = latest["value"].to_numpy(dtype=np.float64)
            out[column] = values
        else:
            flags = pd.array([pd.NA] * len(items), dtype="boolean")
            flags[latest["item"].to_numpy()] = latest["value"].to_numpy(dtype=bool)
            out[column] = flags
    fields = [c for c in schema.CATALOG_OPTIONAL if c in clean]
    report.notes.append(
        f"catalogue of {len(out)} items made from the {len(clean)} lines' {', '.join(fields)}: title, description "
        "and category = the most frequent value per item, price and in_stock = the item's last line"
    )
    return out, report


def _warn_dropped_catalog(report: ValidationReport, max_share: float) -> None:
    """A loud warning (log and report) when more than ``max_share`` of a catalogue's rows were dropped."""
    for file_report in report.files:
        if file_report.table != "catalog" or not file_report.rows:
            continue
        n_dropped = sum(file_report.dropped.values())
        share = n_dropped / file_report.rows
        if share > max_share:
            reasons = ", ".join(f"{reason}: {count}" for reason, count in sorted(file_report.dropped.items(), key=lambda kv: -kv[1]))
            first = f"; first: {file_report.issues[0]}" if file_report.issues else ""
            warning = (
                f"{file_report.file}: {n_dropped} of {file_report.rows} catalogue rows dropped ({share:.0%}, above "
                f"data.max_dropped_share = {max_share:.0%}) ({reasons}){first}; their items have no title, category "
                "or price"
            )
            report.warnings.append(warning)
            log.warning("%s", warning)


def _require_rows(data: LoadedData) -> None:
    if len(data.interactions) == 0:
        report = data.report.files[0]
        why = ", ".join(f"{reason}: {count}" for reason, count in report.dropped.items()) or "the file has no data rows"
        raise DataError(f"{report.file}: no valid interactions ({why})")


# ----------------------------------------------------------------- file reading
def read_table(
    path: Path,
    table: str,
    *,
    sep: str | None = None,
    names: list[str] | None = None,
    encoding: str = "utf-8",
    quoting: bool = True,
    aliases: dict[str, str] | None = None,
    required: tuple[str, ...] | None = None,
    spec: ColumnSpec | None = None,
) -> RawTable:
    """Read a CSV (or TSV, gzipped too) or Parquet file into a :class:`RawTable`.

    ``table`` is "interactions" or "catalog" (which column aliases apply). ``names`` reads a
    file without header (columns named in order, lines numbered from 1 for data).
    ``spec`` names columns from the configuration (they win over aliases).
    """
    aliases = aliases or (INTERACTION_ALIASES if table == "interactions" else CATALOG_ALIASES)
    required = required or (schema.INTERACTION_REQUIRED if table == "interactions" else schema.CATALOG_REQUIRED)
    spec = spec or ColumnSpec()
    if path.name.lower().endswith(PARQUET_SUFFIXES):
        return _read_parquet(path, table, aliases, required, spec)
    return _read_csv(path, table, sep, names, encoding, quoting, aliases, required, spec)


def _read_parquet(path: Path, table: str, aliases: dict[str, str], required: tuple[str, ...], spec: ColumnSpec) -> RawTable:
    try:
        frame = pd.read_parquet(path)
    except (pa.ArrowException, OSError, ValueError) as error:
        raise DataError(f"{path}: cannot read as Parquet: {error}") from None
    return _raw_from_frame(frame, str(path), table, aliases, required, spec)


def _resolve(header: list[str], table: str, file: str, aliases: dict[str, str], required: tuple[str, ...], spec: ColumnSpec) -> tuple[dict[str, str], list[str], list[str]]:
    """resolve_columns with the configured columns (combined ones checked here)."""
    for target, parts in spec.combined.items():
        for part in parts:
            require_column(file, header, part, f"data.columns.{target}")
    rename, ignored, notes = resolve_columns(
        header, table, file, aliases=aliases, required=required, explicit=spec.explicit,
        explicit_keys=spec.keys, provided=tuple(spec.combined),
    )  # fmt: skip
    used = {part for parts in spec.combined.values() for part in parts}
    return rename, [name for name in ignored if name not in used], notes


def _combine(frame: pd.DataFrame, renamed: pd.DataFrame, spec: ColumnSpec, notes: list[str]) -> pd.DataFrame:
    """Add each combined column (values of several columns joined by ``|``; empty when a part is)."""
    for target, parts in spec.combined.items():
        texts = [frame[part].astype("str").str.strip() for part in parts]
        joined = texts[0]
        blank = joined.isna() | joined.eq("")
        for text in texts[1:]:
            joined = joined + "|" + text
            blank |= text.isna() | text.eq("")
        renamed[target] = joined.where(~blank).reset_index(drop=True)
        notes.append(f"{target} = the combination of {', '.join(repr(p) for p in parts)} (joined by '|')")
    return renamed


def _raw_from_frame(
    frame: pd.DataFrame,
    file: str,
    table: str,
    aliases: dict[str, str] | None = None,
    required: tuple[str, ...] | None = None,
    spec: ColumnSpec | None = None,
) -> RawTable:
    aliases = aliases or (INTERACTION_ALIASES if table == "interactions" else CATALOG_ALIASES)
    required = required or (schema.INTERACTION_REQUIRED if table == "interactions" else schema.CATALOG_REQUIRED)
    spec = spec or ColumnSpec()
    header = [str(c) for c in frame.columns]
    rename, ignored, notes = _resolve(header, table, file, aliases, required, spec)
    frame = frame.set_axis(header, axis=1)
    renamed = frame[list(rename)].rename(columns=rename).reset_index(drop=True)
    renamed = _combine(frame, renamed, spec, notes)
    raw = RawTable.from_frame(
        renamed,
        file,
        fields={target: source for source, target in rename.items()},
        header=header,
        columns={target: source for source, target in rename.items() if source != target},
        ignored_columns=ignored,
        notes=notes,
    )
    return _rating_column(raw, rename)


def _rating_column(raw: RawTable, rename: dict[str, str]) -> RawTable:
    """A column called ``rating`` read as value: without an event type, every row is a rating."""
    source = next((s for s, t in rename.items() if t == schema.VALUE), None)
    if source is not None and source.lower() == "rating" and schema.EVENT_TYPE not in raw.frame:
        raw.frame[schema.EVENT_TYPE] = strings_from_codes(np.array([schema.RATING]), np.zeros(len(raw.frame), dtype=np.int64))
        raw.notes.append("no event type column: every row is a 'rating' (the value column is called 'rating')")
    return raw


def _read_csv(
    path: Path,
    table: str,
    sep: str | None,
    names: list[str] | None,
    encoding: str,
    quoting: bool,
    aliases: dict[str, str],
    required: tuple[str, ...],
    spec: ColumnSpec,
) -> RawTable:
    file = str(path)
    with open(path, "rb") as handle:
        data = handle.read()
    if path.name.lower().endswith(".gz"):
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as error:
            raise DataError(f"{file}: cannot decompress: {error}") from None
    if not data.strip():
        raise DataError(f"{file}, line 1: the file is empty")
    notes: list[str] = []
    if sep is None:
        sep = _sniff_separator(data, path)
        if sep != ",":
            notes.append(f"separator {sep!r} detected")

    scanned = _scan_records(data, sep, quoting) or _scan_records_slow(data, sep, quoting, encoding)
    lines, counts, blank = scanned
    has_header = names is None
    if has_header:
        header = _header(data, sep, encoding, quoting, file)
        expected = len(header)
        body = slice(1, None)
    else:
        header = list(names or [])
        expected = len(header)
        body = slice(0, None)
    rename, ignored, map_notes = _resolve(header, table, file, aliases, required, spec)
    notes += map_notes
    dtype = {source: "str" for source, target in rename.items() if target in ID_COLUMNS}
    dtype.update({part: "str" for parts in spec.combined.values() for part in parts})
    frame = _parse_csv(data, file, sep, header, has_header, dtype, encoding, quoting)

    rec_lines, rec_counts, rec_blank = lines[body], counts[body], blank[body]
    in_frame = rec_counts <= expected  # pandas pads short rows and skips long ones
    if in_frame.sum() != len(frame):
        # Quotes inside unquoted fields (24" monitor) fool the vectorised scan: recount
        # with the csv module, which treats such quotes as pandas does.
        lines, counts, blank = _scan_records_slow(data, sep, quoting, encoding)
        rec_lines, rec_counts, rec_blank = lines[body], counts[body], blank[body]
        in_frame = rec_counts <= expected
        if in_frame.sum() != len(frame):
            raise DataError(f"{file}: cannot match rows to lines (irregular quoting?); check the CSV with a spreadsheet tool")
    good = ~rec_blank & (rec_counts == expected)
    malformed = ~rec_blank & (rec_counts != expected)
    keep_rows = good[in_frame]
    frame = frame.loc[keep_rows].reset_index(drop=True)
    frame = _combine(frame, frame[list(rename)].rename(columns=rename), spec, notes)

    display = {target: source for source, target in rename.items()}
    if not has_header:
        display = {target: f"{source} (column {header.index(source) + 1})" for source, target in rename.items()}
    display.update({target: "+".join(parts) for target, parts in spec.combined.items()})
    raw = RawTable(
        frame=frame,
        file=file,
        lines=rec_lines[good].astype(np.int64),
        fields=display,
        malformed_lines=rec_lines[malformed].astype(np.int64),
        malformed_counts=rec_counts[malformed].astype(np.int64),
        header=header if has_header else [display.get(rename.get(h, ""), h) for h in header],
        columns={target: source for source, target in rename.items() if source != target and has_header},
        ignored_columns=ignored if has_header else [],
        notes=notes,
    )
    return _rating_column(raw, rename) if has_header else raw


def _sniff_separator(data: bytes, path: Path) -> str:
    name = path.name.lower()
    if name.endswith((".tsv", ".tsv.gz")):
        return "\t"
    first = data[: data.find(b"\n")] if b"\n" in data else data
    counts = {candidate: first.count(candidate.encode()) for candidate in (",", "\t", ";", "|")}
    best = max(counts, key=lambda c: counts[c])
    return best if counts[best] > counts[","] else ","


def _header(data: bytes, sep: str, encoding: str, quoting: bool, file: str) -> list[str]:
    """The first record's fields as written (pandas would rename repeated names)."""
    end = data.find(b"\n")
    head = data if end < 0 else data[: end + 1]
    try:
        text = head.decode(encoding)
    except UnicodeDecodeError:
        raise DataError(f"{file}, line 1: cannot read the header: not valid {encoding} text") from None
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=sep, quoting=csv.QUOTE_MINIMAL if quoting else csv.QUOTE_NONE)
    names = next(reader, [])
    return [name.strip().lstrip("\ufeff") for name in names]


def _parse_csv(
    data: bytes,
    file: str,
    sep: str,
    header: list[str],
    has_header: bool,
    dtype: dict[str, str],
    encoding: str,
    quoting: bool,
) -> pd.DataFrame:
    try:
        frame = pd.read_csv(
            io.BytesIO(data),
            sep=sep,
            header=0 if has_header else None,
            names=header,
            index_col=False,
            dtype=dtype,
            skip_blank_lines=False,
            on_bad_lines="skip",
            low_memory=False,
            encoding=encoding,
            quoting=csv.QUOTE_MINIMAL if quoting else csv.QUOTE_NONE,
        )
    except UnicodeDecodeError:
        try:
            data.decode(encoding)
        except UnicodeDecodeError as error:
            line = data.count(b"\n", 0, error.start) + 1
            raise DataError(f"{file}, line {line}: not valid {encoding} text ({error.reason} at byte {error.start})") from None
        raise
    except pd.errors.ParserError as error:
        raise DataError(f"{file}: cannot parse as CSV: {error}") from None
    return frame


def _scan_records(data: bytes, sep: str, quoting: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """Every record's first line number, number of fields and blankness, each shape (n_records,).

    Newlines and separators inside double quotes do not count (quote parity). Parity is
    only right when quotes open at the start of a field and close at its end (``""``
    inside a quoted field is fine); otherwise this returns None and the caller uses
    :func:`_scan_records_slow`.
    """
    buf = np.frombuffer(data, dtype=np.uint8)
    newlines = np.flatnonzero(buf == 10)
    seps = np.flatnonzero(buf == ord(sep))
    ends = newlines
    if quoting:
        quotes = np.flatnonzero(buf == 34)
        if len(quotes):
            if not _regular_quotes(buf, quotes, ord(sep)):
                return None
            ends = newlines[np.searchsorted(quotes, newlines) % 2 == 0]
            seps = seps[np.searchsorted(quotes, seps) % 2 == 0]
    if len(ends) == 0 or ends[-1] != len(buf) - 1:
        ends = np.append(ends, len(buf))  # a last record without a final newline
    starts = np.concatenate([[0], ends[:-1] + 1])
    lines = np.searchsorted(newlines, starts) + 1
    counts = np.bincount(np.searchsorted(ends, seps), minlength=len(ends))[: len(ends)] + 1
    length = ends - starts
    first = buf[np.minimum(starts, len(buf) - 1)]
    blank = (length == 0) | ((length == 1) & (first == 13))
    return lines.astype(np.int64), counts.astype(np.int64), blank


def _regular_quotes(buf: np.ndarray, quotes: np.ndarray, sep: int) -> bool:
    """True when every quote opens at a field start or closes at a field end (or is doubled)."""
    if len(quotes) % 2:
        return False
    opening = np.arange(len(quotes)) % 2 == 0
    before = np.where(quotes > 0, buf[np.maximum(quotes - 1, 0)], 10)
    after = np.where(quotes < len(buf) - 1, buf[np.minimum(quotes + 1, len(buf) - 1)], 10)
    opens_ok = np.isin(before, (sep, 10, 34))
    closes_ok = np.isin(after, (sep, 10, 13, 34))
    return bool(np.all(np.where(opening, opens_ok, closes_ok)))


def _scan_records_slow(data: bytes, sep: str, quoting: bool, encoding: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Same as :func:`_scan_records` with the csv module (a loop over records)."""
    text = data.decode(encoding, errors="replace")
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=sep, quoting=csv.QUOTE_MINIMAL if quoting else csv.QUOTE_NONE)
    lines: list[int] = []
    counts: list[int] = []
    previous = 0
    for record in reader:
        lines.append(previous + 1)
        counts.append(len(record))
        previous = reader.line_num
    counts_array = np.asarray(counts, dtype=np.int64)
    blank = counts_array == 0
    return np.asarray(lines, dtype=np.int64), np.where(blank, 1, counts_array), blank


# -------------------------------------------------------------------- MovieLens
def _sessions_by_day(interactions: pd.DataFrame) -> pd.DataFrame:
    """MovieLens has no orders or sessions: each user's ratings of one UTC day form a session,
    so the association-rule model has baskets ("rated on the same day")."""
    if schema.TIMESTAMP in interactions and schema.SESSION_ID not in interactions:
        days = (interactions[schema.TIMESTAMP].to_numpy(dtype=np.int64) // 86400).astype(str)
        interactions[schema.SESSION_ID] = pd.array(days, dtype="string")
    return interactions


def _load_movielens_100k(path: Path, *, strict: bool, now: float | None, with_catalog: bool) -> LoadedData:
    """MovieLens 100K: ``u.data`` (tab-separated ratings), ``u.item`` (``|``, latin-1, genre flags)."""
    folder = path if path.is_dir() else path.parent
    ratings_file = path if path.is_file() else folder / "u.data"
    if not ratings_file.is_file():
        raise DataError(f"{ratings_file}: no such file (MovieLens 100K ratings)")
    raw = read_table(
        ratings_file,
        "interactions",
        sep="\t",
        names=["user id", "item id", "rating", "timestamp"],
        quoting=False,
        aliases={"userid": schema.USER_ID, "itemid": schema.ITEM_ID, "rating": schema.VALUE, "timestamp": schema.TIMESTAMP},
    )
    raw.frame[schema.EVENT_TYPE] = strings_from_codes(np.array([schema.RATING]), np.zeros(len(raw.frame), dtype=np.int64))
    interactions, report = validate_interactions(raw, strict=strict, now=now)
    interactions = _sessions_by_day(interactions)
    data = LoadedData(interactions, None, ValidationReport([report]), DataSource("movielens-100k", str(path), str(ratings_file)))

    item_file = folder / "u.item"
    if with_catalog and item_file.is_file():
        genres = _ml100k_genres(folder)
        names = ["movie id", "movie title", "release date", "video release date", "IMDb URL", *genres]
        aliases = {"movieid": schema.ITEM_ID, "movietitle": schema.TITLE, **{normalised_name(g): f"genre:{g}" for g in genres}}
        raw_items = read_table(item_file, "catalog", sep="|", names=names, encoding="latin-1", quoting=False,
                               aliases=aliases, required=(schema.ITEM_ID,))
        flags = np.zeros((len(raw_items.frame), len(genres)), dtype=bool)
        checks = []
        for k, genre in enumerate(genres):
            column = f"genre:{genre}"
            numbers = pd.to_numeric(raw_items.frame[column], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
            checks.append((UNPARSEABLE, column, ~np.isin(numbers, (0.0, 1.0)), "genre flag {value} is not 0 or 1"))
            flags[:, k] = numbers == 1.0
        category, description = _genre_text(flags, genres)
        raw_items.frame[schema.CATEGORY] = category
        raw_items.frame[schema.DESCRIPTION] = description
        catalog, item_report = validate_catalog(raw_items, strict=strict, extra_checks=checks)
        data.catalog = catalog
        data.report.files.append(item_report)
        data.source.catalog = str(item_file)
    return data


def _ml100k_genres(folder: Path) -> list[str]:
    """Genre names in flag order from ``u.genre`` (``name|index`` lines), else the known list."""
    genre_file = folder / "u.genre"
    if not genre_file.is_file():
        return list(ML100K_GENRES)
    with open(genre_file, encoding="latin-1") as handle:
        pairs = [line.rstrip("\n").split("|") for line in handle if line.strip()]
    try:
        ordered = sorted((int(index), name) for name, index in pairs)
    except ValueError:
        raise DataError(f"{genre_file}: expected 'name|index' lines") from None
    return [name for _, name in ordered]


def _genre_text(flags: np.ndarray, genres: list[str]) -> tuple[pd.Series, pd.Series]:
    """(category = first genre, description = all genres joined by ', ') per row of ``flags``."""
    real = np.array([g not in NO_GENRES for g in genres])
    usable = flags & real[None, :]
    first = np.where(usable.any(axis=1), usable.argmax(axis=1), -1)
    category = strings_from_codes(np.array(genres), first)
    parts = np.where(usable, np.array([g + ", " for g in genres])[None, :], "")
    joined = parts[:, 0]
    for k in range(1, len(genres)):
        joined = np.strings.add(joined, parts[:, k])
    description = pd.Series(np.strings.rstrip(joined, ", "), dtype="str")
    return category.fillna(""), description


def _load_movielens_latest(path: Path, *, strict: bool, now: float | None, with_catalog: bool) -> LoadedData:
    """MovieLens latest: ``ratings.csv``, ``movies.csv`` (genres with ``|``), ``tags.csv``."""
    folder = path if path.is_dir() else path.parent
    ratings_file = path if path.is_file() else folder / "ratings.csv"
    if not ratings_file.is_file():
        raise DataError(f"{ratings_file}: no such file (MovieLens ratings)")
    raw = read_table(ratings_file, "interactions", sep=",")
    if schema.EVENT_TYPE not in raw.frame:
        raw.frame[schema.EVENT_TYPE] = strings_from_codes(np.array([schema.RATING]), np.zeros(len(raw.frame), dtype=np.int64))
    interactions, report = validate_interactions(raw, strict=strict, now=now)
    interactions = _sessions_by_day(interactions)
    source = DataSource("movielens-latest", str(path), str(ratings_file))
    data = LoadedData(interactions, None, ValidationReport([report]), source)
    movies_file = folder / "movies.csv"
    if not with_catalog or not movies_file.is_file():
        return data

    raw_movies = read_table(movies_file, "catalog", sep=",")
    genres = raw_movies.frame[schema.CATEGORY].astype("str").fillna("") if schema.CATEGORY in raw_movies.frame else None
    if genres is not None:
        first = genres.str.split("|").str[0].fillna("")
        raw_movies.frame[schema.CATEGORY] = first.where(~first.isin(NO_GENRES), "")
        listed = genres.str.replace("|", ", ", regex=False)
        raw_movies.frame[schema.DESCRIPTION] = listed.where(~genres.isin(NO_GENRES), "")
    catalog, movies_report = validate_catalog(raw_movies, strict=strict)
    data.report.files.append(movies_report)
    data.source.catalog = str(movies_file)

    tags_file = folder / "tags.csv"
    if tags_file.is_file():
        raw_tags = read_table(tags_file, "tags", sep=",", aliases=TAG_ALIASES, required=(schema.ITEM_ID, "tag"))
        tags, tags_report = validate_tags(raw_tags, strict=strict)
        data.report.files.append(tags_report)
        data.source.extra.append(str(tags_file))
        catalog = _add_tags(catalog, tags, tags_report)
    data.catalog = catalog
    return data


def _add_tags(catalog: pd.DataFrame, tags: pd.DataFrame, report: FileReport) -> pd.DataFrame:
    """Append each item's distinct tags to its description: ``"...; tags: a, b"``."""
    if tags.empty:
        return catalog
    frame = pd.DataFrame({schema.ITEM_ID: tags[schema.ITEM_ID], "tag": tags["tag"].str.strip().str.lower()})
    frame = frame.drop_duplicates()
    table = pa.Table.from_pandas(frame, preserve_index=False)
    grouped = table.group_by(schema.ITEM_ID, use_threads=False).aggregate([("tag", "list")])
    tag_lists = grouped.column("tag_list")
    joined = pc.binary_join(tag_lists, pa.scalar(", ", tag_lists.type.value_type))
    per_item = pd.Series(joined.to_pandas(types_mapper=pd.ArrowDtype).astype("str").to_numpy(),
                         index=grouped.column(schema.ITEM_ID).to_pandas().astype("str"))
    unknown = int((~per_item.index.isin(catalog[schema.ITEM_ID])).sum())
    if unknown:
        report.notes.append(f"{unknown} tagged items are not in the catalogue (their tags are ignored)")
    text = catalog[schema.ITEM_ID].map(per_item)
    has = text.notna().to_numpy()
    description = catalog.get(schema.DESCRIPTION, pd.Series("", index=catalog.index, dtype="str")).astype("str").fillna("")
    with_tags = description.where(description.eq(""), description + "; ") + "tags: " + text.fillna("")
    catalog = catalog.copy()
    catalog[schema.DESCRIPTION] = description.where(~has, with_tags)
    report.notes.append(f"tags added to the descriptions of {int(has.sum())} items")
    return catalog

# ------------------------------------------------------------------------ stats
def describe(data: LoadedData) -> dict[str, Any]:
    """Summary figures of a loaded data set, JSON-ready.

    ``users``/``items`` count distinct ids in the interactions; ``pairs`` distinct
    (user, item) pairs; ``density`` = pairs / (users x items). Catalogue figures
    (``catalog_items``, ``cold_items`` = catalogue items nobody interacted with) are None
    without a catalogue.
    """
    frame = data.interactions
    user_codes, users = pd.factorize(frame[schema.USER_ID])
    item_codes, items = pd.factorize(frame[schema.ITEM_ID])
    n_users, n_items = len(users), len(items)
    pairs = len(pd.unique(user_codes.astype(np.int64) * max(n_items, 1) + item_codes))
    per_user = np.bincount(user_codes, minlength=n_users)
    per_item = np.bincount(item_codes, minlength=n_items)
    out: dict[str, Any] = {
        "path": data.source.path,
        "format": data.source.format,
        "users": n_users,
        "items": n_items,
        "interactions": len(frame),
        "pairs": pairs,
        "density": pairs / (n_users * n_items) if n_users and n_items else 0.0,
        "interactions_per_user": _spread(per_user),
        "interactions_per_item": _spread(per_item),
        "event_types": None,
        "value": None,
        "time_range": None,
        "sessions": None,
        "orders": None,
        "mean_order_items": None,
    }
    if schema.EVENT_TYPE in frame:
        counts = frame[schema.EVENT_TYPE].value_counts(dropna=False)
        out["event_types"] = {str(k): int(v) for k, v in counts.items()}
    if schema.VALUE in frame and frame[schema.VALUE].notna().any():
        values = frame[schema.VALUE].to_numpy(dtype=np.float64, na_value=np.nan)
        out["value"] = {"min": float(np.nanmin(values)), "mean": float(np.nanmean(values)), "max": float(np.nanmax(values))}
    if schema.TIMESTAMP in frame and len(frame):
        ts = frame[schema.TIMESTAMP].to_numpy(dtype=np.int64)
        first, last = int(ts.min()), int(ts.max())
        out["time_range"] = {
            "first": pd.Timestamp(first, unit="s", tz="UTC").isoformat(),
            "last": pd.Timestamp(last, unit="s", tz="UTC").isoformat(),
            "days": round((last - first) / 86400.0, 2),
        }
    if schema.SESSION_ID in frame:
        out["sessions"] = int(frame[schema.SESSION_ID].nunique())
    if schema.ORDER_ID in frame:
        orders = frame[schema.ORDER_ID].dropna()
        out["orders"] = int(orders.nunique())
        if len(orders):
            out["mean_order_items"] = round(float(len(orders) / orders.nunique()), 3)
    catalog = data.catalog
    out["catalog_items"] = None if catalog is None else len(catalog)
    if catalog is not None:
        known = pd.Index(catalog[schema.ITEM_ID])
        out["cold_items"] = int((~known.isin(items)).sum())
        out["items_not_in_catalog"] = int((~pd.Index(items).isin(known)).sum())
        if schema.CATEGORY in catalog:
            out["categories"] = int(catalog[schema.CATEGORY].replace("", np.nan).nunique())
        if schema.IN_STOCK in catalog:
            out["out_of_stock"] = int(catalog[schema.IN_STOCK].eq(False).sum())
    out["validation"] = data.report.to_dict()
    return out


def _spread(counts: np.ndarray) -> dict[str, float]:
    if not len(counts):
        return {"min": 0, "median": 0.0, "mean": 0.0, "max": 0}
    return {
        "min": int(counts.min()),
        "median": float(np.median(counts)),
        "mean": round(float(counts.mean()), 3),
        "max": int(counts.max()),
    }
