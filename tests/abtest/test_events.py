"""Event validation, the all-or-nothing write to the stream and recent sets, and reading back."""

from __future__ import annotations

import time
from typing import Any

import pandas as pd
import pytest
import redis

from recsys.abtest.events import (
    MAX_BATCH_EVENTS,
    MAX_FUTURE_SECONDS,
    BatchTooLargeError,
    EventValidationError,
    read_events,
    validate_events,
    write_events,
)
from recsys.data import schema
from recsys.data.validation import normalise_event_types
from recsys.store.keys import EVENT_FIELDS, RECENT_MAX_ITEMS, RECENT_TTL_SECONDS, KeyLayout

NOW = 1_750_000_000.0


def problems_of(payload: Any) -> list[dict[str, object]]:
    with pytest.raises(EventValidationError) as caught:
        validate_events(payload, now=NOW)
    return [p.to_dict() for p in caught.value.problems]


def test_three_body_shapes_are_accepted() -> None:
    event = {"type": "click", "user_id": "u1", "item_id": "i1"}
    assert len(validate_events(event, now=NOW)) == 1
    assert len(validate_events([event, event], now=NOW)) == 2
    assert len(validate_events({"events": [event] * 3}, now=NOW)) == 3


def test_defaults_and_normalisation() -> None:
    (event,) = validate_events({"type": "purchase", "user_id": 42, "item_id": 7, "value": 19}, now=NOW)
    assert (event.user_id, event.item_id, event.session_id) == ("42", "7", "")
    assert event.value == 19.0 and event.timestamp == NOW
    fields = event.stream_fields()
    assert tuple(fields) == (*EVENT_FIELDS, "event_id")
    assert fields["value"] == "19.0" and fields["recommendation_id"] == ""


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (1_749_999_000, 1_749_999_000),
        (1_749_999_000.7, 1_749_999_000.7),
        (1_749_999_000.12345, 1_749_999_000.123),
        ("1749999000", 1_749_999_000),
        ("2025-06-15T12:00:00Z", 1_749_988_800),
        ("2025-06-15T14:00:00+02:00", 1_749_988_800),
        ("2025-06-15T12:00:00", 1_749_988_800),
    ],
)
def test_timestamps_in_seconds_or_iso(raw: object, expected: int) -> None:
    (event,) = validate_events({"type": "click", "session_id": "s", "item_id": "i", "timestamp": raw}, now=NOW)
    assert event.timestamp == expected
    assert float(event.stream_fields()["timestamp"]) == expected


@pytest.mark.parametrize(
    ("event", "field", "fragment"),
    [
        ({"user_id": "u", "item_id": "i"}, "type", "required"),
        ({"type": "pageview-ish", "user_id": "u", "item_id": "i"}, "type", "unknown type"),
        ({"type": 3, "user_id": "u", "item_id": "i"}, "type", "must be a string"),
        ({"type": "click", "item_id": "i"}, "user_id", "user_id or session_id"),
        ({"type": "click", "user_id": "u"}, "item_id", "required"),
        ({"type": "click", "user_id": "", "item_id": "i"}, "user_id", "empty"),
        ({"type": "click", "user_id": "u" * 257, "item_id": "i"}, "user_id", "longer than 256"),
        ({"type": "click", "user_id": "a\nb", "item_id": "i"}, "user_id", "line breaks"),
        ({"type": "click", "user_id": "u", "item_id": "i", "event_id": ""}, "event_id", "empty"),
        ({"type": "click", "user_id": " u", "item_id": "i"}, "user_id", "whitespace"),
        ({"type": "click", "user_id": ["u"], "item_id": "i"}, "user_id", "must be a string"),
        ({"type": "click", "user_id": True, "item_id": "i"}, "user_id", "must be a string"),
        ({"type": "purchase", "user_id": "u", "item_id": "i", "value": -1}, "value", ">= 0"),
        ({"type": "purchase", "user_id": "u", "item_id": "i", "value": "12"}, "value", "must be a number"),
        ({"type": "purchase", "user_id": "u", "item_id": "i", "value": float("nan")}, "value", "finite"),
        ({"type": "purchase", "user_id": "u", "item_id": "i", "value": float("inf")}, "value", "finite"),
        ({"type": "rating", "user_id": "u", "item_id": "i", "value": 11}, "value", "0..10"),
        ({"type": "rating", "user_id": "u", "item_id": "i"}, "value", "needs a value"),
        ({"type": "click", "user_id": "u", "item_id": "i", "timestamp": 86400}, "timestamp", "before 2000"),
        ({"type": "click", "user_id": "u", "item_id": "i", "timestamp": "yesterday"}, "timestamp", "ISO-8601"),
        ({"type": "click", "user_id": "u", "item_id": "i", "timestamp": "1999-12-31T23:59:59Z"}, "timestamp", "ISO-8601"),
        ({"type": "click", "user_id": "u", "item_id": "i", "timestamp": "2000-01-01T00:30:00+01:00"}, "timestamp", "ISO-8601"),
        ({"type": "click", "user_id": "u", "item_id": "i", "timestamp": "2025-02-29"}, "timestamp", "ISO-8601"),
        ({"type": "click", "user_id": "u", "item_id": "i", "timestamp": " 1749999000"}, "timestamp", "ISO-8601"),
        ({"type": "click", "user_id": "u", "item_id": "i", "timestamp": "1.7e9"}, "timestamp", "ISO-8601"),
        ({"type": "click", "user_id": 2**53, "item_id": "i"}, "user_id", "at most 9007199254740991"),
        ({"type": "click", "user_id": "u", "item_id": 7.5}, "item_id", "must be a string"),
        ({"type": "click", "user_id": "u", "item_id": "i", "recommendation_id": "r" * 65}, "recommendation_id", "longer"),
        ({"type": "click", "user_id": "u", "item_id": "i", "colour": "red"}, "colour", "unknown field"),
    ],
)
def test_each_bad_field_is_named(event: dict[str, object], field: str, fragment: str) -> None:
    good = {"type": "impression", "user_id": "u", "item_id": "i"}
    problems = problems_of([good, good, event])
    assert any(p["index"] == 2 and p["field"] == field and fragment in str(p["error"]) for p in problems), problems
    assert all(p["index"] == 2 for p in problems)


@pytest.mark.parametrize("event_type", schema.EVENT_TYPES)
def test_every_event_type_the_batch_job_weights_is_accepted(event_type: str) -> None:
    # The API once refused "view", which the batch job weights: one vocabulary for both.
    assert event_type in schema.DEFAULT_EVENT_WEIGHTS
    raw = {"type": event_type, "user_id": "u", "item_id": "i"} | ({"value": 4} if event_type == schema.RATING else {})
    (event,) = validate_events(raw, now=NOW)
    assert event.type == event_type


def test_spellings_and_mapped_names_are_read_as_the_batch_job_reads_them() -> None:
    mapping = {"pv": "view", "BUY_NOW": "purchase"}
    raws = [
        {"type": "Add-To-Cart", "user_id": "u", "item_id": "i"},
        {"type": "pageview", "user_id": "u", "item_id": "i"},
        {"type": "pv", "user_id": "u", "item_id": "i"},
        {"type": "buy_now", "user_id": "u", "item_id": "i"},
    ]
    events = validate_events(raws, now=NOW, event_types=mapping)
    assert [e.type for e in events] == ["add_to_cart", "view", "view", "purchase"]
    names = pd.Series([r["type"] for r in raws])
    offline, _ = normalise_event_types(names, mapping)
    assert offline.tolist() == [e.type for e in events]
    with pytest.raises(EventValidationError, match="unknown type 'pv'"):
        validate_events(raws[2], now=NOW)  # without the mapping


def test_every_bad_event_is_reported_with_its_index() -> None:
    batch = [{"type": "click", "user_id": "u", "item_id": "i"}] * 5
    batch = [*batch[:1], "not an object", *batch[1:3], {"type": "x", "user_id": "u", "item_id": "i"}]
    problems = problems_of(batch)
    assert sorted({p["index"] for p in problems}) == [1, 4]


def test_body_shape_and_size_errors() -> None:
    assert problems_of([])[0]["field"] == "events"
    assert problems_of("click")[0]["field"] == "body"
    assert problems_of({"events": "x"})[0]["field"] == "events"
    with pytest.raises(BatchTooLargeError, match=str(MAX_BATCH_EVENTS)) as caught:
        validate_events([{"type": "click", "user_id": "u", "item_id": "i"}] * (MAX_BATCH_EVENTS + 1), now=NOW)
    assert isinstance(caught.value, EventValidationError) and caught.value.problems[0].field == "events"


@pytest.mark.parametrize("ahead", [MAX_FUTURE_SECONDS + 1, 3600, NOW * 999])  # NOW * 1000: milliseconds
def test_a_timestamp_too_far_ahead_gets_the_time_of_arrival(ahead: float) -> None:
    raws = [{"type": "click", "user_id": "u", "item_id": "i", "timestamp": NOW + ahead},
            {"type": "click", "user_id": "u", "item_id": "i", "timestamp": NOW + MAX_FUTURE_SECONDS}]
    late, skewed = validate_events(raws, now=NOW)
    assert (late.timestamp, late.adjusted) == (NOW, True)
    assert (skewed.timestamp, skewed.adjusted) == (NOW + MAX_FUTURE_SECONDS, False)  # within the skew: kept
    assert "adjusted" not in late.stream_fields()


@pytest.mark.parametrize(("raw", "expected"), [(42, "42"), (42.0, "42"), (-7.0, "-7"), (2**53 - 1, str(2**53 - 1)),
                                               (float(-(2**53 - 1)), str(-(2**53 - 1))), (0, "0")])
def test_whole_number_ids_as_json_holds_them(raw: float, expected: str) -> None:
    (event,) = validate_events({"type": "click", "user_id": raw, "item_id": raw, "event_id": raw}, now=NOW)
    assert (event.user_id, event.item_id, event.event_id) == (expected, expected, expected)


# ------------------------------------------------------------------ Redis
@pytest.fixture
def layout(key_prefix: str) -> KeyLayout:
    return KeyLayout(key_prefix)


def test_write_appends_stream_entries_with_the_fixed_fields(redis_client: redis.Redis, layout: KeyLayout) -> None:
    now = 1_750_000_000.25
    events = validate_events(
        [
            {"type": "impression", "user_id": "u1", "item_id": "a", "recommendation_id": "r1"},
            {"type": "purchase", "session_id": "s1", "item_id": "b", "value": 12.5, "timestamp": now - 60},
        ],
        now=now,
    )
    result = write_events(redis_client, layout, events)
    assert (result.stored, result.duplicates) == (2, 0)
    entries = redis_client.xrange(layout.events)
    assert len(entries) == 2
    first, second = (dict((k.decode(), v.decode()) for k, v in e[1].items()) for e in entries)
    assert tuple(first) == (*EVENT_FIELDS, "event_id")
    assert first == {"type": "impression", "user_id": "u1", "session_id": "", "item_id": "a", "value": "",
                     "timestamp": "1750000000.25", "recommendation_id": "r1", "event_id": ""}
    assert second["value"] == "12.5" and second["user_id"] == "" and second["timestamp"] == "1749999940.25"


def test_recent_set_gets_clicks_carts_purchases_not_impressions(redis_client: redis.Redis, layout: KeyLayout) -> None:
    now = time.time()
    raw = [
        {"type": "impression", "user_id": "u1", "item_id": "seen"},
        {"type": "click", "user_id": "u1", "item_id": "clicked", "timestamp": now - 30},
        {"type": "add_to_cart", "user_id": "u1", "item_id": "carted"},
        {"type": "purchase", "user_id": "u1", "item_id": "bought", "value": 3},
        {"type": "rating", "user_id": "u1", "item_id": "rated", "value": 4},
        {"type": "click", "session_id": "anon", "item_id": "x"},
        {"type": "click", "user_id": "u1", "item_id": "clicked", "timestamp": now - 90},
    ]
    write_events(redis_client, layout, validate_events(raw, now=now))
    recent = {k.decode(): v for k, v in redis_client.zrange(layout.recent("u1"), 0, -1, withscores=True)}
    assert set(recent) == {"clicked", "carted", "bought"}
    assert recent["clicked"] == pytest.approx(now - 30, abs=1e-3)  # the newest time wins
    ttl = redis_client.ttl(layout.recent("u1"))
    assert RECENT_TTL_SECONDS - 5 <= ttl <= RECENT_TTL_SECONDS
    assert not redis_client.exists(layout.recent("anon"))


def test_recent_set_keeps_only_the_newest_items(redis_client: redis.Redis, layout: KeyLayout) -> None:
    now = time.time()
    total = RECENT_MAX_ITEMS + 50
    for start in range(0, total, 100):
        batch = [
            {"type": "click", "user_id": "u", "item_id": f"i{k}", "timestamp": now - 10_000 + k}
            for k in range(start, min(start + 100, total))
        ]
        write_events(redis_client, layout, validate_events(batch, now=now))
    kept = {k.decode() for k in redis_client.zrange(layout.recent("u"), 0, -1)}
    assert len(kept) == RECENT_MAX_ITEMS
    assert kept == {f"i{k}" for k in range(total - RECENT_MAX_ITEMS, total)}


def test_a_batch_with_one_bad_event_writes_nothing(redis_client: redis.Redis, layout: KeyLayout) -> None:
    batch = [{"type": "click", "user_id": "u", "item_id": f"i{k}"} for k in range(10)]
    batch[7]["value"] = -3
    with pytest.raises(EventValidationError):
        write_events(redis_client, layout, validate_events(batch))
    assert redis_client.xlen(layout.events) == 0
    assert not redis_client.exists(layout.recent("u"))


def test_read_events_filters_the_window_and_pages_through_chunks(redis_client: redis.Redis, layout: KeyLayout) -> None:
    now = float(int(time.time()))
    raw = [
        {"type": "click", "user_id": f"u{k}", "item_id": f"i{k % 7}", "timestamp": now - 1000 + k, "value": float(k)}
        for k in range(450)
    ]
    for start in range(0, len(raw), 200):
        write_events(redis_client, layout, validate_events(raw[start : start + 200], now=now))
    everything = read_events(redis_client, layout, chunk_size=64)
    assert len(everything) == 450
    assert everything["user_id"].tolist() == [f"u{k}" for k in range(450)]
    assert everything["value"].to_numpy().tolist() == [float(k) for k in range(450)]
    assert everything["event_type"].unique().tolist() == ["click"]
    assert everything["stream_id"].is_unique

    window = read_events(redis_client, layout, now - 900, now - 800, chunk_size=7)
    assert sorted(window["timestamp"].astype(int).tolist()) == list(range(int(now) - 900, int(now) - 800))
    empty = read_events(redis_client, KeyLayout(layout.prefix + "none:"))
    assert len(empty) == 0 and "item_id" in empty


def test_read_events_bounds_the_scan_by_arrival_time(redis_client: redis.Redis, layout: KeyLayout) -> None:
    now = time.time()
    # An event stamped 2 hours ago but sent now arrived after the late bound of a window that ended 90 minutes ago.
    write_events(redis_client, layout, validate_events({"type": "click", "user_id": "u", "item_id": "i", "timestamp": now - 7200}, now=now))
    assert len(read_events(redis_client, layout, now - 8000, now - 5400)) == 0
    assert len(read_events(redis_client, layout, now - 8000, now - 5400, late_seconds=7200)) == 1
