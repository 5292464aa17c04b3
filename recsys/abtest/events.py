"""Logged events: validation, writing to the Redis stream, and reading them back.

An event says that a user (or an anonymous session) saw, clicked, put in the cart, bought
or rated an item. The API validates a whole batch first and then writes it in one Lua
script, so a batch is stored entirely or not at all. Each event is one entry of the stream
``{p}events`` (fields :data:`STREAM_FIELDS`, all strings, ``""`` when
missing), trimmed approximately to :data:`~recsys.store.keys.EVENTS_MAXLEN` entries.

**Idempotency**: an event may carry an ``event_id`` (the client's id for it). The script
stores an event whose id it has seen within
:data:`~recsys.store.keys.EVENT_ID_TTL_SECONDS` no second time, so a batch posted again
(after a 503, a timeout, a lost answer) is stored once.

Clicks, add-to-carts and purchases of a known user also go into ``{p}recent:{user}``
(item -> unix time, newest :data:`~recsys.store.keys.RECENT_MAX_ITEMS` kept, expiring
after :data:`~recsys.store.keys.RECENT_TTL_SECONDS` without activity), which the
recommendation endpoint uses to leave those items out at once.
"""

from __future__ import annotations

import math
import re
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import numpy as np
import redis
from tqdm import tqdm

if TYPE_CHECKING:  # the API imports this module; pandas loads only for reading the stream
    import pandas as pd

from recsys.data import schema
from recsys.data.ids import MAX_ID_LENGTH, IdError, check_id
from recsys.errors import RecsysError
from recsys.store.keys import (
    EVENT_FIELDS,
    EVENT_ID_FIELD,
    EVENT_ID_TTL_SECONDS,
    EVENTS_MAXLEN,
    RECENT_MAX_ITEMS,
    RECENT_TTL_SECONDS,
    KeyLayout,
)

#: The engine's one event vocabulary (shared with the batch job): view, click, add_to_cart,
#: remove_from_cart, purchase, rating, impression.
EVENT_TYPES: tuple[str, ...] = schema.EVENT_TYPES
#: Event types that put the item into the user's "recently interacted" set.
RECENT_TYPES: frozenset[str] = frozenset({schema.CLICK, schema.ADD_TO_CART, schema.PURCHASE})

MAX_BATCH_EVENTS = 500
MAX_BODY_BYTES = 256 * 1024
MAX_RECOMMENDATION_ID_LENGTH = 64
MAX_EVENT_ID_LENGTH = 128
MAX_PROBLEMS_REPORTED = 50
#: Clock skew tolerated for timestamps ahead of the server's clock: an event stamped
#: further ahead is stored with the time it arrived (and counted as ``adjusted``).
MAX_FUTURE_SECONDS = 300.0
#: Timestamps before 2000-01-01 are taken for a unit mistake, not real events.
MIN_TIMESTAMP = 946_684_800.0
#: Whole-number ids are exact only up to 2**53 - 1 in magnitude: JSON parsers (ours for a
#: number written 42.0, JavaScript for any) hold numbers as doubles. Larger ids: strings.
MAX_JSON_INTEGER = 2**53 - 1


def _at_least(n: int) -> str:
    """A regex of the decimal integers with as many digits as ``n`` that are >= ``n``."""
    digits = str(n)
    options = [digits]
    for i, d in enumerate(digits):
        if d != "9":
            rest = len(digits) - i - 1
            higher = "9" if d == "8" else f"[{int(d) + 1}-9]"
            options.append(digits[:i] + higher + ("[0-9]" if rest == 1 else f"[0-9]{{{rest}}}" if rest else ""))
    return "|".join(options)


def _timestamp_pattern() -> str:
    """The timestamp strings the API takes, as one regex (ECMA-262 and Python alike).

    Unix seconds (no sign, exponent or leading zero; up to 6 decimals), from 946684800;
    or an ISO-8601 date (midnight UTC) or date and time, ``T``/``t`` or a space between,
    minutes or seconds (up to 6 decimals), then ``Z``/``z``, ``+HH:MM``, ``-HH:MM`` or
    nothing (UTC). Only real calendar dates (leap years included) from 2000-01-01T00:00Z.
    """
    day31, day30, day28 = "(?:0[1-9]|[12][0-9]|3[01])", "(?:0[1-9]|[12][0-9]|30)", "(?:0[1-9]|1[0-9]|2[0-8])"
    month_day = f"(?:(?:0[13578]|1[02])-{day31}|(?:0[469]|11)-{day30}|02-{day28})"
    leap_after_2000 = "(?:[2-9][0-9](?:0[48]|[2468][048]|[13579][26])|(?:2[48]|[468][048]|[3579][26])00)"
    after_2000 = "(?:200[1-9]|20[1-9][0-9]|2[1-9][0-9]{2}|[3-9][0-9]{3})"
    # 2000-01-01 itself stays out of the general case: a positive offset would put it in 1999.
    dates = (
        f"2000-01-(?:0[2-9]|[12][0-9]|3[01])|2000-(?:0[3578]|1[02])-{day31}|2000-(?:0[469]|11)-{day30}"
        f"|2000-02-(?:0[1-9]|[12][0-9])|{after_2000}-{month_day}|{leap_after_2000}-02-29"
    )
    time_ = "(?:[01][0-9]|2[0-3]):[0-5][0-9](?::[0-5][0-9](?:\\.[0-9]{1,6})?)?"
    offset = "(?:[01][0-9]|2[0-3]):[0-5][0-9]"
    seconds = f"(?:{_at_least(int(MIN_TIMESTAMP))}|[1-9][0-9]{{9,11}})(?:\\.[0-9]{{1,6}})?"
    first_day = f"2000-01-01(?:[Tt ]{time_}(?:[Zz]|\\+00:00|-{offset})?)?"
    other_days = f"(?:{dates})(?:[Tt ]{time_}(?:[Zz]|[+-]{offset})?)?"
    return f"^(?:{seconds}|{first_day}|{other_days})$"


#: Timestamp strings (see :func:`_timestamp_pattern`); the OpenAPI schema carries it.
TIMESTAMP_PATTERN = _timestamp_pattern()
_TIMESTAMP_TEXT = re.compile(TIMESTAMP_PATTERN)
RATING_RANGE = (0.0, 10.0)
#: How long after a window's end events stamped inside it are still looked for in the stream.
LATE_EVENTS_SECONDS = 3600.0

#: The fields of every stream entry the API writes: EVENT_FIELDS, then the event_id.
STREAM_FIELDS: tuple[str, ...] = (*EVENT_FIELDS, EVENT_ID_FIELD)
_ALLOWED_KEYS = frozenset(STREAM_FIELDS)
_ID_FIELDS = ("user_id", "session_id", "item_id")


@dataclass(frozen=True)
class Problem:
    """Why one event of a batch was rejected."""

    index: int
    field: str
    message: str

    def to_dict(self) -> dict[str, object]:
        return {"index": self.index, "field": self.field, "error": self.message}

    def __str__(self) -> str:
        return f"event {self.index}: {self.field}: {self.message}"


class EventValidationError(RecsysError):
    """A batch with invalid events; ``problems`` names the index and field of each."""

    def __init__(self, problems: Sequence[Problem], total_problems: int | None = None) -> None:
        self.problems = list(problems)
        self.total_problems = total_problems if total_problems is not None else len(self.problems)
        shown = "; ".join(str(p) for p in self.problems[:5])
        more = self.total_problems - min(5, len(self.problems))
        super().__init__(f"{self.total_problems} invalid event(s): {shown}" + (f" (+{more} more)" if more > 0 else ""))


class BatchTooLargeError(EventValidationError):
    """More events in one request than :data:`MAX_BATCH_EVENTS` (a 400, as the schema's
    ``maxItems`` says; a body over :data:`MAX_BODY_BYTES` is the 413)."""

    def __init__(self, count: int) -> None:
        super().__init__([Problem(-1, "events", f"{count} events in one request; at most {MAX_BATCH_EVENTS} are accepted")])


@dataclass(frozen=True)
class Event:
    """One validated event; ids are strings, ``timestamp`` unix seconds (millisecond precision).

    ``adjusted``: the client's timestamp was more than :data:`MAX_FUTURE_SECONDS` ahead of
    the server's clock, so ``timestamp`` is the time of arrival instead (not stored)."""

    type: str
    item_id: str
    user_id: str = ""
    session_id: str = ""
    value: float | None = None
    timestamp: float = 0.0
    recommendation_id: str = ""
    event_id: str = ""
    adjusted: bool = False

    def stream_fields(self) -> dict[str, str]:
        """The stream entry: every field of STREAM_FIELDS as a string, ``""`` when missing."""
        return {
            "type": self.type,
            "user_id": self.user_id,
            "session_id": self.session_id,
            "item_id": self.item_id,
            "value": "" if self.value is None else repr(float(self.value)),
            "timestamp": format_seconds(self.timestamp),
            "recommendation_id": self.recommendation_id,
            EVENT_ID_FIELD: self.event_id,
        }


def format_seconds(seconds: float) -> str:
    """Unix seconds as the stream stores them: at most 3 decimals, none when whole."""
    text = f"{seconds:.3f}".rstrip("0").rstrip(".")
    return text or "0"


# ------------------------------------------------------------------ validation
def unpack_batch(payload: Any) -> list[Any]:
    """The list of raw events in a request body: one object, an array, or ``{"events": [...]}``."""
    if isinstance(payload, list):
        events = payload
    elif isinstance(payload, Mapping) and set(payload) == {"events"}:
        events = payload["events"]
        if not isinstance(events, list):
            raise EventValidationError([Problem(-1, "events", "must be an array of event objects")])
    elif isinstance(payload, Mapping):
        events = [payload]
    else:
        raise EventValidationError(
            [Problem(-1, "body", "expected an event object, an array of events or {\"events\": [...]}")]
        )
    if not events:
        raise EventValidationError([Problem(-1, "events", "no events in the request")])
    if len(events) > MAX_BATCH_EVENTS:
        raise BatchTooLargeError(len(events))
    return events


def parse_timestamp(raw: Any) -> float:
    """Unix seconds from a number or an ISO-8601 string (naive times are UTC); ValueError otherwise."""
    if isinstance(raw, bool):
        raise ValueError("must be unix seconds or an ISO-8601 string, got a boolean")
    if isinstance(raw, (int, float)):
        value = float(raw)
    elif isinstance(raw, str):
        text = raw.strip()
        try:
            value = float(text)
        except ValueError:
            try:
                parsed = datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith(("Z", "z")) else text)
            except ValueError:
                raise ValueError(f"not unix seconds nor an ISO-8601 time: {raw[:40]!r}") from None
            if parsed.tzinfo is None:
                parsed = parsed.replace(tzinfo=timezone.utc)
            value = parsed.timestamp()
    else:
        raise ValueError(f"must be unix seconds or an ISO-8601 string, got {type(raw).__name__}")
    if not math.isfinite(value):
        raise ValueError("must be finite")
    return value


def _check_id(raw: Any, limit: int) -> str:
    """The one id rule of :mod:`recsys.data.ids` (ValueError saying what is wrong), for ids
    as JSON carries them: a whole number (42, or 42.0: the same number) up to
    :data:`MAX_JSON_INTEGER` in magnitude is the id written in decimal ("42")."""
    if isinstance(raw, float) and raw.is_integer():
        raw = int(raw)
    if isinstance(raw, int) and not isinstance(raw, bool) and abs(raw) > MAX_JSON_INTEGER:
        raise ValueError(f"a whole number id is at most {MAX_JSON_INTEGER} in magnitude (send a larger one as a string)")
    try:
        return check_id(raw, max_length=limit)
    except IdError as error:
        raise ValueError(str(error)) from None


def validate_event(
    raw: Any, index: int, now: float, event_types: Mapping[str, str] | None = None
) -> tuple[Event | None, list[Problem]]:
    """One raw event -> (Event, []) or (None, its problems).

    The type is read as the batch job reads it (:func:`recsys.data.schema.canonical_event_type`:
    the shop's names in ``event_types`` mapped, case and spelling variants such as
    ``Add-To-Cart`` normalised) and must be one of :data:`EVENT_TYPES`; the event is
    stored under that name.
    """
    if not isinstance(raw, Mapping):
        return None, [Problem(index, "event", f"must be an object, got {type(raw).__name__}")]
    problems: list[Problem] = []
    unknown = sorted(str(k) for k in raw if k not in _ALLOWED_KEYS)
    for key in unknown[:5]:
        problems.append(Problem(index, key[:40], f"unknown field (allowed: {', '.join(STREAM_FIELDS)})"))

    event_type = raw.get("type")
    if event_type is None:
        problems.append(Problem(index, "type", f"required (one of {', '.join(EVENT_TYPES)})"))
    elif not isinstance(event_type, str):
        problems.append(Problem(index, "type", f"must be a string (one of {', '.join(EVENT_TYPES)}), got {type(event_type).__name__}"))
        event_type = None
    else:
        canonical = schema.canonical_event_type(event_type, event_types) if len(event_type) <= 64 else event_type
        if canonical not in EVENT_TYPES:
            known = ", ".join(EVENT_TYPES) + (f"; or the shop's names {', '.join(sorted(event_types))}" if event_types else "")
            problems.append(Problem(index, "type", f"unknown type {event_type[:40]!r} (one of {known})"))
        event_type = canonical

    ids: dict[str, str] = {}
    for name in _ID_FIELDS:
        if raw.get(name) is None:
            continue
        try:
            ids[name] = _check_id(raw[name], MAX_ID_LENGTH)
        except ValueError as error:
            problems.append(Problem(index, name, str(error)))
    if "item_id" not in ids and raw.get("item_id") is None:
        problems.append(Problem(index, "item_id", "required"))
    if raw.get("user_id") is None and raw.get("session_id") is None:
        problems.append(Problem(index, "user_id", "user_id or session_id is required"))

    value: float | None = None
    if raw.get("value") is not None:
        candidate = raw["value"]
        if isinstance(candidate, bool) or not isinstance(candidate, (int, float)):
            problems.append(Problem(index, "value", f"must be a number, got {type(candidate).__name__}"))
        elif not math.isfinite(float(candidate)):
            problems.append(Problem(index, "value", "must be finite"))
        else:
            value = float(candidate)
            low, high = RATING_RANGE
            if event_type == schema.RATING and not low <= value <= high:
                problems.append(Problem(index, "value", f"a rating must be within {low:g}..{high:g}, got {value:g}"))
            elif event_type != schema.RATING and value < 0:
                problems.append(Problem(index, "value", f"must be >= 0 (revenue or quantity), got {value:g}"))
    elif event_type == schema.RATING:
        problems.append(Problem(index, "value", "a rating needs a value"))

    timestamp, adjusted = now, False
    if raw.get("timestamp") is not None:
        stamp = raw["timestamp"]
        try:
            if isinstance(stamp, str) and not _TIMESTAMP_TEXT.fullmatch(stamp):
                raise ValueError(
                    f"not unix seconds nor an ISO-8601 time from 2000 on (2026-12-02T13:45:00Z): {stamp[:40]!r}"
                )
            timestamp = parse_timestamp(stamp)
        except ValueError as error:
            problems.append(Problem(index, "timestamp", str(error)))
        else:
            if timestamp < MIN_TIMESTAMP:
                problems.append(Problem(index, "timestamp", "before 2000-01-01 (seconds expected)"))
            elif timestamp > now + MAX_FUTURE_SECONDS:
                # The client's clock is off (or it sent milliseconds): the event happened,
                # and it arrived now; storing the time of arrival keeps the stream's
                # promise (no event stamped beyond its arrival plus the skew).
                timestamp, adjusted = now, True

    recommendation_id = ""
    if raw.get("recommendation_id") is not None:
        try:
            recommendation_id = _check_id(raw["recommendation_id"], MAX_RECOMMENDATION_ID_LENGTH)
        except ValueError as error:
            problems.append(Problem(index, "recommendation_id", str(error)))

    event_id = ""
    if raw.get("event_id") is not None:
        try:
            event_id = _check_id(raw["event_id"], MAX_EVENT_ID_LENGTH)
        except ValueError as error:
            problems.append(Problem(index, "event_id", str(error)))

    if problems:
        return None, problems
    return (
        Event(
            type=str(event_type),
            item_id=ids["item_id"],
            user_id=ids.get("user_id", ""),
            session_id=ids.get("session_id", ""),
            value=value,
            timestamp=round(timestamp, 3),
            recommendation_id=recommendation_id,
            event_id=event_id,
            adjusted=adjusted,
        ),
        [],
    )


def validate_events(payload: Any, now: float | None = None, event_types: Mapping[str, str] | None = None) -> list[Event]:
    """Every event of a request body, validated; ``EventValidationError`` lists each bad one.

    ``event_types`` maps the shop's event names to ours (``[data.event_types]``).
    Raises ``BatchTooLargeError`` for more than :data:`MAX_BATCH_EVENTS` events.
    """
    now = time.time() if now is None else now
    raw_events = unpack_batch(payload)
    events: list[Event] = []
    problems: list[Problem] = []
    for index, raw in enumerate(raw_events):
        event, found = validate_event(raw, index, now, event_types)
        if event is not None:
            events.append(event)
        problems.extend(found)
    if problems:
        raise EventValidationError(problems[:MAX_PROBLEMS_REPORTED], total_problems=len(problems))
    # An event_id twice in one batch: the later one is a duplicate, skipped by the write
    # as if it had come in a later request.
    return events


# --------------------------------------------------------------------- writing
#: Stores a batch atomically, skipping events whose event_id was stored before.
#: KEYS[1] stream, KEYS[2] added counter; ARGV: maxlen, id ttl, id key prefix, recent key
#: prefix, recent max items, recent ttl, field count F, the F field names, then per event:
#: recent flag ("1" or ""), then the F field values.
_WRITE_SCRIPT = """
local maxlen, id_ttl, id_prefix = ARGV[1], tonumber(ARGV[2]), ARGV[3]
local recent_prefix, recent_max, recent_ttl = ARGV[4], tonumber(ARGV[5]), tonumber(ARGV[6])
local nfields = tonumber(ARGV[7])
local names = {}
for f = 1, nfields do names[f] = ARGV[7 + f] end
local event_id_at, user_at, item_at, ts_at
for f = 1, nfields do
  if names[f] == 'event_id' then event_id_at = f end
  if names[f] == 'user_id' then user_at = f end
  if names[f] == 'item_id' then item_at = f end
  if names[f] == 'timestamp' then ts_at = f end
end
local stored, duplicates = 0, 0
local touched = {}
local i = 8 + nfields
while i <= #ARGV do
  local recent = ARGV[i]
  local fresh = true
  local event_id = ARGV[i + event_id_at]
  if event_id ~= '' then
    fresh = redis.call('SET', id_prefix .. event_id, '1', 'NX', 'EX', id_ttl)
  end
  if fresh then
    local args = {KEYS[1], 'MAXLEN', '~', maxlen, '*'}
    for f = 1, nfields do
      args[#args + 1] = names[f]
      args[#args + 1] = ARGV[i + f]
    end
    redis.call('XADD', unpack(args))
    stored = stored + 1
    if recent == '1' then
      local key = recent_prefix .. ARGV[i + user_at]
      redis.call('ZADD', key, 'GT', ARGV[i + ts_at], ARGV[i + item_at])
      touched[key] = true
    end
  else
    duplicates = duplicates + 1
  end
  i = i + 1 + nfields
end
for key, _ in pairs(touched) do
  redis.call('ZREMRANGEBYRANK', key, 0, -(recent_max + 1))
  redis.call('EXPIRE', key, recent_ttl)
end
if stored > 0 then redis.call('INCRBY', KEYS[2], stored) end
return {stored, duplicates}
"""


@dataclass(frozen=True)
class WriteResult:
    """What :func:`write_events` did: events newly stored, events skipped as already stored."""

    stored: int
    duplicates: int


def write_events(client: redis.Redis, layout: KeyLayout, events: Sequence[Event]) -> WriteResult:
    """Append ``events`` to the stream and update the recent sets, in one Lua script.

    Atomic: every event is stored or none is. Events whose ``event_id`` was stored before
    (within ``EVENT_ID_TTL_SECONDS``) are skipped, so sending a batch again after an
    unanswered or failed request never stores it twice.
    """
    if not events:
        return WriteResult(0, 0)
    args: list[str | int] = [
        EVENTS_MAXLEN,
        EVENT_ID_TTL_SECONDS,
        layout.event_id(""),
        layout.recent(""),
        RECENT_MAX_ITEMS,
        RECENT_TTL_SECONDS,
        len(STREAM_FIELDS),
        *STREAM_FIELDS,
    ]
    for event in events:
        fields = event.stream_fields()
        args.append("1" if event.type in RECENT_TYPES and event.user_id else "")
        args.extend(fields[name] for name in STREAM_FIELDS)
    script = client.register_script(_WRITE_SCRIPT)  # EVALSHA, the source sent only once
    stored, duplicates = script(keys=[layout.events, layout.events_added], args=args)
    return WriteResult(int(stored), int(duplicates))


# --------------------------------------------------------------------- reading
#: Columns of :func:`read_events`' table (the interaction schema plus stream metadata).
READ_COLUMNS = (
    "stream_id",
    schema.EVENT_TYPE,
    schema.USER_ID,
    schema.SESSION_ID,
    schema.ITEM_ID,
    schema.VALUE,
    schema.TIMESTAMP,
    "recommendation_id",
)


def _stream_bound(seconds: float | None, *, upper: bool) -> str:
    if seconds is None:
        return "+" if upper else "-"
    ms = max(0, int(math.floor(seconds * 1000)))
    return f"{ms}-{2**64 - 1}" if upper else f"{ms}-0"


def iter_stream_chunks(
    client: redis.Redis,
    layout: KeyLayout,
    start: float | None = None,
    end: float | None = None,
    chunk_size: int = 10_000,
) -> Iterator[list[tuple[bytes, dict[bytes, bytes]]]]:
    """Raw stream entries whose *stream id* time is in [start, end] (unix s), in chunks.

    Stream ids are the server's milliseconds at ingestion, so this bounds the scan by
    arrival time; callers filter on the event timestamp afterwards.
    """
    lower = _stream_bound(start, upper=False)
    upper = _stream_bound(end, upper=True)
    while True:
        entries = client.xrange(layout.events, min=lower, max=upper, count=chunk_size)
        if not entries:
            return
        yield entries
        if len(entries) < chunk_size:
            return
        last = entries[-1][0]
        lower = "(" + (last.decode() if isinstance(last, bytes) else str(last))


def _decode_column(values: list[bytes | str]) -> np.ndarray:
    array = np.asarray(values)
    if array.dtype.kind == "S":
        return np.strings.decode(array, "utf-8")
    return array.astype(str)


def entries_to_frame(entries: Sequence[tuple[bytes | str, Mapping[bytes | str, bytes | str]]]) -> pd.DataFrame:
    import pandas as pd

    """Stream entries -> table with :data:`READ_COLUMNS` (value float64 NaN when missing,
    timestamp float64 unix seconds, ids as strings, ``""`` when missing)."""
    if not entries:
        return empty_events_frame()
    sample = next(iter(entries[0][1]), b"")
    as_bytes = isinstance(sample, bytes)
    columns: dict[str, np.ndarray] = {"stream_id": _decode_column([e[0] for e in entries])}
    missing: bytes | str = b"" if as_bytes else ""
    for name in EVENT_FIELDS:
        key = name.encode() if as_bytes else name
        columns[name] = _decode_column([fields.get(key, missing) for _, fields in entries])
    frame = pd.DataFrame(
        {
            "stream_id": columns["stream_id"],
            schema.EVENT_TYPE: columns["type"],
            schema.USER_ID: columns["user_id"],
            schema.SESSION_ID: columns["session_id"],
            schema.ITEM_ID: columns["item_id"],
            schema.VALUE: pd.to_numeric(pd.Series(columns["value"]), errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan),
            schema.TIMESTAMP: pd.to_numeric(pd.Series(columns["timestamp"]), errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan),
            "recommendation_id": columns["recommendation_id"],
        }
    )
    return frame


def empty_events_frame() -> pd.DataFrame:
    import pandas as pd

    frame = pd.DataFrame({c: np.array([], dtype=str) for c in READ_COLUMNS})
    frame[schema.VALUE] = frame[schema.VALUE].astype(np.float64)
    frame[schema.TIMESTAMP] = frame[schema.TIMESTAMP].astype(np.float64)
    return frame


def read_events(
    client: redis.Redis,
    layout: KeyLayout,
    start: float | None = None,
    end: float | None = None,
    *,
    late_seconds: float = LATE_EVENTS_SECONDS,
    chunk_size: int = 10_000,
    progress: bool = False,
) -> pd.DataFrame:
    """Events whose timestamp is in [start, end) (unix s; None = unbounded), as a table.

    The stream is scanned from ``start - MAX_FUTURE_SECONDS`` (an event may carry a time
    slightly ahead of its arrival) to ``end + late_seconds`` (events sent late, e.g. by a
    client that buffers), then filtered on the event's own timestamp. ``progress`` shows a
    tqdm bar on stderr when it is a terminal.
    """
    scan_start = None if start is None else start - MAX_FUTURE_SECONDS
    scan_end = None if end is None else end + late_seconds
    frames = []
    with tqdm(
        desc="reading events", unit=" events", disable=not progress or not sys.stderr.isatty(), file=sys.stderr
    ) as bar:
        for chunk in iter_stream_chunks(client, layout, scan_start, scan_end, chunk_size):
            frames.append(entries_to_frame(chunk))
            bar.update(len(chunk))
    import pandas as pd

    frame = pd.concat(frames, ignore_index=True) if frames else empty_events_frame()
    ts = frame[schema.TIMESTAMP].to_numpy()
    keep = ~np.isnan(ts)
    if start is not None:
        keep &= ts >= start
    if end is not None:
        keep &= ts < end
    return frame.loc[keep].reset_index(drop=True)
