"""Check raw interaction and catalogue tables, row by row but vectorised, with a report.

A reader (:mod:`recsys.data.loaders`) hands over a :class:`RawTable`: the file's columns
already renamed to the schema names, raw values (strings or numbers), and the line number
of every row. Validation parses the values, finds every problem with pandas masks, and
then either

* **lenient**: drops the bad rows, counts them by reason and keeps the first few problems
  (file, line, field) in a :class:`FileReport`; or
* **strict**: raises :class:`~recsys.errors.DataError` naming the file, line and field of
  the first problem in the file.

Each dropped row is counted once, under the first check it fails (checks run in the order
of :data:`REASONS`).
"""

from __future__ import annotations

import re
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np
import pandas as pd
import pyarrow as pa

from recsys.data import schema
from recsys.errors import DataError

MALFORMED_ROW: Final = "malformed_row"
MISSING_ID: Final = "missing_id"
MISSING_VALUE: Final = "missing_value"
UNPARSEABLE: Final = "unparseable"
TIMESTAMP_OUT_OF_RANGE: Final = "timestamp_out_of_range"
NEGATIVE_VALUE: Final = "negative_value"
CANCELLED: Final = "cancelled"
DUPLICATE: Final = "duplicate"
DUPLICATE_ID: Final = "duplicate_id"

REASONS: Final[dict[str, str]] = {
    MALFORMED_ROW: "wrong number of fields",
    MISSING_ID: "user or item id is empty",
    MISSING_VALUE: "a required value is empty",
    UNPARSEABLE: "value cannot be parsed",
    TIMESTAMP_OUT_OF_RANGE: "timestamp before 1995 or in the future",
    NEGATIVE_VALUE: "negative quantity or price",
    CANCELLED: "cancelled or returned",
    DUPLICATE: "exact duplicate of an earlier row",
    DUPLICATE_ID: "catalogue item listed again later (the last row is kept)",
}

MIN_TIMESTAMP: Final = 788_918_400  # 1995-01-01T00:00:00Z
FUTURE_TOLERANCE_SECONDS: Final = 86_400
CANCEL_EVENT_TYPES: Final = frozenset({"cancel", "cancelled", "canceled", "return", "returned", "refund", "refunded"})
# Spellings of the known event types seen in shop logs -> schema name (always reported).
EVENT_TYPE_ALIASES: Final[dict[str, str]] = {
    "addtocart": schema.ADD_TO_CART,
    "add_to_basket": schema.ADD_TO_CART,
    "cart": schema.ADD_TO_CART,
    "transaction": schema.PURCHASE,
    "buy": schema.PURCHASE,
    "order": schema.PURCHASE,
    "pageview": schema.VIEW,
    "page_view": schema.VIEW,
    "detail": schema.VIEW,
}
TRUE_WORDS: Final = frozenset({"true", "t", "yes", "y", "1", "1.0", "in stock", "instock", "available"})
FALSE_WORDS: Final = frozenset({"false", "f", "no", "n", "0", "0.0", "out of stock", "outofstock", "unavailable"})
MAX_ISSUES: Final = 20
ID_COLUMNS: Final = frozenset({schema.USER_ID, schema.ITEM_ID, schema.SESSION_ID, schema.ORDER_ID})
WHOLE_ROW: Final = "(whole row)"


@dataclass(frozen=True)
class Issue:
    """One problem: where it is (file, line or row, field) and what is wrong."""

    file: str
    line: int
    field: str
    reason: str
    message: str
    unit: str = "line"  # "line" for text files (header = line 1), "row" for tables without lines

    def __str__(self) -> str:
        where = self.field if self.field == WHOLE_ROW else f"field '{self.field}'"
        return f"{self.file}, {self.unit} {self.line}, {where}: {self.message}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "file": self.file,
            self.unit: self.line,
            "field": self.field,
            "reason": self.reason,
            "message": self.message,
        }


@dataclass
class FileReport:
    """What validation did to one file.

    ``rows`` counts the data rows read (malformed ones included, header and blank lines
    not); ``kept`` the rows that passed; ``dropped`` the others by reason. ``columns``
    maps schema names to the file's column names where they differ.
    """

    file: str
    table: str
    rows: int = 0
    kept: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    issues: list[Issue] = field(default_factory=list)
    columns: dict[str, str] = field(default_factory=dict)
    ignored_columns: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.dropped

    def to_dict(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "table": self.table,
            "rows": self.rows,
            "kept": self.kept,
            "dropped": dict(self.dropped),
            "issues": [issue.to_dict() for issue in self.issues],
            "columns": dict(self.columns),
            "ignored_columns": list(self.ignored_columns),
            "notes": list(self.notes),
        }


@dataclass
class ValidationReport:
    """Reports of every file read for one data set."""

    files: list[FileReport] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when no row of any file was dropped."""
        return all(report.ok for report in self.files)

    @property
    def dropped(self) -> dict[str, int]:
        """Dropped rows by reason, summed over the files."""
        total: Counter[str] = Counter()
        for report in self.files:
            total.update(report.dropped)
        return dict(total)

    @property
    def issues(self) -> list[Issue]:
        return [issue for report in self.files for issue in report.issues]

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "rows": sum(r.rows for r in self.files),
            "dropped": self.dropped,
            "files": [report.to_dict() for report in self.files],
        }

    def lines(self) -> list[str]:
        """The report as text lines for a terminal."""
        out: list[str] = []
        for report in self.files:
            n_dropped = sum(report.dropped.values())
            status = "ok" if report.ok else f"{n_dropped} of {report.rows} rows dropped"
            out.append(f"{report.file} ({report.table}): {report.rows} rows, {status}")
            for target, source in report.columns.items():
                out.append(f"  column '{source}' read as '{target}'")
            if report.ignored_columns:
                out.append(f"  ignored columns: {', '.join(report.ignored_columns)}")
            out.extend(f"  note: {note}" for note in report.notes)
            if report.dropped:
                width = max(len(reason) for reason in report.dropped)
                for reason, count in sorted(report.dropped.items(), key=lambda kv: -kv[1]):
                    out.append(f"  {reason:<{width}}  {count:>10}  {REASONS.get(reason, '')}")
                out.append("  first problems:")
                out.extend(f"    {issue}" for issue in report.issues)
        return out


@dataclass
class RawTable:
    """A table as read from a file, before validation.

    Attributes:
        frame: the rows that have the right number of fields; columns renamed to schema
            names, values as read (strings or numbers).
        file: the path shown in messages.
        lines: (len(frame),) int64, the line (or row) number of each row.
        unit: "line" for text files (header = line 1), "row" otherwise.
        fields: schema name -> the field's name as the file shows it (for messages).
        malformed_lines: (m,) int64 lines whose number of fields is wrong.
        malformed_counts: (m,) int64 number of fields found on each of those lines.
        header: the file's column names in order (to name the missing or extra field).
        columns, ignored_columns, notes: what the reader mapped, left out or converted.
    """

    frame: pd.DataFrame
    file: str
    lines: np.ndarray
    unit: str = "line"
    fields: dict[str, str] = field(default_factory=dict)
    malformed_lines: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    malformed_counts: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    header: list[str] = field(default_factory=list)
    columns: dict[str, str] = field(default_factory=dict)
    ignored_columns: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @classmethod
    def from_frame(cls, frame: pd.DataFrame, file: str, **kwargs: Any) -> RawTable:
        """A table without line numbers (Parquet, a DataFrame): rows are numbered from 1."""
        return cls(frame=frame, file=file, lines=np.arange(1, len(frame) + 1, dtype=np.int64), unit="row", **kwargs)

    def field_name(self, column: str) -> str:
        return self.fields.get(column, column)


@dataclass
class _Check:
    reason: str
    column: str  # schema column, or WHOLE_ROW
    mask: np.ndarray  # (n_rows,) bool, True = problem
    message: str  # format string with {value}


# --------------------------------------------------------------- value parsing
def is_blank(values: pd.Series) -> np.ndarray:
    """(n,) bool: missing or only whitespace."""
    if pd.api.types.is_numeric_dtype(values.dtype) or pd.api.types.is_bool_dtype(values.dtype):
        return values.isna().to_numpy()
    text = values.astype("str")
    return (text.isna() | text.str.strip().eq("")).to_numpy(dtype=bool, na_value=True)


def as_id(values: pd.Series) -> pd.Series:
    """Raw ids as stripped strings (``42`` and ``"42"`` are the same id; ``42.0`` too)."""
    if pd.api.types.is_float_dtype(values.dtype):
        numbers = values.to_numpy(dtype=np.float64, na_value=np.nan)
        finite = numbers[~np.isnan(numbers)]
        if len(finite) and np.all(finite == np.round(finite)):
            values = values.astype("Int64")
    if pd.api.types.is_bool_dtype(values.dtype):
        values = values.astype("boolean")
    text = values.astype("str").str.strip()
    return text.where(text.ne(""))


def parse_numbers(values: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """(numbers float64 with NaN where missing or bad, unparseable mask), both shape (n,)."""
    blank = is_blank(values)
    if pd.api.types.is_bool_dtype(values.dtype):
        values = values.astype("Int64")
    if pd.api.types.is_numeric_dtype(values.dtype):
        numbers = values.to_numpy(dtype=np.float64, na_value=np.nan)
    else:
        numbers = pd.to_numeric(values.astype("str").str.strip(), errors="coerce").to_numpy(
            dtype=np.float64, na_value=np.nan
        )
    bad = ~blank & ~np.isfinite(numbers)
    return np.where(np.isfinite(numbers), numbers, np.nan), bad


def parse_timestamps(values: pd.Series) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Unix seconds from unix s / ms / us / ns numbers or ISO-8601 strings.

    Returns (seconds float64 (n,) with NaN where missing or bad, unparseable mask (n,),
    notes saying what was converted). Numbers are read as milliseconds from 1e11 up
    (1e11 s is the year 5138, 1e11 ms is 1973), microseconds from 1e14, nanoseconds from
    1e17. ISO strings without a zone are taken as UTC.
    """
    notes: list[str] = []
    if pd.api.types.is_datetime64_any_dtype(values.dtype):
        stamps = values if getattr(values.dtype, "tz", None) is not None else values.dt.tz_localize("UTC")
        seconds = ((stamps - pd.Timestamp(0, tz="UTC")) / pd.Timedelta(seconds=1)).to_numpy(dtype=np.float64, na_value=np.nan)
        notes.append("date-time column converted to unix seconds (no zone = UTC)")
        return np.floor(seconds), np.zeros(len(values), dtype=bool), notes
    blank = is_blank(values)
    if pd.api.types.is_numeric_dtype(values.dtype) and not pd.api.types.is_bool_dtype(values.dtype):
        numbers = values.to_numpy(dtype=np.float64, na_value=np.nan)
        integers = values.to_numpy(dtype=np.int64, na_value=0) if pd.api.types.is_integer_dtype(values.dtype) else None
    else:
        text = values.astype("str").str.strip()
        numbers = pd.to_numeric(text, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan).copy()
        integers = None
        need_date = ~blank & np.isnan(numbers)
        if need_date.any():
            dates = pd.to_datetime(text[need_date], format="ISO8601", utc=True, errors="coerce")
            seconds = ((dates - pd.Timestamp(0, tz="UTC")) / pd.Timedelta(seconds=1)).to_numpy(
                dtype=np.float64, na_value=np.nan
            )
            numbers[need_date] = np.floor(seconds)
            n_iso = int((~np.isnan(seconds)).sum())
            if n_iso:
                notes.append(f"{n_iso} ISO-8601 timestamps converted to unix seconds (no zone = UTC)")
    bad = ~blank & ~np.isfinite(numbers)
    out = np.where(np.isfinite(numbers), numbers, np.nan)
    magnitude = np.abs(out)
    for low, high, divisor, name in (
        (1e11, 1e14, 1_000, "milliseconds"),
        (1e14, 1e17, 1_000_000, "microseconds"),
        (1e17, np.inf, 1_000_000_000, "nanoseconds"),
    ):
        scaled = (magnitude >= low) & (magnitude < high)
        count = int(scaled.sum())
        if count:
            if integers is not None:
                out[scaled] = (integers[scaled] // divisor).astype(np.float64)
            else:
                out[scaled] = np.floor(out[scaled] / divisor)
            notes.append(f"{count} timestamps read as unix {name} (by magnitude) and converted to seconds")
    return np.floor(out), bad, notes


def parse_bools(values: pd.Series) -> tuple[pd.Series, np.ndarray]:
    """(nullable boolean Series, unparseable mask (n,)): true/false, yes/no, 1/0, y/n, t/f."""
    if pd.api.types.is_bool_dtype(values.dtype):
        return values.astype("boolean"), np.zeros(len(values), dtype=bool)
    blank = is_blank(values)
    text = values.astype("str").str.strip().str.lower()
    is_true = text.isin(TRUE_WORDS).to_numpy(dtype=bool, na_value=False)
    is_false = text.isin(FALSE_WORDS).to_numpy(dtype=bool, na_value=False)
    result = pd.Series(pd.array(np.where(is_true, True, False), dtype="boolean"), index=values.index)
    result[~(is_true | is_false)] = pd.NA
    return result, ~blank & ~is_true & ~is_false


def normalise_event_types(values: pd.Series) -> tuple[pd.Series, list[str]]:
    """Lower-case, ``-``/space -> ``_``, known aliases mapped; notes list every change.

    The few distinct spellings are normalised in Python, the rows only by their codes.
    """
    text = values.astype("str").str.strip()
    codes, uniques = pd.factorize(text)
    out = text
    if len(uniques):
        normal = [re.sub(r"[\s\-]+", "_", str(u).lower()) for u in uniques]
        mapped = np.array([EVENT_TYPE_ALIASES.get(u, u) for u in normal], dtype=str)
        names, inverse = np.unique(mapped, return_inverse=True)
        out = strings_from_codes(names, np.where(codes >= 0, inverse[codes], -1), index=values.index)
    notes = []
    changed = text.ne(out).to_numpy(dtype=bool, na_value=False)
    if changed.any():
        pairs = pd.DataFrame({"from": text[changed], "to": out[changed]}).value_counts()
        shown = ", ".join(f"'{a}' -> '{b}' ({n})" for (a, b), n in list(pairs.items())[:8])
        notes.append(f"event types renamed: {shown}")
    return out, notes


def strings_from_codes(names: np.ndarray, codes: np.ndarray, index: pd.Index | None = None) -> pd.Series:
    """``names[codes]`` as a str Series (missing where a code is -1), without one Python
    string object per row: the codes become an Arrow dictionary array."""
    codes = np.asarray(codes)
    indices = pa.array(codes.astype(np.int32), mask=codes < 0)
    dictionary = pa.DictionaryArray.from_arrays(indices, pa.array(np.asarray(names).astype(str)))
    return pd.Series(dictionary.cast(pa.string()), dtype=pd.StringDtype("pyarrow", na_value=np.nan), index=index)


# ------------------------------------------------------------------ validation
def validate_interactions(
    raw: RawTable,
    *,
    strict: bool = False,
    now: float | None = None,
    extra_checks: Sequence[tuple[str, str, np.ndarray, str]] = (),
    max_issues: int = MAX_ISSUES,
) -> tuple[pd.DataFrame, FileReport]:
    """Validate and normalise an interactions table.

    Returns (clean table, report). The clean table has user_id, item_id (str), and when
    present event_type (str, lower case), value (float64, NaN where not given),
    timestamp (int64 unix seconds), session_id and order_id (str, missing allowed).
    ``extra_checks`` are (reason, column, mask, message) run before the built-in ones.
    """
    frame = raw.frame
    n = len(frame)
    notes: list[str] = []
    checks = [_Check(reason, column, np.asarray(mask, dtype=bool), message) for reason, column, mask, message in extra_checks]
    out = pd.DataFrame(index=frame.index)

    for column in schema.INTERACTION_REQUIRED:
        out[column] = as_id(frame[column])
        checks.append(_Check(MISSING_ID, column, out[column].isna().to_numpy(), "empty id"))

    if schema.EVENT_TYPE in frame:
        types, type_notes = normalise_event_types(frame[schema.EVENT_TYPE])
        notes += type_notes
        out[schema.EVENT_TYPE] = types
        checks.append(_Check(MISSING_VALUE, schema.EVENT_TYPE, types.isna().to_numpy(), "empty event type"))
        is_rating = types.eq(schema.RATING).to_numpy(dtype=bool, na_value=False)
        is_cancel = types.isin(CANCEL_EVENT_TYPES).to_numpy(dtype=bool, na_value=False)
    else:
        is_rating = np.zeros(n, dtype=bool)
        is_cancel = np.zeros(n, dtype=bool)

    value = None
    if schema.VALUE in frame:
        value, bad = parse_numbers(frame[schema.VALUE])
        out[schema.VALUE] = value
        checks.append(_Check(UNPARSEABLE, schema.VALUE, bad, "cannot parse {value} as a number"))
        checks.append(_Check(MISSING_VALUE, schema.VALUE, is_rating & np.isnan(value) & ~bad, "rating without a value"))

    if schema.TIMESTAMP in frame:
        seconds, bad, ts_notes = parse_timestamps(frame[schema.TIMESTAMP])
        notes += ts_notes
        missing = np.isnan(seconds) & ~bad
        checks.append(_Check(MISSING_VALUE, schema.TIMESTAMP, missing, "empty timestamp"))
        checks.append(
            _Check(UNPARSEABLE, schema.TIMESTAMP, bad, "cannot parse {value} as a timestamp (unix seconds or ms, or ISO-8601)")
        )
        limit = (time.time() if now is None else now) + FUTURE_TOLERANCE_SECONDS
        with np.errstate(invalid="ignore"):
            out_of_range = (seconds < MIN_TIMESTAMP) | (seconds > limit)
        checks.append(
            _Check(TIMESTAMP_OUT_OF_RANGE, schema.TIMESTAMP, out_of_range, "timestamp {value} is before 1995 or in the future")
        )
        out[schema.TIMESTAMP] = seconds

    if value is not None:
        with np.errstate(invalid="ignore"):
            negative = (value < 0) & ~is_rating
        checks.append(_Check(NEGATIVE_VALUE, schema.VALUE, negative, "negative quantity {value}"))
    if schema.EVENT_TYPE in frame:
        checks.append(_Check(CANCELLED, schema.EVENT_TYPE, is_cancel, "event type {value} (cancelled or returned)"))

    for column in (schema.SESSION_ID, schema.ORDER_ID):
        if column in frame:
            out[column] = as_id(frame[column])

    clean, report = _apply(raw, out, checks, strict=strict, table="interactions", max_issues=max_issues)
    if schema.TIMESTAMP in clean:
        clean[schema.TIMESTAMP] = clean[schema.TIMESTAMP].to_numpy(dtype=np.float64).astype(np.int64)
    report.notes = raw.notes + notes
    if schema.EVENT_TYPE in clean:
        unknown = clean[schema.EVENT_TYPE].value_counts()
        unknown = unknown[~unknown.index.isin(list(schema.KNOWN_EVENT_TYPES))]
        if len(unknown):
            shown = ", ".join(f"'{name}' ({count})" for name, count in unknown.head(8).items())
            report.notes.append(f"event types not in the schema (weighted by default_weight): {shown}")
    return clean, report


def validate_catalog(
    raw: RawTable,
    *,
    strict: bool = False,
    extra_checks: Sequence[tuple[str, str, np.ndarray, str]] = (),
    max_issues: int = MAX_ISSUES,
) -> tuple[pd.DataFrame, FileReport]:
    """Validate and normalise an item catalogue.

    Returns (clean table, report): item_id (str, unique), title, description, category
    (str, "" when not given), price (float64, NaN when not given), in_stock (nullable
    boolean) for the columns the file has.
    """
    frame = raw.frame
    checks = [_Check(reason, column, np.asarray(mask, dtype=bool), message) for reason, column, mask, message in extra_checks]
    out = pd.DataFrame(index=frame.index)
    out[schema.ITEM_ID] = as_id(frame[schema.ITEM_ID])
    checks.append(_Check(MISSING_ID, schema.ITEM_ID, out[schema.ITEM_ID].isna().to_numpy(), "empty item id"))
    for column in (schema.TITLE, schema.DESCRIPTION, schema.CATEGORY):
        if column in frame:
            out[column] = frame[column].astype("str").str.strip().fillna("")
    if schema.PRICE in frame:
        price, bad = parse_numbers(frame[schema.PRICE])
        out[schema.PRICE] = price
        checks.append(_Check(UNPARSEABLE, schema.PRICE, bad, "cannot parse {value} as a price"))
        with np.errstate(invalid="ignore"):
            checks.append(_Check(NEGATIVE_VALUE, schema.PRICE, price < 0, "negative price {value}"))
    if schema.IN_STOCK in frame:
        stock, bad = parse_bools(frame[schema.IN_STOCK])
        out[schema.IN_STOCK] = stock
        checks.append(_Check(UNPARSEABLE, schema.IN_STOCK, bad, "cannot read {value} as true/false"))
    # Same item twice with different fields: the last row wins (as in align_catalog).
    again = "item {value} is listed again further down; the last row is kept"
    checks.append(_Check(DUPLICATE_ID, schema.ITEM_ID, np.zeros(len(frame), dtype=bool), again))
    clean, report = _apply(raw, out, checks, strict=strict, table="catalog", max_issues=max_issues)
    report.notes = raw.notes + report.notes
    return clean, report


def validate_tags(raw: RawTable, *, strict: bool = False, max_issues: int = MAX_ISSUES) -> tuple[pd.DataFrame, FileReport]:
    """Validate free-text tags (item_id, tag): returns (clean table of the two columns, report)."""
    frame = raw.frame
    out = pd.DataFrame(index=frame.index)
    out[schema.ITEM_ID] = as_id(frame[schema.ITEM_ID])
    out["tag"] = frame["tag"].astype("str").str.strip()
    checks = [
        _Check(MISSING_ID, schema.ITEM_ID, out[schema.ITEM_ID].isna().to_numpy(), "empty item id"),
        _Check(MISSING_VALUE, "tag", is_blank(out["tag"]), "empty tag"),
    ]
    # Tags of different users on one item are not duplicates: compare whole rows as read.
    for column in frame.columns:
        if column not in out:
            out[column] = frame[column]
    clean, report = _apply(raw, out, checks, strict=strict, table="tags", max_issues=max_issues)
    report.notes = raw.notes + report.notes
    return clean[[schema.ITEM_ID, "tag"]], report


def _apply(
    raw: RawTable,
    out: pd.DataFrame,
    checks: list[_Check],
    *,
    strict: bool,
    table: str,
    max_issues: int,
) -> tuple[pd.DataFrame, FileReport]:
    """Run the checks in order, add duplicate checks, then drop (lenient) or raise (strict)."""
    n = len(out)
    reason_of = np.full(n, -1, dtype=np.int64)
    for k, check in enumerate(checks):
        if check.reason == DUPLICATE_ID:
            continue
        reason_of[(reason_of < 0) & check.mask] = k

    # Exact duplicates among the rows that passed everything else (parsed values compared).
    alive = reason_of < 0
    dup = np.zeros(n, dtype=bool)
    if alive.all():
        dup = out.duplicated(keep="first").to_numpy()
    elif alive.any():
        dup[alive] = out.loc[alive].duplicated(keep="first").to_numpy()
    checks.append(_Check(DUPLICATE, WHOLE_ROW, dup, "exact duplicate of line {first}"))
    reason_of[dup] = len(checks) - 1
    for k, check in enumerate(checks):
        if check.reason == DUPLICATE_ID:
            alive = reason_of < 0
            again = np.zeros(n, dtype=bool)
            again[alive] = out.loc[alive, schema.ITEM_ID].duplicated(keep="last").to_numpy()
            check.mask = again
            reason_of[again] = k

    issues = _issues(raw, checks, reason_of, out, max_issues)
    dropped: Counter[str] = Counter()
    if len(raw.malformed_lines):
        dropped[MALFORMED_ROW] = len(raw.malformed_lines)
    bad_rows = reason_of >= 0
    if bad_rows.any():
        codes, counts = np.unique(reason_of[bad_rows], return_counts=True)
        for code, count in zip(codes, counts, strict=True):
            dropped[checks[int(code)].reason] += int(count)
    if strict and issues:
        raise DataError(str(issues[0]))

    clean = out.loc[~bad_rows].reset_index(drop=True) if bad_rows.any() else out.reset_index(drop=True)
    # Positions of the kept rows in the raw table (readers that number rows themselves use them).
    clean.attrs["source_rows"] = np.flatnonzero(~bad_rows)
    report = FileReport(
        file=raw.file,
        table=table,
        rows=n + len(raw.malformed_lines),
        kept=len(clean),
        dropped=dict(dropped),
        issues=issues,
        columns=dict(raw.columns),
        ignored_columns=list(raw.ignored_columns),
    )
    return clean, report


def _issues(
    raw: RawTable, checks: list[_Check], reason_of: np.ndarray, out: pd.DataFrame, max_issues: int
) -> list[Issue]:
    """The first problems in file order, at least one per reason, at most ``max_issues``.

    Only the chosen few rows are formatted, so this costs nothing on large files.
    """
    candidates: list[tuple[int, str, int]] = []  # (line, reason, row or -1 - malformed index)
    rows = np.flatnonzero(reason_of >= 0)
    if len(rows):
        lines = raw.lines[rows]
        order = np.argsort(lines, kind="stable")
        chosen = set(order[:max_issues].tolist())
        seen = set()
        first_per_reason = pd.Series(np.arange(len(rows))[order]).groupby(reason_of[rows][order]).first()
        seen.update(first_per_reason.tolist())
        for pos in sorted(chosen | seen):
            row = int(rows[pos])
            candidates.append((int(raw.lines[row]), checks[int(reason_of[row])].reason, row))
    for k in range(min(len(raw.malformed_lines), max_issues)):
        candidates.append((int(raw.malformed_lines[k]), MALFORMED_ROW, -1 - k))
    candidates.sort(key=lambda c: (c[0], c[2]))

    keep: list[tuple[int, str, int]] = []
    reasons_seen: set[str] = set()
    for candidate in candidates:
        if len(keep) < max_issues or candidate[1] not in reasons_seen:
            keep.append(candidate)
            reasons_seen.add(candidate[1])
    hashes = _row_hashes(out) if any(r == DUPLICATE for _, r, _ in keep) else None
    return [_issue(raw, checks, reason_of, out, line, row, hashes) for line, _, row in keep]


def _issue(
    raw: RawTable,
    checks: list[_Check],
    reason_of: np.ndarray,
    out: pd.DataFrame,
    line: int,
    row: int,
    hashes: np.ndarray | None,
) -> Issue:
    if row < 0:
        k = -1 - row
        found = int(raw.malformed_counts[k])
        expected = len(raw.header)
        if found < expected:
            field_name = raw.header[found]
        else:
            field_name = f"(field {expected + 1}, no such column)"
        return Issue(
            raw.file, line, field_name, MALFORMED_ROW, f"expected {expected} fields, found {found}", raw.unit
        )
    check = checks[int(reason_of[row])]
    if check.reason == DUPLICATE and hashes is not None:
        first = int(np.flatnonzero(hashes == hashes[row])[0])
        message = check.message.format(first=int(raw.lines[first]))
        if raw.unit == "row":
            message = message.replace("line", "row")
        return Issue(raw.file, line, WHOLE_ROW, DUPLICATE, message, raw.unit)
    column = check.column
    value: object = raw.frame[column].iloc[row] if column in raw.frame else out[column].iloc[row]
    shown = "''" if value is None or (isinstance(value, float) and np.isnan(value)) else repr(_plain(value))
    return Issue(raw.file, line, raw.field_name(column), check.reason, check.message.format(value=shown), raw.unit)


def _plain(value: object) -> object:
    if isinstance(value, np.generic):
        return value.item()
    text = str(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _row_hashes(frame: pd.DataFrame) -> np.ndarray:
    return pd.util.hash_pandas_object(frame, index=False).to_numpy()


# -------------------------------------------------------------- column mapping
INTERACTION_ALIASES: Final[Mapping[str, str]] = {
    **dict.fromkeys(("userid", "user", "customerid", "customer", "visitorid", "visitor", "clientid", "uid"), schema.USER_ID),
    **dict.fromkeys(("itemid", "item", "productid", "product", "movieid", "sku", "articleid", "iid"), schema.ITEM_ID),
    **dict.fromkeys(
        ("eventtype", "event", "type", "action", "eventname", "interactiontype", "behavior", "behaviour"), schema.EVENT_TYPE
    ),
    **dict.fromkeys(("value", "rating", "quantity", "qty", "amount", "revenue", "score"), schema.VALUE),
    **dict.fromkeys(("timestamp", "ts", "time", "datetime", "eventtime", "createdat", "date", "unixtime"), schema.TIMESTAMP),
    **dict.fromkeys(("sessionid", "session", "visitid"), schema.SESSION_ID),
    **dict.fromkeys(
        ("orderid", "order", "transactionid", "basketid", "basket", "invoiceno", "invoiceid", "invoice"), schema.ORDER_ID
    ),
}
CATALOG_ALIASES: Final[Mapping[str, str]] = {
    **dict.fromkeys(("itemid", "item", "productid", "product", "movieid", "sku", "articleid", "iid"), schema.ITEM_ID),
    **dict.fromkeys(("title", "name", "productname", "itemname"), schema.TITLE),
    **dict.fromkeys(("description", "desc", "details", "text", "summary"), schema.DESCRIPTION),
    **dict.fromkeys(("category", "categories", "genre", "genres", "department"), schema.CATEGORY),
    **dict.fromkeys(("price", "unitprice", "cost", "listprice"), schema.PRICE),
    **dict.fromkeys(("instock", "stock", "available", "availability", "isavailable"), schema.IN_STOCK),
}


def normalised_name(name: str) -> str:
    """Lower case, letters and digits only: ``userId`` and ``user_id`` both give ``userid``."""
    return "".join(ch for ch in str(name).lower() if ch.isalnum())


def resolve_columns(
    header: Sequence[str],
    table: str,
    file: str,
    *,
    aliases: Mapping[str, str] | None = None,
    required: Sequence[str] | None = None,
) -> tuple[dict[str, str], list[str], list[str]]:
    """Map a file's column names to schema names.

    Returns (source -> schema rename, ignored columns, notes). A column whose name is the
    schema name wins over aliases; two aliases for one schema name without it are an
    error, as is a missing required column (``DataError`` naming file, line 1 and field).
    """
    if aliases is None:
        aliases = INTERACTION_ALIASES if table == "interactions" else CATALOG_ALIASES
    if required is None:
        required = schema.INTERACTION_REQUIRED if table == "interactions" else schema.CATALOG_REQUIRED
    names = [str(name) for name in header]
    dupes = sorted({name for name in names if names.count(name) > 1})
    if dupes:
        raise DataError(f"{file}, line 1, field '{dupes[0]}': column name appears more than once in the header")
    claims: dict[str, list[str]] = {}
    for name in names:
        target = name if name in aliases.values() else aliases.get(normalised_name(name))
        if target is not None:
            claims.setdefault(target, []).append(name)
    rename: dict[str, str] = {}
    notes: list[str] = []
    for target, sources in claims.items():
        if target in sources:
            chosen = target
        elif len(sources) == 1:
            chosen = sources[0]
        else:
            raise DataError(
                f"{file}, line 1, field '{sources[1]}': columns {', '.join(repr(s) for s in sources)} "
                f"could all be '{target}'; rename the one you mean to '{target}'"
            )
        rename[chosen] = target
        others = [s for s in sources if s != chosen]
        if others:
            notes.append(f"column '{chosen}' used as '{target}'; {', '.join(repr(o) for o in others)} ignored")
    missing = [column for column in required if column not in rename.values()]
    if missing:
        raise DataError(
            f"{file}, line 1, field '{missing[0]}': required column missing "
            f"(the header has: {', '.join(names) or 'nothing'})"
        )
    ignored = [name for name in names if name not in rename]
    return rename, ignored, notes
