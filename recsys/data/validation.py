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
from recsys.data.ids import RULE as ID_RULE
from recsys.data.ids import invalid_ids
from recsys.data.mapping import DataMapping
from recsys.errors import DataError

MALFORMED_ROW: Final = "malformed_row"
MISSING_ID: Final = "missing_id"
INVALID_ID: Final = "invalid_id"
MISSING_USER: Final = "missing_user"
MISSING_VALUE: Final = "missing_value"
UNPARSEABLE: Final = "unparseable"
TIMESTAMP_OUT_OF_RANGE: Final = "timestamp_out_of_range"
NEGATIVE_VALUE: Final = "negative_value"
CANCELLED: Final = "cancelled"
DUPLICATE: Final = "duplicate"
DUPLICATE_ID: Final = "duplicate_id"

REASONS: Final[dict[str, str]] = {
    MALFORMED_ROW: "wrong number of fields",
    MISSING_ID: "item id is empty",
    MISSING_USER: "user id is empty (a guest line without a customer)",
    INVALID_ID: "id breaks the id rule the API serves by (length, control characters, type)",
    MISSING_VALUE: "a required value is empty",
    UNPARSEABLE: "value cannot be parsed",
    TIMESTAMP_OUT_OF_RANGE: "timestamp before 1995 or in the future",
    NEGATIVE_VALUE: "negative quantity or price",
    CANCELLED: "cancelled or returned (event type, or data.cancellations)",
    DUPLICATE: "exact duplicate of an earlier row",
    DUPLICATE_ID: "catalogue item listed again later (the last row is kept)",
}

MIN_TIMESTAMP: Final = 788_918_400  # 1995-01-01T00:00:00Z
FUTURE_TOLERANCE_SECONDS: Final = 86_400
CANCEL_EVENT_TYPES: Final = frozenset({"cancel", "cancelled", "canceled", "return", "returned", "refund", "refunded"})
EVENT_TYPE_ALIASES: Final = schema.EVENT_TYPE_ALIASES  # kept here for importers
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
    #: Problems of the data set as a whole (e.g. a catalogue unrelated to the interactions).
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when no row of any file was dropped and nothing was found wrong as a whole."""
        return all(report.ok for report in self.files) and not self.warnings

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
            "warnings": list(self.warnings),
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
        out.extend(f"WARNING: {warning}" for warning in self.warnings)
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
    fatal: bool = True  # False: the row is dropped and counted even in strict mode


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


def parse_timestamps(values: pd.Series, timestamp_format: str | None = None) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Unix seconds from unix s / ms / us / ns numbers or ISO-8601 strings, or a strptime pattern.

    Returns (seconds float64 (n,) with NaN where missing or bad, unparseable mask (n,),
    notes saying what was converted). Numbers are read as milliseconds from 1e11 up
    (1e11 s is the year 5138, 1e11 ms is 1973), microseconds from 1e14, nanoseconds from
    1e17. ISO strings without a zone are taken as UTC. With ``timestamp_format`` (e.g.
    ``"%d/%m/%Y %H:%M"``) every value is read with that pattern (no zone = UTC).
    """
    notes: list[str] = []
    if timestamp_format is not None and not pd.api.types.is_datetime64_any_dtype(values.dtype):
        blank = is_blank(values)
        text = values.astype("str").str.strip()
        seconds = np.full(len(values), np.nan)
        if (~blank).any():
            dates = pd.to_datetime(text[~blank], format=timestamp_format, utc=True, errors="coerce")
            seconds[~blank] = ((dates - pd.Timestamp(0, tz="UTC")) / pd.Timedelta(seconds=1)).to_numpy(
                dtype=np.float64, na_value=np.nan
            )
        n_read = int((~np.isnan(seconds)).sum())
        if n_read:
            notes.append(f"{n_read} timestamps read with timestamp_format {timestamp_format!r} (no zone = UTC)")
        return np.floor(seconds), ~blank & np.isnan(seconds), notes
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


DATE_PATTERNS: Final = (
    "%d/%m/%Y", "%m/%d/%Y", "%Y/%m/%d", "%d.%m.%Y", "%d-%m-%Y", "%m-%d-%Y", "%d/%m/%y", "%m/%d/%y", "%Y%m%d",
    "%d %b %Y", "%b %d, %Y", "%d-%b-%Y",
)  # fmt: skip
TIME_PATTERNS: Final = ("", " %H:%M", " %H:%M:%S", " %I:%M %p", " %I:%M:%S %p", "T%H:%M:%S")
MOSTLY_BAD_SHARE: Final = 0.5


def timestamp_patterns_that_fit(sample: Sequence[str]) -> list[str]:
    """strptime patterns (from the common date and time layouts) that read every value of ``sample``."""
    values = pd.Series(list(sample), dtype="str")
    fitting = []
    for date in DATE_PATTERNS:
        for clock in TIME_PATTERNS:
            pattern = date + clock
            parsed = pd.to_datetime(values, format=pattern, errors="coerce")
            if len(values) and parsed.notna().all():
                fitting.append(pattern)
    return fitting


def check_timestamps(raw: RawTable, values: pd.Series, bad: np.ndarray, timestamp_format: str | None) -> None:
    """Fail, naming the field, a sample value and the fix, when most timestamps cannot be read.

    More than :data:`MOSTLY_BAD_SHARE` of the non-empty values unreadable is a date format
    the loader was not told about, not bad lines: both modes fail (lenient would drop
    nearly everything), and the message suggests the patterns that read the values seen.
    A few bad values are row problems (strict fails at the first with the same hint).
    """
    n_bad = int(bad.sum())
    n_given = int((~is_blank(values)).sum())
    if not n_bad or n_bad <= MOSTLY_BAD_SHARE * n_given:
        return
    rows = np.flatnonzero(bad)
    first = int(rows[0])
    sample_value = str(values.iloc[first]).strip()
    # Distinct values spread over the whole column: early rows alone (days 1-12) cannot
    # tell day/month order apart.
    distinct = pd.unique(values.iloc[rows].astype("str").str.strip())
    sample = distinct[np.linspace(0, len(distinct) - 1, min(len(distinct), 500)).astype(np.int64)]
    fitting = timestamp_patterns_that_fit([str(v) for v in sample])
    where = f"{raw.file}, {raw.unit} {int(raw.lines[first])}, field '{raw.field_name(schema.TIMESTAMP)}'"
    share = f"{n_bad} of {n_given} timestamps cannot be read, e.g. {sample_value!r}"
    if timestamp_format is not None:
        hint = f"they do not match data.timestamp_format = {timestamp_format!r}"
    else:
        hint = "unix seconds and ISO-8601 are read without a pattern; set data.timestamp_format"
    if len(fitting) == 1:
        hint += f'; timestamp_format = "{fitting[0]}" reads every value seen'
    elif fitting:
        shown = " or ".join(f'"{p}"' for p in fitting[:4])
        hint += f"; {shown} read every value seen (check which is day and which is month)"
    elif timestamp_format is None:
        hint += ' (a strptime pattern, e.g. "%d/%m/%Y %H:%M")'
    raise DataError(f"{where}: {share}; {hint}")


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


def parse_stock(values: pd.Series) -> tuple[pd.Series, np.ndarray, list[str]]:
    """In stock or not, as shops write it: a count (> 0 is in stock) or a word.

    Words: true/false, yes/no, y/n, t/f, 1/0, in stock/out of stock, available/unavailable.
    Returns (nullable boolean Series, unparseable mask (n,), notes).
    """
    if pd.api.types.is_bool_dtype(values.dtype):
        return values.astype("boolean"), np.zeros(len(values), dtype=bool), []
    numbers, not_number = parse_numbers(values)
    flags, not_word = parse_bools(values)
    is_count = ~np.isnan(numbers)
    counts_only = is_count & ~np.isin(numbers, (0.0, 1.0))
    result = flags.copy()
    result[is_count] = numbers[is_count] > 0
    notes = []
    if counts_only.any():
        notes.append(f"{int(is_count.sum())} stock values read as counts (> 0 is in stock)")
    return result, not_number & not_word, notes


CURRENCY = re.compile(r"^\s*(?:[A-Za-z]{3}\s*)?[£$€¥₹]?\s*|\s*[£$€¥₹]?\s*(?:[A-Za-z]{3})?\s*$")
THOUSANDS_ONLY = re.compile(r"^-?\d{1,3}(?:,\d{3})+$")


def parse_prices(values: pd.Series, decimal_separator: str = "auto") -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """Prices as shops write them: ``3.50``, ``£3.50``, ``3,50 €``, ``EUR 1.234,50``, ``$1,234.50``.

    A currency symbol or a three-letter code before or after the number is dropped. With
    ``decimal_separator="auto"``, the last of ``.`` and ``,`` in a value is its decimal
    separator when both appear; a lone ``,`` is a decimal comma, except ``1,234`` (one or
    more groups of exactly three digits), which could be either and is refused by name.
    Returns (prices float64 (n,) NaN where missing or bad, unparseable mask (n,),
    ambiguous mask (n,), notes).
    """
    n = len(values)
    if pd.api.types.is_numeric_dtype(values.dtype) and not pd.api.types.is_bool_dtype(values.dtype):
        numbers, bad = parse_numbers(values)
        return numbers, bad, np.zeros(n, dtype=bool), []
    blank = is_blank(values)
    raw = values.astype("str").str.strip()
    # The few distinct spellings are cleaned, not the rows.
    codes, uniques = pd.factorize(raw)
    text = pd.Series(np.asarray(uniques, dtype=object), dtype="str")
    stripped = text.str.replace(CURRENCY, "", regex=True).str.replace(r"[\s\u00a0']", "", regex=True)
    has_symbol = stripped.ne(text.str.replace(r"[\s\u00a0']", "", regex=True))
    has_comma, has_dot = stripped.str.contains(",", regex=False), stripped.str.contains(".", regex=False)
    ambiguous = pd.Series(False, index=stripped.index)
    if decimal_separator == ",":
        cleaned = stripped.str.replace(".", "", regex=False).str.replace(",", ".", regex=False)
    elif decimal_separator == ".":
        cleaned = stripped.str.replace(",", "", regex=False)
    else:
        comma_last = stripped.str.rfind(",") > stripped.str.rfind(".")
        european = has_comma & (comma_last | ~has_dot)
        ambiguous = has_comma & ~has_dot & stripped.str.match(THOUSANDS_ONLY)
        cleaned = stripped.where(
            ~european, stripped.str.replace(".", "", regex=False).str.replace(",", ".", regex=False)
        ).where(european, stripped.str.replace(",", "", regex=False))
    unique_numbers = pd.to_numeric(cleaned, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan).copy()
    unique_numbers[ambiguous.to_numpy()] = np.nan
    lookup = np.append(unique_numbers, np.nan)
    numbers = lookup[codes]
    ambiguous_rows = np.append(ambiguous.to_numpy(), False)[codes] & ~blank
    bad = ~blank & ~np.isfinite(numbers) & ~ambiguous_rows
    notes = []
    converted = np.append((has_symbol | has_comma).to_numpy(), False)[codes] & np.isfinite(numbers)
    if converted.any():
        notes.append(f"{int(converted.sum())} prices read without their currency sign or with a decimal comma")
    return np.where(np.isfinite(numbers), numbers, np.nan), bad, ambiguous_rows, notes


def normalise_event_types(values: pd.Series, mapping: Mapping[str, str] | None = None) -> tuple[pd.Series, list[str]]:
    """The shop's names mapped (``mapping``), lower-cased, ``-``/space -> ``_``, known aliases
    mapped (:func:`recsys.data.schema.canonical_event_type`, as the API does); notes list
    every change.

    The few distinct spellings are normalised in Python, the rows only by their codes.
    """
    text = values.astype("str").str.strip()
    codes, uniques = pd.factorize(text)
    out = text
    if len(uniques):
        mapped = np.array([schema.canonical_event_type(str(u), mapping) for u in uniques], dtype=str)
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
    mapping: DataMapping | None = None,
) -> tuple[pd.DataFrame, FileReport]:
    """Validate and normalise an interactions table.

    Returns (clean table, report). The clean table has user_id, item_id (str), and when
    present event_type (str, lower case), value (float64, NaN where not given),
    timestamp (int64 unix seconds), session_id and order_id (str, missing allowed).
    ``extra_checks`` are (reason, column, mask, message) run before the built-in ones.
    ``mapping`` brings the shop's event names, date pattern and cancellation marks.

    Cancelled lines are dropped and counted in both modes (they are data, not errors).
    Timestamps that mostly cannot be read fail in both modes (:func:`check_timestamps`):
    dropping nearly every row for a date format is never what was meant.
    """
    mapping = mapping or DataMapping()
    frame = raw.frame
    n = len(frame)
    notes: list[str] = []
    checks = [_Check(reason, column, np.asarray(mask, dtype=bool), message) for reason, column, mask, message in extra_checks]
    out = pd.DataFrame(index=frame.index)

    out[schema.USER_ID] = as_id(frame[schema.USER_ID])
    checks.append(_Check(MISSING_USER, schema.USER_ID, out[schema.USER_ID].isna().to_numpy(), "empty user id (a guest line?)"))
    checks.append(_id_rule_check(frame[schema.USER_ID], out[schema.USER_ID], schema.USER_ID))
    out[schema.ITEM_ID] = as_id(frame[schema.ITEM_ID])
    checks.append(_Check(MISSING_ID, schema.ITEM_ID, out[schema.ITEM_ID].isna().to_numpy(), "empty item id"))
    checks.append(_id_rule_check(frame[schema.ITEM_ID], out[schema.ITEM_ID], schema.ITEM_ID))

    if schema.EVENT_TYPE not in frame and mapping.default_event_type is not None:
        frame = frame.copy(deep=False)
        frame[schema.EVENT_TYPE] = strings_from_codes(np.array([mapping.default_event_type]), np.zeros(n, dtype=np.int64))
        notes.append(f"no event type column: every line is a {mapping.default_event_type!r} (data.default_event_type)")
    if schema.EVENT_TYPE in frame:
        types, type_notes = normalise_event_types(frame[schema.EVENT_TYPE], mapping.event_types)
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
        seconds, bad, ts_notes = parse_timestamps(frame[schema.TIMESTAMP], mapping.timestamp_format)
        notes += ts_notes
        check_timestamps(raw, frame[schema.TIMESTAMP], bad, mapping.timestamp_format)
        missing = np.isnan(seconds) & ~bad
        checks.append(_Check(MISSING_VALUE, schema.TIMESTAMP, missing, "empty timestamp"))
        expected = (
            f"timestamp_format {mapping.timestamp_format!r}"
            if mapping.timestamp_format
            else "unix seconds or ms, or ISO-8601; set data.timestamp_format for other date formats"
        )
        checks.append(_Check(UNPARSEABLE, schema.TIMESTAMP, bad, f"cannot parse {{value}} as a timestamp ({expected})"))
        limit = (time.time() if now is None else now) + FUTURE_TOLERANCE_SECONDS
        with np.errstate(invalid="ignore"):
            out_of_range = (seconds < MIN_TIMESTAMP) | (seconds > limit)
        checks.append(
            _Check(TIMESTAMP_OUT_OF_RANGE, schema.TIMESTAMP, out_of_range, "timestamp {value} is before 1995 or in the future")
        )
        out[schema.TIMESTAMP] = seconds

    for column in (schema.SESSION_ID, schema.ORDER_ID):
        if column in frame:
            out[column] = as_id(frame[column])
            if column == schema.SESSION_ID:
                checks.append(_id_rule_check(frame[column], out[column], column))

    # Cancellations before the negative-quantity check: a return is not a broken line.
    cancels = mapping.cancellations
    if schema.EVENT_TYPE in frame:
        checks.append(_Check(CANCELLED, schema.EVENT_TYPE, is_cancel, "event type {value} (cancelled or returned)", fatal=False))
    if cancels.order_id_prefix is not None:
        if schema.ORDER_ID not in out:
            raise DataError(f"{raw.file}: data.cancellations.order_id_prefix is set but the file has no order id column")
        prefixed = out[schema.ORDER_ID].str.startswith(cancels.order_id_prefix).to_numpy(dtype=bool, na_value=False)
        message = f"order {{value}} starts with {cancels.order_id_prefix!r} (data.cancellations.order_id_prefix)"
        checks.append(_Check(CANCELLED, schema.ORDER_ID, prefixed, message, fatal=False))
    if value is not None:
        with np.errstate(invalid="ignore"):
            negative = (value < 0) & ~is_rating
        if cancels.negative_value:
            message = "negative quantity {value} (data.cancellations.negative_value)"
            checks.append(_Check(CANCELLED, schema.VALUE, negative, message, fatal=False))
        else:
            checks.append(_Check(NEGATIVE_VALUE, schema.VALUE, negative, "negative quantity {value}"))

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
    mapping: DataMapping | None = None,
    per_line: bool = False,
) -> tuple[pd.DataFrame, FileReport]:
    """Validate and normalise an item catalogue.

    Returns (clean table, report): item_id (str, unique), title, description, category
    (str, "" when not given), price (float64, NaN when not given), in_stock (nullable
    boolean) for the columns the file has. Prices may carry a currency sign or a decimal
    comma (:func:`parse_prices`, ``mapping.decimal_separator``); stock may be a count or
    a word (:func:`parse_stock`). ``per_line`` validates catalogue fields found on the
    lines of an interactions file: an item appears on many lines, so neither repeated
    items nor repeated lines are dropped.
    """
    mapping = mapping or DataMapping()
    notes: list[str] = []
    frame = raw.frame
    checks = [_Check(reason, column, np.asarray(mask, dtype=bool), message) for reason, column, mask, message in extra_checks]
    out = pd.DataFrame(index=frame.index)
    out[schema.ITEM_ID] = as_id(frame[schema.ITEM_ID])
    checks.append(_Check(MISSING_ID, schema.ITEM_ID, out[schema.ITEM_ID].isna().to_numpy(), "empty item id"))
    checks.append(_id_rule_check(frame[schema.ITEM_ID], out[schema.ITEM_ID], schema.ITEM_ID))
    for column in (schema.TITLE, schema.DESCRIPTION, schema.CATEGORY):
        if column in frame:
            out[column] = frame[column].astype("str").str.strip().fillna("")
    if schema.PRICE in frame:
        price, bad, ambiguous, price_notes = parse_prices(frame[schema.PRICE], mapping.decimal_separator)
        notes += price_notes
        out[schema.PRICE] = price
        checks.append(_Check(UNPARSEABLE, schema.PRICE, bad, "cannot parse {value} as a price"))
        checks.append(
            _Check(
                UNPARSEABLE,
                schema.PRICE,
                ambiguous,
                "cannot tell whether ',' in {value} separates decimals or thousands; set data.decimal_separator",
            )
        )
        with np.errstate(invalid="ignore"):
            checks.append(_Check(NEGATIVE_VALUE, schema.PRICE, price < 0, "negative price {value}"))
    if schema.IN_STOCK in frame:
        stock, bad, stock_notes = parse_stock(frame[schema.IN_STOCK])
        notes += stock_notes
        out[schema.IN_STOCK] = stock
        checks.append(
            _Check(UNPARSEABLE, schema.IN_STOCK, bad, "cannot read {value} as in stock or not (a count, yes/no, true/false, 1/0)")
        )
    if not per_line:
        # Same item twice with different fields: the last row wins (as in align_catalog).
        again = "item {value} is listed again further down; the last row is kept"
        checks.append(_Check(DUPLICATE_ID, schema.ITEM_ID, np.zeros(len(frame), dtype=bool), again))
    clean, report = _apply(raw, out, checks, strict=strict, table="catalog", max_issues=max_issues, duplicates=not per_line)
    report.notes = raw.notes + notes + report.notes
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


def _id_rule_check(raw: pd.Series, ids: pd.Series, column: str) -> _Check:
    """The API's id rule (:mod:`recsys.data.ids`) on one id column: what the API could not
    serve is never published."""
    return _Check(INVALID_ID, column, invalid_ids(raw, ids), f"id {{value}} is not a valid id ({ID_RULE})")


def check_catalog_overlap(data_report: ValidationReport, interactions: pd.DataFrame, catalog: pd.DataFrame | None,
                          *, strict: bool, catalog_file: str) -> None:
    """A catalogue that shares no item id with the interactions (wrong column, other shop,
    ids formatted differently): an error in strict mode, a warning in the report otherwise."""
    if catalog is None or len(catalog) == 0 or len(interactions) == 0:
        return
    catalog_ids = catalog[schema.ITEM_ID].astype(str)
    interaction_ids = interactions[schema.ITEM_ID].astype(str)
    if interaction_ids.isin(catalog_ids).any():
        return
    message = (
        f"{catalog_file}: the catalogue shares no item id with the interactions "
        f"({catalog_ids.nunique()} catalogue items such as {catalog_ids.iloc[0]!r}; interaction items such as "
        f"{interaction_ids.iloc[0]!r}): check that both files name the same id column"
    )
    if strict:
        raise DataError(message)
    data_report.warnings.append(message)


def duplicated_rows(frame: pd.DataFrame) -> np.ndarray:
    """``frame.duplicated(keep="first")`` as (n,) bool, in half its time on large tables: rows
    are hashed first, and only rows whose hash occurs twice are compared value by value."""
    if len(frame) < 100_000:
        return frame.duplicated(keep="first").to_numpy()
    hashes = pd.util.hash_pandas_object(frame, index=False).to_numpy()
    candidates = pd.Series(hashes).duplicated(keep=False).to_numpy()
    dup = np.zeros(len(frame), dtype=bool)
    if candidates.any():
        dup[candidates] = frame[candidates].duplicated(keep="first").to_numpy()
    return dup


def _apply(
    raw: RawTable,
    out: pd.DataFrame,
    checks: list[_Check],
    *,
    strict: bool,
    table: str,
    max_issues: int,
    duplicates: bool = True,
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
    if not duplicates:
        pass
    elif alive.all():
        dup = duplicated_rows(out)
    elif alive.any():
        dup[alive] = duplicated_rows(out.loc[alive])
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
    if strict:
        _raise_first_fatal(raw, checks, reason_of, out)

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


def _raise_first_fatal(raw: RawTable, checks: list[_Check], reason_of: np.ndarray, out: pd.DataFrame) -> None:
    """Strict mode: raise the first problem in file order that is an error (not a cancellation)."""
    fatal_checks = np.array([check.fatal for check in checks] + [True], dtype=bool)
    fatal_rows = np.flatnonzero((reason_of >= 0) & fatal_checks[reason_of])
    candidates: list[tuple[int, int]] = []  # (line, row or -1 - malformed index)
    if len(fatal_rows):
        first = int(fatal_rows[np.argmin(raw.lines[fatal_rows])])
        candidates.append((int(raw.lines[first]), first))
    if len(raw.malformed_lines):
        candidates.append((int(raw.malformed_lines[0]), -1))
    if not candidates:
        return
    line, row = min(candidates)
    hashes = _row_hashes(out) if row >= 0 and checks[int(reason_of[row])].reason == DUPLICATE else None
    raise DataError(str(_issue(raw, checks, reason_of, out, line, row, hashes)))


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


def require_column(file: str, header: Sequence[str], column: str, key: str) -> None:
    """DataError naming the configuration key and listing the header when ``column`` is absent."""
    if column not in header:
        close = [name for name in header if normalised_name(name) == normalised_name(column)]
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise DataError(
            f"{file}, line 1: column {column!r} ({key}) is not in the file (the header has: "
            f"{', '.join(header) or 'nothing'}){hint}"
        )


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
    explicit: Mapping[str, str] | None = None,
    explicit_keys: Mapping[str, str] | None = None,
    provided: Sequence[str] = (),
) -> tuple[dict[str, str], list[str], list[str]]:
    """Map a file's column names to schema names.

    Returns (source -> schema rename, ignored columns, notes). ``explicit`` (schema name
    -> the file's column, from ``[data.columns]``; ``explicit_keys`` names its key in messages)
    comes first; a mapped column the file lacks is an error naming the key and listing
    the header. The other schema names are found by their usual names: a column whose
    name is the schema name wins over aliases; two aliases for one schema name without it
    are an error, as is a missing required column (``DataError`` naming file, line 1 and
    field). ``provided`` are schema names the caller builds itself (not required here).
    """
    if aliases is None:
        aliases = INTERACTION_ALIASES if table == "interactions" else CATALOG_ALIASES
    if required is None:
        required = schema.INTERACTION_REQUIRED if table == "interactions" else schema.CATALOG_REQUIRED
    names = [str(name) for name in header]
    dupes = sorted({name for name in names if names.count(name) > 1})
    if dupes:
        raise DataError(f"{file}, line 1, field '{dupes[0]}': column name appears more than once in the header")
    rename: dict[str, str] = {}
    notes: list[str] = []
    for target, source in (explicit or {}).items():
        require_column(file, names, source, (explicit_keys or {}).get(target, f"data.columns.{target}"))
        rename[source] = target
    taken = set(rename.values()) | set(provided)
    claims: dict[str, list[str]] = {}
    for name in names:
        if name in rename:
            continue
        target = name if name in aliases.values() else aliases.get(normalised_name(name))
        if target is not None and target not in taken:
            claims.setdefault(target, []).append(name)
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
    missing = [column for column in required if column not in rename.values() and column not in provided]
    if missing:
        raise DataError(
            f"{file}, line 1, field '{missing[0]}': required column missing "
            f"(the header has: {', '.join(names) or 'nothing'})"
        )
    ignored = [name for name in names if name not in rename]
    return rename, ignored, notes
