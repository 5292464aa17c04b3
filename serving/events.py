"""``POST /v1/events``: event ingestion (views, clicks, carts, purchases, ratings, impressions).

Event types are the batch job's (:data:`recsys.data.schema.EVENT_TYPES`), read the same way
(spellings normalised; the shop's own names mapped by ``RECSYS_EVENT_TYPES``, a JSON
object such as ``{"pv": "view"}``, the API's copy of ``[data.event_types]``).

The body is one event object, an array of events, or ``{"events": [...]}``. The whole
batch is validated first (400 lists the index, field and reason of every bad event) and
then written in one MULTI/EXEC, so it is stored entirely or not at all. Answers 202
``{"accepted": n}``.

When ``RECSYS_INGEST_TOKEN`` is set, requests need ``Authorization: Bearer <token>``
(401 otherwise). Bodies over :data:`~recsys.abtest.events.MAX_BODY_BYTES` or with more than
:data:`~recsys.abtest.events.MAX_BATCH_EVENTS` events get 413.
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
REJECTED = Counter(
    "recsys_events_rejected_requests_total",
    "Event requests refused: unauthorized, too_large, invalid, unavailable.",
    ["reason"],
    registry=REGISTRY,
)


def _too_large(detail: str) -> Response:
    REJECTED.labels("too_large").inc()
    return api_error(413, detail, max_bytes=MAX_BODY_BYTES, max_events=MAX_BATCH_EVENTS)


@bp.post("/v1/events")
def post_events() -> Response:
    expected = services().settings.ingest_token or None
    if expected is not None and not token_matches(bearer_token(), expected):
        REJECTED.labels("unauthorized").inc()
        response = api_error(401, "event ingestion needs 'Authorization: Bearer <RECSYS_INGEST_TOKEN>'")
        response.headers["WWW-Authenticate"] = 'Bearer realm="recsys-events"'
        return response
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
    except BatchTooLargeError as error:
        return _too_large(str(error))
    except EventValidationError as error:
        REJECTED.labels("invalid").inc()
        return api_error(
            400,
            str(error),
            problems=[p.to_dict() for p in error.problems],
            total_problems=error.total_problems,
        )
    try:
        write_events(redis_client(), key_layout(), events)
    except (redis.ConnectionError, redis.TimeoutError) as error:
        REJECTED.labels("unavailable").inc()
        return api_error(503, f"events not stored, retry later: {type(error).__name__}")
    for event_type, count in collections.Counter(e.type for e in events).items():
        ACCEPTED.labels(event_type).inc(count)
    return json_response({"accepted": len(events)}, status=202)
