"""Admin endpoints for users' data and live item changes, under ``/v1/admin/``.

Same protection as the other admin endpoints (:mod:`serving.admin`: the admin token; 404
when admin is off, 401 without the token).

=======  ==============================  ===================================================
method   path                            answer
=======  ==============================  ===================================================
DELETE   /v1/admin/users/{user_id}       200 the erasure receipt (see :mod:`recsys.privacy.forget`);
                                         an unknown user is not an error (counts 0)
PATCH    /v1/admin/items/{item_id}       200 receipt; body ``{"in_stock", "price", "hidden"}``
PATCH    /v1/admin/items                 200 receipt; body a JSON array of
                                         ``{"item_id", "in_stock", "price", "hidden"}``,
                                         applied atomically (all or none), in order: a
                                         later entry for the same item overrides the
                                         fields it names; 400 names the entry
=======  ==============================  ===================================================

Run folders and the event archive are scrubbed at once when the API knows where they are
(``RECSYS_FORGET_RUNS``, ``RECSYS_FORGET_ARCHIVE``; only readable from the API's host);
otherwise the erasure is queued and the next pipeline run scrubs them.
"""

from __future__ import annotations

import re
from typing import Any

import orjson
import redis
from flask import Blueprint, Response, current_app, request

from recsys.catalog.overlay import apply_updates, parse_updates
from recsys.errors import ConfigError
from serving import admin, services
from serving.errors import error_response, json_response

MAX_BODY_BYTES = 2 * 1024 * 1024
FORGET_TIMEOUT_SECONDS = 30.0

bp = Blueprint("admin_data", __name__, url_prefix="/v1/admin")
bp.before_request(admin._require_admin)


def _json_body() -> Any:
    if (request.content_length or 0) > MAX_BODY_BYTES:
        raise ConfigError(f"the request body is at most {MAX_BODY_BYTES} bytes")
    body = request.get_data(cache=False)
    if len(body) > MAX_BODY_BYTES:
        raise ConfigError(f"the request body is at most {MAX_BODY_BYTES} bytes")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as error:
        raise ConfigError(f"request body is not valid JSON: {error}") from None


def _folder(name: str) -> str | None:
    value = current_app.config.get(name)
    return str(value) if value else None


@bp.delete("/users/<path:user_id>")
def forget_user(user_id: str) -> Response:
    # Imported here: erasure reads run folders and Parquet files (pandas), which the
    # serving path never loads.
    from recsys.privacy.forget import forget_users

    runs, archive = _folder("FORGET_RUNS"), _folder("FORGET_ARCHIVE")
    state = services()
    # Its own connection: scanning the stream and waiting for the publish lock take longer
    # than the serving timeout (RECSYS_REDIS_TIMEOUT) allows a command.
    pool = redis.ConnectionPool(
        **{**state.client.connection_pool.connection_kwargs, "socket_timeout": FORGET_TIMEOUT_SECONDS},
        connection_class=state.client.connection_pool.connection_class,
    )
    client = redis.Redis(connection_pool=pool)
    try:
        receipt = forget_users(
            client, state.layout, [user_id], runs_root=runs, archive_root=archive, disk_known=runs is not None
        )
    except ConfigError as error:
        return error_response(400, str(error))
    finally:
        pool.disconnect()
    return json_response(receipt)


_FIELD = re.compile(r"^(?:body|\[\d+\])\.(\w+):")  # "[3].price: ..." names the field


def _patch(document_item: str | None) -> Response:
    state = services()
    try:
        document = _json_body()
        if document_item is not None and not isinstance(document, dict):
            raise ConfigError("expected a JSON object with in_stock, price or hidden")
        if document_item is None and not isinstance(document, list):
            raise ConfigError("expected a JSON array of item updates (or PATCH /v1/admin/items/{item_id})")
        updates = parse_updates(document, item_id=document_item)
    except ConfigError as error:
        named = _FIELD.match(str(error))
        return error_response(400, str(error), **({"field": named.group(1)} if named else {}))
    return json_response(apply_updates(state.client, state.layout, updates))


@bp.patch("/items/<path:item_id>")
def patch_item(item_id: str) -> Response:
    return _patch(item_id)


@bp.patch("/items")
def patch_items() -> Response:
    return _patch(None)


# ------------------------------------------------------------ OpenAPI (see serving.openapi)
_AUTH = [{"bearerAuth": []}]
_ERROR = {"$ref": "#/components/schemas/Error"}
# What reaches the handlers: the path check (serving.errors.check_path) refuses control
# characters and line breaks with 400; the handlers check the length.
_NO_CONTROL = r"^[^\x00-\x1f\x7f-\x9f\u2028\u2029]+$"
_USER_ID = {"type": "string", "minLength": 1, "maxLength": 1024, "pattern": _NO_CONTROL}
_ITEM_ID = {"type": "string", "minLength": 1, "maxLength": 256, "pattern": _NO_CONTROL}


def _answer(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_ADMIN_ERRORS = {
    "401": _answer(_ERROR, "Admin token missing or wrong."),
    "404": _answer(_ERROR, "Admin API disabled (RECSYS_ADMIN_TOKEN not set)."),
    "503": _answer(_ERROR, "Redis unreachable or too slow, or the publish lock held too long."),
}
_UPDATE_FIELDS = {
    "in_stock": {"type": "boolean", "description": "false: never served (null is refused: leave the field out)"},
    "price": {"type": ["number", "null"], "minimum": 0, "description": "null = unknown"},
    "hidden": {"type": "boolean", "description": "true: never served, until set to false (null is refused)"},
}
_UPDATE = {"type": "object", "minProperties": 1, "additionalProperties": False, "properties": _UPDATE_FIELDS}
_BULK_UPDATE = {
    "type": "array",
    "minItems": 1,
    "maxItems": 10_000,
    "items": {
        "type": "object",
        "required": ["item_id"],
        "minProperties": 2,
        "additionalProperties": False,
        "properties": {"item_id": _ITEM_ID, **_UPDATE_FIELDS},
    },
}
_ITEM_RECEIPT = {
    "type": "object",
    "required": ["updated", "live", "versions", "items"],
    "properties": {
        "updated": {"type": "integer", "description": "distinct items updated (one entry each in `items`)"},
        "live": {"type": ["string", "null"]},
        "versions": {"type": "integer", "description": "retained versions whose catalogue was checked"},
        "items": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "item_id": {"type": "string"},
                    "overlay": {"type": "object", "description": "fields now overridden (until the catalogue file changes them)"},
                    "versions_changed": {"type": "integer", "description": "0: no version knows the item yet"},
                },
            },
        },
    },
}
_COUNT = {"type": ["integer", "null"]}
_FORGET_RECEIPT = {
    "type": "object",
    "required": ["forgotten_at", "users", "totals", "runs", "archive", "disk_pending"],
    "properties": {
        "forgotten_at": {"type": "string", "format": "date-time"},
        "users": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "tombstone": {"type": "string", "description": "sha256 of 'recsys-user:' + id (the id itself is not kept)"},
                    "lists": {"type": "integer", "description": "per-user list fields removed, over every version in Redis"},
                    "keys": {"type": "integer", "description": "per-user keys removed (recent items, A/B)"},
                    "stream_events": {"type": "integer"},
                    "archived_events": _COUNT,
                    "runs": {**_COUNT, "description": "run folders the user was removed from"},
                },
            },
        },
        "totals": {"type": "object", "additionalProperties": {"type": "integer"}},
        "versions_scanned": {"type": "array", "items": {"type": "string"}},
        "runs": {"type": "object", "description": "folder, rewritten and deleted run ids, untouched count; or pending"},
        "archive": {"type": "object", "description": "folder, files rewritten, rows removed; or pending"},
        "disk_pending": {"type": "boolean", "description": "true: folders are scrubbed by the next pipeline run"},
        "seconds": {"type": "number"},
    },
}

OPENAPI_PATHS: dict[str, Any] = {
    "/v1/admin/users/{user_id}": {
        "delete": {
            "summary": "Forget a user everywhere (right to erasure), with a receipt",
            "operationId": "forgetUser",
            "security": _AUTH,
            "parameters": [{"name": "user_id", "in": "path", "required": True, "schema": _USER_ID}],
            "responses": {
                "200": _answer(_FORGET_RECEIPT, "Removed (an unknown user gets counts of 0)."),
                "400": _answer(_ERROR, "Invalid user id (`field` names it)."),
                **_ADMIN_ERRORS,
            },
        }
    },
    "/v1/admin/items/{item_id}": {
        "patch": {
            "summary": "Change an item's stock, price or visibility, served from the next request",
            "operationId": "updateItem",
            "security": _AUTH,
            "parameters": [{"name": "item_id", "in": "path", "required": True, "schema": _ITEM_ID}],
            "requestBody": {"required": True, "content": {"application/json": {"schema": _UPDATE}}},
            "responses": {"200": _answer(_ITEM_RECEIPT, "Applied."), "400": _answer(_ERROR, "Invalid update (names the field)."), **_ADMIN_ERRORS},
        }
    },
    "/v1/admin/items": {
        "patch": {
            "summary": "Change many items in one atomic call",
            "description": (
                "The entries are applied in order, as separate calls would be, but atomically: "
                "a later entry for an item already named overrides the fields it gives (an upsert, "
                "the last value of each field wins) and the receipt has one entry per item."
            ),
            "operationId": "updateItems",
            "security": _AUTH,
            "requestBody": {"required": True, "content": {"application/json": {"schema": _BULK_UPDATE}}},
            "responses": {
                "200": _answer(_ITEM_RECEIPT, "All applied."),
                "400": _answer(_ERROR, "An invalid entry (named by index and field): nothing applied."),
                **_ADMIN_ERRORS,
            },
        }
    },
}
