"""``POST /v1/events``: event ingestion (views, clicks, carts, purchases, ratings, impressions).

Event types are the batch job's (:data:`recsys.data.schema.EVENT_TYPES`), read the same way
(spellings normalised; the shop's own names mapped by ``RECSYS_EVENT_TYPES``, a JSON
object such as ``{"pv": "view"}``, the API's copy of ``[data.event_types]``).

The body is one event object, an array of events, or ``{"events": [...]}``. The whole
batch is validated first (400 lists the index, field and reason of every bad event) and
then written by one Lua script, so it is stored entirely or not at all. Answers 202
``{"accepted": n, "stored": s, "duplicates": d, "adjusted": a}``: events with an
``event_id`` stored before (or earlier in the same batch) are not stored again, so a client
may send a batch again after any 503 or lost answer (503s carry ``Retry-After``); ``a``
events were stamped more than 5 minutes ahead of the server's clock and are stored with
the time they arrived.

Ingestion is closed by default: requests need ``Authorization: Bearer
<RECSYS_INGEST_TOKEN>`` (401 otherwise); without a token it answers 403 unless
``RECSYS_INGEST_OPEN=1`` opens it to anyone. Only ``Content-Type: application/json``
bodies are read (415 otherwise: a browser cannot post one cross-site without a CORS
preflight). Bodies over :data:`~recsys.abtest.events.MAX_BODY_BYTES` get 413; more than
:data:`~recsys.abtest.events.MAX_BATCH_EVENTS` events is a 400 (the schema's ``maxItems``).
"""

from __future__ import annotations

import collections
import time

import orjson
import redis
from flask import Blueprint, Response, request
from prometheus_client import Counter

from recsys.abtest.events import (
    MAX_BATCH_EVENTS,
    MAX_BODY_BYTES,
    BatchTooLargeError,
    EventValidationError,
    validate_events,
    write_events,
)
from serving import services
from serving.admin import api_error, bearer_token, key_layout, redis_client, token_matches
from serving.errors import json_response
from serving.metrics import REGISTRY

bp = Blueprint("events", __name__)


ACCEPTED = Counter("recsys_events_accepted_total", "Events stored, by type.", ["type"], registry=REGISTRY)
DUPLICATES = Counter(
    "recsys_events_duplicates_total", "Events not stored again: their event_id was stored before.", registry=REGISTRY
)
ADJUSTED = Counter(
    "recsys_events_adjusted_total",
    "Events stamped more than MAX_FUTURE_SECONDS ahead of the server's clock, stored with their arrival time.",
    registry=REGISTRY,
)
REJECTED = Counter(
    "recsys_events_rejected_requests_total",
    "Event requests refused: closed, unauthorized, media_type, too_large, invalid, unavailable.",
    ["reason"],
    registry=REGISTRY,
)


def _too_large(detail: str) -> Response:
    REJECTED.labels("too_large").inc()
    return api_error(413, detail, max_bytes=MAX_BODY_BYTES, max_events=MAX_BATCH_EVENTS)


RETRY_AFTER_SECONDS = "1"


@bp.post("/v1/events")
def post_events() -> Response:
    settings = services().settings
    expected = settings.ingest_token or None
    if expected is None and not settings.ingest_open:
        REJECTED.labels("closed").inc()
        return api_error(403, "event ingestion is closed: set RECSYS_INGEST_TOKEN (or RECSYS_INGEST_OPEN=1 to accept anyone)")
    if expected is not None and not token_matches(bearer_token(), expected):
        REJECTED.labels("unauthorized").inc()
        response = api_error(401, "event ingestion needs 'Authorization: Bearer <RECSYS_INGEST_TOKEN>'")
        response.headers["WWW-Authenticate"] = 'Bearer realm="recsys-events"'
        return response
    if request.mimetype != "application/json":
        REJECTED.labels("media_type").inc()
        shown = request.mimetype or "none"
        return api_error(415, f"Content-Type must be application/json, got {shown[:60]}")
    if (request.content_length or 0) > MAX_BODY_BYTES:
        return _too_large(f"request body of {request.content_length} bytes; at most {MAX_BODY_BYTES} are accepted")
    # Read at most one byte past the limit: a chunked body without Content-Length is bounded too.
    body = request.stream.read(MAX_BODY_BYTES + 1)
    if len(body) > MAX_BODY_BYTES:
        return _too_large(f"request body over {MAX_BODY_BYTES} bytes")
    if not body.strip():
        REJECTED.labels("invalid").inc()
        return api_error(400, "empty request body; send an event object or an array of events")
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as error:
        REJECTED.labels("invalid").inc()
        return api_error(400, f"request body is not valid JSON: {error}")
    try:
        events = validate_events(payload, now=time.time(), event_types=services().settings.event_types)
    except EventValidationError as error:
        REJECTED.labels("too_large" if isinstance(error, BatchTooLargeError) else "invalid").inc()
        return api_error(
            400,
            str(error),
            problems=[p.to_dict() for p in error.problems],
            total_problems=error.total_problems,
        )
    try:
        result = write_events(redis_client(), key_layout(), events)
    except (redis.ConnectionError, redis.TimeoutError) as error:
        # A timeout may come after Redis ran the script: the batch may be stored. A retry
        # with the same event_id values is safe (duplicates are skipped).
        REJECTED.labels("unavailable").inc()
        response = api_error(
            503,
            f"Redis did not confirm the write ({type(error).__name__}); the events may or may not be stored: "
            "send the same batch again (events with an event_id are never stored twice)",
        )
        response.headers["Retry-After"] = RETRY_AFTER_SECONDS
        return response
    for event_type, count in collections.Counter(e.type for e in events).items():
        ACCEPTED.labels(event_type).inc(count)
    if result.duplicates:
        DUPLICATES.inc(result.duplicates)
    adjusted = sum(e.adjusted for e in events)
    if adjusted:
        ADJUSTED.inc(adjusted)
    return json_response(
        {"accepted": len(events), "stored": result.stored, "duplicates": result.duplicates, "adjusted": adjusted},
        status=202,
    )
